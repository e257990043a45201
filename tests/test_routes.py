"""Every route of the URL map, as every role, with real ids: no 5xx, and no POST without CSRF."""

import json
import time

import pytest

from portal.bulk import service as bulk
from portal.certificates.service import register_certificate
from portal.einvoice.signing import make_certificate
from portal.extensions import db
from portal.invoices import service as listing
from portal.models import Delivery, MailSettings, User
from portal.sending import mailer, service
from tests.conftest import PASSWORD, login, make_app
from tests.factories import make_invoice, make_pending_import, make_seller

ROLES = ("admin", "sender", "viewer")


@pytest.fixture
def world(tmp_path, migrated_db, redis_url):
    """An app with CSRF on and one of everything a URL can point at."""
    from portal.auth.views import create

    mail_dir = tmp_path / "mail"
    mail_dir.mkdir()
    app = make_app(tmp_path, migrated_db, WTF_CSRF_ENABLED=True, REDIS_URL=redis_url,
                   RQ_QUEUE="test-routes", MAIL_CATCHER_DIR=str(mail_dir))  # fmt: skip
    with app.app_context():
        for role in ROLES:
            create(role, PASSWORD, role)
        seller = make_seller()
        db.session.add(MailSettings(host="127.0.0.1", port=2525, security="none",
                                    sender_email="hoadon@anhduong.vn"))  # fmt: skip
        db.session.commit()
        invoice_id = make_invoice().id
        pending_id = make_pending_import()
        certificate_id = register_certificate(
            make_certificate(seller.tax_code, seller.name)[1], None
        ).id
        recipients = service.parse_recipients("An", "an@example.com")
        delivery_id = service.queue_delivery(invoice_id, None, recipients).delivery.id
        link = service.queue_delivery(make_invoice().id, None, recipients, method="link").link
        admin = db.session.scalar(db.select(User).filter_by(username="admin"))
        batch_id = bulk.create_draft(admin.id, listing.Filters(period="all")).id
        smtp = service.smtp_settings(db.session.scalar(db.select(MailSettings)))
        message = mailer.build_message(
            smtp, recipient_name="An", to=["an@example.com"], cc=[], bcc=[], subject="Hóa đơn",
            text="Xin chào", html="<p>Xin chào</p>",
            attachments=[mailer.Attachment("a.pdf", "application/pdf", b"%PDF-1.4")],
            message_id=mailer.new_message_id(smtp.sender_email),
        )  # fmt: skip
        name = f"{time.time_ns()}-abcd1234"
        (mail_dir / f"{name}.json").write_text(json.dumps(
            {"mail_from": "hoadon@anhduong.vn", "rcpt_tos": ["an@example.com"],
             "received_at": time.time(), "peer": "127.0.0.1"}))  # fmt: skip
        (mail_dir / f"{name}.eml").write_bytes(message.as_bytes())
    from portal.buyer.views import _lookup_serializer

    with app.app_context():
        # What the lookup page hands out for a right code.
        ticket = _lookup_serializer().dumps(invoice_id)
    values = {
        "invoice_id": str(invoice_id),
        "delivery_id": str(delivery_id),
        "token": link.rsplit("/", 1)[1],
        "ticket": ticket,
        "name": name,
        "index": "0",
        "filename": "css/portal.css",
        "lang": "en",
        "provider": "sandbox",
        "exchange_id": "1",
        "batch_id": str(batch_id),
        "pending_id": str(pending_id),
        "certificate_id": str(certificate_id),
    }
    return app, values


def logged_in(app, role: str | None):
    """A client logged in as role (None: anonymous); the login itself skips CSRF."""
    client = app.test_client()
    if role:
        app.config["WTF_CSRF_ENABLED"] = False
        login(client, role)
        app.config["WTF_CSRF_ENABLED"] = True
    return client


def urls(app, values, method: str) -> list[tuple[str, str]]:
    found = []
    for rule in app.url_map.iter_rules():
        if method not in rule.methods:
            continue
        kinds = ["pdf", "xml"] if "kind" in rule.arguments else [None]
        for kind in kinds:
            arguments = {key: values[key] for key in rule.arguments if key != "kind"}
            if kind:
                arguments["kind"] = kind
            found.append((rule.endpoint, rule.build(arguments)[1]))
    return found


@pytest.mark.parametrize("role", [None, *ROLES])
def test_every_get_as_every_role_answers_without_a_server_error(world, role):
    app, values = world
    client = logged_in(app, role)
    checked = []
    for endpoint, url in urls(app, values, "GET"):
        response = client.get(url)
        response.close()
        assert response.status_code < 500, (role, url, response.status_code)
        checked.append((endpoint, response.status_code))
    assert len(checked) > 25
    if role == "admin":
        # Real ids reach real pages, not 404s.
        ok = {endpoint for endpoint, code in checked if code == 200}
        assert {"invoices.show", "invoices.file", "sending.dialog", "sending.preview",
                "mailbox.show", "mailbox.attachment", "buyer.lookup_result",
                "invoices.statuses", "settings.email", "bulk.draft",
                "bulk.preflight", "audit.index", "audit.export", "importing.pending",
                "settings.certificates"} <= ok  # fmt: skip


@pytest.mark.parametrize("role", [None, *ROLES])
def test_every_post_without_a_csrf_token_is_refused(world, role):
    app, values = world
    client = logged_in(app, role)
    with app.app_context():
        before = db.session.query(Delivery).count()
    for endpoint, url in urls(app, values, "POST"):
        response = client.post(url, data={"to": "x@example.com", "method": "email"})
        expected = {401} if endpoint.startswith("api.") else {400}
        if role is None and not endpoint.startswith(("api.", "buyer.", "auth.login", "i18n.")):
            expected = {302, 400}  # to the login page, or refused for its token first
        if endpoint == "tax.callback":
            expected = {403, 404}  # no signature (or no such provider): refused all the same
        assert response.status_code in expected, (role, url, response.status_code)
    with app.app_context():
        assert db.session.query(Delivery).count() == before  # nothing was sent or changed
