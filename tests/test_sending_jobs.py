"""The mail job end to end in one process: real Redis, real RQ worker, real SMTP on loopback."""

import re
import sqlite3
import threading
import time

import pytest

from portal.extensions import db
from portal.models import Delivery, DeliveryAttempt, Invoice, MailSettings, TaxSubmission
from portal.outbox import service as outbox
from portal.rendering.service import invoice_pdf
from portal.runtime.queue import get_redis
from portal.sending import reasons, service
from portal.types import utcnow
from tests.factories import make_invoice
from tests.helpers import add_mail_settings, work_in_process


@pytest.fixture
def mail_app(app, redis_url, smtp_server):
    app.config.update(
        REDIS_URL=redis_url, RQ_QUEUE="test-jobs", SEND_RETRY_INTERVALS="0,0", SMTP_TIMEOUT=2,
        PORTAL_BASE_URL="https://hoadon.example.vn",
    )  # fmt: skip
    with app.app_context():
        get_redis().flushdb()
        add_mail_settings(smtp_server.port, reply_to="ketoan@anhduong.vn")
    yield app
    service.connections.close()


def queue(app, to="an@example.com; ke.toan@example.com", cc="", bcc="", **invoice):
    with app.app_context():
        invoice_id = make_invoice(**invoice).id
        recipients = service.parse_recipients("Nguyễn Văn An", to, cc, bcc)
        return invoice_id, service.queue_delivery(invoice_id, None, recipients).delivery.id


def send_and_work(app, **kwargs):
    invoice_id, delivery_id = queue(app, **kwargs)
    work_in_process(app)
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
        assert delivery.status == "sent" and delivery.reply_code == 250
        assert delivery.data_sent_at is not None and delivery.lease_until is None
        assert invoice.send_status == "sent" and invoice.sent_at == delivery.finished_at
        text = message.get_body(("plain",)).get_content()
        link = re.search(r"https://hoadon\.example\.vn/hd/(\S+)", text).group(1)
        assert service.hash_token(link) == delivery.token_hash
        assert "Một triệu không trăm tám mươi chín nghìn đồng" in text


def test_a_second_run_of_a_finished_job_sends_nothing(mail_app, smtp_server):
    _, delivery_id = send_and_work(mail_app)
    with mail_app.app_context():
        assert outbox.run("delivery", delivery_id) == "skipped"
    assert len(smtp_server.messages) == 1


def test_421_slows_the_account_down_without_counting_as_a_failure(mail_app, smtp_server):
    mail_app.config["SEND_RETRY_INTERVALS"] = ""  # no retries: yet a "slow down" is not a failure
    smtp_server.handler.data_replies = ["421 4.7.0 Try again later"]
    invoice_id, delivery_id = queue(mail_app)
    with mail_app.app_context():
        assert outbox.run("delivery", delivery_id) == "retrying"
        delivery = db.session.get(Delivery, delivery_id)
        # The seller sees the wait, the server's answer and the time of the next try.
        assert (delivery.status, delivery.reply_code, delivery.error_kind) == (
            "retrying", 421, "throttled",
        )  # fmt: skip
        assert delivery.deferrals == 1
        assert 55 <= (delivery.next_attempt_at - delivery.claimed_at).total_seconds() <= 65
        assert db.session.get(Invoice, invoice_id).send_status == "retrying"
        settings = db.session.scalar(db.select(MailSettings))
        assert settings.throttled_until > delivery.claimed_at  # the whole account waits
        # Another email meanwhile waits for the pause too, without an attempt.
        other = service.queue_delivery(make_invoice().id, None,
                                       service.parse_recipients("", "b@example.com")).delivery.id  # fmt: skip
        assert outbox.run("delivery", other) == "skipped"
        waiting = db.session.get(Delivery, other)
        assert (waiting.status, waiting.error_kind, waiting.attempts) == ("retrying", "paced", 0)
        # The minute has passed.
        settings.throttled_until = None
        delivery.next_attempt_at = waiting.next_attempt_at = delivery.claimed_at
        db.session.commit()
    work_in_process(mail_app)
    assert len(smtp_server.messages) == 2
    with mail_app.app_context():
        delivery = db.session.get(Delivery, delivery_id)
        assert delivery.status == "sent" and delivery.attempts == 2
        assert [a.outcome for a in delivery.attempt_log] == ["retrying", "sent"]
        assert delivery.attempt_log[0].smtp_code == 421


def test_an_account_rate_paces_the_sends(mail_app, smtp_server):
    with mail_app.app_context():
        db.session.scalar(db.select(MailSettings)).rate_per_minute = 2
        db.session.commit()
        ids = [queue(mail_app)[1] for _ in range(3)]
        results = [outbox.run("delivery", i) for i in ids]
        assert results == ["sent", "sent", "skipped"]  # the third waits for its minute
        third = db.session.get(Delivery, ids[2])
        assert third.status == "retrying" and third.error_kind == "paced"
        assert 50 <= (third.next_attempt_at - utcnow()).total_seconds() <= 61
    assert len(smtp_server.messages) == 2


def test_550_fails_at_once_with_the_reason(mail_app, smtp_server):
    smtp_server.handler.data_replies = ["550 5.1.1 Mailbox does not exist"]
    invoice_id, delivery_id = send_and_work(mail_app)
    assert smtp_server.messages == []
    with mail_app.app_context():
        delivery = db.session.get(Delivery, delivery_id)
        assert (delivery.status, delivery.reply_code, delivery.attempts) == ("failed", 550, 1)
        assert "Mailbox does not exist" in delivery.reply_message
        assert db.session.get(Invoice, invoice_id).send_status == "failed"


