"""Store invoice documents and import signed XML files (loose or zipped) from the seller."""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from portal import audit
from portal.certificates import service as certificates
from portal.database import after_commit, write
from portal.einvoice.certificates import read_certificate
from portal.einvoice.document import Document
from portal.einvoice.signing import SignatureError, SignerInfo, verify_xml
from portal.einvoice.totals import check_totals
from portal.einvoice.xml import (
    InvoiceXmlError,
    has_cqt_code,
    parse_tree,
    related_fields,
    safe_parse,
)
from portal.extensions import db
from portal.models import Customer, Invoice, InvoiceLine, PendingImport, Seller, VatSummary
from portal.text import fold, nfc

# Easy to read aloud and to type from a printed invoice: no 0/O, 1/I/L.
LOOKUP_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
LOOKUP_LENGTH = 10
MAX_FILE_BYTES = 5 * 1024 * 1024  # one invoice XML; real ones are a few KB to a few hundred KB
MAX_ZIP_TOTAL_BYTES = 100 * 1024 * 1024  # everything unpacked from one upload
MAX_ZIP_MEMBERS = 2000
RELATED_STATES = {"1": "replaced", "2": "adjusted"}  # TTHDLQuan/TCHDon


@dataclass
class FileResult:
    """What became of one file: the invoice it made, or why it was refused."""

    name: str
    invoice_id: int | None = None
    # Signed by a certificate that is not registered: it waits for an admin's approval.
    pending_id: int | None = None
    signer_subject: str = ""
    label: str = ""  # "1K26TAA" + number, for the link to the invoice
    number: str = ""
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def imported(self) -> bool:
        return self.invoice_id is not None

    @property
    def waiting(self) -> bool:
        return self.pending_id is not None


@dataclass
class ImportReport:
    """The per-file results of one upload, in upload order."""

    results: list[FileResult] = field(default_factory=list)

    @property
    def imported(self) -> list[FileResult]:
        return [r for r in self.results if r.imported]

    @property
    def waiting(self) -> list[FileResult]:
        return [r for r in self.results if r.waiting]

    @property
    def refused(self) -> list[FileResult]:
        return [r for r in self.results if not r.imported and not r.waiting]

    def messages(self) -> list[str]:
        """Return every error as "file: message", for logs and command lines."""
        return [f"{r.name}: {e}" for r in self.results for e in r.errors]


class ImportRefused(Exception):
    """One file cannot be imported; carries every reason found."""

    def __init__(self, reasons: list[str]):
        super().__init__("; ".join(reasons))
        self.reasons = reasons


# --- storing ------------------------------------------------------------------------


def new_lookup_code() -> str:
    """Return a random lookup code no invoice uses yet."""
    while True:
        code = "".join(secrets.choice(LOOKUP_ALPHABET) for _i in range(LOOKUP_LENGTH))
        if not db.session.scalar(db.select(Invoice.id).filter_by(lookup_code=code)):
            return code


