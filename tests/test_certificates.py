"""Signatures that count: registered certificates (Chữ ký số), imports waiting for approval."""

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from portal.certificates.service import decrypt_key, register_certificate
from portal.einvoice.signing import make_certificate, sign_xml, verify_xml
from portal.einvoice.xml import build_xml
from portal.extensions import db
from portal.models import Invoice, InvoiceSeries, PendingImport, Seller, SigningCertificate
from tests.conftest import login
from tests.data.make_samples import (
    NOT_BEFORE,
    SELLER_NAME,
    SELLER_TAX_CODE,
    SIGNED_AT,
    base_document,
)

DATA = Path(__file__).parent / "data"
TODAY = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date()
SERIES = f"K{TODAY.year % 100:02d}TAA"


@pytest.fixture
def seller_app(app, users):
    """The samples' seller, with its genuine certificate registered (a certificate alone)."""
    app.config["BABEL_DEFAULT_LOCALE"] = "en"
    with app.app_context():
        db.session.add(Seller(name=SELLER_NAME, tax_code=SELLER_TAX_CODE))
        db.session.add(InvoiceSeries(form=1, series=SERIES))
        db.session.commit()
        register_certificate((DATA / "seller_cert.pem").read_bytes(), None)
    return app


def client_as(app, role):
    client = app.test_client()
    login(client, role)
    client.post("/lang/en")
    return client


def upload(client, name: str, xml: bytes):
    return client.post(
        "/import/",
        data={"files": [(io.BytesIO(xml), name)]},
        content_type="multipart/form-data",
    )


def forged(number: int, related: str = "", tax_code: str = SELLER_TAX_CODE):
    """A file signed with a new self-signed certificate whose subject carries the seller's MST."""
    key, cert = make_certificate(tax_code, "Kẻ mạo danh", days=3650, not_before=NOT_BEFORE)
    doc = base_document(number)
    doc.related_info = related
    return sign_xml(build_xml(doc), key, cert, signing_time=SIGNED_AT), cert


# The genuine sample is 1K26TAA No. 00000001 of 05/01/2026.
REPLACES_1 = "TCHDon=1\nKHMSHDCLQuan=1\nKHHDCLQuan=K26TAA\nSHDCLQuan=1\nNLHDCLQuan=2026-01-05"


def p12(key_pem: bytes, cert_pem: bytes, password: bytes = b"mat-khau") -> bytes:
    key = serialization.load_pem_private_key(key_pem, None)
    cert = x509.load_pem_x509_certificate(cert_pem)
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return pkcs12.serialize_key_and_certificates(b"seller", key, cert, None, encryption)


def states(app) -> dict[int, str]:
    with app.app_context():
        return {i.number: i.state for i in db.session.scalars(db.select(Invoice))}


# --- imports signed by a stranger -------------------------------------------------------


def audit_rows(app, prefix: str = "") -> list[tuple[str, str, str]]:
    """(action, who, target) of what people did, oldest first (the fixture's setup is not)."""
    from portal.audit.models import AuditEntry

    with app.app_context():
        rows = db.session.scalars(db.select(AuditEntry).order_by(AuditEntry.id)).all()
        return [
            (r.action, r.username, r.target_label)
            for r in rows
            if r.username and r.action.startswith(prefix)
        ]


def issue_one(app):
    """Ask the API, with a new token, to issue one small invoice in the series."""
    token = app.test_cli_runner().invoke(args=["api-tokens", "create", "erp"]).output.strip()
    return app.test_client().post(
        "/api/v1/invoices",
        json={"series": f"1{SERIES}", "buyer": {"name": "An"},
              "lines": [{"name": "A", "quantity": 1, "unit_price": 1000, "vat_rate": "10%"}]},
        headers={"Authorization": f"Bearer {token}"},
    )  # fmt: skip


def test_a_forged_self_signed_import_is_not_issued_and_marks_nothing(seller_app):
    sender = client_as(seller_app, "sender")
    assert (
        "1 imported" in upload(sender, "genuine.xml", (DATA / "sha256_v210.xml").read_bytes()).text
    )
    xml, cert_pem = forged(50, related=REPLACES_1)
    page = upload(sender, "forged.xml", xml).text
    assert "0 imported, 0 refused." in page and "1 waiting for an administrator" in page
    assert "Waiting for approval" in page and "not registered" in page
    assert states(seller_app) == {1: "issued"}  # not stored, and the genuine one not replaced
    # The pending list shows the certificate's details, to senders and admins alike.
    cert = x509.load_pem_x509_certificate(cert_pem)
    listing = sender.get("/import/pending").text
    assert f"MST:{SELLER_TAX_CODE}" in listing and "Kẻ mạo danh" in listing
    assert f"{cert.serial_number:X}" in listing and "forged.xml" in listing
    assert "Approve" not in listing  # only admins approve
    # The same file again is not queued twice.
    assert "already waiting" in upload(sender, "again.xml", xml).text
    with seller_app.app_context():
        assert db.session.query(PendingImport).count() == 1


