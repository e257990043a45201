"""Invoice email settings with a real test send, and the email template editor."""

import gc

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from portal.extensions import db
from portal.models import EmailTemplate, MailSettings
from portal.sending.secrets_box import decrypt
from tests.conftest import free_port, login
from tests.smtp import ScriptedHandler

HTMX = {"HX-Request": "true"}


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
    # An empty password field keeps the stored one (for the same server and user).
    admin.post("/settings/email", data=settings_form(2525, password="", sender_name="Ánh Dương 2"))
    with app.app_context():
        row = db.session.scalar(db.select(MailSettings))
        assert row.sender_name == "Ánh Dương 2"
        assert decrypt(row.password_encrypted) == "mat-khau-bi-mat"


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
    assert "Máy chủ thư từ chối email" in text
    assert "Máy chủ thư trả lời: <code>550 5.7.1 Relaying denied</code>" in text


def test_test_email_explains_an_unreachable_server(admin, smtp_server):
    smtp_server.stop()
    text = admin.post(
        "/settings/email/test", data=settings_form(smtp_server.port, username="")
    ).get_data(as_text=True)
    assert "Không kết nối được máy chủ thư" in text and "Chi tiết:" in text
    assert "tự gửi lại" not in text  # nothing retries a test email


def test_settings_are_for_admins_only(app, users):
    client = app.test_client()
    assert "/login" in client.get("/settings/email").location
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
    assert client.post("/settings/email/test", data=settings_form(2525)).status_code == 400
    template = {"subject": "x", "body_text": "x", "body_html": "x"}
    assert client.post("/settings/email-template", data=template).status_code == 400
    assert client.post("/settings/email-template/default").status_code == 400
    with app.app_context():
        assert db.session.scalar(db.select(MailSettings)) is None


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


@pytest.fixture
def auth_server():
    """A real SMTP server on loopback that only takes ketoan / the right password."""
    tried = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        tried.append(auth_data)
        ok = isinstance(auth_data, LoginPassword) and auth_data == LoginPassword(
            b"ketoan", b"mat-khau-dung"
        )
        return AuthResult(success=ok, handled=False)

    handler = ScriptedHandler()
    controller = Controller(
        handler, hostname="127.0.0.1", port=free_port(),
        authenticator=authenticator, auth_require_tls=False,
    )  # fmt: skip
    controller.start()
    controller.tried = tried
    controller.messages = handler.messages
    yield controller
    controller.stop()


def test_test_email_explains_a_wrong_password(admin, auth_server):
    response = admin.post(
        "/settings/email/test",
        data=settings_form(auth_server.port, password="sai-mat-khau"),
        headers=HTMX,
    )
    text = response.get_data(as_text=True)
    assert "Máy chủ thư từ chối tên đăng nhập hoặc mật khẩu" in text and "535" in text
    # smtplib tries PLAIN, then LOGIN: each with what the seller typed.
    assert auth_server.tried and set(auth_server.tried) == {
        LoginPassword(b"ketoan", b"sai-mat-khau")
    }
    assert auth_server.messages == []
    assert "<html" not in text  # htmx gets the result fragment only
    gc.collect()


def test_test_email_uses_the_stored_password_when_the_field_is_empty(app, admin, auth_server):
    admin.post("/settings/email", data=settings_form(auth_server.port, password="mat-khau-dung"))
    text = admin.post(
        "/settings/email/test",
        data=settings_form(auth_server.port, password="", test_to="thu@example.com"),
        headers=HTMX,
    ).get_data(as_text=True)
    assert "250 2.0.0 Ok: queued as TEST" in text
    assert auth_server.tried == [LoginPassword(b"ketoan", b"mat-khau-dung")]
    assert auth_server.messages[0].rcpt_tos == ["thu@example.com"]
    assert auth_server.messages[0].message["Subject"] == "Email thử từ hoadon-portal"
    with app.app_context():
        row = db.session.scalar(db.select(MailSettings))
        assert row.last_test_ok is True and row.last_test_at is not None
        assert "250" in row.last_test_message
    # The last outcome is on the page, the password is not.
    page = admin.get("/settings/email").get_data(as_text=True)
    assert "Lần thử gần nhất" in page and "mat-khau-dung" not in page