def store_document(
    doc: Document, xml: bytes, source: str, warnings: Iterable[str] = (), flush: bool = True
) -> Invoice:
    """Add an Invoice with its lines and rate summaries; flush, leave the commit to the caller.

    Bulk loaders pass flush=False and flush once per batch.
    """
    lookup_code = nfc(doc.lookup_code).strip()
    if (
        not lookup_code
        or len(lookup_code) > 32
        or db.session.scalar(db.select(Invoice.id).filter_by(lookup_code=lookup_code))
    ):
        lookup_code = new_lookup_code()
    customer_id = None
    if doc.buyer.tax_code:
        customer_id = db.session.scalar(
            db.select(Customer.id).filter_by(tax_code=doc.buyer.tax_code).limit(1)
        )
    number_label = f"{doc.number:08d}"
    invoice = Invoice(
        form=doc.form,
        series=doc.series,
        number=doc.number,
        issued_on=doc.issued_on,
        version=doc.version,
        title=nfc(doc.title),
        currency=doc.currency or "VND",
        exchange_rate=doc.exchange_rate,
        payment_method=nfc(doc.payment_method),
        seller_name=nfc(doc.seller.name),
        seller_tax_code=doc.seller.tax_code,
        seller_address=nfc(doc.seller.address),
        seller_phone=doc.seller.phone,
        seller_email=doc.seller.email,
        seller_bank_account=doc.seller.bank_account,
        seller_bank_name=nfc(doc.seller.bank_name),
        customer_id=customer_id,
        buyer_name=nfc(doc.buyer.name),
        buyer_person=nfc(doc.buyer.person),
        buyer_tax_code=doc.buyer.tax_code,
        buyer_address=nfc(doc.buyer.address),
        buyer_email=doc.buyer.email,
        buyer_phone=doc.buyer.phone,
        buyer_code=doc.buyer.code,
        total_before_tax=doc.total_before_tax,
        total_tax=doc.total_tax,
        total_discount=doc.total_discount,
        total_fees=doc.total_fees,
        total_amount=doc.total_amount,
        amount_in_words=nfc(doc.amount_in_words),
        lookup_code=lookup_code,
        state="issued",
        related_info=doc.related_info,
        warnings="\n".join(encode_warning(w) for w in warnings),
        source=source,
        xml=bytes(xml),
        xml_sha256=hashlib.sha256(xml).hexdigest(),
        search_text=fold(
            " ".join([number_label, doc.buyer.name, doc.buyer.tax_code, doc.buyer.email])
        ),
    )
    invoice.lines = [
        InvoiceLine(
            position=line.position,
            kind=line.kind,
            code=line.code,
            name=nfc(line.name),
            unit=nfc(line.unit),
            quantity=line.quantity,
            unit_price=line.unit_price,
            discount_rate=line.discount_rate,
            discount_amount=line.discount_amount,
            amount=line.amount,
            vat_rate=line.vat_rate,
        )
        for line in doc.lines
    ]
    invoice.vat_summaries = [
        VatSummary(rate=s.rate, taxable_amount=s.taxable_amount, tax_amount=s.tax_amount)
        for s in doc.summaries
    ]
    _mark_related(doc, xml)
    move_series_past(doc.form, doc.series, doc.number)
    db.session.add(invoice)
    if flush:
        db.session.flush()
    return invoice


def move_series_past(form: int, series: str, number: int) -> None:
    """Move the series' counter past a number stored by other means (an import, say).

    Done before the invoice's insert, inside the caller's write: on PostgreSQL the series
    row is then locked first by both an import and an issue, so neither can take the
    number the other is storing (docs/decisions.md, "Issuing").
    """
    db.session.execute(
        text(
            "UPDATE invoice_series SET next_number = :after "
            "WHERE form = :form AND series = :series AND next_number < :after"
        ),
        {"after": number + 1, "form": form, "series": series},
    )


def _mark_related(doc: Document, xml: bytes) -> None:
    """Mark the invoice this one replaces or adjusts, when this portal holds it.

    Only when the related invoice's whole identity (form, series, number and date) matches
    and this one is signed by a registered certificate: a forged file must not be able to
    mark a genuine invoice replaced (docs/decisions.md, "Signatures").
    """
    related = related_fields(doc.related_info)
    state = RELATED_STATES.get(related.get("TCHDon", ""))
    form = related.get("KHMSHDCLQuan", "")
    series = related.get("KHHDCLQuan", "").upper()
    number = related.get("SHDCLQuan", "")
    try:
        issued_on = date.fromisoformat(related.get("NLHDCLQuan", "")[:10])
    except ValueError:
        return
    if not state or not form.isdigit() or not series or not number.isdigit():
        return
    try:
        signer = verify_xml(xml)
    except SignatureError:
        return
    if certificates.registered(signer.certificate) is None:
        return
    original = db.session.scalar(
        db.select(Invoice).filter_by(
            seller_tax_code=doc.seller.tax_code,
            form=int(form),
            series=series,
            number=int(number),
            issued_on=issued_on,
        )
    )
    if original is not None and original.state == "issued":
        original.state = state


# --- importing ----------------------------------------------------------------------


