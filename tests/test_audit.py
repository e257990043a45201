"""Nhật ký: every action leaves its row (who, what, target, where), in the change's unit of work."""

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from portal import audit
from portal.audit.models import AuditEntry
from portal.bulk import service as bulk
from portal.certificates.service import register_certificate
from portal.database import write
from portal.extensions import db
from portal.invoices.service import Filters
from portal.models import Delivery, Invoice, Seller, TaxSettings, User
from portal.sending.secrets_box import encrypt
from tests.conftest import PASSWORD, login
from tests.data.make_samples import SELLER_NAME, SELLER_TAX_CODE
from tests.factories import make_invoice
from tests.helpers import add_mail_settings

DATA = Path(__file__).parent / "data"
WHERE = {"REMOTE_ADDR": "203.0.113.7", "HTTP_USER_AGENT": "AuditTest/1.0 (Zalo)"}


@pytest.fixture
def audit_app(app, users, redis_url):
    # Jobs enqueued after a commit land on a queue no worker reads: only the rows matter here.
    app.config.update(REDIS_URL=redis_url, RQ_QUEUE="test-audit")
    with app.app_context():
        add_mail_settings(2525)
        db.session.add(Seller(name=SELLER_NAME, tax_code=SELLER_TAX_CODE))
        db.session.commit()
        # The samples' genuine certificate: their imports count without approval.
        register_certificate((DATA / "seller_cert.pem").read_bytes(), None)
    return app


def client_as(app, role: str | None):
    client = app.test_client()
    client.environ_base.update(WHERE)
    if role:
        assert login(client, role).status_code == 302
    return client


def rows(app, action: str) -> list[AuditEntry]:
    with app.app_context():
        found = db.session.scalars(
            db.select(AuditEntry).filter_by(action=action).order_by(AuditEntry.id)
        ).all()
        for entry in found:
            db.session.expunge(entry)
        return found


def only(app, action: str) -> AuditEntry:
    (entry,) = rows(app, action)
    return entry


def assert_from_the_request(entry: AuditEntry, app, username: str | None):
    with app.app_context():
        user_id = db.session.scalar(db.select(User.id).filter_by(username=username))
    assert (entry.user_id, entry.username) == (user_id, username or "")
    assert (entry.via, entry.ip, entry.user_agent) == (
        "web",
        "203.0.113.7",
        WHERE["HTTP_USER_AGENT"],
    )


# --- each action, done over HTTP -------------------------------------------------------------


def test_login_failed_login_and_logout_are_recorded_with_address_and_agent(audit_app):
    client = client_as(audit_app, None)
    assert login(client, "sender", "wrong").status_code == 200
    assert login(client, "nobody", "wrong").status_code == 200
    assert login(client, "sender").status_code == 302
    assert client.post("/logout").status_code == 302

    failed = rows(audit_app, "auth.login_failed")
    assert [e.details["username"] for e in failed] == ["sender", "nobody"]
    assert_from_the_request(failed[0], audit_app, "sender")  # the user tried, by name
    assert_from_the_request(failed[1], audit_app, None)  # no such user: nobody's row
    assert_from_the_request(only(audit_app, "auth.login"), audit_app, "sender")
    assert_from_the_request(only(audit_app, "auth.logout"), audit_app, "sender")


def test_sending_resending_and_turning_off_a_link_are_recorded(audit_app):
    with audit_app.app_context():
        invoice = make_invoice()
        invoice_id, label = invoice.id, f"{invoice.series_label} {invoice.number_label}"
    client = client_as(audit_app, "sender")
    answer = client.post(f"/invoices/{invoice_id}/send",
                         data={"method": "link", "recipient_name": "An", "to": ""})  # fmt: skip
    assert answer.status_code == 200
    answer = client.post(f"/invoices/{invoice_id}/send",
                         data={"method": "email", "recipient_name": "An",
                               "to": "an@example.com", "cc": "ketoan@example.com"})  # fmt: skip
    assert answer.status_code == 302
    with audit_app.app_context():
        link_id, email_id = db.session.scalars(db.select(Delivery.id).order_by(Delivery.id)).all()
    assert client.post(f"/deliveries/{link_id}/revoke").status_code == 302
    assert client.post(f"/deliveries/{link_id}/revoke").status_code == 302  # already off

    sent, resent = only(audit_app, "invoice.sent"), only(audit_app, "invoice.resent")
    for entry in (sent, resent):
        assert_from_the_request(entry, audit_app, "sender")
        assert (entry.target_type, entry.target_id) == ("invoice", invoice_id)
        assert entry.target_label == label
    assert sent.details["method"] == "link" and sent.details["delivery_id"] == link_id
    assert resent.details == {"delivery_id": email_id, "method": "email", "to": "an@example.com",
                              "cc": "ketoan@example.com", "bcc": ""}  # fmt: skip
    revoked = only(audit_app, "link.revoked")  # once: the second click changed nothing
    assert_from_the_request(revoked, audit_app, "sender")
    assert (revoked.target_id, revoked.details) == (invoice_id, {"delivery_id": link_id})


