"""Register the seller's signing certificates (Chữ ký số) and pick the one that signs now.

Only registered certificates count: an imported file signed by another one waits for an
admin (portal/importing), and issuing signs with a registered certificate that has its
key and is valid today (docs/decisions.md, "Signatures").
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app
from flask_babel import gettext as _

from portal import audit
from portal.database import write
from portal.einvoice.certificates import (
    CertificateError,
    CertificateInfo,
    fingerprint,
    pem_of,
    read_certificate,
    read_pkcs12,
)
from portal.extensions import db
from portal.i18n import format_date
from portal.models import Seller, SigningCertificate
from portal.types import utcnow

EXPIRY_WARNING_DAYS = 30


class CertificateRefused(ValueError):
    """The certificate cannot be registered; the message is for the seller (translated)."""


class NoSigner(LookupError):
    """No registered certificate can sign now; the message (English) says why."""


@dataclass
class SigningKey:
    key_pem: bytes
    cert_pem: bytes


# --- the key at rest ----------------------------------------------------------------


def _fernet() -> Fernet:
    secret = current_app.secret_key
    secret = secret if isinstance(secret, bytes) else secret.encode()
    digest = hashlib.sha256(b"hoadon-portal signing key\x00" + secret).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt_key(key_pem: bytes) -> str:
    """Encrypt a private key with a key derived from SECRET_KEY."""
    return _fernet().encrypt(key_pem).decode()


def decrypt_key(token: str) -> bytes | None:
    """Return the private key, or None when SECRET_KEY changed since it was stored."""
    try:
        return _fernet().decrypt(token.encode())
    except InvalidToken:
        return None


# --- reading the registry ------------------------------------------------------------


def certificates() -> list[SigningCertificate]:
    """Every registered certificate, newest first."""
    return list(
        db.session.scalars(db.select(SigningCertificate).order_by(SigningCertificate.id.desc()))
    )


def registered(der: bytes) -> SigningCertificate | None:
    """The registered certificate with exactly these DER bytes, if any."""
    if not der:
        return None
    return db.session.scalar(db.select(SigningCertificate).filter_by(fingerprint=fingerprint(der)))


def validity(not_before: datetime, not_after: datetime, now: datetime | None = None) -> str:
    """Say where today stands: "not_yet_valid", "valid", "expiring" (30 days left) or "expired"."""
    now = now or utcnow()
    if now < not_before:
        return "not_yet_valid"
    if now > not_after:
        return "expired"
    if now > not_after - timedelta(days=EXPIRY_WARNING_DAYS):
        return "expiring"
    return "valid"


def signing_key(tax_code: str, now: datetime | None = None) -> SigningKey:
    """Return the key and certificate that sign for this tax code now, or raise NoSigner.

    The newest registered certificate with a key that is valid now signs; an expired (or
    not yet valid) one never does.
    """
    now = now or utcnow()
    rows = [row for row in certificates() if row.can_sign and row.tax_code == tax_code]
    if not rows:
        raise NoSigner(
            f"no signing certificate is registered for tax code {tax_code}: upload the seller's "
            "PKCS#12 file in Settings, Digital signature (Chữ ký số)"
        )
    usable = [row for row in rows if row.not_before <= now <= row.not_after]
    if not usable:
        newest = max(rows, key=lambda row: row.not_after)
        if newest.not_before > now:
            raise NoSigner(
                f"the signing certificate (serial {newest.serial}) is valid only from "
                f"{newest.not_before:%Y-%m-%d}"
            )
        raise NoSigner(
            f"the signing certificate (serial {newest.serial}) expired on "
            f"{newest.not_after:%Y-%m-%d}: an expired certificate cannot sign; register a new "
            "PKCS#12 file in Settings, Digital signature (Chữ ký số)"
        )
    row = usable[0]
    key_pem = decrypt_key(row.key_encrypted)
    if key_pem is None:
        raise NoSigner(
            f"the key of the signing certificate (serial {row.serial}) can no longer be read "
            "(SECRET_KEY changed): upload the PKCS#12 file again"
        )
    return SigningKey(key_pem, pem_of(row.der))


def expiry_warning(now: datetime | None = None) -> str:
    """A sentence for admins when the certificate that signs expires within 30 days or has expired.

    "" when all is well, or when no certificate with a key is registered (a seller who only
    imports needs none).
    """
    now = now or utcnow()
    seller = db.session.scalar(db.select(Seller).order_by(Seller.id).limit(1))
    if seller is None:
        return ""
    rows = [r for r in certificates() if r.can_sign and r.tax_code == seller.tax_code]
    if not rows:
        return ""
    latest = max(rows, key=lambda row: row.not_after)
    state = validity(latest.not_before, latest.not_after, now)
    if state == "expired":
        return _(
            "The signing certificate expired on %(date)s: invoices cannot be issued until a "
            "new one is registered.",
            date=format_date(latest.not_after),
        )
    if state == "expiring":
        return _(
            "The signing certificate expires on %(date)s: register its successor before then.",
            date=format_date(latest.not_after),
        )
    return ""


# --- registering --------------------------------------------------------------------


def _error(exc: CertificateError) -> str:
    return _(exc.message, **exc.params) if exc.params else _(exc.message)


def register(
    info: CertificateInfo, key_pem: bytes | None, source: str, user_id: int | None = None
) -> SigningCertificate:
    """Register a certificate (with its key, if given) for the seller; joins the caller's write.

    The certificate must carry the seller's tax code in its `MST:`. Registering one that is
    already registered only adds its key when it had none.
    """
    with write():
        seller = db.session.scalar(db.select(Seller).order_by(Seller.id).limit(1))
        if seller is None:
            raise CertificateRefused(
                _("Create the company profile first: a certificate is registered for its tax code.")
            )
        if not info.tax_code:
            raise CertificateRefused(
                _("The certificate's subject carries no tax code (MST:), so it is not a seller's.")
            )
        if info.tax_code != seller.tax_code:
            raise CertificateRefused(
                _(
                    "The certificate belongs to tax code %(found)s, not to the seller "
                    "(%(expected)s).",
                    found=info.tax_code,
                    expected=seller.tax_code,
                )
            )
        row = db.session.scalar(
            db.select(SigningCertificate).filter_by(fingerprint=info.fingerprint)
        )
        if row is not None:
            if key_pem and not row.key_encrypted:
                row.key_encrypted = encrypt_key(key_pem)
                audit.record("certificate.registered", target=row,
                             details={"source": source, "key_added": True})  # fmt: skip
                return row
            raise CertificateRefused(_("This certificate is registered already."))
        row = SigningCertificate(
            fingerprint=info.fingerprint, der=info.der, tax_code=info.tax_code,
            subject=info.subject, issuer=info.issuer, serial=info.serial,
            not_before=info.not_before, not_after=info.not_after,
            key_encrypted=encrypt_key(key_pem) if key_pem else "",
            source=source, created_by_id=user_id,
        )  # fmt: skip
        db.session.add(row)
        db.session.flush()
        action = "certificate.approved" if source == "approved" else "certificate.registered"
        audit.record(action, target=row, details={"source": source, "subject": info.subject,
                                                  "not_after": info.not_after})  # fmt: skip
    return row


def register_pkcs12(data: bytes, password: str, user_id: int | None) -> SigningCertificate:
    """Register a PKCS#12 file: its certificate, and its key encrypted at rest."""
    try:
        key_pem, info = read_pkcs12(data, password)
    except CertificateError as exc:
        raise CertificateRefused(_error(exc)) from exc
    return register(info, key_pem, "p12", user_id)


