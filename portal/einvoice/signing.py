"""Sign and verify invoice XML the way Vietnamese producers do, with libxmlsec1.

The signature sits in HDon/DSCKS/NBan as `<Signature xmlns="...xmldsig#">` (a default
namespace), canonicalised with C14N 2001-03-15, with one reference to `#<DLHDon Id>` and
one to an Object holding the SigningTime. signxml rejects such files (docs/stack.md, "XML signatures"), so
libxmlsec1 does the cryptography here and lxml only builds and reads the tree.

Errors are `SignatureError`: `message` is an English template (a gettext msgid), `params`
fill it, `kind` says what went wrong ("missing", "modified", "certificate", "expired",
"unsupported"); `str(error)` is the filled text.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from portal.einvoice.document import TAX_CODE
from portal.einvoice.xml import InvoiceXmlError, find_invoice, safe_parse

DSIG = "http://www.w3.org/2000/09/xmldsig#"
NS = {"ds": DSIG}
C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
ALGORITHMS = {
    "sha1": (
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        "http://www.w3.org/2000/09/xmldsig#sha1",
    ),
    "sha256": (
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmlenc#sha256",
    ),
}
SIGNATURE_METHODS = {method: name for name, (method, _digest) in ALGORITHMS.items()}
# Vietnam keeps one offset all year; SigningTime is written in it without an offset.
VN = timezone(timedelta(hours=7), "ICT")
MST = re.compile(rf"MST:\s*({TAX_CODE})")


class SignatureError(ValueError):
    """The signature is missing, broken, or not the seller's; `kind` says which."""

    def __init__(self, message: str, params: dict | None = None, kind: str = "invalid"):
        self.message = message
        self.params = dict(params or {})
        self.kind = kind
        super().__init__(message % self.params if self.params else message)


@dataclass
class SignerInfo:
    """Who signed an invoice, when, and with which certificate."""

    tax_code: str
    subject: str
    signing_time: datetime | None
    not_before: datetime
    not_after: datetime
    digest: str  # "sha1" or "sha256"
    certificate: bytes = b""  # the embedded certificate, DER: whether it is registered


# --- certificates -----------------------------------------------------------------


def make_certificate(
    tax_code: str, name: str, days: int = 3650, not_before: datetime | None = None
) -> tuple[bytes, bytes]:
    """Make a self-signed RSA key and certificate whose subject says `UID=MST:<tax_code>`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.USER_ID, f"MST:{tax_code}"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    start = (not_before or datetime.now(UTC)).astimezone(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def subject_text(cert: x509.Certificate) -> str:
    """Return the subject as Vietnamese CAs print it, e.g. "UID=MST:0312345678,CN=..."."""
    return cert.subject.rfc4514_string({NameOID.USER_ID: "UID"})


def tax_code_of(cert: x509.Certificate) -> str:
    """Return the tax code from the certificate subject's `MST:` text, or ""."""
    for attribute in cert.subject:
        match = MST.search(str(attribute.value))
        if match:
            return match.group(1)
    match = MST.search(subject_text(cert))
    return match.group(1) if match else ""


# --- signing ------------------------------------------------------------------------


def _local(el) -> str:
    return el.tag.rsplit("}", 1)[-1] if isinstance(el.tag, str) else ""


def _child(parent, name: str):
    for child in parent:
        if _local(child) == name:
            return child
    return None


def _ds(parent, name: str, **attrs):
    return etree.SubElement(parent, f"{{{DSIG}}}{name}", **attrs)


def _format_time(value: datetime | None) -> str:
    value = value or datetime.now(UTC)
    if value.tzinfo is not None:
        value = value.astimezone(VN)
    return value.replace(tzinfo=None, microsecond=0).isoformat()