def test_a_batch_started_paused_resumed_cancelled_and_retried_is_recorded(audit_app):
    with audit_app.app_context():
        ids = [make_invoice(buyer_email=f"kh{n}@example.com").id for n in range(3)]
        sender = db.session.scalar(db.select(User).filter_by(username="sender"))
        batch_id = bulk.create_draft(sender.id, Filters(period="all", tab="not_sent")).id
        bulk.tick(batch_id, ids, True)
    client = client_as(audit_app, "sender")
    assert client.post(f"/bulk/drafts/{batch_id}/send").status_code == 302
    for action in ("pause", "resume", "cancel"):
        assert client.post(f"/bulk/batches/{batch_id}/{action}").status_code == 302
    with audit_app.app_context(), write():
        # One invoice's email failed before the cancel reached it.
        delivery = db.session.scalar(db.select(Delivery).filter_by(invoice_id=ids[0]))
        delivery.status = "failed"
    assert client.post(f"/bulk/batches/{batch_id}/retry-failed").status_code == 302

    expected = {"batch.started": {"count": 3, "in_flight": 0, "without_address": 0},
                "batch.paused": {"held": 3}, "batch.resumed": {"count": 3},
                "batch.cancelled": {"count": 3}, "batch.retried_failed": {"count": 1, "busy": 0}}  # fmt: skip
    for action, details in expected.items():
        entry = only(audit_app, action)
        assert_from_the_request(entry, audit_app, "sender")
        assert (entry.target_type, entry.target_id, entry.details) == ("batch", batch_id, details)


def test_a_batch_that_pauses_itself_is_recorded_as_the_system(audit_app):
    audit_app.config.update(BULK_PAUSE_IN_A_ROW=2)
    with audit_app.app_context():
        ids = [make_invoice(buyer_email=f"kh{n}@example.com").id for n in range(3)]
        batch_id = bulk.create_draft(None, Filters(period="all", tab="not_sent")).id
        bulk.tick(batch_id, ids, True)
        bulk.start(batch_id, None)
        with write():
            deliveries = db.session.scalars(db.select(Delivery).order_by(Delivery.id)).all()
            for delivery in deliveries[:2]:
                delivery.status, delivery.finished_at = "failed", datetime.now(UTC)
                delivery.error_kind = "auth"
            bulk.check_failures(deliveries[1])
    entry = only(audit_app, "batch.paused")
    assert (entry.user_id, entry.via, entry.ip) == (None, "system", "")
    assert entry.details == {"automatic": "in_a_row", "count": 2, "error_kind": "auth", "held": 1}


def test_a_transfer_to_the_tax_authority_is_recorded(audit_app):
    with audit_app.app_context():
        db.session.add(TaxSettings(provider="sandbox", endpoint="http://127.0.0.1:9", username="u",
                                   password_encrypted=encrypt("p"), sender_code="V0101234567"))  # fmt: skip
        db.session.commit()
        ids = [make_invoice().id, make_invoice().id]
    client = client_as(audit_app, "sender")
    assert client.post("/tax/transfer", data={"ids": ids[:1], "next": "/"}).status_code == 302
    assert client.post("/tax/transfer", data={"ids": ids, "next": "/"}).status_code == 302

    one, both = rows(audit_app, "tax.transferred")
    for entry in (one, both):
        assert_from_the_request(entry, audit_app, "sender")
    assert (one.target_type, one.target_id, one.details["queued"]) == ("invoice", ids[0], 1)
    assert both.target_type == "" and both.details["invoice_ids"] == ids
    assert (both.details["queued"], both.details["in_progress"]) == (1, 1)