def test_an_admin_approves_a_pending_import_and_its_certificate_is_registered(seller_app):
    sender, admin = client_as(seller_app, "sender"), client_as(seller_app, "admin")
    upload(sender, "genuine.xml", (DATA / "sha256_v210.xml").read_bytes())
    xml, cert_pem = forged(50, related=REPLACES_1)
    upload(sender, "other-software.xml", xml)
    with seller_app.app_context():
        pending_id = db.session.scalar(db.select(PendingImport.id))
    assert sender.post(f"/import/pending/{pending_id}/approve").status_code == 403
    assert states(seller_app) == {1: "issued"}
    assert "Approve and register the certificate" in admin.get("/import/pending").text
    response = admin.post(f"/import/pending/{pending_id}/approve", follow_redirects=True)
    assert "invoice 1K26TAA No. 00000050 is stored as issued" in response.text
    assert states(seller_app) == {1: "replaced", 50: "issued"}
    with seller_app.app_context():
        stored = db.session.scalar(db.select(Invoice).filter_by(number=50))
        assert stored.xml == xml and stored.source == "import"
        assert db.session.query(PendingImport).count() == 0
        row = db.session.scalar(db.select(SigningCertificate).filter_by(source="approved"))
        assert row.der == x509.load_pem_x509_certificate(cert_pem).public_bytes(
            serialization.Encoding.DER
        )
        assert not row.can_sign  # approving registers a certificate, never a key
        label = row.audit_label
    # The approval and the import it stored are in the log, by the admin who approved.
    assert audit_rows(seller_app, "certificate.") == [("certificate.approved", "admin", label)]
    assert ("invoice.imported", "admin", "1K26TAA 00000050") in audit_rows(seller_app, "invoice.")
    assert admin.post(f"/import/pending/{pending_id}/approve").status_code == 404


def test_a_rejected_import_is_discarded(seller_app):
    sender, admin = client_as(seller_app, "sender"), client_as(seller_app, "admin")
    upload(sender, "forged.xml", forged(50)[0])
    with seller_app.app_context():
        pending_id = db.session.scalar(db.select(PendingImport.id))
    assert sender.post(f"/import/pending/{pending_id}/reject").status_code == 403
    response = admin.post(f"/import/pending/{pending_id}/reject", follow_redirects=True)
    assert "the file was discarded" in response.text
    assert "No import is waiting for approval." in response.text
    assert states(seller_app) == {}
    with seller_app.app_context():
        assert db.session.query(SigningCertificate).count() == 1  # the genuine one only


def test_a_replacement_marks_only_an_invoice_whose_whole_identity_matches(seller_app):
    key = (DATA / "seller_key.pem").read_bytes()
    cert = (DATA / "seller_cert.pem").read_bytes()
    sender = client_as(seller_app, "sender")
    upload(sender, "genuine.xml", (DATA / "sha256_v210.xml").read_bytes())

    def replacement(number: int, related: str) -> bytes:
        doc = base_document(number)
        doc.related_info = related
        return sign_xml(build_xml(doc), key, cert, signing_time=SIGNED_AT)

    wrong_date = REPLACES_1.replace("2026-01-05", "2026-01-06")
    no_date = REPLACES_1.replace("\nNLHDCLQuan=2026-01-05", "")
    wrong_form = REPLACES_1.replace("KHMSHDCLQuan=1", "KHMSHDCLQuan=2")
    for number, related in ((60, wrong_date), (61, no_date), (62, wrong_form)):
        assert "1 imported" in upload(sender, f"{number}.xml", replacement(number, related)).text
    assert states(seller_app) == {1: "issued", 60: "issued", 61: "issued", 62: "issued"}
    # The registered signer and the whole identity: marked.
    assert "1 imported" in upload(sender, "63.xml", replacement(63, REPLACES_1)).text
    assert states(seller_app)[1] == "replaced"


# --- registering certificates in settings ------------------------------------------------