def register_certificate(data: bytes, user_id: int | None) -> SigningCertificate:
    """Register a certificate alone (PEM or DER), for invoices other software signs."""
    try:
        info = read_certificate(data)
    except CertificateError as exc:
        raise CertificateRefused(_error(exc)) from exc
    return register(info, None, "certificate", user_id)


def remove(certificate_id: int) -> SigningCertificate | None:
    """Remove a registered certificate and its key: its signatures no longer count.

    Invoices already stored stay as they are; later imports signed with it wait for
    approval, and if it was the one that signed, issuing stops until another is registered.
    """
    with write():
        row = db.session.get(SigningCertificate, certificate_id)
        if row is not None:
            audit.record("certificate.removed", target=row, details={"serial": row.serial})
            db.session.delete(row)
    return row


def ensure_registered(
    info: CertificateInfo, key_pem: bytes | None, source: str, user_id: int | None = None
) -> SigningCertificate:
    """Register a certificate unless it is already (then add its key if it had none)."""
    with write():
        row = db.session.scalar(
            db.select(SigningCertificate).filter_by(fingerprint=info.fingerprint)
        )
        if row is None:
            return register(info, key_pem, source, user_id)
        if key_pem and not row.key_encrypted:
            row.key_encrypted = encrypt_key(key_pem)
            audit.record("certificate.registered", target=row,
                         details={"source": source, "key_added": True})  # fmt: skip
    return row