def test_settings_changes_are_recorded_without_the_secrets(audit_app):
    client = client_as(audit_app, "admin")
    email = {"host": "smtp.example.vn", "port": "587", "security": "starttls",
             "username": "hoadon", "password": "s3cret-pass", "sender_name": "Ánh Dương",
             "sender_email": "hoadon@anhduong.vn", "reply_to": ""}  # fmt: skip
    assert client.post("/settings/email", data=email).status_code == 302
    assert client.post("/settings/company", data={"name": "Công ty Ánh Dương",
                                                   "tax_code": SELLER_TAX_CODE}).status_code == 302  # fmt: skip
    assert (
        client.post("/settings/series", data={"form": "1", "series": "K26TBB"}).status_code == 302
    )
    tax = {"provider": "sandbox", "endpoint": "https://tvan.example.vn", "username": "u",
           "password": "tax-pass", "sender_code": "V0101234567", "callback_secret": "hook-secret",
           "wait_for_acceptance": "0", "holidays": ""}  # fmt: skip
    assert client.post("/settings/tax", data=tax).status_code == 302
    assert client.post("/settings/email-template/default").status_code == 302

    entries = rows(audit_app, "settings.changed")
    assert [e.details["section"] for e in entries] == [
        "email", "company", "series", "tax", "email_template"]  # fmt: skip
    for entry in entries:
        assert_from_the_request(entry, audit_app, "admin")
    mail = entries[0].details["changes"]
    assert mail["host"] == ["127.0.0.1", "smtp.example.vn"] and mail["port"] == [2525, 587]
    assert mail["password_encrypted"] is None  # it changed; to what is nobody's business
    assert entries[1].details["changes"]["name"][1] == "Công ty Ánh Dương"
    assert entries[2].target_type == "invoice_series" and entries[2].target_id
    assert entries[2].details["changes"]["series"] == [None, "K26TBB"]
    assert entries[3].details["changes"]["callback_secret_encrypted"] is None
    assert entries[4].details["restored_default"] is True
    with audit_app.app_context():
        stored = repr([(e.details, e.target_label) for e in db.session.scalars(
            db.select(AuditEntry))])  # fmt: skip
    for secret in ("s3cret-pass", "tax-pass", "hook-secret"):
        assert secret not in stored
    page = client.get("/audit/").get_data(as_text=True)
    assert "Mật khẩu" in page and "127.0.0.1 → smtp.example.vn" in page


def test_an_import_is_recorded_per_invoice(audit_app):
    client = client_as(audit_app, "sender")
    answer = client.post(
        "/import/",
        data={"files": [(io.BytesIO((DATA / "sha256_v210.xml").read_bytes()), "sha256_v210.xml")]},
        content_type="multipart/form-data",
    )
    assert answer.status_code == 200
    entry = only(audit_app, "invoice.imported")
    assert_from_the_request(entry, audit_app, "sender")
    with audit_app.app_context():
        invoice_id = db.session.scalar(db.select(Invoice.id))
    assert (entry.target_type, entry.target_id, entry.details) == (
        "invoice", invoice_id, {"file": "sha256_v210.xml"})  # fmt: skip


def test_users_and_api_tokens_made_on_the_command_line_are_recorded(audit_app):
    runner = audit_app.test_cli_runner()
    made = runner.invoke(args=["users", "create", "lan", "--role", "viewer", "--password", "x"])
    assert made.exit_code == 0, made.output
    assert runner.invoke(args=["api-tokens", "create", "erp"]).exit_code == 0
    assert runner.invoke(args=["api-tokens", "revoke", "erp"]).exit_code == 0

    *fixtures, user = rows(audit_app, "user.created")
    assert [e.via for e in fixtures] == ["system"] * 3  # the fixture's, made outside a command
    assert (user.target_type, user.target_label, user.details) == (
        "user",
        "lan",
        {"role": "viewer"},
    )
    token, revoked = only(audit_app, "api_token.created"), only(audit_app, "api_token.revoked")
    for entry in (user, token, revoked):
        assert (entry.via, entry.user_id, entry.ip) == ("cli", None, "")
        assert "create" in entry.user_agent or "revoke" in entry.user_agent
    assert token.target_label == "erp" and revoked.target_id == token.target_id


# --- written with the change, or not at all -------------------------------------------------


def test_a_send_that_fails_after_recording_leaves_no_audit_row(audit_app, monkeypatch):
    from portal.invoices import projection

    with audit_app.app_context():
        invoice_id = make_invoice().id

    def broken(_ids):
        raise RuntimeError("the projection failed")

    monkeypatch.setattr(projection, "refresh", broken)
    client = client_as(audit_app, "sender")
    with pytest.raises(RuntimeError, match="projection failed"):
        client.post(
            f"/invoices/{invoice_id}/send", data={"method": "email", "to": "an@example.com"}
        )
    assert rows(audit_app, "invoice.sent") == []
    with audit_app.app_context():
        assert db.session.query(Delivery).count() == 0


def test_a_record_joins_the_unit_of_work_and_rolls_back_with_it(audit_app):
    with audit_app.app_context():
        before = db.session.query(AuditEntry).count()
        with pytest.raises(ValueError, match="refused"), write():
            audit.record("auth.logout")
            raise ValueError("refused")
        assert db.session.query(AuditEntry).count() == before
        with pytest.raises(ValueError, match="unknown audit action"):
            audit.record("invoice.deleted")


