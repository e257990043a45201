"""Queueing deliveries: one active per invoice, the tax submission beside it, Redis away."""

import pytest

from portal.extensions import db
from portal.models import Delivery, Invoice, MailSettings, TaxSubmission
from portal.sending import service
from tests.factories import make_invoice


def delivery_jobs() -> list[str]:
    """The email jobs on the queue (each send also queues its tax message's job)."""
    from portal.runtime.queue import get_queue

    return [job for job in get_queue().job_ids if job.startswith("delivery-")]


@pytest.fixture
def sending_app(app, redis_url):
    app.config.update(REDIS_URL=redis_url, RQ_QUEUE="test-sending", QUEUED_STALE_AFTER=0)
    with app.app_context():
        db.session.add(
            MailSettings(
                host="127.0.0.1", port=1025, security="none", sender_email="hd@anhduong.vn"
            )
        )
        db.session.commit()
        from portal.runtime.queue import get_redis

        get_redis().flushdb()
    return app


def recipients(to="an@example.com"):
    return service.parse_recipients("Nguyễn Văn An", to)


def test_queue_commits_the_delivery_then_enqueues_its_job(sending_app):
    with sending_app.app_context():
        invoice_id = make_invoice().id
        result = service.queue_delivery(invoice_id, None, recipients())
        assert result.created
        assert db.session.get(Invoice, invoice_id).send_status == "queued"

        assert delivery_jobs() == [f"delivery-{result.delivery.id}"]


def test_second_request_finds_the_active_delivery(sending_app):
    with sending_app.app_context():
        invoice_id = make_invoice().id
        first = service.queue_delivery(invoice_id, None, recipients())
        second = service.queue_delivery(invoice_id, None, recipients("other@example.com"))
        assert not second.created and second.delivery.id == first.delivery.id
        assert db.session.query(Delivery).count() == 1


def test_invalid_or_missing_addresses_are_refused(sending_app):
    with sending_app.app_context():
        invoice_id = make_invoice().id
        with pytest.raises(service.NotSendable):
            service.queue_delivery(invoice_id, None, recipients("not-an-address"))
        with pytest.raises(service.NotSendable):
            service.queue_delivery(invoice_id, None, recipients(""))
        assert db.session.query(Delivery).count() == 0


def test_replaced_invoice_is_never_sent(sending_app):
    with sending_app.app_context():
        invoice_id = make_invoice(state="replaced").id
        with pytest.raises(service.NotSendable):
            service.queue_delivery(invoice_id, None, recipients())


def test_sending_without_mail_settings_is_refused(sending_app):
    with sending_app.app_context():
        db.session.query(MailSettings).delete()
        db.session.commit()
        with pytest.raises(service.NotSendable):
            service.queue_delivery(make_invoice().id, None, recipients())


def test_redis_down_keeps_the_delivery_queued_and_the_reconciler_enqueues_it_later(app, redis_url):
    app.config.update(REDIS_URL="redis://127.0.0.1:1/0", RQ_QUEUE="test-redis-down")
    with app.app_context():
        db.session.add(MailSettings(host="127.0.0.1", port=1025, sender_email="hd@anhduong.vn"))
        db.session.commit()
        result = service.queue_delivery(make_invoice().id, None, recipients())
        assert result.created
        assert db.session.get(Delivery, result.delivery.id).status == "queued"
    # Redis is back: the reconciler finds the delivery whose job never reached it.
    app.config.update(REDIS_URL=redis_url, QUEUED_STALE_AFTER=0)
    with app.app_context():
        from portal.outbox.service import reconcile
        from portal.runtime.queue import get_redis

        get_redis().flushdb()
        assert reconcile()["delivery"]["requeued"] == 1
        assert delivery_jobs() == [f"delivery-{result.delivery.id}"]


def test_a_copy_link_send_shows_as_sent_and_owes_the_tax_authority_too(sending_app):
    with sending_app.app_context():
        invoice_id = make_invoice().id
        result = service.queue_delivery(invoice_id, None, recipients(""), method="link")
        assert result.link and result.delivery.status == "sent"
        invoice = db.session.get(Invoice, invoice_id)
        assert invoice.send_status == "sent" and invoice.sent_at is not None
        (submission,) = db.session.scalars(db.select(TaxSubmission)).all()
        assert submission.invoice_id == invoice_id and submission.result == "pending"
        assert submission.message.status == "queued"
        assert invoice.tax_status == "tax_not_sent"  # written, not yet transferred


def test_a_resend_owes_the_tax_authority_nothing_more(sending_app):
    with sending_app.app_context():
        invoice_id = make_invoice().id
        service.queue_delivery(invoice_id, None, recipients(""), method="link")
        service.queue_delivery(invoice_id, None, recipients(""), method="link")
        assert db.session.query(Delivery).count() == 2
        assert db.session.query(TaxSubmission).count() == 1


def test_a_refused_send_writes_nothing(sending_app):
    with sending_app.app_context():
        invoice_id = make_invoice(state="cancelled").id
        with pytest.raises(service.NotSendable):
            service.queue_delivery(invoice_id, None, recipients(""), method="link")
        assert db.session.query(Delivery).count() == 0
        assert db.session.query(TaxSubmission).count() == 0


@pytest.mark.postgres
def test_one_active_delivery_and_one_claim_on_postgresql(postgres_app, redis_url):
    import threading

    postgres_app.config.update(REDIS_URL=redis_url, RQ_QUEUE="test-pg-sending")
    with postgres_app.app_context():
        db.session.add(MailSettings(host="127.0.0.1", port=1025, sender_email="hd@anhduong.vn"))
        db.session.commit()
        invoice_id = make_invoice().id
        first = service.queue_delivery(invoice_id, None, recipients())
        second = service.queue_delivery(invoice_id, None, recipients())
        assert first.created and not second.created
        delivery_id = first.delivery.id

    from portal.outbox import service as outbox

    wins = []
    barrier = threading.Barrier(4)

    def contend():
        with postgres_app.app_context():
            barrier.wait()
            wins.append(outbox.claim(service.DELIVERIES, delivery_id) is not None)

    threads = [threading.Thread(target=contend) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == [False, False, False, True]


def test_first_mail_settings_come_from_the_environment_and_the_seller(app):
    from tests.factories import make_seller

    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=1025, MAIL_CATCHER_DIR="/tmp/mail")
    with app.app_context():
        make_seller()
        settings = service.ensure_mail_settings()
        assert (settings.host, settings.port, settings.security) == ("127.0.0.1", 1025, "none")
        assert settings.sender_name == "Công ty TNHH Thương mại Ánh Dương"
        assert settings.sender_email == "ketoan@anhduong.vn"
    # Next start the catcher had to take another port: the settings follow it.
    app.config["MAIL_PORT"] = 2025
    with app.app_context():
        assert service.ensure_mail_settings().port == 2025
        assert db.session.query(MailSettings).count() == 1