# The words for the elements a reason names; the element's own name follows in brackets,
# as the invoice prints "Ký hiệu (Serial)", so that support can find it in the file.
ELEMENT_WORDS = {
    "HDon": _l("Invoice"),
    "DLHDon": _l("Invoice data"),
    "TTChung": _l("General information"),
    "NDHDon": _l("Invoice content"),
    "NBan": _l("Seller"),
    "NMua": _l("Buyer"),
    "Ten": _l("Name"),
    "MST": _l("Tax code"),
    "PBan": _l("Version"),
    "KHMSHDon": _l("Form number"),
    "KHHDon": _l("Series"),
    "SHDon": _l("Invoice number"),
    "NLap": _l("Issue date"),
    "TGia": _l("Exchange rate"),
    "TChat": _l("Line kind"),
    "STT": _l("Line number"),
    "SLuong": _l("Quantity"),
    "DGia": _l("Unit price"),
    "TLCKhau": _l("Discount rate"),
    "STCKhau": _l("Discount amount"),
    "ThTien": _l("Amount"),
    "TThue": _l("Tax amount"),
    "TgTCThue": _l("Total before tax"),
    "TgTThue": _l("Total VAT"),
    "TTCKTMai": _l("Total trade discount"),
    "TPhi": _l("Fee"),
    "TgTTTBSo": _l("Total payment"),
}


def element_words(path: str) -> str:
    """Name an element in the reader's words, its path after: "Amount (HHDVu[1]/ThTien)"."""
    name = path.rsplit("/", 1)[-1].split("[", 1)[0]
    words = ELEMENT_WORDS.get(name)
    return f"{words} ({path})" if words else path


WARNING_WORDS = {
    "differs": _l("%(element)s: %(found)s differs from the computed total %(computed)s."),
    "no_rate_row": _l("Rate summary (LTSuat): there is no row for the rate %(rate)s."),
    "rate_row_without_lines": _l(
        "Rate summary (LTSuat[%(rate)s]/ThTien): %(found)s, but no line has this rate."
    ),
    "bad_rate": _l("Rate summary (LTSuat/TSuat): %(rate)s is not a VAT rate."),
    "series_year": _l(
        "Series (KHHDon): the year %(year)s in %(series)s is not the issue year %(issue_year)s "
        "(NLap)."
    ),
}


def encode_warning(warning: str) -> str:
    """Store a totals warning as its code and values (JSON); the reader's UI words it."""
    code = getattr(warning, "code", None)
    if code is None:
        return str(warning)
    return json.dumps({"code": code, **warning.params}, ensure_ascii=False)


def warning_words(warning: str) -> str:
    """Word a totals warning, fresh or stored, in the reader's language.

    Rows stored before warnings were coded hold the Vietnamese sentence: shown as it is.
    """
    values = dict(getattr(warning, "params", {}), code=getattr(warning, "code", None))
    if values["code"] is None and warning.startswith("{"):
        try:
            values = json.loads(warning)
        except ValueError:
            values = {}
    words = WARNING_WORDS.get(values.pop("code", None) or "")
    if words is None:
        return str(warning)
    if "element" in values:
        values["element"] = element_words(values["element"])
    return str(words) % values


def _xml_error(exc: InvoiceXmlError) -> str:
    params = dict(exc.params)
    if "element" in params:
        params["element"] = element_words(params["element"])
    return _(exc.message, **params) if params else _(exc.message)


def _signature_error(exc: SignatureError) -> str:
    return _(exc.message, **exc.params) if exc.params else _(exc.message)


def _unpack(name: str, data: bytes) -> list[tuple[str, bytes | None, str | None]]:
    """Turn one uploaded file into (name, xml bytes, error) entries."""
    lower = name.lower()
    if lower.endswith(".xml"):
        if len(data) > MAX_FILE_BYTES:
            return [(name, None, _too_big())]
        return [(name, data, None)]
    if not lower.endswith(".zip"):
        return [(name, None, _("Not an XML or ZIP file."))]
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, ValueError, OSError):
        return [(name, None, _("The ZIP file is damaged or not a ZIP file."))]
    if len(members) > MAX_ZIP_MEMBERS:
        return [
            (name, None, _("The ZIP file holds more than %(limit)s files.", limit=MAX_ZIP_MEMBERS))
        ]
    entries: list[tuple[str, bytes | None, str | None]] = []
    budget = MAX_ZIP_TOTAL_BYTES
    for info in members:
        base = info.filename.rsplit("/", 1)[-1]
        # macOS adds resource forks to archives it makes; they are not the seller's files.
        if info.filename.startswith("__MACOSX/") or base.startswith("._"):
            continue
        member = f"{name}/{info.filename}"
        if not base.lower().endswith(".xml"):
            entries.append((member, None, _("Not an XML file.")))
            continue
        if info.file_size > MAX_FILE_BYTES or info.file_size > budget:
            entries.append((member, None, _too_big()))
            continue
        try:
            # Read at most one byte past the limit: the header's size may lie (zip bomb).
            with archive.open(info) as handle:
                content = handle.read(MAX_FILE_BYTES + 1)
        except (zipfile.BadZipFile, RuntimeError, ValueError, OSError, NotImplementedError):
            entries.append((member, None, _("The ZIP file is damaged or not a ZIP file.")))
            continue
        if len(content) > MAX_FILE_BYTES:
            entries.append((member, None, _too_big()))
            continue
        budget -= len(content)
        entries.append((member, content, None))
    if not entries:
        return [(name, None, _("The ZIP file holds no XML file."))]
    return entries


