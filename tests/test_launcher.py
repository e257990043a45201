"""`make run`'s launcher: everything starts on embedded defaults and Ctrl-C stops it all."""

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis

from portal.runtime import redis_server
from tests.conftest import ROOT, free_port
from tests.helpers import wait_for


def children_of(pid: int, depth: int = 99) -> set[int]:
    """The descendants of pid down to `depth` generations, from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier and depth:
        depth -= 1
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and ") Z " not in stat.read_text()


def test_embedded_redis_keeps_jobs_across_a_restart(tmp_path):
    handle = redis_server.start(tmp_path / "redis", free_port(), password="pass-word_1")
    try:
        assert (tmp_path / "redis" / "redis.conf").stat().st_mode & 0o777 == 0o600
        with redis.Redis.from_url(handle.url.replace(":pass-word_1@", "")) as stranger:
            with pytest.raises(redis.AuthenticationError):
                stranger.ping()
        with redis.Redis.from_url(handle.url) as client:
            config = client.config_get("*")
            assert config["appendonly"] == "yes" and config["appendfsync"] == "everysec"
            assert config["maxmemory-policy"] == "noeviction"
            assert config["save"] == "" and config["protected-mode"] == "yes"
            client.lpush("rq:queue:portal", "job-1")
        time.sleep(1.2)  # appendfsync everysec
        port = int(handle.url.rsplit(":", 1)[1].split("/")[0])
        handle.process.kill()  # not a clean shutdown
        handle.process.wait()
        handle = redis_server.start(tmp_path / "redis", port, password="pass-word_1")
        with redis.Redis.from_url(handle.url) as client:
            assert client.lrange("rq:queue:portal", 0, -1) == [b"job-1"]
    finally:
        handle.stop()


def test_a_restarted_redis_keeps_its_port_or_says_why(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            redis_server.start(tmp_path / "redis", port, strict=True)
        except RuntimeError as error:
            assert "still in use" in str(error)
        else:
            raise AssertionError("a restart moved Redis to another port")


def start_launcher(instance: Path, port: int, workers: str = "1"):
    env = dict(os.environ, PORTAL_INSTANCE=str(instance), PORT=str(port),
               REDIS_PORT=str(free_port()), MAIL_PORT=str(free_port()), WORKERS=workers,
               WEB_WORKERS="1")  # fmt: skip
    for key in ("REDIS_URL", "MAIL_SERVER", "DATABASE_URL", "SECRET_KEY"):
        env.pop(key, None)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "portal.launcher"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert launcher.poll() is None, launcher.stdout.read()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as answer:
                if answer.status == 200:
                    return launcher
        except OSError:
            time.sleep(0.3)
    stop(launcher)
    raise AssertionError("the launcher did not serve /login in time")


def stop(launcher) -> str:
    """Ctrl-C the launcher (it stops its children) and return what it printed."""
    if launcher.poll() is None:
        launcher.send_signal(signal.SIGINT)
    try:
        return launcher.communicate(timeout=60)[0]
    except subprocess.TimeoutExpired:
        launcher.kill()
        raise


def file_modes(folder: Path) -> dict[Path, int]:
    modes = {}
    for path in [folder, *folder.rglob("*")]:
        try:
            modes[path] = path.stat().st_mode & 0o777
        except FileNotFoundError:  # a temporary file that went meanwhile
            pass
    return modes


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:  # it ended meanwhile
        return ""


def sandbox_answers(port, kept: dict) -> bool:
    """Whether the T-VAN sandbox on `port` answers a ping with the kept user and password."""
    basic = base64.b64encode(f"{kept['user']}:{kept['password']}".encode()).decode()
    ping = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/ping",
                                  headers={"Authorization": f"Basic {basic}"})  # fmt: skip
    try:
        with urllib.request.urlopen(ping, timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def test_launcher_starts_everything_and_ctrl_c_stops_it_all(tmp_path):
    instance, port = tmp_path / "instance", free_port()
    launcher = start_launcher(instance, port)
    try:
        started = children_of(launcher.pid)
        commands = " | ".join(cmdline(pid) for pid in started)
        for part in ("redis-server", "portal.runtime.mailcatcher", "worker.py", "gunicorn",
                     "tvan_sandbox"):  # fmt: skip
            assert part in commands
        # The T-VAN sandbox answers with the credentials kept in instance/, which no command
        # line shows.
        kept = json.loads((instance / "tvan" / "credentials.json").read_text())
        assert not any(kept[key] in commands for key in ("password", "control_token",
                                                         "callback_secret"))  # fmt: skip
        tvan_port = re.search(r"tvan_sandbox --port (\d+)", commands).group(1)
        wait_for(lambda: sandbox_answers(tvan_port, kept))
        assert (instance / "portal.db").exists()
        assert (instance / "redis" / "redis.conf").exists()
        secret = (instance / "secret_key").read_text()
        # The embedded Redis refuses a client without the password kept in instance/ (a
        # job in its queue runs code in a worker), while the web and the workers use it.
        conf = (instance / "redis" / "redis.conf").read_text()
        redis_port = int(re.search(r"^port (\d+)$", conf, re.M).group(1))
        password = (instance / "redis_password").read_text()
        assert len(password) >= 32
        for stranger in (redis.Redis(port=redis_port), redis.Redis(port=redis_port, password="x")):
            with stranger, pytest.raises(redis.AuthenticationError):
                stranger.lpush("rq:queue:portal", "job")
        with redis.Redis(port=redis_port, password=password) as owner:
            assert owner.llen("rq:queue:portal") == 0
            wait_for(lambda: owner.scard("rq:workers") >= 1)  # the worker pool registered
            # A buyer link counts against its rate limit in Redis, not in the web's memory.
            with pytest.raises(urllib.error.HTTPError) as gone:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/hd/no-such-link", timeout=5)
            assert gone.value.code == 404
            gone.value.close()
            assert owner.keys("LIMITS:LIMITER/*/buyer.page/*")
        second = subprocess.run(
            [sys.executable, "-m", "portal.launcher"], cwd=ROOT, capture_output=True, text=True,
            env=dict(os.environ, PORTAL_INSTANCE=str(instance), PORT=str(free_port())),
            timeout=60,
        )  # fmt: skip
        assert second.returncode == 1 and "already using" in second.stderr
        # instance/ and all in it are its owner's only: no other local user reads the
        # database, the keys, Redis's files or the caught emails.
        modes = file_modes(instance)
        loose = {str(p): oct(m) for p, m in modes.items() if m & 0o077}
        assert loose == {} and len(modes) > 5
    finally:
        output = stop(launcher)
    assert launcher.returncode == 0, output
    assert f"http://127.0.0.1:{port}" in output
    assert password not in output
    admin_login = re.search(r"admin / \S+ \(admin\)", output).group(0)
    assert admin_login != "admin / admin (admin)"
    assert (instance / "demo-logins.txt").stat().st_mode & 0o777 == 0o600
    assert f"http://127.0.0.1:{port}/mailbox" in output
    assert [pid for pid in started if alive(pid)] == []

    # A second start reuses instance/ (the key, the database, Redis's files). When a child
    # dies, the launcher starts it again and the rest go on.
    launcher = start_launcher(instance, port, workers="2")
    try:
        assert (instance / "secret_key").read_text() == secret
        assert (instance / "redis_password").read_text() == password
        started = children_of(launcher.pid)
        workers = {pid for pid in started if "worker.py" in cmdline(pid)}
        assert len(workers) == 3  # the supervisor and its two worker processes
        (supervisor,) = workers & children_of(launcher.pid, depth=1)
        (redis_pid,) = {p for p in started if "redis-server" in cmdline(p)}
        os.kill(supervisor, signal.SIGKILL)
        os.kill(redis_pid, signal.SIGKILL)
        # The buyer's and the seller's pages answer while Redis is gone or coming back.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as answer:
            assert answer.status == 200
        wait_for(lambda: {"worker.py", "redis-server"} <= {
            part for pid in children_of(launcher.pid, depth=1)
            for part in ("worker.py", "redis-server") if part in cmdline(pid)
            if pid not in (supervisor, redis_pid)
        }, timeout=30)  # fmt: skip
        wait_for(
            lambda: len({p for p in children_of(launcher.pid) if "worker.py" in cmdline(p)}) == 3
        )
        restarted = children_of(launcher.pid)
        assert launcher.poll() is None
    finally:
        output = stop(launcher)
    assert launcher.returncode == 0, output
    assert "worker stopped" in output and "worker started again" in output
    assert admin_login in output  # printed again at every start
    assert "redis stopped" in output and "redis started again" in output
    assert [pid for pid in started | restarted if alive(pid)] == []


def test_the_sandbox_starts_whatever_its_secrets_look_like_and_ps_does_not_show_them(tmp_path):
    # secrets.token_urlsafe starts with "-" once in 64: as a command-line value it read as
    # an option, and that instance's sandbox never started (its secrets are kept).
    from portal.launcher import sandbox_command

    folder = tmp_path / "tvan"
    folder.mkdir()
    kept = {"user": "portal", "password": "-Pa55word", "control_token": "--token",
            "callback_secret": "-secret"}  # fmt: skip
    (folder / "credentials.json").write_text(json.dumps(kept))
    port = free_port()
    command = sandbox_command(folder, port, "http://127.0.0.1:9/tax/callback/sandbox", "1")
    sandbox = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip

    def answers() -> bool:
        assert sandbox.poll() is None, sandbox.stderr.read()
        return sandbox_answers(port, kept)

    try:
        wait_for(answers)
        shown = cmdline(sandbox.pid)
        assert not any(value in shown for value in kept.values() if value != "portal")
        ledger = urllib.request.Request(f"http://127.0.0.1:{port}/_ledger",
                                        headers={"X-Control-Token": "--token"})  # fmt: skip
        with urllib.request.urlopen(ledger, timeout=5) as answer:
            assert json.loads(answer.read())["invoices"] == []
    finally:
        sandbox.terminate()
        sandbox.wait(10)
        sandbox.stderr.close()