# --- the page: admins only, in the reader's language, filtered, exported -------------------


@pytest.mark.parametrize("role", ["sender", "viewer"])
def test_only_admins_see_or_export_the_log(audit_app, role):
    client = client_as(audit_app, role)
    assert client.get("/audit/").status_code == 403
    assert client.get("/audit/export.csv").status_code == 403
    anonymous = client_as(audit_app, None)
    assert anonymous.get("/audit/").status_code == 302
    assert anonymous.get("/audit/export.csv").status_code == 302


def test_the_log_reads_in_the_readers_language(audit_app):
    client = client_as(audit_app, "admin")
    login(client_as(audit_app, None), "viewer", "wrong")
    page = client.get("/audit/").get_data(as_text=True)
    assert "Đăng nhập không thành công" in page and "tên đăng nhập đã nhập: viewer" in page
    assert "203.0.113.7" in page and "AuditTest/1.0" in page
    client.post("/lang/en")
    page = client.get("/audit/").get_data(as_text=True)
    assert "Failed to log in" in page and "user name typed: viewer" in page


def test_filters_by_action_user_and_period(audit_app):
    login(client_as(audit_app, None), "viewer", "wrong")
    login(client_as(audit_app, None), "sender", "wrong")
    client = client_as(audit_app, "admin")
    with audit_app.app_context(), write():
        old = db.session.scalar(db.select(AuditEntry).filter(
            AuditEntry.details["username"].as_string() == "sender"))  # fmt: skip
        old.at = datetime(2025, 6, 15, 3, 0, tzinfo=UTC)

    def shown(**query) -> list[str]:
        page = client.get("/audit/", query_string=query).get_data(as_text=True)
        return [line.split('"')[1] for line in page.split("data-action=")[1:]]

    # Newest first: the admin's login, the viewer's try, the fixture's certificate and users,
    # last June's try.
    assert shown() == ["auth.login", "auth.login_failed", "certificate.registered",
                       *["user.created"] * 3, "auth.login_failed"]  # fmt: skip
    assert shown(action="auth.login_failed") == ["auth.login_failed", "auth.login_failed"]
    with audit_app.app_context():
        viewer_id = db.session.scalar(db.select(User.id).filter_by(username="viewer"))
    assert shown(user=str(viewer_id)) == ["auth.login_failed"]
    assert shown(period="custom", date_from="2025-06-01", date_to="2025-06-30") == [
        "auth.login_failed"]  # fmt: skip
    assert shown(period="today", action="auth.login_failed") == ["auth.login_failed"]
    # Absurd values fall back to no filter rather than failing.
    assert len(shown(action="x" * 500, user="9" * 40, date_from="99999-01-01", page="-3")) == len(
        shown()
    )


def test_the_csv_export_is_filtered_and_defuses_formulas(audit_app):
    login(client_as(audit_app, None), '=HYPERLINK("http://evil.example")', "x")
    login(client_as(audit_app, None), "@SUM(A1)", "x")
    client = client_as(audit_app, "admin")
    answer = client.get("/audit/export.csv", query_string={"action": "auth.login_failed"})
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert "attachment" in answer.headers["Content-Disposition"]
    text = answer.get_data(as_text=True)
    assert text.startswith("\ufeff")  # so that Excel reads the Vietnamese as UTF-8
    header, *lines = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert header[:5] == ["Thời gian", "Người dùng", "Qua", "Mã thao tác", "Thao tác"]
    assert [line[3] for line in lines] == ["auth.login_failed", "auth.login_failed"]
    details = [line[6] for line in lines]
    assert details == ["tên đăng nhập đã nhập: @SUM(A1)",
                       'tên đăng nhập đã nhập: =HYPERLINK("http://evil.example")']  # fmt: skip
    assert all(line[7] == "203.0.113.7" for line in lines)
    # A cell that starts like a formula is text to a spreadsheet.
    for cell in ("=1+1", "+1", "-1", "@A1", "\t=1"):
        assert audit.service.safe_cell(cell) == "'" + cell
    assert audit.service.safe_cell("0101234567") == "0101234567"


def test_a_csv_cell_starting_a_formula_is_quoted(audit_app):
    login(client_as(audit_app, None), "viewer", "x")
    with audit_app.app_context(), write():
        entry = db.session.scalar(db.select(AuditEntry))
        entry.user_agent = "=cmd|' /C calc'!A0"
    client = client_as(audit_app, "admin")
    text = client.get("/audit/export.csv").get_data(as_text=True)
    cells = [line for line in csv.reader(io.StringIO(text.lstrip("\ufeff")))]
    assert cells[-1][8] == "'=cmd|' /C calc'!A0"
    assert PASSWORD not in text
