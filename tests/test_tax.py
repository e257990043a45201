"""Invoice data to the tax authority, through the T-VAN sandbox running as a real HTTP server."""

import re
import time
import urllib.request
from datetime import timedelta

import pytest
from rq import SimpleWorker

from portal.database import write
from portal.extensions import db
from portal.models import Delivery, Invoice, TaxExchange, TaxMessage, TaxSettings, TaxSubmission
from portal.outbox import service as outbox
from portal.runtime.queue import PRIORITIES, get_queue, get_redis
from portal.sending import service as sending
from portal.sending.secrets_box import encrypt
from portal.tax import service as tax
from portal.types import utcnow
from tests.conftest import login
from tests.factories import make_signed_invoice
from tests.helpers import add_mail_settings


@pytest.fixture
def tax_app(app, redis_url, tvan, smtp_server):
    app.config.update(
        REDIS_URL=redis_url, RQ_QUEUE="test-tax", TAX_RETRY_INTERVALS="1,1,1",
        TAX_LOOKUP_AFTER=0, TAX_LOOKUP_EVERY=0, SEND_RETRY_INTERVALS="0",
    )  # fmt: skip
    with app.app_context():
        get_redis().flushdb()
        add_mail_settings(smtp_server.port)
        db.session.add(TaxSettings(provider="sandbox", endpoint=tvan.url, username=tvan.user,
                                   password_encrypted=encrypt(tvan.password),
                                   sender_code="V0101234567"))  # fmt: skip
        db.session.commit()
    return app


def work(app) -> None:
    """Run what is queued, then the reconciler (which polls the T-VAN), once."""
    with app.app_context():
        SimpleWorker([get_queue(p) for p in PRIORITIES], connection=get_redis()).work(burst=True)
        outbox.reconcile()


def settle(app, until, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        work(app)
        with app.app_context():
            value = until()
            db.session.rollback()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("the transfer did not settle")
        time.sleep(0.1)


def submission_of(invoice_id: int) -> TaxSubmission:
    return tax.latest_submissions([invoice_id]).get(invoice_id)


def decided(invoice_id: int):
    """The invoice's verdict once there is one (a plain copy, usable outside the session)."""
    from types import SimpleNamespace

    found = submission_of(invoice_id)
    if found is None or found.result == "pending":
        return None
    return SimpleNamespace(result=found.result, error_code=found.error_code,
                           error_text=found.error_text, decided_at=found.decided_at)  # fmt: skip


def send(app, invoice_id: int, to: str = "an@example.com"):
    with app.app_context():
        return sending.queue_delivery(invoice_id, None, sending.parse_recipients("", to))


def test_a_send_transfers_the_invoice_and_the_authority_accepts_it(
    tax_app, tvan, smtp_server, users
):
    with tax_app.app_context():
        invoice_id = make_signed_invoice().id
    send(tax_app, invoice_id)
    with tax_app.app_context():
        assert db.session.get(Invoice, invoice_id).tax_status == "tax_not_sent"
    result = settle(tax_app, lambda: decided(invoice_id))
    assert result.result == "accepted"
    assert len(smtp_server.messages) == 1  # the email went at the same time
    with tax_app.app_context():
        invoice = db.session.get(Invoice, invoice_id)
        assert invoice.tax_status == "tax_accepted"
        message = db.session.scalar(db.select(TaxMessage))
        kinds = [(e.direction, e.message_type) for e in db.session.scalars(
            db.select(TaxExchange).order_by(TaxExchange.id))]  # fmt: skip
        assert kinds == [("out", "203"), ("in", "999"), ("in", "204")]
        # The 203 carries the signed invoice byte for byte.
        payload = db.session.get(TaxMessage, message.id).payload
        stored = db.session.scalar(db.select(Invoice.xml).where(Invoice.id == invoice_id))
        assert stored.split(b"?>", 1)[1].strip() in payload
        assert payload.count(b"<MTDiep>" + message.message_code.encode()) == 1
    assert tvan.ledger()["invoices"] == [["0101234567", 1, invoice.series, invoice.number,
                                          "accepted", 1]]  # fmt: skip
    # The invoice page shows it, and every message can be downloaded as it came.
    client = tax_app.test_client()
    login(client, "viewer")
    page = client.get(f"/invoices/{invoice_id}").get_data(as_text=True)
    assert "CQT đã tiếp nhận" in page and message.message_code in page
    with tax_app.app_context():
        notice = db.session.scalar(db.select(TaxExchange).where(TaxExchange.message_type == "204"))
        body = notice.body
    download = client.get(f"/invoices/{invoice_id}/tax/{notice.id}")
    assert download.status_code == 200 and download.data == body


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"tamper": True}, "nội dung hóa đơn đã bị thay đổi sau khi ký"),
        ({"signer_tax_code": "0109999999"}, "Chứng thư số thuộc mã số thuế 0109999999"),
    ],
)
def test_the_authority_rejects_with_its_reason_in_vietnamese(tax_app, users, changes, words):
    with tax_app.app_context():
        invoice_id = make_signed_invoice(**changes).id
    send(tax_app, invoice_id)
    result = settle(tax_app, lambda: decided(invoice_id))
    assert result.result == "rejected" and words in result.error_text
    client = tax_app.test_client()
    login(client, "viewer")
    page = client.get(f"/invoices/{invoice_id}").get_data(as_text=True)
    assert "CQT không tiếp nhận" in page and words in page and "Cách sửa" in page


