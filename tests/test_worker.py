"""The real worker process on a real Redis: send from the dialog, kill it mid-send, restart."""

import os
import signal
import subprocess
import sys
import time

import pytest

from portal.extensions import db
from portal.models import Delivery, Invoice, MailSettings
from portal.runtime.queue import get_queue, get_redis
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
