"""The real worker pool on a real Redis: jobs in the app, sends, workers killed and replaced."""

import json
import os
import signal
import subprocess
import sys

import pytest

from portal.extensions import db
from portal.models import Delivery, Invoice
from portal.runtime.queue import enqueue, get_queue, get_redis
from portal.sending import service
from tests.conftest import ROOT, login
from tests.factories import make_invoice
from tests.helpers import add_mail_settings, children_of, start_worker, stop, wait_for, worker_env


@pytest.fixture
def pool_app(app, redis_url, smtp_server):
    app.config.update(REDIS_URL=redis_url, RQ_QUEUE=f"test-worker-{os.getpid()}")
    with app.app_context():
        get_redis().flushdb()
        add_mail_settings(smtp_server.port)
    return app


def delivery(app, delivery_id) -> Delivery:
    with app.app_context():
        found = db.session.get(Delivery, delivery_id)
        db.session.expunge(found)
        return found


def queue_one(app) -> int:
    with app.app_context():
        invoice_id = make_invoice().id
        recipients = service.parse_recipients("", "an@example.com")
        return service.queue_delivery(invoice_id, None, recipients).delivery.id


def claimer_pid(app, delivery_id) -> int:
    return int(delivery(app, delivery_id).claimed_by.split(":")[1])


def test_send_from_the_dialog_reaches_the_server_through_the_worker(pool_app, users, smtp_server):
    worker = start_worker(worker_env(pool_app))
    try:
        with pool_app.app_context():
            invoice_id = make_invoice(buyer_email="an@nguyenhoang.vn").id
        client = pool_app.test_client()
        login(client, "sender")
        response = client.post(
            f"/invoices/{invoice_id}/send", data={"to": "an@nguyenhoang.vn", "method": "email"},
            headers={"HX-Request": "true"},
        )  # fmt: skip
        assert "Đang gửi" in response.get_data(as_text=True)
        wait_for(lambda: smtp_server.messages)
        wait_for(
            lambda: (
                "Đã gửi HĐ cho KH"
                in client.get(f"/invoices/{invoice_id}/send-status").get_data(as_text=True)
            )
        )
    finally:
        stop(worker)


def test_a_worker_killed_after_the_data_is_replaced_and_its_send_is_unknown(pool_app, smtp_server):
    # The server takes its time to answer the message data: the worker is killed while it waits.
    smtp_server.handler.data_delay = 5
    delivery_id = queue_one(pool_app)
    pool = start_worker(worker_env(pool_app))
    try:
        wait_for(lambda: smtp_server.messages)  # the server has the data, no answer yet
        victim = claimer_pid(pool_app, delivery_id)
        os.kill(victim, signal.SIGKILL)
        # The pool notices within seconds and starts another worker; the reconciler, told at
        # once, resolves the dead worker's claim: the data went out, so nobody knows.
        wait_for(lambda: children_of(pool.pid) and victim not in children_of(pool.pid))
        wait_for(lambda: delivery(pool_app, delivery_id).status == "unknown", timeout=20)
        assert delivery(pool_app, delivery_id).error_kind == "worker_stopped"
        with pool_app.app_context():
            invoice_id = delivery(pool_app, delivery_id).invoice_id
            assert db.session.get(Invoice, invoice_id).send_status == "unknown"
    finally:
        stop(pool)
    assert len(smtp_server.messages) == 1  # nothing resent


def test_a_worker_killed_before_the_data_is_replaced_and_the_email_goes_once(pool_app, smtp_server):
    smtp_server.handler.mail_delay = 3  # the worker waits for the answer to MAIL FROM
    delivery_id = queue_one(pool_app)
    pool = start_worker(worker_env(pool_app))
    try:
        wait_for(lambda: smtp_server.handler.mail_waiting)
        victim = claimer_pid(pool_app, delivery_id)
        smtp_server.handler.mail_delay = 0
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: delivery(pool_app, delivery_id).status == "sent", timeout=30)
        found = delivery(pool_app, delivery_id)
        assert found.attempts == 2 and claimer_pid(pool_app, delivery_id) != victim
    finally:
        stop(pool)
    assert len(smtp_server.messages) == 1


@pytest.mark.parametrize("workers", [1, 2])
def test_burst_workers_run_jobs_inside_the_app(pool_app, users, tmp_path, workers):
    with pool_app.app_context():
        jobs = [
            enqueue(
                "tests.jobs_for_tests.record_context",
                str(tmp_path / f"job-{n}.json"),
                label=f"n{n}",
                job_id=f"ctx-{n}",
            )  # fmt: skip
            for n in range(4)
        ]
    env = worker_env(pool_app)
    worker = subprocess.run(
        [sys.executable, str(ROOT / "worker.py"), "--workers", str(workers), "--burst"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr
    seen = [json.loads((tmp_path / f"job-{n}.json").read_text()) for n in range(4)]
    assert sorted(s["label"] for s in seen) == ["n0", "n1", "n2", "n3"]
    assert {s["queue"] for s in seen} == {env["RQ_QUEUE"]}
    assert {s["users"] for s in seen} == {3}  # the app's database, through its session
    assert all(s["g_was_clean"] for s in seen)  # a fresh app context per job
    assert all(s["pid"] != os.getpid() for s in seen)
    assert [job.id for job in jobs] == ["ctx-0", "ctx-1", "ctx-2", "ctx-3"]
    with pool_app.app_context():
        assert len(get_queue()) == 0
