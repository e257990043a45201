"""Bulk send: drafts by conditions, per-row recipients, pre-flight, previews, and the batch's life."""

import io
from datetime import date

import pikepdf
import pytest

from portal.bulk import service as bulk
from portal.extensions import db
from portal.invoices.service import Filters
from portal.models import (
    Batch,
    Customer,
    Delivery,
    Invoice,
    MailSettings,
    TaxMessage,
    TaxSubmission,
)
from portal.outbox import service as outbox
from portal.runtime.queue import get_redis
from portal.sending import service as sending
from tests.conftest import PASSWORD, create_user, login
from tests.factories import make_invoice
from tests.helpers import add_mail_settings, wait_for, work_in_process


def reconciled_status(batch_id: int) -> str:
    """The batch's status once the reconciler has looked at it past its start's grace time.

    A batch is not called done within 2 s of its start (its deliveries may still be being
    created), so on a fast machine the first reconcile can come too early.
    """

    def settled():
        outbox.reconcile()
        db.session.expire_all()
        return db.session.get(Batch, batch_id).status != "running"

    wait_for(settled, timeout=10)
    return db.session.get(Batch, batch_id).status


HTMX = {"HX-Request": "true"}


@pytest.fixture
def bulk_app(app, users, redis_url, smtp_server):
    return prepared(app, redis_url, smtp_server)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def bulk_app_any_db(request, redis_url, smtp_server):
    app = request.getfixturevalue("app" if request.param == "sqlite" else "postgres_app")
    with app.app_context():
        create_user("sender", PASSWORD, "sender")
    return prepared(app, redis_url, smtp_server)


def prepared(app, redis_url, smtp_server):
    """Twelve invoices of one customer in March 2026, a mail account, an empty queue."""
    app.config.update(REDIS_URL=redis_url, RQ_QUEUE="test-bulk", SEND_RETRY_INTERVALS="0,0",
                      BULK_PAUSE_IN_A_ROW=5, BULK_PAUSE_WINDOW=10)  # fmt: skip
    with app.app_context():
        get_redis().flushdb()
        add_mail_settings(smtp_server.port)
        customer = Customer(
            name="Công ty Bình Minh", tax_code="0312345678", email="old@binhminh.vn"
        )
        db.session.add(customer)
        db.session.commit()
        app.invoice_ids = [
            make_invoice(issued_on=date(2026, 3, 1 + n), buyer_email=f"kh{n}@example.com",
                         customer_id=customer.id).id
            for n in range(12)
        ]  # fmt: skip
    return app


def draft(app, **conditions) -> int:
    values = {"tab": "not_sent", "period": "custom", "date_from": date(2026, 3, 1),
              "date_to": date(2026, 3, 31), **conditions}  # fmt: skip
    with app.app_context():
        from portal.models import User

        user = db.session.scalar(db.select(User).filter_by(username="sender"))
        return bulk.create_draft(user.id, Filters(**values)).id


def batch_of(app, batch_id) -> Batch:
    with app.app_context():
        found = db.session.get(Batch, batch_id)
        db.session.expunge(found)
        return found


def test_loading_by_conditions_prefills_every_row_from_its_buyer(bulk_app):
    client = bulk_app.test_client()
    login(client, "sender")
    page = client.post("/bulk/load", data={"period": "custom", "date_from": "2026-03-01",
                                           "date_to": "2026-03-31", "tab": "not_sent"},
                       headers=HTMX).get_data(as_text=True)  # fmt: skip
    assert "kh0@example.com" in page and "kh11@example.com" in page
    assert "Chọn tất cả 12 hóa đơn phù hợp" in page
    assert "0 hóa đơn được chọn" in page


def test_ticks_and_select_all_matching_make_the_selection(bulk_app):
    batch_id = draft(bulk_app)
    ids = bulk_app.invoice_ids
    with bulk_app.app_context():
        bulk.tick(batch_id, ids[:3], True)
        assert bulk.selected_ids(db.session.get(Batch, batch_id)) == ids[:3]
        bulk.tick_all(batch_id, True)
        bulk.tick(batch_id, [ids[5]], False)
        chosen = bulk.selected_ids(db.session.get(Batch, batch_id))
        assert chosen == [i for i in ids if i != ids[5]]
        summary = bulk.summary(db.session.get(Batch, batch_id))
        assert summary.count == 11 and summary.total == 11 * 1089000


