"""Verify a seller's XMLDSig signature of one HDon with libxmlsec1, independently of the portal."""

import base64
import re
from datetime import datetime, timedelta, timezone

import xmlsec
from cryptography import x509
from lxml import etree

DS = "http://www.w3.org/2000/09/xmldsig#"
VIETNAM = timezone(timedelta(hours=7))
# A tax code after "MST:" in the certificate's subject: 12 digits, or 10 (with a branch).
MST = re.compile(r"MST:\s*([0-9]{12}|[0-9]{10}(?:-[0-9]{3})?)(?![0-9])")


class BadSignature(Exception):
    """The signature does not hold; `code` is the sandbox's error code."""

    def __init__(self, code: str, text: str):
        super().__init__(text)
        self.code = code
        self.text = text


def _local(element) -> str:
    return element.tag.rsplit("}", 1)[-1] if isinstance(element.tag, str) else ""


def seller_signature(hdon):
    """The Signature under DSCKS/NBan."""
    for child in hdon:
        if _local(child) == "DSCKS":
            for part in child:
                if _local(part) == "NBan":
                    return part.find(f"{{{DS}}}Signature")
    return None


def verify(hdon_xml: bytes) -> str:
    """Check the seller's signature against its certificate; return the certificate's MST."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    root = etree.fromstring(hdon_xml, parser)
    signature = seller_signature(root)
    if signature is None:
        raise BadSignature("20106", "Hóa đơn không có chữ ký số của người bán.")
    cert_text = signature.findtext(f".//{{{DS}}}X509Certificate") or ""
    try:
        der = base64.b64decode("".join(cert_text.split()), validate=True)
        cert = x509.load_der_x509_certificate(der)
    except ValueError as error:
        raise BadSignature("20106", "Không đọc được chứng thư số trong chữ ký.") from error
    xmlsec.tree.add_ids(root, ["Id"])
    context = xmlsec.SignatureContext()
    try:
        context.key = xmlsec.Key.from_memory(der, xmlsec.constants.KeyDataFormatCertDer)
        context.verify(signature)
    except xmlsec.Error as error:
        raise BadSignature(
            "20106", "Chữ ký số không hợp lệ: nội dung hóa đơn đã bị thay đổi sau khi ký."
        ) from error
    found = MST.search(cert.subject.rfc4514_string())
    if found is None:
        raise BadSignature("20107", "Chứng thư số không ghi mã số thuế của người bán.")
    signed_at = _signing_time(signature)
    if signed_at and not cert.not_valid_before_utc <= signed_at <= cert.not_valid_after_utc:
        raise BadSignature("20107", "Chứng thư số không còn hiệu lực tại thời điểm ký.")
    return found.group(1)


def _signing_time(signature) -> datetime | None:
    for element in signature.iter():
        if _local(element) == "SigningTime" and element.text:
            try:
                value = datetime.fromisoformat(element.text.strip())
            except ValueError:
                return None
            # Written in Vietnam's time without an offset by most producers.
            return value if value.tzinfo else value.replace(tzinfo=VIETNAM)
    return None