def sign_xml(
    xml: bytes,
    key_pem: bytes,
    cert_pem: bytes,
    digest: str = "sha256",
    signing_time: datetime | None = None,
) -> bytes:
    """Sign HDon/DLHDon into HDon/DSCKS/NBan and return the final bytes (never re-serialise)."""
    if digest not in ALGORITHMS:
        raise SignatureError(
            "Digest %(value)s is not supported.", {"value": digest}, kind="unsupported"
        )
    signature_method, digest_method = ALGORITHMS[digest]
    try:
        tree = safe_parse(xml)
        hdon = find_invoice(tree.getroot())
    except InvoiceXmlError as exc:
        raise SignatureError(str(exc), kind="invalid") from exc
    data = _child(hdon, "DLHDon")
    if data is None or not data.get("Id"):
        raise SignatureError("DLHDon with an Id attribute is missing.", kind="invalid")
    data_id = data.get("Id")

    dscks = _child(hdon, "DSCKS")
    if dscks is None:
        dscks = etree.SubElement(hdon, "DSCKS")
    holder = _child(dscks, "NBan")
    if holder is None:
        holder = etree.SubElement(dscks, "NBan")
        dscks.insert(0, holder)
    if _child(holder, "Signature") is not None:
        raise SignatureError("The invoice is already signed by the seller.", kind="invalid")

    signature_id = f"{data_id}-seller"
    time_id = f"{data_id}-signing-time"
    signature = etree.SubElement(holder, f"{{{DSIG}}}Signature", nsmap={None: DSIG})
    signature.set("Id", signature_id)
    signed_info = _ds(signature, "SignedInfo")
    _ds(signed_info, "CanonicalizationMethod", Algorithm=C14N)
    _ds(signed_info, "SignatureMethod", Algorithm=signature_method)
    for uri in (data_id, time_id):
        reference = _ds(signed_info, "Reference", URI=f"#{uri}")
        _ds(reference, "DigestMethod", Algorithm=digest_method)
        _ds(reference, "DigestValue")
    _ds(signature, "SignatureValue")
    x509_data = _ds(_ds(signature, "KeyInfo"), "X509Data")
    _ds(x509_data, "X509SubjectName")
    _ds(x509_data, "X509Certificate")
    obj = _ds(signature, "Object", Id=time_id)
    prop = _ds(_ds(obj, "SignatureProperties"), "SignatureProperty", Target=f"#{signature_id}")
    _ds(prop, "SigningTime").text = _format_time(signing_time)

    xmlsec.tree.add_ids(tree.getroot(), ["Id"])
    ctx = xmlsec.SignatureContext()
    try:
        key = xmlsec.Key.from_memory(key_pem, xmlsec.constants.KeyDataFormatPem)
        key.load_cert_from_memory(cert_pem, xmlsec.constants.KeyDataFormatCertPem)
        ctx.key = key
        ctx.sign(signature)
    except xmlsec.Error as exc:
        raise SignatureError(
            "Signing failed: %(detail)s", {"detail": str(exc)}, kind="invalid"
        ) from exc
    # libxmlsec1 escapes non-ASCII in the subject (C\C3\B4ng); Vietnamese producers write
    # it readable. KeyInfo is outside every Reference, so this does not touch signed data.
    subject = signature.find("ds:KeyInfo/ds:X509Data/ds:X509SubjectName", NS)
    if subject is not None:
        subject.text = subject_text(x509.load_pem_x509_certificate(cert_pem))
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(
        tree.getroot(), encoding="UTF-8"
    )


# --- verification -------------------------------------------------------------------


def _seller_signature(hdon):
    dscks = _child(hdon, "DSCKS")
    holder = _child(dscks, "NBan") if dscks is not None else None
    if holder is None:
        return None
    for el in holder:
        if el.tag == f"{{{DSIG}}}Signature":
            return el
    return None


def _parse_signing_time(signature) -> datetime | None:
    for el in signature.iter(f"{{{DSIG}}}SigningTime", "SigningTime"):
        raw = (el.text or "").strip()
        if not raw:
            continue
        try:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise SignatureError(
                "SigningTime %(value)s is not a date and time.",
                {"value": raw[:40]},
                kind="invalid",
            ) from None
        return value if value.tzinfo else value.replace(tzinfo=VN)
    return None


def _issue_date(data) -> date | None:
    tt = _child(data, "TTChung")
    nlap = _child(tt, "NLap") if tt is not None else None
    try:
        return date.fromisoformat((nlap.text or "").strip()[:10]) if nlap is not None else None
    except ValueError:
        return None


