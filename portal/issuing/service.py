"""Number, total, word, build, sign and store an invoice; numbers never skip or repeat."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import Flask, current_app
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from portal.certificates import service as certificates
from portal.database import after_commit, write
from portal.einvoice.certificates import CertificateError, read_certificate
from portal.einvoice.document import Document, Party
from portal.einvoice.signing import make_certificate, sign_xml
from portal.einvoice.totals import apply_totals
from portal.einvoice.words import amount_in_words
from portal.einvoice.xml import build_xml
from portal.extensions import db
from portal.importing.service import new_lookup_code, store_document
from portal.models import Invoice, InvoiceSeries, Seller


class IssueError(ValueError):
    """The invoice cannot be issued (no seller profile, unknown series...)."""


@dataclass
class Signer:
    key_pem: bytes
    cert_pem: bytes


def _signing_paths(app: Flask | None = None) -> tuple[Path, Path]:
    app = app or current_app
    folder = Path(app.instance_path) / "signing"
    key = app.config.get("SIGNING_KEY_PATH") or folder / "key.pem"
    cert = app.config.get("SIGNING_CERT_PATH") or folder / "cert.pem"
    return Path(key), Path(cert)


def load_signer() -> Signer:
    """Return the registered certificate that signs now, with its key (docs/decisions.md).

    Refused with the reason when none is registered, or the one registered has expired.
    """
    seller = db.session.scalar(db.select(Seller).order_by(Seller.id).limit(1))
    if seller is None:
        raise IssueError("no seller profile")
    try:
        found = certificates.signing_key(seller.tax_code)
    except certificates.NoSigner as error:
        raise IssueError(str(error)) from error
    return Signer(found.key_pem, found.cert_pem)


def ensure_demo_signer(seller: Seller) -> Signer:
    """Make a self-signed demo certificate for the seller's tax code once, and register it.

    The key files stay in instance/signing (or SIGNING_KEY_PATH and SIGNING_CERT_PATH), so
    that seeding again, or another instance given the same files, signs with the same key.
    """
    key, cert = _signing_paths()
    if not key.exists() or not cert.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        # Demo invoices are dated up to a year back: the certificate must cover them.
        since = datetime(datetime.now(UTC).year - 1, 1, 1, tzinfo=UTC)
        key_pem, cert_pem = make_certificate(seller.tax_code, seller.name, not_before=since)
        key.write_bytes(key_pem)
        key.chmod(0o600)
        cert.write_bytes(cert_pem)
    signer = Signer(key.read_bytes(), cert.read_bytes())
    try:
        info = read_certificate(signer.cert_pem)
    except CertificateError as error:
        raise IssueError(f"{cert}: {error}") from error
    try:
        certificates.ensure_registered(info, signer.key_pem, "demo")
    except certificates.CertificateRefused as error:
        raise IssueError(f"{cert}: {error}") from error
    return signer


def seller_party(seller: Seller) -> Party:
    """Copy the company profile into the document's seller (NBan)."""
    return Party(
        name=seller.name, tax_code=seller.tax_code, address=seller.address, phone=seller.phone,
        email=seller.email, bank_account=seller.bank_account, bank_name=seller.bank_name,
    )  # fmt: skip


def next_number(series: InvoiceSeries | int) -> int:
    """Take the series' next number inside the caller's write transaction (a rollback gives it back)."""
    series_id = series if isinstance(series, int) else series.id
    number = db.session.execute(
        text(
            "UPDATE invoice_series SET next_number = next_number + 1 "
            "WHERE id = :id RETURNING next_number - 1"
        ),
        {"id": series_id},
    ).scalar_one()
    if isinstance(series, InvoiceSeries):
        # The UPDATE bypassed the ORM: reload the row's counter when it is next read.
        db.session.expire(series, ["next_number"])
    return number


def next_free_number(series: InvoiceSeries, seller_tax_code: str) -> int:
    """Take the series' next number that no stored invoice holds, inside the caller's write.

    Imports move the counter past their numbers (importing.service.move_series_past); an
    invoice stored before that rule, or by other means, is stepped over rather than
    answered with a collision. The numbers stepped over are used, so nothing is skipped.
    """
    while True:
        number = next_number(series)
        taken = db.session.scalar(
            db.select(Invoice.id).filter_by(
                seller_tax_code=seller_tax_code, form=series.form, series=series.series,
                number=number,
            )
        )  # fmt: skip
        if taken is None:
            return number


def series_year_problem(series: str, issued_on: date) -> str:
    """Return why the series' year does not fit the issue date, or ""."""
    if series[1:3] != f"{issued_on.year % 100:02d}":
        return f"series {series} is for 20{series[1:3]}, the issue date is in {issued_on.year}"
    return ""


def signing_moment(doc: Document) -> datetime:
    """Sign at noon of the issue date, Vietnam time: deterministic for demo data."""
    zone = ZoneInfo(current_app.config["PORTAL_TIMEZONE"])
    return datetime.combine(doc.issued_on, time(12), zone).astimezone(UTC)


def sign_document(doc: Document, signer: Signer, signing_time: datetime | None = None) -> bytes:
    """Complete the totals and words, then build and sign the XML; the bytes are final."""
    apply_totals(doc)
    doc.amount_in_words = amount_in_words(doc.total_amount, doc.currency)
    return sign_xml(build_xml(doc), signer.key_pem, signer.cert_pem, signing_time=signing_time)


def issue_invoice(doc: Document, series_id: int, signer: Signer, source: str = "api") -> Invoice:
    """Issue one invoice in its own unit of work; its PDF is then rendered in the background."""
    from portal.rendering.service import render_ahead

    try:
        with write():
            series = db.session.get(InvoiceSeries, series_id)
            seller = db.session.scalar(db.select(Seller).limit(1))
            if series is None or not series.active:
                raise IssueError("unknown or inactive series")
            if seller is None:
                raise IssueError("no seller profile")
            doc.form, doc.series = series.form, series.series
            if doc.issued_on is None:
                zone = ZoneInfo(current_app.config["PORTAL_TIMEZONE"])
                doc.issued_on = datetime.now(zone).date()
            problem = series_year_problem(series.series, doc.issued_on)
            if problem:
                raise IssueError(problem)
            doc.number = next_free_number(series, seller.tax_code)
            doc.seller = seller_party(seller)
            doc.lookup_code = doc.lookup_code or new_lookup_code()
            xml = sign_document(doc, signer, datetime.now(UTC))
            invoice = store_document(doc, xml, source)
            after_commit(lambda: render_ahead([invoice.id]))
    except IntegrityError as error:
        # Another writer stored this number after our check (an import on a database that
        # let it through): say so, and the next call takes the next free number.
        raise IssueError(
            f"number {doc.number} of {doc.form}{doc.series} is already taken by another invoice;"
            " send the request again: it takes the next free number"
        ) from error
    return invoice