def test_rows_are_edited_in_place_and_a_bad_address_cannot_go(bulk_app):
    batch_id = draft(bulk_app)
    first, second = bulk_app.invoice_ids[:2]
    client = bulk_app.test_client()
    login(client, "sender")
    row = client.post(f"/bulk/drafts/{batch_id}/rows/{first}", headers=HTMX,
                      data={"name": "Chị Lan", "to": "lan@binhminh.vn; ketoan@binhminh.vn",
                            "cc": "", "save": "1"}).get_data(as_text=True)  # fmt: skip
    assert 'value="lan@binhminh.vn; ketoan@binhminh.vn"' in row and "field-error" not in row
    bad = client.post(f"/bulk/drafts/{batch_id}/rows/{second}", headers=HTMX,
                      data={"name": "", "to": "lan@binhminh.vn; sai-dia-chi", "cc": ""})  # fmt: skip
    text = bad.get_data(as_text=True)
    assert "“sai-dia-chi” không phải địa chỉ email hợp lệ" in text
    with bulk_app.app_context():
        bulk.tick_all(batch_id, True)
        batch = db.session.get(Batch, batch_id)
        assert bulk.summary(batch).without_address == [second]
        check = bulk.preflight(batch)
        assert check.going == 11 and [i.id for i, _e in check.without_address] == [second]


def test_preflight_says_what_was_sent_before_and_what_is_in_flight(bulk_app):
    ids = bulk_app.invoice_ids
    with bulk_app.app_context():
        sending.queue_delivery(ids[0], None, sending.parse_recipients("", "x@example.com"),
                               method="link")  # sent before  # fmt: skip
        sending.queue_delivery(ids[1], None, sending.parse_recipients("", "y@example.com"))
    batch_id = draft(bulk_app, tab="all")
    with bulk_app.app_context():
        bulk.tick_all(batch_id, True)
        check = bulk.preflight(db.session.get(Batch, batch_id))
        assert check.in_flight == [ids[1]] and check.going == 11
        assert check.sent_before_count == 1 and check.sent_before[0][0].id == ids[0]
        assert check.estimate_seconds > 0


def test_the_selected_invoices_merge_into_one_pdf_with_one_page_each(bulk_app):
    batch_id = draft(bulk_app)
    client = bulk_app.test_client()
    login(client, "sender")
    with bulk_app.app_context():
        bulk.tick(batch_id, bulk_app.invoice_ids[:5], True)
    answer = client.get(f"/bulk/drafts/{batch_id}/invoices.pdf")
    assert answer.status_code == 200 and answer.mimetype == "application/pdf"
    with pikepdf.Pdf.open(io.BytesIO(answer.data)) as merged:
        assert len(merged.pages) == 5
    emails = client.get(f"/bulk/drafts/{batch_id}/emails").get_data(as_text=True)
    assert emails.count('class="email-preview"') == 5 and "kh4@example.com" in emails


def test_a_batch_sends_each_invoice_once_to_its_recipients(bulk_app, smtp_server):
    batch_id = draft(bulk_app)
    ids = bulk_app.invoice_ids
    with bulk_app.app_context():
        bulk.edit_row(batch_id, ids[0], "Chị Lan", "lan@binhminh.vn; ketoan@binhminh.vn", "", True)
        bulk.tick_all(batch_id, True)
    client = bulk_app.test_client()
    login(client, "sender")
    answer = client.post(f"/bulk/drafts/{batch_id}/send")
    assert answer.status_code == 302 and answer.headers["Location"].endswith(
        f"/bulk/batches/{batch_id}"
    )
    with bulk_app.app_context():
        assert db.session.query(Delivery).filter_by(batch_id=batch_id).count() == 12
        # What is owed to the tax authority is written with the deliveries, packed later.
        assert db.session.query(TaxSubmission).count() == 12
        assert db.session.query(TaxMessage).count() == 0
        assert db.session.get(Customer, db.session.get(Invoice, ids[0]).customer_id).email == (
            "lan@binhminh.vn; ketoan@binhminh.vn"
        )
    work_in_process(bulk_app)
    received = sorted(tuple(sorted(m.rcpt_tos)) for m in smtp_server.messages)
    expected = sorted([("ketoan@binhminh.vn", "lan@binhminh.vn")]
                      + [(f"kh{n}@example.com",) for n in range(1, 12)])  # fmt: skip
    assert received == expected
    with bulk_app.app_context():
        assert reconciled_status(batch_id) == "done"
        batch = db.session.get(Batch, batch_id)
        stats = bulk.stats(batch)
        assert stats.counts == {"sent": 12} and stats.percent == 100
        assert db.session.query(TaxMessage).count() == 1  # one taxpayer, one message
    page = client.get(f"/bulk/batches/{batch_id}").get_data(as_text=True)
    assert "Đã gửi HĐ cho KH: 12" in page and "hx-trigger" not in page