def test_stopped_server_is_retried_then_failed(mail_app, smtp_server):
    smtp_server.stop()
    invoice_id, delivery_id = send_and_work(mail_app)
    with mail_app.app_context():
        delivery = db.session.get(Delivery, delivery_id)
        assert delivery.status == "failed" and delivery.error_kind == "unreachable"
        assert delivery.attempts == 3  # the first try and two retries
        assert [a.outcome for a in delivery.attempt_log] == ["retrying", "retrying", "failed"]
        assert db.session.get(Invoice, invoice_id).send_status == "failed"


def test_no_answer_after_the_data_is_unknown_and_not_retried(mail_app, smtp_server):
    smtp_server.handler.data_delay = 4
    invoice_id, delivery_id = send_and_work(mail_app)
    with mail_app.app_context():
        delivery = db.session.get(Delivery, delivery_id)
        assert delivery.status == "unknown" and delivery.attempts == 1
        assert delivery.error_kind == "no_answer"
        assert db.session.get(Invoice, invoice_id).send_status == "unknown"


def test_consecutive_sends_share_one_smtp_connection(mail_app, smtp_server):
    for _ in range(3):
        queue(mail_app)
    work_in_process(mail_app)
    assert len(smtp_server.messages) == 3 and smtp_server.handler.sessions == 1


def test_an_error_on_our_side_is_retried_and_shown_as_ours(mail_app, smtp_server, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("recipient_nam")

    monkeypatch.setattr(service, "render_invoice_email", broken)
    invoice_id, delivery_id = send_and_work(mail_app)
    assert smtp_server.messages == []
    with mail_app.app_context(), mail_app.test_request_context():
        delivery = db.session.get(Delivery, delivery_id)
        assert (delivery.status, delivery.error_kind, delivery.attempts) == (
            "failed",
            "internal",
            3,
        )
        reason = reasons.explain(delivery.error_kind, delivery.reply_code, delivery.reply_message)
        assert "Máy chủ thư" not in reason and "KeyError" in reason


def test_a_send_records_its_outcome_through_a_locked_database(app, redis_url, smtp_server, caplog):
    # Writers give up on a lock after 0.2 s; the database stays locked for 1.5 s right when
    # the server has the message: the outcome must still be recorded, and only once.
    path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    impatient = make_app_on(app, SQLITE_BUSY_TIMEOUT_MS=200, REDIS_URL=redis_url)
    with impatient.app_context():
        get_redis().flushdb()
        add_mail_settings(smtp_server.port)
    locked = threading.Event()

    def lock_for_a_while():
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(1.5)
        other.execute("ROLLBACK")
        other.close()

    def on_data():
        threading.Thread(target=lock_for_a_while).start()
        locked.wait(5)  # the lock is held before the server answers 250

    smtp_server.handler.on_data = on_data
    _, delivery_id = queue(impatient)
    with impatient.app_context():
        assert outbox.run("delivery", delivery_id) == "sent"
        assert locked.is_set() and "database busy, recording again" in caplog.text
        delivery = db.session.get(Delivery, delivery_id)
        assert delivery.status == "sent"
        assert db.session.query(DeliveryAttempt).count() == 1
    assert len(smtp_server.messages) == 1


def make_app_on(app, **overrides):
    """Another app on the same database file as `app`, with other settings."""
    from portal import create_app

    config = {key: app.config[key] for key in ("TESTING", "SECRET_KEY", "SQLALCHEMY_DATABASE_URI",
                                               "WTF_CSRF_ENABLED", "RATELIMIT_ENABLED")}  # fmt: skip
    config.update(RQ_QUEUE="test-jobs-locked", SEND_RETRY_INTERVALS="0", **overrides)
    other = create_app(config)
    other.instance_path = app.instance_path
    return other


def test_the_send_writes_the_tax_submission_in_the_same_unit_of_work(mail_app):
    invoice_id, delivery_id = queue(mail_app)
    with mail_app.app_context():
        (submission,) = db.session.scalars(db.select(TaxSubmission)).all()
        assert (submission.invoice_id, submission.delivery_id) == (invoice_id, delivery_id)
        assert re.fullmatch(r"V0000000000[0-9A-F]{32}", submission.message.message_code)


def test_a_template_over_its_limits_for_one_invoice_fails_that_send_with_the_reason(
    mail_app, smtp_server
):
    # Saved through the settings page: on the sample invoice it stays within the limits.
    from portal.auth.views import create as create_user
    from tests.conftest import PASSWORD, login

    with mail_app.app_context():
        create_user("boss", PASSWORD, "admin")
    admin = mail_app.test_client()
    login(admin, "boss")
    body = '{% if buyer_name == "Công ty Dài" %}{{ "x" * 9000000 }}{% endif %}Số {{ number }}'
    data = {"subject": "HĐ {{ number }}", "body_text": body, "body_html": "<p>{{ number }}</p>"}
    assert admin.post("/settings/email-template", data=data).status_code == 302
    _, delivery_id = send_and_work(mail_app, buyer_name="Công ty Dài")
    assert smtp_server.messages == []
    with mail_app.app_context():
        delivery = db.session.get(Delivery, delivery_id)
        assert (delivery.status, delivery.error_kind) == ("failed", "template_limit")
        assert delivery.attempts == 1  # not retried: it would go over again