def _too_big() -> str:
    return _("The file is larger than %(limit)s MB.", limit=MAX_FILE_BYTES // (1024 * 1024))


def _check(xml: bytes, seller: Seller) -> tuple[Document, list[str], SignerInfo]:
    """Parse and check one file; return the document, its warnings and its signer.

    Raises ImportRefused with every reason found.
    """
    try:
        root = safe_parse(xml).getroot()
    except InvoiceXmlError as exc:
        raise ImportRefused([_xml_error(exc)]) from exc
    reasons = []
    try:
        doc = parse_tree(root)
    except InvoiceXmlError as exc:
        # Name every reason: the values that cannot be read, and, when the rest of the
        # invoice could be read, what else is wrong with it (a coded series, say).
        reasons = [_xml_error(problem) for problem in exc.problems]
        if exc.document is None:
            raise ImportRefused(reasons) from exc
        doc = exc.document
    if has_cqt_code(root):
        reasons.append(
            _(
                "MCCQT: the invoice carries a tax authority code; only invoices without a code "
                "(series K) are imported here."
            )
        )
    if not doc.series.startswith("K"):
        reasons.append(
            _(
                "KHHDon: series %(series)s is not a series without a tax authority code "
                "(it must start with K).",
                series=doc.series,
            )
        )
    if doc.seller.tax_code != seller.tax_code:
        reasons.append(
            _(
                "NBan/MST: seller tax code %(found)s is not this portal's seller (%(expected)s).",
                found=doc.seller.tax_code,
                expected=seller.tax_code,
            )
        )
    signer = None
    try:
        signer = verify_xml(xml)
    except SignatureError as exc:
        reasons.append(_signature_error(exc))
    else:
        if signer.tax_code != doc.seller.tax_code:
            reasons.append(
                _(
                    "X509Certificate: the certificate belongs to tax code %(found)s, not to the "
                    "seller NBan/MST %(expected)s.",
                    found=signer.tax_code or "?",
                    expected=doc.seller.tax_code,
                )
            )
    if _exists(doc):
        reasons.append(_duplicate(doc))
    if reasons:
        raise ImportRefused(reasons)
    return doc, check_totals(doc), signer


def _exists(doc: Document) -> bool:
    return (
        db.session.scalar(
            db.select(Invoice.id).filter_by(
                seller_tax_code=doc.seller.tax_code,
                form=doc.form,
                series=doc.series,
                number=doc.number,
            )
        )
        is not None
    )


def _duplicate(doc: Document) -> str:
    return _(
        "SHDon: invoice %(series)s No. %(number)s already exists.",
        series=f"{doc.form}{doc.series}",
        number=f"{doc.number:08d}",
    )


def import_files(
    files: list[tuple[str, bytes]], seller: Seller, user_id: int | None = None
) -> ImportReport:
    """Import each signed XML (loose or in a ZIP) on its own: a bad file imports nothing.

    A file signed by a certificate that is not registered is not stored as issued: it waits
    for an admin's approval (`approve_import`).
    """
    report = ImportReport()
    for upload_name, data in files:
        for name, xml, error in _unpack(upload_name, data):
            result = FileResult(name=name)
            report.results.append(result)
            if error:
                result.errors.append(error)
                continue
            _import_one(result, xml, seller, user_id)
    return report


def _import_one(result: FileResult, xml: bytes, seller: Seller, user_id: int | None) -> None:
    from portal.rendering.service import render_ahead

    invoice = pending = None
    try:
        with write():
            doc, warnings, signer = _check(xml, seller)
            if certificates.registered(signer.certificate) is None:
                pending = _hold(result.name, xml, doc, signer, user_id)
            else:
                invoice = store_document(doc, xml, source="import", warnings=warnings)
                audit.record("invoice.imported", target=invoice, details={"file": result.name})
                after_commit(lambda: render_ahead([invoice.id]))
    except ImportRefused as exc:
        result.errors.extend(exc.reasons)
        return
    except IntegrityError:
        # Another upload stored the same number (or the same file for approval) between
        # our check and our insert.
        result.errors.append(_duplicate(doc))
        return
    if pending is not None:
        result.pending_id = pending.id
        result.signer_subject = pending.subject
        result.label = pending.series_label
        result.number = pending.number_label
        result.warnings = list(warnings)
        return
    result.invoice_id = invoice.id
    result.label = invoice.series_label
    result.number = invoice.number_label
    result.warnings = list(warnings)


# --- waiting for approval -----------------------------------------------------------


def _hold(
    name: str, xml: bytes, doc: Document, signer: SignerInfo, user_id: int | None
) -> PendingImport:
    """Keep a file whose signer is not registered until an admin approves or rejects it."""
    digest = hashlib.sha256(xml).hexdigest()
    if db.session.scalar(db.select(PendingImport.id).filter_by(xml_sha256=digest)):
        raise ImportRefused([_("This file is already waiting for an administrator's approval.")])
    info = read_certificate(signer.certificate)
    pending = PendingImport(
        file_name=name[:400], xml=bytes(xml), xml_sha256=digest,
        form=doc.form, series=doc.series, number=doc.number, issued_on=doc.issued_on,
        buyer_name=nfc(doc.buyer.name)[:400], total_amount=doc.total_amount,
        currency=doc.currency or "VND", related_info=doc.related_info,
        fingerprint=info.fingerprint, certificate_der=info.der, tax_code=info.tax_code,
        subject=info.subject, issuer=info.issuer, serial=info.serial,
        not_before=info.not_before, not_after=info.not_after,
        signing_time=signer.signing_time, uploaded_by_id=user_id,
    )  # fmt: skip
    db.session.add(pending)
    db.session.flush()
    return pending


def pending_imports() -> list[PendingImport]:
    """The files waiting for an admin's approval, oldest first."""
    return list(db.session.scalars(db.select(PendingImport).order_by(PendingImport.id)))


def pending_count() -> int:
    """How many files wait for an admin's approval."""
    return db.session.scalar(db.select(db.func.count(PendingImport.id)))


def approve_import(pending_id: int, user_id: int | None) -> Invoice:
    """Register the file's certificate and store the invoice as issued, in one unit of work.

    The file is checked again (another file may have taken its number meanwhile); if it
    is refused now, nothing changes and it keeps waiting. LookupError: no such file.
    """
    from portal.rendering.service import render_ahead

    try:
        with write():
            pending = db.session.get(PendingImport, pending_id)
            if pending is None:
                raise LookupError(pending_id)
            seller = db.session.scalar(db.select(Seller).order_by(Seller.id).limit(1))
            if seller is None:
                raise ImportRefused([_("No seller profile exists yet.")])
            xml = pending.xml
            doc, warnings, signer = _check(xml, seller)
            try:
                certificates.ensure_registered(
                    read_certificate(signer.certificate), None, "approved", user_id
                )
            except certificates.CertificateRefused as exc:
                raise ImportRefused([str(exc)]) from exc
            db.session.delete(pending)
            invoice = store_document(doc, xml, source="import", warnings=warnings)
            audit.record("invoice.imported", target=invoice,
                         details={"file": pending.file_name, "approved": True})  # fmt: skip
            after_commit(lambda: render_ahead([invoice.id]))
    except IntegrityError as exc:
        raise ImportRefused([_duplicate(doc)]) from exc
    return invoice


def reject_import(pending_id: int) -> None:
    """Discard a file waiting for approval. LookupError: no such file."""
    with write():
        pending = db.session.get(PendingImport, pending_id)
        if pending is None:
            raise LookupError(pending_id)
        db.session.delete(pending)
