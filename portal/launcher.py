"""`make run`: set up and start the whole system on embedded defaults.

Migrates the database, loads demo data on first start, checks the PDF fonts, then starts
the embedded Redis (unless REDIS_URL is set), the local mail catcher (unless MAIL_SERVER is
set), the RQ workers and gunicorn. Ctrl-C (or SIGTERM) stops everything it started; when
one of them dies, the launcher stops the rest and exits non-zero.
"""

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dotenv import load_dotenv

from portal.config import INSTANCE, ROOT, load_secret_key
from portal.runtime import redis_server


class StartupError(Exception):
    """Something the system needs is missing or broken; the message says what."""


def _interrupt(_signum, _frame):
    # SIGTERM (systemd, docker, a test) takes the same path as Ctrl-C.
    raise KeyboardInterrupt


def prepare(app) -> None:
    """Migrate, check fonts, load demo data once, and point mail settings at the catcher."""
    from flask_migrate import upgrade

    from portal.extensions import db

    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        try:
            from portal.rendering.pdf import self_check
        except ImportError:
            print("warning: no PDF font self-check available; skipped", flush=True)
        else:
            try:
                self_check(Path(app.config["PDF_FONT_DIR"]))
            except Exception as error:
                raise StartupError(f"the PDF fonts fail their self-check: {error}") from error
        if "demo" in app.cli.commands:
            result = app.test_cli_runner().invoke(args=["demo", "seed", "--if-empty"])
            if result.output.strip():
                print(result.output.strip(), flush=True)
            if result.exit_code != 0:
                raise StartupError(f"loading the demo data failed: {result.exception!r}")
        else:
            print("warning: no `flask demo seed` command yet; starting without demo data")
        try:
            from portal.sending.service import ensure_mail_settings
        except ImportError:
            pass
        else:
            ensure_mail_settings()
        db.session.remove()
        db.engine.dispose()


def _lock(instance: Path):
    """Hold instance/launcher.lock: two launchers on one instance would share Redis's files."""
    handle = open(instance / "launcher.lock", "w")  # held until main returns
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise StartupError(f"another `make run` is already using {instance}") from None
    return handle


def _spawn(children, name: str, args: list[str], env: dict) -> None:
    # Children run in sessions of their own so that Ctrl-C reaches only this process, which
    # then stops them in order: web, workers, mail catcher, and Redis last.
    process = subprocess.Popen(args, env=env, cwd=ROOT, start_new_session=True)
    children.append((name, process))


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    load_dotenv(ROOT / ".env")
    instance = Path(os.environ.get("PORTAL_INSTANCE", INSTANCE))
    instance.mkdir(parents=True, exist_ok=True)
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    env = dict(os.environ, PORTAL_INSTANCE=str(instance), SECRET_KEY=load_secret_key(instance))
    env.setdefault("PORTAL_BASE_URL", f"http://{host}:{port}")
    children: list[tuple[str, subprocess.Popen]] = []
    redis = lock = None
    try:
        lock = _lock(instance)
        if not redis_server.port_is_free(port, host):
            raise StartupError(f"port {port} is in use: set PORT to a free one")
        if not env.get("REDIS_URL"):
            redis = redis_server.start(instance / "redis", int(env.get("REDIS_PORT", "6390")))
            env["REDIS_URL"] = redis.url
            print(f"Embedded Redis at {redis.url} (data in {instance / 'redis'})", flush=True)
        if not env.get("MAIL_SERVER"):
            mail_port = int(env.get("MAIL_PORT", "1025"))
            if not redis_server.port_is_free(mail_port):
                mail_port = redis_server.free_port()
            env.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=str(mail_port),
                       MAIL_CATCHER_DIR=str(instance / "mail"))  # fmt: skip
            _spawn(children, "mail catcher", [sys.executable, "-m", "portal.runtime.mailcatcher",
                   str(instance / "mail"), "--port", str(mail_port)], env)  # fmt: skip
        os.environ.update(env)
        from portal import create_app

        prepare(create_app())
        _spawn(children, "worker", [sys.executable, str(ROOT / "worker.py"),
               "--workers", env.get("WORKERS", "2")], env)  # fmt: skip
        _spawn(children, "web", [sys.executable, "-m", "gunicorn", "app:app",
               "--workers", env.get("WEB_WORKERS", "2"), "--threads", "4",
               "--bind", f"{host}:{port}", "--access-logfile", "-"], env)  # fmt: skip
        print(
            f"\nhoadon-portal is running at http://{host}:{port}\n"
            "Demo logins: admin / admin (admin), ketoan / ketoan (sender)\n"
            + (
                f"Emails it sends: http://{host}:{port}/mailbox (as admin)\n"
                if env.get("MAIL_CATCHER_DIR")
                else ""
            )
            + "Stop with Ctrl-C.\n",
            flush=True,
        )
        return _watch(children)
    except KeyboardInterrupt:
        return 0
    except StartupError as error:
        print(f"cannot start: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        # A second Ctrl-C must not cut the shutdown short and leave processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop(children)
        if redis is not None:
            redis.stop()
        if lock is not None:
            lock.close()


def _watch(children) -> int:
    """Wait for Ctrl-C; return 1 as soon as any child has died."""
    while True:
        for name, process in children:
            if process.poll() is not None:
                print(
                    f"{name} stopped (exit {process.returncode}); stopping everything.",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
        time.sleep(0.5)


def _stop(children) -> None:
    """Stop children newest first, each before the next: web, workers, then the mail catcher."""
    for name, process in reversed(children):
        # Each child leads its own process group, which holds its children too (gunicorn's
        # workers, the worker processes): signal the group, so none is left behind even when
        # the leader has already died.
        _signal_group(process.pid, signal.SIGTERM)
        try:
            # Workers finish the email in hand (SMTP_TIMEOUT bounds it) before they exit.
            process.wait(30)
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop in time; killing it", file=sys.stderr, flush=True)
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
        deadline = time.monotonic() + 10
        while _group_running(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        _signal_group(process.pid, signal.SIGKILL)


def _group_running(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in the group, read from /proc."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _signal_group(pgid: int, signum: int) -> bool:
    """Send signum to a process group; False when the group is gone."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
