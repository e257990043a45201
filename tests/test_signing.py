"""XML signatures made and checked the way Vietnamese producers and the tax authority do."""

import base64
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from lxml import etree

from portal.einvoice.signing import (
    DSIG,
    VN,
    SignatureError,
    make_certificate,
    sign_xml,
    verify_xml,
)
from portal.einvoice.xml import build_xml
from tests.data.make_samples import SIGNED_AT, base_document

DATA = Path(__file__).parent / "data"
NS = {"ds": DSIG}
KEY = (DATA / "seller_key.pem").read_bytes()
CERT = (DATA / "seller_cert.pem").read_bytes()


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


def test_make_certificate_puts_the_tax_code_in_the_subject():
    key, cert_pem = make_certificate("0312345678-001", "Chi nhánh Hà Nội", days=30)
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert "MST:0312345678-001" in cert.subject.rfc4514_string()
    assert (
        cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "Chi nhánh Hà Nội"
    )
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30
    assert key.startswith(b"-----BEGIN PRIVATE KEY-----")


@pytest.mark.parametrize(
    ("name", "digest"), [("sha256_v210.xml", "sha256"), ("sha1_v200.xml", "sha1")]
)
def test_verify_reports_the_signer_of_a_valid_sample(name, digest):
    info = verify_xml(sample(name))
    assert info.tax_code == "0312345678"
    assert "MST:0312345678" in info.subject
    assert info.digest == digest
    assert info.signing_time == SIGNED_AT
    assert info.not_before <= SIGNED_AT <= info.not_after