def test_a_twelve_digit_seller_tax_code_is_accepted(tax_app):
    with tax_app.app_context():
        invoice_id = make_signed_invoice(tax_code="079203001234").id
    send(tax_app, invoice_id)
    assert settle(tax_app, lambda: decided(invoice_id)).result == "accepted"


def test_a_number_the_authority_already_has_gets_20609(tax_app, tvan):
    with tax_app.app_context():
        invoice = make_signed_invoice()
        invoice_id, xml = invoice.id, invoice.xml
        # Other software already sent this invoice's number to the authority.
        from portal.einvoice import tdiep

        code = tdiep.new_message_code("V0109999999")
        other = tdiep.build_203("V0109999999", code, "0101234567", [xml])
    request = urllib.request.Request(tvan.url + "/api/v1/messages", other, headers={
        "Authorization": "Basic " + __import__("base64").b64encode(
            f"{tvan.user}:{tvan.password}".encode()).decode()})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()
    time.sleep(0.5)  # the sandbox checks it before ours arrives
    send(tax_app, invoice_id)
    result = settle(tax_app, lambda: decided(invoice_id))
    assert result.result == "rejected" and result.error_code == "20609"


def test_the_sandbox_down_means_retries_then_acceptance(tax_app, tvan):
    tvan.faults(down=True)
    with tax_app.app_context():
        invoice_id = make_signed_invoice().id
    send(tax_app, invoice_id)
    work(tax_app)
    with tax_app.app_context():
        assert db.session.get(Invoice, invoice_id).tax_status == "tax_failed"
        message = db.session.scalar(db.select(TaxMessage))
        assert message.status == "retrying" and message.error_kind == "unavailable"
    tvan.faults(down=False)
    assert settle(tax_app, lambda: decided(invoice_id)).result == "accepted"
    assert tvan.ledger()["submits"] == 1  # the refused attempts never reached it


def test_a_lost_answer_is_looked_up_and_not_sent_again(tax_app, tvan):
    tvan.faults(lose_receipts=1)
    with tax_app.app_context():
        invoice_id = make_signed_invoice().id
    send(tax_app, invoice_id)
    assert settle(tax_app, lambda: decided(invoice_id)).result == "accepted"
    # The second attempt asks first, finds the message, and does not send it again.
    assert settle(tax_app, lambda: db.session.scalar(
        db.select(TaxMessage.attempts).where(TaxMessage.status == "sent")))  == 2  # fmt: skip
    ledger = tvan.ledger()
    assert ledger["submits"] == 1 and ledger["invoices"][0][-1] == 1  # sent once, counted once


