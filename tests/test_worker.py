"""The real worker process on a real Redis: run jobs in the app, send, kill it mid-send, restart."""

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from portal.extensions import db
from portal.models import Delivery, Invoice, MailSettings
from portal.runtime import maintenance
from portal.runtime.queue import enqueue, get_queue, get_redis
from portal.sending import service
from tests.conftest import ROOT, login
from tests.factories import make_invoice


@pytest.fixture
def worker_env(app, redis_url, smtp_server):
    queue = f"test-worker-{os.getpid()}"
    app.config.update(REDIS_URL=redis_url, RQ_QUEUE=queue)
    with app.app_context():
        get_redis().flushdb()
        db.session.add(MailSettings(host="127.0.0.1", port=smtp_server.port, security="none",
                                    sender_email="hoadon@anhduong.vn"))  # fmt: skip
        db.session.commit()
    env = dict(os.environ)
    env.update(
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], REDIS_URL=redis_url, RQ_QUEUE=queue,
        SECRET_KEY="test-secret", PORTAL_INSTANCE=app.instance_path, SEND_RETRY_INTERVALS="0",
        SMTP_TIMEOUT="20", PYTHONPATH=str(ROOT),
    )  # fmt: skip
    return env


def start_worker(env, *args):
    return subprocess.Popen(
        [sys.executable, str(ROOT / "worker.py"), "--workers", "1", *args],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def delivery_status(app, delivery_id):
    with app.app_context():
        return db.session.get(Delivery, delivery_id).status


def test_send_from_the_dialog_reaches_the_server_through_the_worker(
    app, users, worker_env, smtp_server
):
    worker = start_worker(worker_env)
    try:
        with app.app_context():
            invoice_id = make_invoice(buyer_email="an@nguyenhoang.vn").id
        client = app.test_client()
        login(client, "sender")
        response = client.post(
            f"/invoices/{invoice_id}/send", data={"to": "an@nguyenhoang.vn", "method": "email"},
            headers={"HX-Request": "true"},
        )  # fmt: skip
        assert "Đang gửi" in response.get_data(as_text=True)
        assert wait_for(lambda: smtp_server.messages)
        assert wait_for(
            lambda: (
                "Đã gửi HĐ cho KH"
                in client.get(f"/invoices/{invoice_id}/send-status").get_data(as_text=True)
            )
        )
    finally:
        worker.terminate()
        worker.wait(10)


def test_a_worker_killed_mid_send_never_sends_twice(app, worker_env, smtp_server):
    # The server takes its time to answer the message data: the worker is killed while it waits.
    smtp_server.handler.data_delay = 2
    with app.app_context():
        invoice_id = make_invoice().id
        delivery_id = service.queue_delivery(
            invoice_id, None, service.parse_recipients("", "an@example.com")
        ).delivery.id
    worker = start_worker(worker_env)
    assert wait_for(lambda: delivery_status(app, delivery_id) == "sending")
    time.sleep(0.5)  # the message data is on its way
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    assert wait_for(lambda: len(smtp_server.messages) == 1, timeout=5)  # the server accepted it

    # RQ may run the job again (Retry after the lost heartbeat): simulate that, with a new worker.
    with app.app_context():
        get_queue().enqueue(
            "portal.sending.jobs.deliver_invoice", delivery_id, job_id=f"delivery-{delivery_id}"
        )
    restarted = start_worker(worker_env, "--burst")
    assert restarted.wait(30) == 0
    assert delivery_status(app, delivery_id) == "sending"  # the claim held: nothing resent

    # The reconciler turns the abandoned send into "unknown" for the seller to decide.
    app.config["SENDING_STALE_AFTER"] = 0
    with app.app_context():
        assert service.reconcile()["unknown"] == 1
        assert db.session.get(Invoice, invoice_id).send_status == "unknown"
    assert len(smtp_server.messages) == 1


@pytest.mark.parametrize("workers", ["1", "2"])
def test_burst_worker_runs_jobs_inside_the_app(app, users, worker_env, tmp_path, workers):
    with app.app_context():
        jobs = [
            enqueue(
                "tests.jobs_for_tests.record_context",
                str(tmp_path / f"job-{n}.json"),
                label=f"n{n}",
                job_id=f"ctx-{n}",
            )  # fmt: skip
            for n in range(4)
        ]
    worker = subprocess.run(
        [sys.executable, str(ROOT / "worker.py"), "--workers", workers, "--burst"],
        env=worker_env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr
    seen = [json.loads((tmp_path / f"job-{n}.json").read_text()) for n in range(4)]
    assert [s["label"] for s in seen] == ["n0", "n1", "n2", "n3"]
    assert {s["queue"] for s in seen} == {worker_env["RQ_QUEUE"]}
    assert {s["users"] for s in seen} == {3}  # the app's database, through its session
    assert all(s["g_was_clean"] for s in seen)  # a fresh app context per job
    assert all(s["pid"] != os.getpid() for s in seen)
    assert [job.id for job in jobs] == ["ctx-0", "ctx-1", "ctx-2", "ctx-3"]
    with app.app_context():
        assert len(get_queue()) == 0


def test_maintenance_runs_every_task_even_when_one_fails(monkeypatch, caplog):
    monkeypatch.setattr(maintenance, "_tasks", [])
    calls = []

    def broken():
        raise RuntimeError("database away")

    maintenance.register(broken)
    maintenance.register(lambda: calls.append(1) or {"requeued": 1})
    maintenance.register(broken)  # registering twice runs it once
    with caplog.at_level(logging.ERROR, logger="portal.runtime.maintenance"):
        results = maintenance.run_all()
    assert calls == [1] and len(maintenance.tasks()) == 2
    assert list(results.values()) == [None, {"requeued": 1}]
    assert "database away" in caplog.text
