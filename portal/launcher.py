"""`make run`: set up and start the whole system on embedded defaults, and keep it running.

Starts the embedded Redis with the password kept in instance/ (unless REDIS_URL is set), the local mail catcher (unless
MAIL_SERVER is set) and the T-VAN sandbox (unless TVAN_ENDPOINT is set), runs `flask setup` (migrate, check fonts, load demo data once, point
the mail settings at the catcher), then starts the worker pool and gunicorn. When one of
them dies, it is started again (after 1 s, doubling up to 30 s while it keeps dying); the
rest go on, so buyer pages keep working while Redis restarts. Ctrl-C (or SIGTERM) stops
everything it started, in order. The launcher loads no app itself: it only supervises.
"""

import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import load_dotenv

from portal.config import INSTANCE, ROOT, load_redis_password, load_secret_key
from portal.runtime import redis_server

# A child that ran this long before dying is restarted at once; one that keeps dying waits.
HEALTHY_AFTER = 60.0
MAX_BACKOFF = 30.0


class StartupError(Exception):
    """Something the system needs is missing or broken; the message says what."""


def _interrupt(_signum, _frame):
    # SIGTERM (systemd, a test) takes the same path as Ctrl-C.
    raise KeyboardInterrupt


@dataclass
class Child:
    """One supervised process and how to start it again."""

    name: str
    start: Callable[[], subprocess.Popen]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    backoff: float = 1.0
    restart_at: float | None = None
    # Process groups of earlier runs: what is left of them is stopped with the rest.
    earlier: list[int] = field(default_factory=list)

    def launch(self) -> None:
        if self.process is not None:
            self.earlier.append(self.process.pid)
        self.process = self.start()
        self.started_at = time.monotonic()
        self.restart_at = None


def _spawn(args: list[str], env: dict) -> subprocess.Popen:
    # Children run in sessions of their own so that Ctrl-C reaches only this process, which
    # then stops them in order: web, workers, mail catcher, and Redis last.
    return subprocess.Popen(args, env=env, cwd=ROOT, start_new_session=True)


def _lock(instance: Path):
    """Hold instance/launcher.lock: two launchers on one instance would share Redis's files."""
    handle = open(instance / "launcher.lock", "w")  # noqa: SIM115  (held until main returns)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise StartupError(f"another `make run` is already using {instance}") from None
    return handle


def _setup(env: dict) -> None:
    """Migrate, check fonts, load demo data once: `flask setup`, in a process of its own."""
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "setup"], env=env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    output = result.stdout.strip()
    if result.returncode != 0:
        raise StartupError(f"setting up failed:\n{output}")
    if output:
        print(output, flush=True)


def _demo_logins(instance: Path) -> str:
    """The demo accounts' passwords made for this instance (by `flask demo seed`), if any."""
    path = instance / "demo-logins.txt"
    if not path.exists():
        return ""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return f"Demo logins ({path}): " + ", ".join(lines) + "\n" if lines else ""


