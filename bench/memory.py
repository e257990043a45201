"""Measure the memory of `make run` at rest: the RSS of every process it started, and their sum.

    .venv/bin/python bench/memory.py [--workers 2]

Starts the system the way `make run` does on a fresh instance with the demo data, waits
until the workers have rendered the demo PDFs ahead (so they hold the PDF stack, as after
the first send) and nothing is queued, then reads VmRSS of the launcher and all its
descendants from /proc. RSS counts pages shared between processes in each of them: the sum
is an upper bound of what the system takes.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402

from bench.system import System, children_of, cmdline  # noqa: E402


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tree(pid: int) -> list[int]:
    found = [pid]
    for child in children_of(pid):
        found += tree(child)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="2")
    options = parser.parse_args()
    # Nothing seeded beforehand and no mail server given: exactly what `make run` starts.
    with System(0, None, {"WORKERS": options.workers}) as system:
        client = redis.Redis.from_url(system.redis_url)
        deadline = time.monotonic() + 300
        queues = [f"rq:queue:portal{suffix}" for suffix in ("", "-low", "-high")]
        while time.monotonic() < deadline and any(client.llen(q) for q in queues):
            time.sleep(1)
        time.sleep(5)  # the last render finishes; then nothing runs but the reconciler
        rows = [(pid, rss_kb(pid), cmdline(pid)) for pid in tree(system.launcher.pid)]
    total = sum(kb for _pid, kb, _cmd in rows)
    print(f"{'RSS MB':>8}  process")
    for _pid, kb, command in rows:
        print(f"{kb / 1024:8.0f}  {command[:90]}")
    print(f"{total / 1024:8.0f}  in all")


if __name__ == "__main__":
    main()
