"""The mail job end to end in one process: real Redis, real RQ worker, real SMTP on loopback."""

import re

import pytest
from rq import SimpleWorker

from portal.extensions import db
from portal.models import Delivery, Invoice, MailSettings
from portal.rendering.service import invoice_pdf
from portal.runtime.queue import get_queue, get_redis
from portal.sending import jobs, service
from tests.factories import make_invoice


@pytest.fixture
def mail_app(app, redis_url, smtp_server):
    app.config.update(
        REDIS_URL=redis_url, RQ_QUEUE="test-jobs", SEND_RETRY_INTERVALS="0,0", SMTP_TIMEOUT=2,
        PORTAL_BASE_URL="https://hoadon.example.vn",
    )  # fmt: skip
    with app.app_context():
        get_redis().flushdb()
        db.session.add(
            MailSettings(
                host="127.0.0.1", port=smtp_server.port, security="none",
                sender_name="Ánh Dương", sender_email="hoadon@anhduong.vn", reply_to="ketoan@anhduong.vn",
            )
        )  # fmt: skip
        db.session.commit()
    return app


def send_and_work(app, to="an@example.com; ke.toan@example.com", cc="", bcc="", **invoice):
    with app.app_context():
        invoice_id = make_invoice(**invoice).id
        recipients = service.parse_recipients("Nguyễn Văn An", to, cc, bcc)
        delivery_id = service.queue_delivery(invoice_id, None, recipients).delivery.id
        SimpleWorker([get_queue()], connection=get_redis()).work(burst=True)
        return invoice_id, delivery_id


def test_delivered_message_carries_the_invoice_files_and_the_buyer_link(mail_app, smtp_server):
    invoice_id, delivery_id = send_and_work(mail_app, cc="sep@example.com", bcc="luu@example.com")
    (received,) = smtp_server.messages
    assert sorted(received.rcpt_tos) == [
        "an@example.com",
        "ke.toan@example.com",
        "luu@example.com",
        "sep@example.com",
    ]
    message = received.message
    with mail_app.app_context():
        invoice = db.session.get(Invoice, invoice_id)
        delivery = db.session.get(Delivery, delivery_id)
        files = {part.get_filename(): part.get_content() for part in message.iter_attachments()}
        stem = f"1K26TAA_{invoice.number:08d}"
        assert files == {f"{stem}.pdf": invoice_pdf(invoice), f"{stem}.xml": invoice.xml}
        assert message["Message-ID"] == delivery.message_id
        assert message["Reply-To"] == "ketoan@anhduong.vn"
        assert "Bcc" not in message.keys()
        assert delivery.status == "sent" and delivery.smtp_code == 250
        assert invoice.send_status == "sent" and invoice.sent_at is not None
        text = message.get_body(("plain",)).get_content()
        link = re.search(r"https://hoadon\.example\.vn/hd/(\S+)", text).group(1)
        assert service.hash_token(link) == delivery.token_hash
        assert "Một triệu không trăm tám mươi chín nghìn đồng" in text


def test_a_second_run_of_a_finished_job_sends_nothing(mail_app, smtp_server):
    _, delivery_id = send_and_work(mail_app)
    with mail_app.app_context():
        assert jobs.deliver_invoice(delivery_id) == "skipped"
    assert len(smtp_server.messages) == 1


def test_421_then_250_delivers_once_after_a_retry(mail_app, smtp_server):
    smtp_server.handler.data_replies = ["421 4.7.0 Try again later"]
    _, delivery_id = send_and_work(mail_app)
    assert len(smtp_server.messages) == 1
    with mail_app.app_context():
        delivery = db.session.get(Delivery, delivery_id)
        assert delivery.status == "sent" and delivery.attempts == 2
        assert [a.outcome for a in delivery.attempt_log] == ["temporary", "sent"]
        assert delivery.attempt_log[0].smtp_code == 421


def test_550_fails_at_once_with_the_reason(mail_app, smtp_server):
    smtp_server.handler.data_replies = ["550 5.1.1 Mailbox does not exist"]
    invoice_id, delivery_id = send_and_work(mail_app)
    assert smtp_server.messages == []
    with mail_app.app_context():
        delivery = db.session.get(Delivery, delivery_id)
        assert (delivery.status, delivery.smtp_code, delivery.attempts) == ("failed", 550, 1)
        assert "Mailbox does not exist" in delivery.smtp_message
        assert db.session.get(Invoice, invoice_id).send_status == "failed"


def test_stopped_server_is_retried_then_failed(mail_app, smtp_server):
    smtp_server.stop()
    invoice_id, delivery_id = send_and_work(mail_app)
    with mail_app.app_context():
        delivery = db.session.get(Delivery, delivery_id)
        assert delivery.status == "failed" and delivery.error_kind == "unreachable"
        assert delivery.attempts == 3  # the first try and two retries
        assert db.session.get(Invoice, invoice_id).send_status == "failed"


def test_no_answer_after_the_data_is_unknown_and_not_retried(mail_app, smtp_server):
    smtp_server.handler.data_delay = 4
    invoice_id, delivery_id = send_and_work(mail_app)
    with mail_app.app_context():
        delivery = db.session.get(Delivery, delivery_id)
        assert delivery.status == "unknown" and delivery.attempts == 1
        assert db.session.get(Invoice, invoice_id).send_status == "unknown"