@pytest.mark.parametrize(
    ("digest", "method", "digest_method"),
    [
        (
            "sha1",
            "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
            "http://www.w3.org/2000/09/xmldsig#sha1",
        ),
        (
            "sha256",
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            "http://www.w3.org/2001/04/xmlenc#sha256",
        ),
    ],
)
def test_signature_has_the_shape_real_producers_write(digest, method, digest_method):
    signed = sign_xml(build_xml(base_document(1)), KEY, CERT, digest=digest, signing_time=SIGNED_AT)
    assert b'<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"' in signed
    assert b"ds:" not in signed
    root = etree.fromstring(signed)
    signature = root.find("DSCKS/NBan/ds:Signature", NS)
    assert signature is not None and signature.get("Id")
    info = signature.find("ds:SignedInfo", NS)
    assert info.find("ds:CanonicalizationMethod", NS).get("Algorithm") == (
        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
    )
    assert info.find("ds:SignatureMethod", NS).get("Algorithm") == method
    refs = info.findall("ds:Reference", NS)
    assert [r.get("URI") for r in refs] == [
        "#data-1",
        "#" + signature.find("ds:Object", NS).get("Id"),
    ]
    assert {r.find("ds:DigestMethod", NS).get("Algorithm") for r in refs} == {digest_method}
    assert signature.findtext(
        "ds:Object/ds:SignatureProperties/ds:SignatureProperty/ds:SigningTime", namespaces=NS
    ) == ("2026-01-05T09:30:00")
    assert "MST:0312345678" in signature.findtext(
        "ds:KeyInfo/ds:X509Data/ds:X509SubjectName", namespaces=NS
    )
    assert signature.findtext("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=NS).strip()


def test_reference_digest_is_the_c14n_of_dlhdon():
    """Check the digest independently of libxmlsec1: SHA-256 of DLHDon in C14N 1.0."""
    signed = sample("sha256_v210.xml")
    root = etree.fromstring(signed)
    data = etree.tostring(root.find("DLHDon"), method="c14n")
    stated = root.findtext(
        "DSCKS/NBan/ds:Signature/ds:SignedInfo/ds:Reference/ds:DigestValue", namespaces=NS
    )
    assert base64.b64encode(hashlib.sha256(data).digest()).decode() == stated


def test_signing_keeps_the_unsigned_bytes_of_dlhdon():
    unsigned = build_xml(base_document(1))
    signed = sign_xml(unsigned, KEY, CERT, signing_time=SIGNED_AT)
    start, end = unsigned.index(b"<DLHDon"), unsigned.index(b"</DLHDon>")
    assert unsigned[start:end] in signed
    assert signed == sample("sha256_v210.xml")  # deterministic: the sample regenerates identically


@pytest.mark.parametrize("name", ["tampered.xml", "reindented.xml"])
def test_a_file_changed_after_signing_is_modified(name):
    with pytest.raises(SignatureError) as caught:
        verify_xml(sample(name))
    assert caught.value.kind == "modified"
    assert "modified after signing" in str(caught.value)


def test_changing_the_signing_time_breaks_the_signature():
    signed = sample("sha256_v210.xml").replace(b"2026-01-05T09:30:00", b"2026-01-04T09:30:00")
    with pytest.raises(SignatureError) as caught:
        verify_xml(signed)
    assert caught.value.kind == "modified"


def test_a_signature_that_does_not_cover_dlhdon_is_refused():
    signed = sample("sha256_v210.xml").replace(b'DLHDon Id="data-1"', b'DLHDon Id="data-9"')
    with pytest.raises(SignatureError, match="DLHDon"):
        verify_xml(signed)


def test_an_unsigned_invoice_has_no_signature():
    with pytest.raises(SignatureError) as caught:
        verify_xml(build_xml(base_document(1)))
    assert caught.value.kind == "missing"
    assert "DSCKS/NBan" in str(caught.value)


def test_validity_counts_at_the_signing_time_not_today():
    # A certificate that expired long ago still vouches for what it signed in its time.
    key, cert = make_certificate(
        "0312345678", "Cũ", days=30, not_before=datetime(2024, 1, 1, tzinfo=UTC)
    )
    old = sign_xml(
        build_xml(base_document(1)), key, cert, signing_time=datetime(2024, 1, 15, 10, 0, tzinfo=VN)
    )
    assert verify_xml(old).not_after < datetime.now(UTC)
    late = sign_xml(
        build_xml(base_document(1)), key, cert, signing_time=datetime(2024, 3, 1, 10, 0, tzinfo=VN)
    )
    with pytest.raises(SignatureError) as caught:
        verify_xml(late)
    assert caught.value.kind == "expired"
    assert "01/03/2024" in str(caught.value)


def test_naive_signing_time_is_vietnam_time():
    signed = sign_xml(
        build_xml(base_document(1)), KEY, CERT, signing_time=datetime(2026, 2, 1, 8, 0)
    )
    assert b"<SigningTime>2026-02-01T08:00:00</SigningTime>" in signed
    assert verify_xml(signed).signing_time == datetime(2026, 2, 1, 1, 0, tzinfo=UTC)


def test_signing_twice_is_refused():
    with pytest.raises(SignatureError, match="already signed"):
        sign_xml(sample("sha256_v210.xml"), KEY, CERT)


def test_verify_refuses_a_bomb_without_expanding_it():
    with pytest.raises(SignatureError, match="DTD"):
        verify_xml(sample("bomb.xml"))


def _third_party_signed(digest: str = "sha1") -> bytes:
    """Sign with libxmlsec1 directly, in another producer's style: enveloped transform,
    an un-namespaced SigningTime, Object Id "SigningTime", a document indented before signing."""
    import xmlsec

    method, digest_method = {
        "sha1": (xmlsec.constants.TransformRsaSha1, xmlsec.constants.TransformSha1),
        "sha256": (xmlsec.constants.TransformRsaSha256, xmlsec.constants.TransformSha256),
    }[digest]
    root = etree.fromstring(build_xml(base_document(1)))
    etree.indent(root)  # indented BEFORE signing: whitespace is part of what is signed
    holder = root.find("DSCKS/NBan")
    signature = xmlsec.template.create(
        root, xmlsec.constants.TransformInclC14N, method, name="seller", ns=None
    )
    holder.append(signature)
    ref = xmlsec.template.add_reference(signature, digest_method, uri="#data-1")
    xmlsec.template.add_transform(ref, xmlsec.constants.TransformEnveloped)
    xmlsec.template.add_reference(signature, digest_method, uri="#SigningTime")
    x509_data = xmlsec.template.x509_data_add_certificate(
        xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    ).getparent()
    xmlsec.template.x509_data_add_subject_name(x509_data)
    obj = etree.SubElement(signature, f"{{{DSIG}}}Object", Id="SigningTime")
    props = etree.SubElement(obj, "SignatureProperties")  # no namespace, as some write it
    prop = etree.SubElement(props, "SignatureProperty", Target="signatureProperties")
    etree.SubElement(prop, "SigningTime").text = "2026-01-05T09:30:00"
    xmlsec.tree.add_ids(root, ["Id"])
    ctx = xmlsec.SignatureContext()
    key = xmlsec.Key.from_memory(KEY, xmlsec.constants.KeyDataFormatPem)
    key.load_cert_from_memory(CERT, xmlsec.constants.KeyDataFormatCertPem)
    ctx.key = key
    ctx.sign(signature)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@pytest.mark.parametrize("digest", ["sha1", "sha256"])
def test_verify_accepts_another_producers_style(digest):
    signed = _third_party_signed(digest)
    assert b'<Signature xmlns="http://www.w3.org/2000/09/xmldsig#" Id="seller">' in signed
    info = verify_xml(signed)
    assert info.digest == digest
    assert info.tax_code == "0312345678"
    assert info.signing_time == SIGNED_AT
    # Removing the indentation it was signed with is a change too.
    flattened = etree.tostring(
        etree.fromstring(signed, etree.XMLParser(remove_blank_text=True)),
        xml_declaration=True,
        encoding="UTF-8",
    )
    with pytest.raises(SignatureError, match="modified after signing"):
        verify_xml(flattened)