@pytest.mark.parametrize(
    "changed", [{"host": "localhost"}, {"username": "ketoan2"}, {"security": "ssl"}]
)
def test_the_stored_password_never_goes_to_another_server_or_user(app, admin, auth_server,
                                                                   changed):  # fmt: skip
    admin.post("/settings/email", data=settings_form(auth_server.port, password="mat-khau-dung"))
    # "localhost" is this same loopback server, given as a new host: it must hear nothing.
    response = admin.post(
        "/settings/email/test",
        data=settings_form(auth_server.port, password="", **changed), headers=HTMX,
    )  # fmt: skip
    assert response.status_code == 422
    assert "vui lòng nhập lại mật khẩu" in response.get_data(as_text=True)
    assert auth_server.tried == [] and auth_server.messages == []
    # Saving the change without the password is refused too; typed again, it is saved.
    response = admin.post(
        "/settings/email", data=settings_form(auth_server.port, password="", **changed)
    )
    assert response.status_code == 422 and "vui lòng nhập lại mật khẩu" in response.get_data(
        as_text=True
    )
    with app.app_context():
        assert db.session.scalar(db.select(MailSettings)).host == "127.0.0.1"
    response = admin.post(
        "/settings/email", data=settings_form(auth_server.port, password="moi", **changed)
    )
    assert response.status_code == 302
    with app.app_context():
        row = db.session.scalar(db.select(MailSettings))
        assert (row.host, row.username, row.security) == (
            changed.get("host", "127.0.0.1"), changed.get("username", "ketoan"),
            changed.get("security", "none"),
        )  # fmt: skip
    assert auth_server.tried == []


def test_failed_test_is_recorded_on_the_stored_settings(app, admin, smtp_server):
    admin.post("/settings/email", data=settings_form(smtp_server.port, username=""))
    smtp_server.handler.data_replies = ["554 5.7.1 Message rejected as spam"]
    admin.post("/settings/email/test", data=settings_form(smtp_server.port, username=""))
    with app.app_context():
        row = db.session.scalar(db.select(MailSettings))
        assert row.last_test_ok is False and "554 5.7.1 Message rejected as spam" in (
            row.last_test_message
        )


def test_test_without_javascript_answers_with_the_whole_page(admin, smtp_server):
    response = admin.post("/settings/email/test", data=settings_form(smtp_server.port, username=""))
    text = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" in text and 'id="mail-settings"' in text
    assert "250 2.0.0 Ok: queued as TEST" in text
    assert "mat-khau-bi-mat" not in text  # the typed password is not echoed back


def test_test_with_an_invalid_form_lists_what_to_fix(admin, smtp_server):
    response = admin.post(
        "/settings/email/test",
        data=settings_form(smtp_server.port, host="", sender_email="khong-phai-email"),
        headers=HTMX,
    )
    text = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Máy chủ SMTP" in text and "Email người gửi" in text
    assert smtp_server.messages == []


def test_clearing_the_password(app, admin):
    admin.post("/settings/email", data=settings_form(2525))
    admin.post("/settings/email", data=settings_form(2525, password="", clear_password="y"))
    with app.app_context():
        assert db.session.scalar(db.select(MailSettings)).password_encrypted == ""


def test_a_password_the_secret_key_cannot_read_asks_to_enter_it_again(app, admin, smtp_server):
    from portal.sending.secrets_box import encrypt

    admin.post("/settings/email", data=settings_form(smtp_server.port))
    with app.app_context():
        # Stored under an earlier SECRET_KEY (changing the key here would also log us out).
        app.config["SECRET_KEY"] = "an-earlier-secret"
        token = encrypt("mat-khau-bi-mat")
        app.config["SECRET_KEY"] = "test-secret"
        db.session.scalar(db.select(MailSettings)).password_encrypted = token
        db.session.commit()
    page = admin.get("/settings/email").get_data(as_text=True)
    assert "Không đọc được mật khẩu đã lưu" in page
    text = admin.post(
        "/settings/email/test", data=settings_form(smtp_server.port, password=""), headers=HTMX
    ).get_data(as_text=True)
    assert "vui lòng nhập lại" in text and smtp_server.messages == []


def test_settings_pages_refuse_senders_and_viewers(app, users):
    for username in ("sender", "viewer"):
        client = app.test_client()
        login(client, username)
        for method, url in [
            ("get", "/settings/email"),
            ("post", "/settings/email"),
            ("post", "/settings/email/test"),
            ("get", "/settings/email-template"),
            ("post", "/settings/email-template/preview"),
            ("post", "/settings/email-template/default"),
        ]:
            assert getattr(client, method)(url).status_code == 403, (username, url)
    anonymous = app.test_client().get("/settings/email-template")
    assert anonymous.status_code == 302 and "/login" in anonymous.location


def test_unknown_variable_is_reported_with_its_line(app, admin):
    data = {"subject": "HĐ", "body_text": "Số {{ number }}\n\nMật khẩu {{ secret_key }}",
            "body_html": "<p>{{ number }}</p>"}  # fmt: skip
    page = admin.post("/settings/email-template", data=data).get_data(as_text=True)
    assert "biến không hợp lệ secret_key ở dòng 3" in page


