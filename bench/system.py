"""Start the whole system the way `make run` does, for the benchmarks, and talk to it.

The launcher starts Redis, the worker pool and gunicorn; the mail server is the bench's own
sink (MAIL_SERVER), so that what arrives can be counted. Invoices are seeded beforehand
with `flask demo seed`, and a bench user is made with `flask users create`.
"""

import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import sqlalchemy as sa

from portal.runtime import redis_server

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "bench", "bench-password-1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def descendants(pid: int) -> list[int]:
    found = []
    for child in children_of(pid):
        found += [child, *descendants(child)]
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class System:
    """The launcher and what it started, on a fresh instance folder.

    With invoices=0 nothing is seeded beforehand (the launcher's setup loads the demo data,
    as `make run` does); with mail_port=None the launcher starts its own mail catcher.
    """

    def __init__(self, invoices: int, mail_port: int | None, env: dict | None = None, keep=False):
        self.folder = Path(tempfile.mkdtemp(prefix="portal-bench-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.keep = keep
        self.env = dict(os.environ)
        for key in ("REDIS_URL", "DATABASE_URL", "SECRET_KEY", "MAIL_CATCHER_DIR"):
            self.env.pop(key, None)
        self.env.update(
            PORTAL_INSTANCE=str(self.folder), PORT=str(self.port), REDIS_PORT=str(free_port()),
            WORKERS="2", PYTHONPATH=str(ROOT),
        )  # fmt: skip
        if mail_port is None:
            self.env.update(MAIL_PORT=str(free_port()))
        else:
            self.env.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=str(mail_port))
        self.env.update(env or {})
        self.invoices = invoices
        self.launcher: subprocess.Popen | None = None
        self.engine = sa.create_engine(
            self.env.get("DATABASE_URL") or f"sqlite:///{self.folder / 'portal.db'}"
        )

    def flask(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", *args], cwd=ROOT, env=self.env,
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return result.stdout

    def __enter__(self) -> "System":
        if self.invoices:
            self.flask("db", "upgrade")
            self.flask("demo", "seed", "--invoices", str(self.invoices), "--no-history")
            self.flask("users", "create", USER, "--role", "sender", "--password", PASSWORD)
        self.log = open(self.folder / "launcher.log", "w")  # noqa: SIM115
        self.launcher = subprocess.Popen(
            [sys.executable, "-m", "portal.launcher"], cwd=ROOT, env=self.env,
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.launcher.poll() is not None:
                raise RuntimeError(f"the launcher stopped: {self.log_text()}")
            try:
                with urllib.request.urlopen(self.url + "/login", timeout=2):
                    break
            except OSError:
                time.sleep(0.3)
        self.wait_for_workers()
        return self

    def __exit__(self, *exc) -> None:
        if self.launcher and self.launcher.poll() is None:
            started = {pid: cmdline(pid) for pid in descendants(self.launcher.pid)}
            # SIGTERM, not SIGINT: a bench started in the background (`cmd &`) hands its
            # children SIGINT ignored, and the launcher then never heard the Ctrl-C.
            self.launcher.send_signal(signal.SIGTERM)
            try:
                # The launcher stops its children one after another, each within 40 s.
                self.launcher.wait(240)
            except subprocess.TimeoutExpired:
                self.launcher.kill()
            # Whatever the launcher left behind (it was killed, say) goes too: a later run
            # must not find this one's Redis, workers or web server still running.
            for pid, command in started.items():
                if cmdline(pid) == command:  # still that process, not a reused pid
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        self.log.close()
        self.engine.dispose()
        if not self.keep:
            shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def redis_url(self) -> str:
        """The embedded Redis's URL, with the password the launcher made in the instance."""
        password = (self.folder / "redis_password").read_text().strip()
        return redis_server.url_for(int(self.env["REDIS_PORT"]), password)

    def log_text(self) -> str:
        return (self.folder / "launcher.log").read_text()[-4000:]

    def sandbox(self, path: str, data: dict | None = None) -> dict:
        """Ask the T-VAN sandbox's control API (GET, or POST data) at the address it got.

        The launcher moves the sandbox off TVAN_PORT when that port is taken, and prints where
        it is; a refused connection (the launcher restarting it) is tried again for 30 s.
        """
        found = re.findall(
            r"T-VAN sandbox at (http://\S+)", (self.folder / "launcher.log").read_text()
        )
        token = json.loads((self.folder / "tvan" / "credentials.json").read_text())["control_token"]
        body = json.dumps(data).encode() if data is not None else None
        request = urllib.request.Request(
            found[-1] + path, body, method="POST" if body else "GET",
            headers={"X-Control-Token": token},
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback)
                    return json.loads(answer.read())
            except urllib.error.URLError as error:
                if not isinstance(error.reason, ConnectionRefusedError):
                    raise
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the T-VAN sandbox does not answer: {self.log_text()}"
                    ) from error
                time.sleep(0.5)

    # --- its processes -----------------------------------------------------------------

    def child(self, part: str) -> int | None:
        for pid in children_of(self.launcher.pid):
            if part in cmdline(pid):
                return pid
        return None

    def worker_pids(self) -> list[int]:
        pool = self.child("worker.py")
        return children_of(pool) if pool else []

    def wait_for_workers(self, count: int = 2, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.worker_pids()) < count:
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not start")
            time.sleep(0.2)

    # --- its data ------------------------------------------------------------------------

    def invoice_ids(self) -> list[int]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT id FROM invoice ORDER BY id")).scalars())

    def deliveries(self, invoice_ids: list[int]) -> dict[int, dict]:
        """The newest delivery of each invoice: status, reason, Message-ID."""
        query = sa.text(
            "SELECT d.invoice_id, d.status, d.error_kind, d.message_id, d.attempts "
            "FROM delivery d WHERE d.id IN (SELECT MAX(id) FROM delivery GROUP BY invoice_id)"
        )
        wanted = set(invoice_ids)
        with self.engine.connect() as conn:
            return {
                row.invoice_id: row._asdict()
                for row in conn.execute(query)
                if row.invoice_id in wanted
            }

    def buyer_emails(self, invoice_ids: list[int]) -> dict[int, str]:
        """The address each invoice goes to by default: its buyer's."""
        wanted = set(invoice_ids)
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, buyer_email FROM invoice"))
            return {row.id: row.buyer_email for row in rows if row.id in wanted}

    def tax_results(self, invoice_ids: list[int]) -> dict[int, str]:
        """The newest tax verdict of each invoice: pending, accepted, rejected."""
        query = sa.text(
            "SELECT invoice_id, result FROM tax_submission WHERE id IN "
            "(SELECT MAX(id) FROM tax_submission GROUP BY invoice_id)"
        )
        wanted = set(invoice_ids)
        with self.engine.connect() as conn:
            return {
                row.invoice_id: row.result
                for row in conn.execute(query)
                if row.invoice_id in wanted
            }

    def identities(self, invoice_ids: list[int]) -> dict[int, tuple]:
        """(seller tax code, form, series, number) of each invoice, as the authority knows it."""
        query = sa.text("SELECT id, seller_tax_code, form, series, number FROM invoice")
        wanted = set(invoice_ids)
        with self.engine.connect() as conn:
            return {row.id: (row.seller_tax_code, row.form, row.series, row.number)
                    for row in conn.execute(query) if row.id in wanted}  # fmt: skip

    def tax_states(self, invoice_ids: list[int]) -> list[dict]:
        """Each submission of the invoices and its message, for a report of what went wrong."""
        query = sa.text(
            "SELECT s.invoice_id, s.id AS submission, s.result, s.error_code, m.id AS message, "
            "m.status, m.attempts, m.error_kind, m.receipt_at, m.receipt_ok, m.notice_at, "
            "m.looked_up_at, m.finished_at FROM tax_submission s "
            "LEFT JOIN tax_message m ON m.id = s.message_id ORDER BY s.id"
        )
        wanted = set(invoice_ids)
        with self.engine.connect() as conn:
            return [row._asdict() for row in conn.execute(query) if row.invoice_id in wanted]

    def invoice_statuses(self, invoice_ids: list[int]) -> dict[int, str]:
        wanted = set(invoice_ids)
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, send_status FROM invoice"))
            return {row.id: row.send_status for row in rows if row.id in wanted}


def bulk_send(
    system: "System", client: "Client", ids: list[int] | None = None
) -> tuple[int, float]:
    """Send a batch the bulk page's way; return (batch id, the send click's seconds).

    Loads every unsent invoice, then ticks `ids` (or selects all matching) and sends.
    """
    page = client.opener.open(urllib.request.Request(
        system.url + "/bulk/load",
        urllib.parse.urlencode({"period": "all", "tab": "not_sent"}).encode(),
        headers={"HX-Request": "true", "X-CSRFToken": client.csrf},
    ), timeout=300).read().decode()  # fmt: skip
    batch_id = int(re.search(r'id="draft-(\d+)"', page).group(1))
    if ids is None:
        assert client.post(f"/bulk/drafts/{batch_id}/tick-all", {"selected": "1"}) == 200
    else:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            assert (
                client.post(f"/bulk/drafts/{batch_id}/tick", {"ids": chunk, "selected": "1"}) == 200
            )
    started = time.perf_counter()
    status = client.post(f"/bulk/drafts/{batch_id}/send", {})
    click = time.perf_counter() - started
    assert status in (200, 204, 302), status
    return batch_id, click


class Client:
    """A logged-in seller over HTTP, with the session cookie and the CSRF token."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        page = self.opener.open(base + "/login", timeout=30).read().decode()
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
        token = token or re.search(r'name="csrf_token" value="([^"]+)"', page)
        form = {"username": USER, "password": PASSWORD, "csrf_token": token.group(1)}
        home = self.opener.open(base + "/login", urllib.parse.urlencode(form).encode(), timeout=30)
        body = home.read().decode()
        headers = re.search(r"hx-headers='([^']+)'", body)
        if headers is None:
            raise RuntimeError("login failed")
        self.csrf = json.loads(headers.group(1))["X-CSRFToken"]

    def post(self, path: str, data: dict, retries: int = 5) -> int:
        """POST as htmx does; a refused connection (web restarting) is tried again."""
        request = urllib.request.Request(
            self.base + path, urllib.parse.urlencode(data, doseq=True).encode(),
            headers={"HX-Request": "true", "X-CSRFToken": self.csrf},
        )  # fmt: skip
        for attempt in range(retries):
            try:
                with self.opener.open(request, timeout=90) as answer:
                    answer.read()
                    return answer.status
            except urllib.error.HTTPError as error:
                return error.code
            except OSError:
                if attempt == retries - 1:
                    raise
                time.sleep(1)
        return 0