def _sandbox_secrets(folder: Path) -> dict[str, str]:
    """The sandbox's credentials, made once per instance and kept readable by its owner only."""
    import json
    import secrets

    path = folder / "credentials.json"
    if path.exists():
        return json.loads(path.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    made = {"user": "portal", "password": secrets.token_urlsafe(18),
            "control_token": secrets.token_urlsafe(18), "callback_secret": secrets.token_urlsafe(24)}  # fmt: skip
    path.write_text(json.dumps(made))
    path.chmod(0o600)
    return made


def sandbox_command(folder: Path, port: int, callback: str, notice_delay: str) -> list[str]:
    """The T-VAN sandbox's command: its secrets stay in the file _sandbox_secrets made.

    On the command line `ps` would show them to every local user, and one that starts with
    "-" (1 in 64 of them) would read as an option, so the sandbox would never start.
    """
    return [sys.executable, "-m", "tvan_sandbox", "--port", str(port), "--data", str(folder),
            "--credentials", str(folder / "credentials.json"), "--callback", callback,
            "--notice-delay", notice_delay]  # fmt: skip


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    load_dotenv(ROOT / ".env")
    instance = Path(os.environ.get("PORTAL_INSTANCE", INSTANCE))
    # Everything the system writes (the database, Redis's files, caught emails, keys) is for
    # its owner only: 0700 folders and 0600 files, for this process and every child.
    os.umask(0o077)
    instance.mkdir(parents=True, exist_ok=True)
    instance.chmod(0o700)
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    env = dict(os.environ, PORTAL_INSTANCE=str(instance), SECRET_KEY=load_secret_key(instance))
    env.setdefault("PORTAL_BASE_URL", f"http://{host}:{port}")
    children: list[Child] = []
    lock = None
    try:
        lock = _lock(instance)
        if not redis_server.port_is_free(port, host):
            raise StartupError(f"port {port} is in use: set PORT to a free one")
        if not env.get("REDIS_URL"):
            redis_port = int(env.get("REDIS_PORT", "6390"))
            if not redis_server.port_is_free(redis_port):
                redis_port = redis_server.free_port()
            folder = instance / "redis"
            # A job in the queue runs code in a worker: only clients that know the password
            # kept in instance/ (the web, the workers, the limiter, `flask setup`) may queue.
            password = load_redis_password(instance)
            redis = Child(
                "redis",
                lambda: redis_server.start(folder, redis_port, strict=True, password=password).process,
            )  # fmt: skip
            redis.launch()
            children.append(redis)
            env["REDIS_URL"] = redis_server.url_for(redis_port, password)
            print(f"Embedded Redis at {redis_server.url_for(redis_port)} (data in {folder}, "
                  f"password in {instance / 'redis_password'})", flush=True)  # fmt: skip
        if not env.get("MAIL_SERVER"):
            mail_port = int(env.get("MAIL_PORT", "1025"))
            if not redis_server.port_is_free(mail_port):
                mail_port = redis_server.free_port()
            env.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=str(mail_port),
                       MAIL_CATCHER_DIR=str(instance / "mail"))  # fmt: skip
            catcher = [sys.executable, "-m", "portal.runtime.mailcatcher", str(instance / "mail"),
                       "--port", str(mail_port)]  # fmt: skip
            children.append(Child("mail catcher", lambda: _spawn(catcher, env)))
            children[-1].launch()
        if not env.get("TVAN_ENDPOINT"):
            tvan_port = int(env.get("TVAN_PORT", "8600"))
            if not redis_server.port_is_free(tvan_port):
                tvan_port = redis_server.free_port()
            secrets_of = _sandbox_secrets(instance / "tvan")
            env.update(TVAN_ENDPOINT=f"http://127.0.0.1:{tvan_port}", TVAN_SANDBOX="1",
                       TVAN_USERNAME=secrets_of["user"], TVAN_PASSWORD=secrets_of["password"],
                       TVAN_CALLBACK_SECRET=secrets_of["callback_secret"])  # fmt: skip
            sandbox = sandbox_command(instance / "tvan", tvan_port,
                                      f"{env['PORTAL_BASE_URL']}/tax/callback/sandbox",
                                      env.get("TVAN_NOTICE_DELAY", "1"))  # fmt: skip
            children.append(Child("tvan sandbox", lambda: _spawn(sandbox, env)))
            children[-1].launch()
            print(f"T-VAN sandbox at {env['TVAN_ENDPOINT']} (data in {instance / 'tvan'})",
                  flush=True)  # fmt: skip
        _setup(env)
        worker = [sys.executable, str(ROOT / "worker.py"), "--workers", env.get("WORKERS", "2")]
        # One web process with 8 threads serves a small team (its requests wait on the
        # database, not the CPU: PDFs are rendered by the workers); each more costs about 110 MB.
        web = [sys.executable, "-m", "gunicorn", "app:app", "--workers",
               env.get("WEB_WORKERS", "1"), "--threads", env.get("WEB_THREADS", "8"),
               "--bind", f"{host}:{port}", "--access-logfile", "-"]  # fmt: skip
        for name, args in (("worker", worker), ("web", web)):
            children.append(Child(name, lambda args=args: _spawn(args, env)))
            children[-1].launch()
        print(
            f"\nhoadon-portal is running at http://{host}:{port}\n"
            + (
                f"Emails it sends: http://{host}:{port}/mailbox (as admin)\n"
                if env.get("MAIL_CATCHER_DIR")
                else ""
            )
            + _demo_logins(instance)
            + "Stop with Ctrl-C.\n",
            flush=True,
        )
        _watch(children)
        return 0
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
        if lock is not None:
            lock.close()


def _watch(children: list[Child]) -> None:
    """Restart any child that died, until Ctrl-C."""
    while True:
        now = time.monotonic()
        for child in children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    try:
                        child.launch()
                    except Exception as error:  # Redis that cannot start yet, say
                        print(f"{child.name} did not start: {error}", file=sys.stderr, flush=True)
                        child.restart_at = now + child.backoff
                        child.backoff = min(child.backoff * 2, MAX_BACKOFF)
                    else:
                        print(f"{child.name} started again", flush=True)
                continue
            code = child.process.poll()
            if code is None:
                continue
            # Its own children (gunicorn's workers, the worker processes) are asked to stop:
            # a worker finishes the email in hand while the new ones start.
            _signal_group(child.process.pid, signal.SIGTERM)
            if now - child.started_at > HEALTHY_AFTER:
                child.backoff = 1.0
            print(f"{child.name} stopped (exit {code}); starting it again in {child.backoff:.0f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
            child.restart_at = now + child.backoff
            child.backoff = min(child.backoff * 2, MAX_BACKOFF)
        time.sleep(0.2)


def _stop(children: list[Child]) -> None:
    """Stop children newest first, each before the next: web, workers, catcher, then Redis."""
    for child in reversed(children):
        process = child.process
        if process is None:
            continue
        for pgid in child.earlier:
            _signal_group(pgid, signal.SIGTERM)
        # Each child leads its own process group, which holds its children too (gunicorn's
        # workers, the worker processes): signal the group, so none is left behind even when
        # the leader has already died.
        _signal_group(process.pid, signal.SIGTERM)
        try:
            # Workers finish the email in hand (SMTP_TIMEOUT bounds it) before they exit.
            process.wait(30)
        except subprocess.TimeoutExpired:
            print(f"{child.name} did not stop in time; killing it", file=sys.stderr, flush=True)
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
        deadline = time.monotonic() + 10
        groups = [process.pid, *child.earlier]
        while any(_group_running(g) for g in groups) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pgid in groups:
            _signal_group(pgid, signal.SIGKILL)


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