def test_pause_holds_what_has_not_started_and_resume_sends_exactly_that(bulk_app, smtp_server):
    batch_id = draft(bulk_app)
    with bulk_app.app_context():
        bulk.tick_all(batch_id, True)
        from portal.models import User

        user = db.session.scalar(db.select(User).filter_by(username="sender"))
        bulk.start(batch_id, user.id)
        first = db.session.scalar(db.select(Delivery.id).filter_by(batch_id=batch_id)
                                  .order_by(Delivery.id))  # fmt: skip
        assert outbox.run("delivery", first) == "sent"
        bulk.pause(batch_id)
        assert {d.status for d in db.session.scalars(db.select(Delivery).filter_by(
            batch_id=batch_id)) if d.id != first} == {"held"}  # fmt: skip
    work_in_process(bulk_app)
    assert len(smtp_server.messages) == 1  # nothing new started while paused
    with bulk_app.app_context():
        bulk.resume(batch_id)
    work_in_process(bulk_app)
    assert len(smtp_server.messages) == 12
    assert len({m.rcpt_tos[0] for m in smtp_server.messages}) == 12  # each exactly once


def test_cancel_the_rest_leaves_them_unsent_and_says_so(bulk_app, smtp_server):
    batch_id = draft(bulk_app)
    with bulk_app.app_context():
        bulk.tick_all(batch_id, True)
        bulk.start(batch_id, None)
        bulk.cancel(batch_id)
        invoice = db.session.get(Invoice, bulk_app.invoice_ids[0])
        assert invoice.send_status == "cancelled"
    work_in_process(bulk_app)
    assert smtp_server.messages == []
    client = bulk_app.test_client()
    login(client, "viewer")
    listing = client.get("/?period=all&tab=not_sent").get_data(as_text=True)
    assert "Đã hủy gửi" in listing


def test_a_batch_owes_the_authority_only_what_no_pending_or_accepted_submission_covers(
    bulk_app_any_db,
):
    bulk_app = bulk_app_any_db
    ids = bulk_app.invoice_ids
    with bulk_app.app_context():
        # Accepted, pending, rejected: only the rejected one is owed again (with the rest).
        for invoice_id, result in zip(ids[:3], ("accepted", "pending", "rejected"), strict=True):
            db.session.add(TaxSubmission(invoice_id=invoice_id, result=result))
        db.session.commit()
    batch_id = draft(bulk_app)
    with bulk_app.app_context():
        bulk.tick_all(batch_id, True)
        bulk.start(batch_id, None)
        new = db.session.scalars(db.select(TaxSubmission.invoice_id)
                                 .where(TaxSubmission.message_id.is_(None),
                                        TaxSubmission.result == "pending",
                                        TaxSubmission.id > 3)).all()  # fmt: skip
        assert sorted(new) == sorted(ids[2:])


def test_failures_past_the_threshold_pause_the_batch_and_only_failed_ones_are_retried(
    bulk_app, smtp_server
):
    # Every recipient refused: after 5 in a row (the test's threshold) the batch stops itself.
    smtp_server.handler.refuse_rcpt = {f"kh{n}@example.com": "550 5.1.1 No such user"
                                       for n in range(12)}  # fmt: skip
    batch_id = draft(bulk_app)
    with bulk_app.app_context():
        bulk.tick_all(batch_id, True)
        bulk.start(batch_id, None)
    work_in_process(bulk_app)
    with bulk_app.app_context():
        batch = db.session.get(Batch, batch_id)
        assert batch.status == "paused" and "5" in batch.pause_reason
        counts = bulk.stats(batch).counts
        assert counts["failed"] == 5 and counts["held"] == 7
        # The addresses are fixed at the server's side; the rest goes, then the failed again.
        smtp_server.handler.refuse_rcpt = {}
        bulk.resume(batch_id)
    work_in_process(bulk_app)
    with bulk_app.app_context():
        assert reconciled_status(batch_id) == "done"
        assert bulk.retry_failed(batch_id, None) == 5
    work_in_process(bulk_app)
    assert len(smtp_server.messages) == 12  # 7 after the resume, then only the 5 failed
    with bulk_app.app_context():
        assert db.session.query(Delivery).filter_by(batch_id=batch_id).count() == 17


def test_the_batch_page_polls_once_a_second_while_it_runs(bulk_app):
    batch_id = draft(bulk_app)
    with bulk_app.app_context():
        bulk.tick_all(batch_id, True)
        bulk.start(batch_id, None)
    client = bulk_app.test_client()
    login(client, "viewer")
    page = client.get(f"/bulk/batches/{batch_id}").get_data(as_text=True)
    assert page.count('hx-trigger="every 1s"') == 1  # one poller for the page, not one per row
    progress = client.get(f"/bulk/batches/{batch_id}/progress").get_data(as_text=True)
    assert 'id="batch-rows" hx-swap-oob="true"' in progress and "Đang gửi" in progress
    assert client.get("/bulk/batches").status_code == 200


def test_viewers_cannot_send_in_bulk(bulk_app):
    client = bulk_app.test_client()
    login(client, "viewer")
    assert client.get("/bulk/").status_code == 403
    assert client.post(f"/bulk/drafts/{draft(bulk_app)}/send").status_code == 403
    with bulk_app.app_context():
        assert db.session.query(MailSettings).count() == 1