def test_a_worker_that_died_with_the_data_out_is_looked_up_and_tried_again(tax_app, tvan):
    # Redis killed mid-transfer took a worker with it after it marked the data as going out
    # and before the provider had it: "unknown" would leave the verdict pending for good.
    with tax_app.app_context():
        invoice_id = make_signed_invoice().id
    send(tax_app, invoice_id)
    with tax_app.app_context():
        get_redis().flushdb()  # the jobs went with the worker
        message_id = submission_of(invoice_id).message_id
        held = outbox.claim(tax.TAX, message_id)
        assert held.mark_data_sent()
        message = db.session.get(TaxMessage, message_id)
        message.claimed_by = f"{outbox._machine()}:4194000:1"  # a pid that cannot be alive
        db.session.commit()
        assert outbox.reconcile()["tax"]["abandoned"] == 1
        db.session.expire_all()
        assert db.session.get(TaxMessage, message_id).status in ("queued", "retrying")
    assert settle(tax_app, lambda: decided(invoice_id)).result == "accepted"
    assert tvan.ledger()["invoices"][0][-1] == 1  # accepted once


def test_a_doubled_notice_changes_nothing_twice(tax_app, tvan):
    tvan.faults(answer_twice=True)
    with tax_app.app_context():
        invoice_id = make_signed_invoice().id
    send(tax_app, invoice_id)
    first = settle(tax_app, lambda: decided(invoice_id))
    decided_at = first.decided_at
    for _ in range(3):
        work(tax_app)  # the second copy comes by polling
    with tax_app.app_context():
        notices = db.session.scalars(
            db.select(TaxExchange).where(TaxExchange.message_type == "204")
        ).all()
        assert len(notices) == 1
        assert submission_of(invoice_id).decided_at == decided_at


def test_a_batch_answer_is_judged_invoice_by_invoice(tax_app, users):
    with tax_app.app_context():
        ids = [make_signed_invoice().id, make_signed_invoice(tamper=True).id,
               make_signed_invoice().id]  # fmt: skip
    client = tax_app.test_client()
    login(client, "sender")
    answer = client.post("/tax/transfer", data={"ids": ids, "next": "/"})
    assert answer.status_code == 302
    with tax_app.app_context():
        (message,) = db.session.scalars(db.select(TaxMessage)).all()
        assert message.invoice_count == 3  # one taxpayer: one message
    settle(tax_app, lambda: all(decided(i) for i in ids))
    with tax_app.app_context():
        results = [submission_of(i).result for i in ids]
    assert results == ["accepted", "rejected", "accepted"]
    # Transferring again sends nothing: accepted ones are done, a rejected one is not resent.
    again = client.post("/tax/transfer", data={"ids": ids, "next": "/"}, follow_redirects=True)
    assert "2 đã được tiếp nhận" in again.get_data(as_text=True)
    with tax_app.app_context():
        assert db.session.query(TaxMessage).count() == 1


def test_a_late_notice_raises_an_alarm_on_the_list_and_the_invoice(tax_app, tvan, users):
    tvan.faults(notice_delay=3600)
    with tax_app.app_context():
        invoice_id = make_signed_invoice().id
    send(tax_app, invoice_id)
    settle(tax_app, lambda: db.session.scalar(db.select(TaxMessage.receipt_at)))
    client = tax_app.test_client()
    login(client, "viewer")
    assert "chưa gửi kết quả kiểm tra" not in client.get(f"/invoices/{invoice_id}").get_data(
        as_text=True
    )
    with tax_app.app_context(), write():
        # The 999 came on a Friday long ago; no 204 by Monday evening.
        message = db.session.scalar(db.select(TaxMessage))
        message.receipt_at = utcnow() - timedelta(days=10)
    page = client.get(f"/invoices/{invoice_id}").get_data(as_text=True)
    assert "chưa gửi kết quả kiểm tra dữ liệu (204)" in page
    listing = client.get("/?period=all").get_data(as_text=True)
    assert "chưa gửi kết quả kiểm tra dữ liệu (204)" in listing


