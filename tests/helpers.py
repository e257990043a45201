"""Helpers for tests that are not fixtures: waiting on events, worker processes, mail settings."""

import os
import subprocess
import sys
import time

from rq import SimpleWorker

from portal.extensions import db
from portal.models import Delivery, MailSettings
from portal.outbox import service as outbox
from portal.runtime.queue import PRIORITIES, get_queue, get_redis
from portal.statuses import ACTIVE, OutboxStatus
from tests.conftest import ROOT


def wait_for(predicate, timeout: float = 30.0, every: float = 0.05):
    """Return predicate()'s first true value, checking every `every` s; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout} s: {predicate}")
        time.sleep(every)


def add_mail_settings(port: int, **values) -> MailSettings:
    """Store mail settings that point at a test SMTP server on loopback."""
    values = {"sender_name": "Ánh Dương", "sender_email": "hoadon@anhduong.vn", **values}
    settings = MailSettings(host="127.0.0.1", port=port, security="none", **values)
    db.session.add(settings)
    db.session.commit()
    return settings


def work_in_process(app, rounds: int = 20) -> None:
    """Run queued jobs in this process until no delivery is on its way (retries included).

    Between rounds the reconciler turns due retries back into queued jobs, as the worker
    pool's timer does in production.
    """
    with app.app_context():
        queues = [get_queue(priority) for priority in PRIORITIES]
        for _ in range(rounds):
            SimpleWorker(queues, connection=get_redis()).work(burst=True)
            outbox.reconcile()
            # Held ones (a paused batch, or waiting for the tax authority) wait for someone.
            moving = ACTIVE - {OutboxStatus.HELD}
            active = db.session.scalar(
                db.select(db.func.count()).select_from(Delivery).where(Delivery.status.in_(moving))
            )
            db.session.rollback()
            if not active and not any(len(q) for q in queues):
                return
            time.sleep(0.05)
        raise AssertionError("deliveries still in flight after all rounds")


def worker_env(app, **extra) -> dict:
    """The environment of a worker process that shares the test app's database and Redis."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        REDIS_URL=app.config["REDIS_URL"],
        RQ_QUEUE=app.config["RQ_QUEUE"],
        SECRET_KEY=app.config["SECRET_KEY"],
        PORTAL_INSTANCE=app.instance_path,
        PYTHONPATH=str(ROOT),
        RECONCILE_EVERY="1",
        QUEUED_STALE_AFTER="5",
        SEND_RETRY_INTERVALS="1,2,4",
        SMTP_TIMEOUT="10",
    )
    env.update({key: str(value) for key, value in extra.items()})
    return env


def start_worker(env: dict, *args: str, workers: int = 1) -> subprocess.Popen:
    """Start `worker.py` (the worker pool) as `make run` does."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "worker.py"), "--workers", str(workers), *args],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def children_of(pid: int) -> list[int]:
    """The direct children of a process, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return sorted(found)


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