def test_a_pkcs12_registered_in_settings_signs_what_the_api_issues(seller_app):
    admin = client_as(seller_app, "admin")
    key_pem, cert_pem = make_certificate(
        SELLER_TAX_CODE, "Công ty TNHH Thử Nghiệm", not_before=datetime.now(UTC) - timedelta(1)
    )
    wrong = admin.post(
        "/settings/certificates/p12",
        data={"p12-file": (io.BytesIO(p12(key_pem, cert_pem)), "seller.p12"), "p12-password": "x"},
        content_type="multipart/form-data",
    )
    assert wrong.status_code == 422 and "the password is wrong" in wrong.text
    response = admin.post(
        "/settings/certificates/p12",
        data={
            "p12-file": (io.BytesIO(p12(key_pem, cert_pem)), "seller.p12"),
            "p12-password": "mat-khau",
        },
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    assert "it signs the invoices issued here" in response.text
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert (
        f"{cert.serial_number:X}" in response.text
        and "Signs the invoices issued here" in response.text
    )
    # Subject and issuer (self-signed: the same), as Vietnamese CAs print them.
    assert response.text.count(f"CN=Công ty TNHH Thử Nghiệm,UID=MST:{SELLER_TAX_CODE},C=VN") == 2
    with seller_app.app_context():
        row = db.session.scalar(db.select(SigningCertificate).filter_by(source="p12"))
        assert row.tax_code == SELLER_TAX_CODE and row.can_sign
        # Encrypted at rest: neither the PEM nor its base64 body is in the row.
        body = b"".join(key_pem.splitlines()[1:-1]).decode()
        assert body[:40] not in row.key_encrypted and "PRIVATE KEY" not in row.key_encrypted
        assert serialization.load_pem_private_key(decrypt_key(row.key_encrypted), None)
        label = row.audit_label
    # The wrong password registered nothing; the right one is in the log.
    assert audit_rows(seller_app, "certificate.") == [("certificate.registered", "admin", label)]
    # The API issues with that certificate.
    token = seller_app.test_cli_runner().invoke(args=["api-tokens", "create", "erp"]).output.strip()
    api = seller_app.test_client()
    body = {
        "series": f"1{SERIES}",
        "issue_date": TODAY.isoformat(),
        "buyer": {"name": "Công ty Cổ phần Nguyễn Hoàng", "tax_code": "0312345679"},
        "lines": [{"name": "Giấy in A4", "quantity": 1, "unit_price": 72000, "vat_rate": "10%"}],
    }
    issued = api.post("/api/v1/invoices", json=body, headers={"Authorization": f"Bearer {token}"})
    assert issued.status_code == 201, issued.get_json()
    with seller_app.app_context():
        invoice = db.session.get(Invoice, issued.get_json()["id"])
        signer = verify_xml(invoice.xml)
        assert signer.certificate == cert.public_bytes(serialization.Encoding.DER)


def test_a_certificate_alone_in_pem_or_der_lets_its_imports_count(seller_app):
    admin, sender = client_as(seller_app, "admin"), client_as(seller_app, "sender")
    key_pem, cert_pem = make_certificate(SELLER_TAX_CODE, "Phần mềm khác", not_before=NOT_BEFORE)
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    for name, content in (("other.cer", der), ("other.pem", cert_pem)):
        response = admin.post(
            "/settings/certificates/file",
            data={"cert-file": (io.BytesIO(content), name)},
            content_type="multipart/form-data",
            follow_redirects=True,
        )
        if name == "other.cer":
            assert "Vouches for invoices signed elsewhere" in response.text
        else:  # the same certificate again
            assert response.status_code == 422 and "registered already" in response.text
    doc = base_document(70)
    xml = sign_xml(build_xml(doc), key_pem, cert_pem, signing_time=SIGNED_AT)
    assert "1 imported, 0 refused." in upload(sender, "70.xml", xml).text
    with seller_app.app_context():
        row = db.session.scalar(
            db.select(SigningCertificate).filter_by(source="certificate", der=der)
        )
        assert not row.can_sign
    # A certificate alone never signs: issuing still has no key.
    issued = issue_one(seller_app)
    assert issued.status_code == 409 and "no signing certificate" in issued.get_json()["message"]
    # Removed (a token lost, say): the next file it signed waits for approval again.
    assert sender.post(f"/settings/certificates/{row.id}/remove").status_code == 403
    removed = admin.post(f"/settings/certificates/{row.id}/remove", follow_redirects=True)
    assert "its signatures no longer count" in removed.text and row.serial in removed.text
    xml = sign_xml(build_xml(base_document(71)), key_pem, cert_pem, signing_time=SIGNED_AT)
    upload(sender, "71.xml", xml)
    assert states(seller_app) == {70: "issued"}
    with seller_app.app_context():
        assert db.session.scalar(db.select(PendingImport.number)) == 71
    assert audit_rows(seller_app, "certificate.")[-1] == (
        "certificate.removed",
        "admin",
        row.audit_label,
    )
    assert admin.post(f"/settings/certificates/{row.id}/remove").status_code == 404


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"not a certificate", "not a certificate"),
        (make_certificate("0109999999", "Khác")[1], "belongs to tax code 0109999999"),
    ],
)
def test_a_certificate_that_is_not_the_sellers_is_refused(seller_app, content, expected):
    admin = client_as(seller_app, "admin")
    response = admin.post(
        "/settings/certificates/file",
        data={"cert-file": (io.BytesIO(content), "x.pem")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 422 and expected in response.text


def test_only_admins_register_certificates(seller_app):
    _key, cert_pem = make_certificate(SELLER_TAX_CODE, "X")
    for role in ("sender", "viewer"):
        client = client_as(seller_app, role)
        assert client.get("/settings/certificates").status_code == 403
        response = client.post(
            "/settings/certificates/file",
            data={"cert-file": (io.BytesIO(cert_pem), "x.pem")},
            content_type="multipart/form-data",
        )
        assert response.status_code == 403
    with seller_app.app_context():
        assert db.session.query(SigningCertificate).count() == 1


@pytest.mark.parametrize("tax_code", ["031234567801", "0312345678-001"])
def test_twelve_digit_and_branch_tax_codes_are_read_whole(app, users, tax_code):
    app.config["BABEL_DEFAULT_LOCALE"] = "en"
    with app.app_context():
        db.session.add(Seller(name="Hộ kinh doanh An", tax_code=tax_code))
        db.session.commit()
    admin = client_as(app, "admin")
    _key, cert_pem = make_certificate(tax_code, "Hộ kinh doanh An")
    response = admin.post(
        "/settings/certificates/file",
        data={"cert-file": (io.BytesIO(cert_pem), "x.pem")},
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    assert response.status_code == 200
    assert f"<td>{tax_code}</td>" in response.text


# --- validity ---------------------------------------------------------------------------


def register_p12(app, days: int, started_days_ago: int):
    key_pem, cert_pem = make_certificate(
        SELLER_TAX_CODE, "Công ty TNHH Thử Nghiệm", days=days,
        not_before=datetime.now(UTC) - timedelta(days=started_days_ago),
    )  # fmt: skip
    admin = client_as(app, "admin")
    response = admin.post(
        "/settings/certificates/p12",
        data={"p12-file": (io.BytesIO(p12(key_pem, cert_pem, b"")), "s.p12"), "p12-password": ""},
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    assert response.status_code == 200, response.text
    return admin, response


def test_an_expired_certificate_cannot_sign(seller_app):
    admin, page = register_p12(seller_app, days=365, started_days_ago=400)
    assert "Expired: it cannot sign" in page.text
    assert "The signing certificate expired on" in page.text  # the banner admins see everywhere
    issued = issue_one(seller_app)
    assert issued.status_code == 409
    assert "expired on" in issued.get_json()["message"]
    assert "cannot sign" in issued.get_json()["message"]
    with seller_app.app_context():
        assert db.session.query(Invoice).count() == 0
        assert db.session.scalar(db.select(InvoiceSeries.next_number)) == 1  # no number used


def test_a_warning_thirty_days_before_expiry(seller_app):
    admin, page = register_p12(seller_app, days=40, started_days_ago=20)
    assert "Expires within 30 days" in page.text
    assert "register its successor before then" in admin.get("/").text
    # A successor valid for longer ends the warning.
    _admin, page = register_p12(seller_app, days=365, started_days_ago=1)
    assert "register its successor before then" not in page.text


def test_the_demo_registers_its_own_certificate(app):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["demo", "seed", "--invoices", "3"]).exit_code == 0
    assert runner.invoke(args=["demo", "seed", "--invoices", "2"]).exit_code == 0
    with app.app_context():
        [row] = db.session.scalars(db.select(SigningCertificate)).all()
        assert row.source == "demo" and row.can_sign
        for invoice in db.session.scalars(db.select(Invoice)):
            assert verify_xml(invoice.xml).certificate == row.der


def test_every_certificate_message_has_a_vietnamese_translation():
    import re

    from babel.messages.pofile import read_po

    root = Path(__file__).parent.parent
    with open(root / "translations" / "parts" / "certificates.po", "rb") as handle:
        ids = {m.id for m in read_po(handle) if m.id}
    source = (root / "portal" / "einvoice" / "certificates.py").read_text()
    raised = re.findall(r'CertificateError\(\s*"([^"]+)"(?:\s*"([^"]+)")?', source)
    assert len(raised) >= 6
    for parts in raised:
        assert "".join(parts) in ids, parts