def test_working_days_skip_weekends_and_holidays():
    from datetime import date

    friday = date(2026, 12, 4)
    assert tax.next_working_day(friday, set()) == date(2026, 12, 7)
    assert tax.next_working_day(friday, {date(2026, 12, 7)}) == date(2026, 12, 8)


def test_emails_can_wait_for_the_authoritys_acceptance(tax_app, smtp_server):
    with tax_app.app_context(), write():
        db.session.scalar(db.select(TaxSettings)).wait_for_acceptance = True
    with tax_app.app_context():
        good, bad = make_signed_invoice().id, make_signed_invoice(tamper=True).id
    send(tax_app, good)
    send(tax_app, bad)
    with tax_app.app_context():
        assert {d.status for d in db.session.scalars(db.select(Delivery))} == {"held"}
        assert db.session.get(Invoice, good).send_status == "held"
    settle(tax_app, lambda: decided(good) and decided(bad))
    work(tax_app)
    with tax_app.app_context():
        by_invoice = {d.invoice_id: d for d in db.session.scalars(db.select(Delivery))}
        assert by_invoice[good].status == "sent"
        assert (by_invoice[bad].status, by_invoice[bad].error_kind) == ("failed", "tax_rejected")
    assert len(smtp_server.messages) == 1


def test_pushed_answers_are_checked_stored_and_applied(tax_app, tvan, tmp_path):
    import hashlib
    import hmac

    from tests.conftest import LiveServer, TvanSandbox

    secret = "push-secret"
    with tax_app.app_context(), write():
        db.session.scalar(db.select(TaxSettings)).callback_secret_encrypted = encrypt(secret)
    with LiveServer(tax_app) as server:
        pushing = TvanSandbox(tmp_path / "pushing", f"{server.url}/tax/callback/sandbox", secret)
        try:
            with tax_app.app_context(), write():
                db.session.scalar(db.select(TaxSettings)).endpoint = pushing.url
            with tax_app.app_context():
                invoice_id = make_signed_invoice().id
            send(tax_app, invoice_id)
            with tax_app.app_context():
                SimpleWorker([get_queue(p) for p in PRIORITIES], connection=get_redis()).work(
                    burst=True
                )
            # No polling from here on: the 204 arrives by itself.
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                with tax_app.app_context():
                    if decided(invoice_id):
                        break
                time.sleep(0.1)
            with tax_app.app_context():
                assert decided(invoice_id).result == "accepted"
                via = db.session.scalar(
                    db.select(TaxExchange.via).where(TaxExchange.message_type == "204")
                )
                assert via == "callback"
            # A push without the right signature is refused and changes nothing.
            forged = b"<TDiep/>"
            bad = hmac.new(b"wrong", forged, hashlib.sha256).hexdigest()
            request = urllib.request.Request(f"{server.url}/tax/callback/sandbox", forged,
                                             headers={"X-TVAN-Signature": bad})  # fmt: skip
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=5)
            assert refused.value.code == 403
            refused.value.close()
        finally:
            pushing.stop()


