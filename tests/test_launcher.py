"""`make run`'s launcher: everything starts on embedded defaults and Ctrl-C stops it all."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import redis

from portal.runtime import redis_server
from tests.conftest import ROOT, free_port


def children_of(pid: int) -> set[int]:
    """Every descendant of pid, from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
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
    handle = redis_server.start(tmp_path / "redis", free_port())
    client = redis.Redis.from_url(handle.url)
    assert client.config_get("appendonly")["appendonly"] == "yes"
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    client.lpush("rq:queue:portal", "job-1")
    time.sleep(1.2)  # appendfsync everysec
    port = handle.url.rsplit(":", 1)[1].split("/")[0]
    handle.process.kill()  # not a clean shutdown
    handle.process.wait()
    handle = redis_server.start(tmp_path / "redis", int(port))
    assert redis.Redis.from_url(handle.url).lrange("rq:queue:portal", 0, -1) == [b"job-1"]
    handle.stop()


def test_launcher_starts_everything_and_ctrl_c_stops_it_all(tmp_path):
    port = free_port()
    env = dict(os.environ, PORTAL_INSTANCE=str(tmp_path / "instance"), PORT=str(port),
               REDIS_PORT=str(free_port()), MAIL_PORT=str(free_port()), WORKERS="1", WEB_WORKERS="1")  # fmt: skip
    for key in ("REDIS_URL", "MAIL_SERVER", "DATABASE_URL", "SECRET_KEY"):
        env.pop(key, None)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "portal.launcher"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline and status != 200:
            assert launcher.poll() is None, launcher.stdout.read()
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2).status
            except OSError:
                time.sleep(0.5)
        assert status == 200
        started = children_of(launcher.pid)
        assert len(started) >= 4  # redis, mail catcher, worker, gunicorn (and their workers)
        assert (tmp_path / "instance" / "portal.db").exists()
        assert (tmp_path / "instance" / "secret_key").exists()
    finally:
        launcher.send_signal(signal.SIGINT)
        output, _ = launcher.communicate(timeout=60)
    assert launcher.returncode == 0, output
    assert "http://127.0.0.1:" in output and "admin / admin" in output
    assert [pid for pid in started if alive(pid)] == []
