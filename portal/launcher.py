"""`make run`: set up and start the whole system on embedded defaults.

Migrates the database, loads demo data on first start, checks the PDF fonts, then starts
the embedded Redis (unless REDIS_URL is set), the local mail catcher (unless MAIL_SERVER is
set), the RQ workers and gunicorn. Ctrl-C stops everything it started.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dotenv import load_dotenv

from portal.config import INSTANCE, ROOT, load_secret_key
from portal.runtime import redis_server


def prepare(app) -> None:
    """Migrate, check fonts, load demo data once, and set up mail towards the catcher."""
    from flask_migrate import upgrade

    from portal.extensions import db
    from portal.rendering.pdf import self_check
    from portal.sending.service import ensure_mail_settings

    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        self_check(Path(app.config["PDF_FONT_DIR"]))
        result = app.test_cli_runner().invoke(args=["demo", "seed", "--if-empty"])
        print(result.output.strip(), flush=True)
        if result.exit_code != 0:
            raise SystemExit(f"demo data failed: {result.exception!r}")
        ensure_mail_settings()
        db.session.remove()


def main() -> int:
    load_dotenv(ROOT / ".env")
    instance = Path(os.environ.get("PORTAL_INSTANCE", INSTANCE))
    instance.mkdir(parents=True, exist_ok=True)
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    env = dict(os.environ, PORTAL_INSTANCE=str(instance), SECRET_KEY=load_secret_key(instance))
    env.setdefault("PORTAL_BASE_URL", f"http://{host}:{port}")
    children: list[tuple[str, subprocess.Popen]] = []
    redis = None
    try:
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
            children.append(("mail catcher", subprocess.Popen(
                [sys.executable, "-m", "portal.runtime.mailcatcher", str(instance / "mail"),
                 "--port", str(mail_port)], env=env, cwd=ROOT, start_new_session=True)))  # fmt: skip
        os.environ.update(env)
        from portal import create_app

        prepare(create_app())
        children.append(("worker", subprocess.Popen(
            [sys.executable, str(ROOT / "worker.py"), "--workers", env.get("WORKERS", "2")],
            env=env, cwd=ROOT, start_new_session=True)))  # fmt: skip
        children.append(("web", subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "app:app", "--workers", env.get("WEB_WORKERS", "2"),
             "--threads", "4", "--bind", f"{host}:{port}", "--access-logfile", "-"],
            env=env, cwd=ROOT, start_new_session=True)))  # fmt: skip
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
    finally:
        _stop(children)
        if redis is not None:
            redis.stop()


# Children run in sessions of their own so that Ctrl-C reaches only this process, which
# then stops them in order: web, workers, mail catcher, and Redis last.


def _watch(children) -> int:
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    while not stopping:
        for name, process in children:
            if process.poll() is not None:
                print(
                    f"{name} stopped (exit {process.returncode}); stopping everything.", flush=True
                )
                return 1
        time.sleep(0.5)
    return 0


def _stop(children) -> None:
    for _name, process in reversed(children):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for _name, process in children:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if __name__ == "__main__":
    sys.exit(main())