@pytest.mark.parametrize(
    "body_html",
    ["<p>{{ number + 1 }}</p>", "<p>\n{{ seller_name.__class__.__mro__ }}</p>", "{{ 1 / 0 }}"],
)
def test_template_that_fails_when_rendered_is_refused(app, admin, body_html):
    data = {"subject": "HĐ", "body_text": "x", "body_html": body_html}
    response = admin.post("/settings/email-template", data=data)
    assert response.status_code == 200 and "Nội dung HTML" in response.get_data(as_text=True)
    preview = admin.post("/settings/email-template/preview", data=data)
    assert preview.status_code == 200 and "field-error" in preview.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(db.select(EmailTemplate)) is None


def test_template_page_previews_the_sample_when_there_is_no_invoice(admin):
    page = admin.get("/settings/email-template").get_data(as_text=True)
    assert "Nguyễn Văn An" in page and "{{ buyer_link }}" in page  # the variables list
    assert "1K26TAA" in page and "1.089.000" in page


def test_live_preview_in_the_browser(app, users, live_server, page):
    from tests.conftest import browser_login

    # The preview must work under our CSP, and its sandboxed iframe must run no script.
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if "Security Policy" in m.text else None)
    browser_login(page, live_server, "admin")
    page.goto(live_server.url + "/settings/email-template")
    frame = page.frame_locator("#template-preview iframe.email-html")
    assert "Nguyễn Văn An" in frame.locator("body").inner_text()
    page.fill("textarea[name=body_html]", "<p id=x>Chào <b>{{ buyer_name }}</b></p>")
    frame.locator("p#x").wait_for()
    assert frame.locator("p#x b").inner_text() == "Công ty Cổ phần Nguyễn Hoàng"
    page.fill("textarea[name=body_html]", "<p>{{ secret_key }}</p>")
    page.locator("#template-preview .field-error").wait_for()
    assert "secret_key" in page.locator("#template-preview").inner_text()
    assert errors == []


# Each goes over one limit of a render (Config TEMPLATE_MAX_*), with the reason shown.
OVER_THE_LIMITS = {
    "9 MB at once": ('{{ "x" * 9000000 }}', "dài hơn 100.000 ký tự"),
    "output of a loop": (
        "{% for i in range(2000) %}{{ seller_name }} {{ amount_in_words }}{% endfor %}",
        "dài hơn 100.000 ký tự",
    ),
    "a doubling string": (
        '{% set a = "x" * 60000 %}{% set b = a ~ a %}{% set c = b ~ b %}{{ c }}',
        "dài hơn 100.000 ký tự",
    ),
    "nested loops": (
        "{% for i in range(1000) %}{% for j in range(1000) %}.{% endfor %}{% endfor %}",
        "chạy tổng cộng hơn 10.000 lần",
    ),
    # 10,000 iterations within the output limit, each sorting 100,000 numbers: far more than
    # a second on any machine, so the time limit stops it.
    "time": (
        "{% for i in range(10000) %}{{ range(100000)|list|sort|length }}{% endfor %}",
        "mất hơn 1 giây",
    ),
    "a huge width": ('{{ "x"|center(1000000000) }}', "dùng một số quá lớn"),
    "a huge format width": ('{{ "%1000000000s"|format(number) }}', "dùng một số quá lớn"),
    "a macro": (
        "{% macro f() %}{{ f() }}{{ f() }}{% endmacro %}{{ f() }}",
        "{% macro %} ở dòng 1 không được dùng trong mẫu email",
    ),
}


@pytest.mark.parametrize("name", OVER_THE_LIMITS)
def test_a_template_over_the_limits_is_refused_on_save_with_the_reason(app, admin, name):
    body, reason = OVER_THE_LIMITS[name]
    data = {"subject": "HĐ {{ number }}", "body_text": "Số {{ number }}", "body_html": body}
    response = admin.post("/settings/email-template", data=data)
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and reason in page and "Nội dung HTML" in page
    preview = admin.post("/settings/email-template/preview", data=data).get_data(as_text=True)
    assert reason in preview
    with app.app_context():
        assert db.session.scalar(db.select(EmailTemplate)) is None


def test_the_limit_reasons_are_in_english_too(admin):
    admin.post("/lang/en")
    data = {"subject": "HĐ", "body_text": '{{ "x" * 9000000 }}', "body_html": "<p>x</p>"}
    page = admin.post("/settings/email-template", data=data).get_data(as_text=True)
    assert "Plain-text body: it renders more than 100,000 characters" in page


def test_a_template_within_the_limits_with_loops_and_filters_is_saved(app, admin):
    body = (
        "{% for word in amount_in_words.split() %}{{ word|upper }} {% endfor %}"
        "{{ seller_name|center(40) }} {{ '%08d'|format(7) }} {{ [buyer_name, number]|join(', ') }}"
    )
    data = {"subject": "HĐ {{ number }}", "body_text": body, "body_html": "<p>{{ total }}</p>"}
    assert admin.post("/settings/email-template", data=data).status_code == 302
    with app.app_context():
        assert db.session.scalar(db.select(EmailTemplate)).body_text == body