def verify_xml(xml: bytes) -> SignerInfo:
    """Check the seller's signature against its embedded certificate; say who signed and when."""
    try:
        tree = safe_parse(xml)
        hdon = find_invoice(tree.getroot())
    except InvoiceXmlError as exc:
        raise SignatureError(str(exc), kind="invalid") from exc
    data = _child(hdon, "DLHDon")
    data_id = data.get("Id") if data is not None else None
    if not data_id:
        raise SignatureError("DLHDon with an Id attribute is missing.", kind="invalid")
    signature = _seller_signature(hdon)
    if signature is None:
        raise SignatureError("DSCKS/NBan: the seller's signature is missing.", kind="missing")

    # The signature must cover the invoice data itself, exactly one element must carry
    # that Id (no wrapping tricks), and references stay inside the document.
    references = [ref.get("URI") for ref in signature.iterfind("ds:SignedInfo/ds:Reference", NS)]
    if f"#{data_id}" not in references:
        raise SignatureError(
            "Signature: it does not cover DLHDon (no Reference to #%(value)s).",
            {"value": data_id},
            kind="invalid",
        )
    if any(uri is None or (uri and not uri.startswith("#")) for uri in references):
        raise SignatureError("Signature: a Reference points outside the document.", kind="invalid")
    if len(tree.getroot().xpath("//*[@Id=$id]", id=data_id)) != 1:
        raise SignatureError(
            "Signature: more than one element has Id %(value)s.", {"value": data_id}, kind="invalid"
        )
    method = signature.find("ds:SignedInfo/ds:SignatureMethod", NS)
    digest = SIGNATURE_METHODS.get(method.get("Algorithm") if method is not None else "")
    if digest is None:
        raise SignatureError(
            "SignatureMethod %(value)s is not supported (RSA-SHA1 or RSA-SHA256).",
            {"value": method.get("Algorithm") if method is not None else ""},
            kind="unsupported",
        )

    cert_el = signature.find("ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS)
    try:
        der = base64.b64decode("".join((cert_el.text or "").split()), validate=True)
        cert = x509.load_der_x509_certificate(der)
    except (AttributeError, ValueError) as exc:
        raise SignatureError(
            "X509Certificate: the signer's certificate is missing or unreadable.",
            kind="certificate",
        ) from exc

    xmlsec.tree.add_ids(tree.getroot(), ["Id"])
    ctx = xmlsec.SignatureContext()
    try:
        ctx.key = xmlsec.Key.from_memory(der, xmlsec.constants.KeyDataFormatCertDer)
    except xmlsec.Error as exc:
        raise SignatureError(
            "X509Certificate: the signer's certificate is missing or unreadable.",
            kind="certificate",
        ) from exc
    try:
        ctx.verify(signature)
    except xmlsec.Error as exc:
        raise SignatureError(
            "Signature: the invoice was modified after signing (the signature no longer "
            "matches its content).",
            kind="modified",
        ) from exc

    signing_time = _parse_signing_time(signature)
    # Validity counts at the signing time, never today: old invoices stay valid after
    # their certificate expires. Without a SigningTime, the issue date stands in.
    at = signing_time
    if at is None:
        issued = _issue_date(data)
        at = datetime.combine(issued, time(12), VN) if issued else datetime.now(UTC)
    not_before = cert.not_valid_before_utc
    not_after = cert.not_valid_after_utc
    if not not_before <= at <= not_after:
        raise SignatureError(
            "X509Certificate: the certificate was not valid at the signing time %(value)s "
            "(valid %(start)s to %(end)s).",
            {
                "value": at.astimezone(VN).strftime("%d/%m/%Y %H:%M"),
                "start": not_before.astimezone(VN).strftime("%d/%m/%Y"),
                "end": not_after.astimezone(VN).strftime("%d/%m/%Y"),
            },
            kind="expired",
        )
    return SignerInfo(
        tax_code=tax_code_of(cert),
        subject=subject_text(cert),
        signing_time=signing_time,
        not_before=not_before,
        not_after=not_after,
        digest=digest,
        certificate=der,
    )
