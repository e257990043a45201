"""Invoice email settings with a real test send, and the email template editor."""

import pytest

from portal.extensions import db
from portal.models import EmailTemplate, MailSettings
from portal.sending.secrets_box import decrypt
from tests.conftest import login


def settings_form(port, **overrides):
    data = dict(
        host="127.0.0.1",
        port=port,
        security="none",
        username="ketoan",
        password="mat-khau-bi-mat",
        sender_name="Ánh Dương",
        sender_email="hoadon@anhduong.vn",
        reply_to="",
        test_to="",
    )
    data.update(overrides)
    return data  # fmt: skip


@pytest.fixture
def admin(app, users):
    client = app.test_client()
    login(client, "admin")
    return client


def test_settings_save_with_the_password_encrypted_and_never_shown(app, admin):
    response = admin.post("/settings/email", data=settings_form(2525))
    assert response.status_code == 302
    with app.app_context():
        row = db.session.scalar(db.select(MailSettings))
        assert "mat-khau-bi-mat" not in row.password_encrypted
        assert decrypt(row.password_encrypted) == "mat-khau-bi-mat"
    page = admin.get("/settings/email").get_data(as_text=True)
    assert "mat-khau-bi-mat" not in page and row.password_encrypted not in page
    # An empty password field keeps the stored one.
    admin.post("/settings/email", data=settings_form(2526, password=""))
    with app.app_context():
        row = db.session.scalar(db.select(MailSettings))
        assert row.port == 2526 and decrypt(row.password_encrypted) == "mat-khau-bi-mat"


def test_invalid_sender_is_refused(admin):
    response = admin.post("/settings/email", data=settings_form(2525, sender_email="not an email"))
    assert response.status_code == 200 and "field-error" in response.get_data(as_text=True)


def test_test_email_reports_the_servers_answer(admin, smtp_server):
    page = admin.post(
        "/settings/email/test", data=settings_form(smtp_server.port, password="", username="")
    )
    assert "250" in page.get_data(as_text=True)
    assert smtp_server.messages[0].rcpt_tos == ["hoadon@anhduong.vn"]


def test_test_email_explains_a_refusal_in_vietnamese(admin, smtp_server):
    smtp_server.handler.data_replies = ["550 5.7.1 Relaying denied"]
    text = admin.post(
        "/settings/email/test", data=settings_form(smtp_server.port, username="")
    ).get_data(as_text=True)
    assert "Máy chủ thư từ chối email" in text and "550 5.7.1 Relaying denied" in text


def test_test_email_explains_an_unreachable_server(admin, smtp_server):
    smtp_server.stop()
    text = admin.post(
        "/settings/email/test", data=settings_form(smtp_server.port, username="")
    ).get_data(as_text=True)
    assert "Không kết nối được máy chủ thư" in text


def test_settings_are_for_admins_only(app, users):
    client = app.test_client()
    assert client.get("/settings/email").status_code == 302
    login(client, "sender")
    assert client.get("/settings/email").status_code == 403
    assert client.get("/settings/email-template").status_code == 403


def test_template_with_an_unknown_variable_or_bad_syntax_is_refused(app, admin):
    data = {
        "subject": "HĐ {{ number }}",
        "body_text": "{{ secret_key }}",
        "body_html": "<p>{% for %}</p>",
    }
    page = admin.post("/settings/email-template", data=data).get_data(as_text=True)
    assert "secret_key" in page and "dòng 1" in page
    with app.app_context():
        assert db.session.scalar(db.select(EmailTemplate)) is None


def test_template_saves_and_preview_escapes_invoice_data(app, admin):
    from tests.factories import make_invoice

    with app.app_context():
        make_invoice(buyer_person="<script>alert(1)</script>")
    data = {
        "subject": "HĐ {{ number }}",
        "body_text": "Gửi {{ recipient_name }}",
        "body_html": "<p>{{ recipient_name }}</p>",
    }
    preview = admin.post("/settings/email-template/preview", data=data).get_data(as_text=True)
    assert "<script>alert(1)" not in preview and "&amp;lt;script&amp;gt;" in preview
    assert admin.post("/settings/email-template", data=data).status_code == 302
    with app.app_context():
        assert db.session.scalar(db.select(EmailTemplate)).subject == "HĐ {{ number }}"
    admin.post("/settings/email-template/default")
    with app.app_context():
        assert db.session.scalar(db.select(EmailTemplate)) is None


def test_settings_forms_need_the_csrf_token(tmp_path, migrated_db):
    from portal.auth.views import create
    from tests.conftest import PASSWORD, make_app

    app = make_app(tmp_path, migrated_db, WTF_CSRF_ENABLED=True)
    with app.app_context():
        create("boss", PASSWORD, "admin")
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    client.post("/login", data={"username": "boss", "password": PASSWORD, "csrf_token": token})
    assert client.post("/settings/email", data=settings_form(2525)).status_code == 400


def test_company_profile_and_series(app, admin):
    from portal.models import InvoiceSeries, Seller

    data = dict(name="Công ty TNHH Ánh Dương", tax_code="0101234567", address="12 Lê Lợi", phone="",
                email="ketoan@anhduong.vn", bank_account="", bank_name="")  # fmt: skip
    assert admin.post("/settings/company", data=dict(data, tax_code="12345")).status_code == 200
    assert admin.post("/settings/company", data=data).status_code == 302
    assert admin.post("/settings/series", data={"form": "1", "series": "K26TAA"}).status_code == 302
    page = admin.post("/settings/series", data={"form": "1", "series": "K26TAA"}).get_data(
        as_text=True
    )
    assert "Ký hiệu này đã có." in page
    assert "field-error" in admin.post(
        "/settings/series", data={"form": "1", "series": "C26TAA"}
    ).get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(db.select(Seller)).tax_code == "0101234567"
        assert [s.label for s in db.session.scalars(db.select(InvoiceSeries))] == ["1K26TAA"]
    assert "Công ty TNHH Ánh Dương" in admin.get("/import/").get_data(as_text=True)