def test_tax_settings_test_connection_shows_the_providers_answer(tax_app, tvan, users):
    client = tax_app.test_client()
    login(client, "admin")
    form = {"provider": "sandbox", "endpoint": tvan.url, "username": tvan.user, "password": "",
            "sender_code": "V0101234567", "wait_for_acceptance": "0", "holidays": ""}  # fmt: skip
    ok = client.post("/settings/tax/test", data=form, headers={"HX-Request": "true"})
    assert "hoadon-portal T-VAN sandbox" in ok.get_data(as_text=True)
    # Another address with the password field empty: the stored password stays home.
    moved = client.post("/settings/tax/test", data={**form, "endpoint": "http://127.0.0.1:9"},
                        headers={"HX-Request": "true"}).get_data(as_text=True)  # fmt: skip
    assert "Nhập mật khẩu" in moved
    wrong = client.post("/settings/tax/test", data={**form, "password": "nope"},
                        headers={"HX-Request": "true"}).get_data(as_text=True)  # fmt: skip
    assert "401" in wrong and "Sai tên đăng nhập hoặc mật khẩu" in wrong
    saved = client.post("/settings/tax", data={**form, "wait_for_acceptance": "1",
                                               "holidays": "31/12/2026\n2027-01-01"})  # fmt: skip
    assert saved.status_code == 302
    with tax_app.app_context():
        settings = db.session.scalar(db.select(TaxSettings))
        # Typed dd/mm/yyyy (or ISO), kept ISO, shown dd/mm/yyyy.
        assert settings.wait_for_acceptance and settings.holidays == "2026-12-31\n2027-01-01"
        assert settings.password_encrypted  # kept: the field was empty
    shown = client.get("/settings/tax").get_data(as_text=True)
    assert "31/12/2026\n01/01/2027</textarea>" in shown
    refused = client.post("/settings/tax", data={**form, "holidays": "31/13/2026"})
    assert "không phải ngày dạng dd/mm/yyyy" in refused.get_data(as_text=True)


def test_no_receipt_minutes_after_the_data_went_out_raises_an_alarm(app):
    with app.app_context():
        message = TaxMessage(message_code="X", seller_tax_code="0101234567", payload=b"")
        now = utcnow()
        message.data_sent_at = now - timedelta(minutes=5)
        assert tax.alarm(message, now) == ""
        message.data_sent_at = now - timedelta(minutes=11)
        assert tax.alarm(message, now) == "receipt"
        message.receipt_at, message.receipt_ok = now, True
        assert tax.alarm(message, now) == ""  # the 999 came: now the 204 has until tomorrow
        message.notice_at = now
        assert tax.alarm(message, now + timedelta(days=30)) == ""


def test_demo_invoices_are_accepted_end_to_end_through_the_real_worker(tax_app, smtp_server, tvan):
    from tests.helpers import start_worker, stop, wait_for, worker_env

    result = tax_app.test_cli_runner().invoke(args=["demo", "seed", "--invoices", "5"])
    assert result.exit_code == 0, result.output
    with tax_app.app_context():
        invoice_ids = list(db.session.scalars(db.select(Invoice.id).order_by(Invoice.id)))
    client = tax_app.test_client()
    password = re.search(r"ketoan / (\S+) \(", result.output).group(1)  # made for this instance
    assert login(client, "ketoan", password).status_code == 302
    for invoice_id in invoice_ids:
        answer = client.post(f"/invoices/{invoice_id}/send", headers={"HX-Request": "true"},
                             data={"to": f"kh{invoice_id}@example.com", "method": "email"})  # fmt: skip
        assert answer.status_code == 200
    worker = start_worker(worker_env(tax_app), workers=2)
    try:

        def all_accepted():
            with tax_app.app_context():
                return all(
                    db.session.get(Invoice, i).tax_status == "tax_accepted" for i in invoice_ids
                )

        wait_for(all_accepted, timeout=60)
    finally:
        stop(worker)
    with tax_app.app_context():
        kinds = sorted(
            (e.message_type, e.direction) for e in db.session.scalars(db.select(TaxExchange))
        )
    assert kinds == sorted([("203", "out"), ("999", "in"), ("204", "in")] * len(invoice_ids))
    assert len(smtp_server.messages) == len(invoice_ids)
