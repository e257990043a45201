"""Read the seller's certificates: a PKCS#12 file with its key, or a certificate alone.

Errors are `CertificateError`: `message` is an English template (a gettext msgid) and
`params` fill it, like the parser's and the verifier's errors.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from portal.einvoice.signing import tax_code_of

MAX_FILE_BYTES = 64 * 1024  # a certificate is 1-2 KB; a PKCS#12 with its chain a few KB


class CertificateError(ValueError):
    """The file is not a usable certificate; `message` says why."""

    def __init__(self, message: str, params: dict | None = None):
        self.message = message
        self.params = dict(params or {})
        super().__init__(message % self.params if self.params else message)


@dataclass
class CertificateInfo:
    """What the seller sees of a certificate, and its DER bytes."""

    der: bytes
    fingerprint: str  # SHA-256 of the DER bytes, lower-case hex
    tax_code: str  # from the subject's `MST:`, "" if none
    subject: str
    issuer: str
    serial: str  # upper-case hex, as Vietnamese CAs print it
    not_before: datetime
    not_after: datetime

    @property
    def pem(self) -> bytes:
        return pem_of(self.der)


def _name_text(name: x509.Name) -> str:
    return name.rfc4514_string({NameOID.USER_ID: "UID"})


def pem_of(der: bytes) -> bytes:
    """Return a certificate's PEM form from its DER bytes."""
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def fingerprint(der: bytes) -> str:
    """Return the SHA-256 of a certificate's DER bytes, which identifies it."""
    return hashlib.sha256(der).hexdigest()


def describe(cert: x509.Certificate) -> CertificateInfo:
    """Return the subject, issuer, serial, validity and `MST:` of a certificate."""
    der = cert.public_bytes(serialization.Encoding.DER)
    return CertificateInfo(
        der=der,
        fingerprint=fingerprint(der),
        tax_code=tax_code_of(cert),
        subject=_name_text(cert.subject),
        issuer=_name_text(cert.issuer),
        serial=f"{cert.serial_number:X}",
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def _check_size(data: bytes) -> None:
    if len(data) > MAX_FILE_BYTES:
        raise CertificateError(
            "The file is larger than %(limit)s KB.", {"limit": MAX_FILE_BYTES // 1024}
        )


def read_certificate(data: bytes) -> CertificateInfo:
    """Read a certificate alone, PEM or DER."""
    _check_size(data)
    try:
        if b"-----BEGIN" in data:
            cert = x509.load_pem_x509_certificate(data)
        else:
            cert = x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise CertificateError("The file is not a certificate (PEM or DER).") from exc
    return describe(cert)


def read_pkcs12(data: bytes, password: str) -> tuple[bytes, CertificateInfo]:
    """Open a PKCS#12 file; return its RSA key (PKCS#8 PEM, unencrypted) and its certificate."""
    _check_size(data)
    key = cert = None
    # An empty password is tried both ways: producers write either no password or "".
    candidates = [password.encode()] if password else [b"", None]
    for candidate in candidates:
        try:
            key, cert, _chain = pkcs12.load_key_and_certificates(data, candidate)
            break
        except (ValueError, TypeError):
            continue
    else:
        raise CertificateError(
            "The PKCS#12 file cannot be opened: the password is wrong or it is not a "
            "PKCS#12 (.p12, .pfx) file."
        )
    if key is None:
        raise CertificateError("The PKCS#12 file holds no private key.")
    if cert is None:
        raise CertificateError("The PKCS#12 file holds no certificate.")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CertificateError("The key is not an RSA key; invoices are signed with RSA.")
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(
        serialization.Encoding.DER, public
    ) != cert.public_key().public_bytes(serialization.Encoding.DER, public):
        raise CertificateError("The key in the PKCS#12 file does not belong to its certificate.")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, describe(cert)
