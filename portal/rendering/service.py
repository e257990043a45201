"""Render an invoice as HTML and PDF from one layout; keep each PDF once rendered."""

from flask import Response, render_template
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import undefer

from portal.database import in_unit_of_work, write
from portal.extensions import db
from portal.models import Invoice, InvoicePdf
from portal.rendering.pdf import html_to_pdf

# Bump when the PDF layout changes: cached PDFs of an older layout are rendered again.
TEMPLATE_VERSION = "3"
# Invoices per background render job: small enough for two workers to share a batch.
RENDER_CHUNK = 10


def invoice_html(invoice: Invoice) -> str:
    """Render the legal layout as an HTML fragment (pages link css/document.css)."""
    return render_template("invoices/_document.html", invoice=invoice)


def render_pdf(invoice: Invoice) -> bytes:
    """Render the invoice's PDF now, without looking at the cache."""
    return html_to_pdf(render_template("pdf/invoice.html", invoice=invoice))


def layout_version() -> str:
    """The layout a PDF is rendered with: the template's version and the printed lookup address.

    The PDF prints the lookup page's address (and a QR code to it), so a PDF kept from
    before PORTAL_BASE_URL changed is stale like one of an older template.
    """
    from portal.buyer.service import lookup_fingerprint

    return f"{TEMPLATE_VERSION}-{lookup_fingerprint()}"


def _fresh(cached: InvoicePdf | None, xml_sha256: str) -> bool:
    return (
        cached is not None
        and cached.xml_sha256 == xml_sha256
        and cached.template_version == layout_version()
    )


def invoice_pdf(invoice: Invoice) -> bytes:
    """Return the invoice's PDF, rendering and storing it only when no fresh copy is kept.

    An issued invoice never changes, so its PDF is keyed by the signed XML's hash and the
    layout version. A hit is a plain read. A miss renders outside any transaction (about
    90 ms: no write lock held meanwhile), then stores the row in a short unit of work of its
    own. The row is a pure function of committed data, so storing it early loses nothing.
    A miss inside a caller's unit of work is refused: it would hold the write lock while
    rendering and commit the cache row with the caller's half-done work.
    """
    invoice_id, xml_sha256 = invoice.id, invoice.xml_sha256
    cached = db.session.get(InvoicePdf, invoice_id, options=[undefer(InvoicePdf.data)])
    if _fresh(cached, xml_sha256):
        return cached.data
    if in_unit_of_work():
        raise RuntimeError("invoice_pdf() rendering inside a unit of work; render it before")
    return _store(invoice_id, xml_sha256, render_pdf(invoice))


def _store(invoice_id: int, xml_sha256: str, data: bytes) -> bytes:
    """Keep a rendered PDF; return the stored bytes, which may be another worker's copy."""
    try:
        with write():
            # Another worker may have stored it while this one rendered: read under the lock.
            cached = db.session.get(
                InvoicePdf, invoice_id, options=[undefer(InvoicePdf.data)], populate_existing=True
            )
            if _fresh(cached, xml_sha256):
                # Serve the stored bytes, so the page and the email carry the very same file.
                return cached.data
            if cached is None:
                cached = InvoicePdf(invoice_id=invoice_id)
                db.session.add(cached)
            cached.xml_sha256 = xml_sha256
            cached.template_version = layout_version()
            cached.data = data
    except IntegrityError:
        # PostgreSQL takes no write lock up front: a concurrent insert of the same PDF won.
        pass
    return data


def render_ahead(invoice_ids: list[int]) -> None:
    """Queue the PDFs of these invoices for rendering in the background (low priority).

    A send then rarely renders. Without Redis nothing is queued: the send renders then.
    """
    from portal.runtime.queue import LOW, enqueue_calls

    chunks = [invoice_ids[i : i + RENDER_CHUNK] for i in range(0, len(invoice_ids), RENDER_CHUNK)]
    enqueue_calls(LOW, "portal.rendering.service.render_pdfs", [(chunk,) for chunk in chunks])


def render_pdfs(invoice_ids: list[int]) -> int:
    """Job: render and keep the PDFs of these invoices that have no fresh copy; return how many."""
    rendered = 0
    for invoice_id in invoice_ids:
        invoice = db.session.get(Invoice, invoice_id)
        if invoice is None:
            continue
        cached = db.session.get(InvoicePdf, invoice_id)
        if not _fresh(cached, invoice.xml_sha256):
            invoice_pdf(invoice)
            rendered += 1
        db.session.rollback()  # end the read, so no snapshot is held between invoices
    return rendered


def invoice_xml(invoice: Invoice) -> bytes:
    """Return the signed XML exactly as issued."""
    return invoice.xml


def file_name(invoice: Invoice, kind: str) -> str:
    """Name the file `1K26TAA_00000123.pdf`: the same on the page, in the email, for the buyer."""
    return f"{invoice.series_label}_{invoice.number_label}.{kind}"


def invoice_file(invoice: Invoice, kind: str, inline: bool = False) -> Response:
    """Serve the PDF or the signed XML as a download (or inline, for a PDF in the browser)."""
    if kind == "pdf":
        response = Response(invoice_pdf(invoice), mimetype="application/pdf")
    else:
        response = Response(invoice_xml(invoice), mimetype="application/xml")
    disposition = "inline" if inline else "attachment"
    response.headers["Content-Disposition"] = (
        f'{disposition}; filename="{file_name(invoice, kind)}"'
    )
    return response
