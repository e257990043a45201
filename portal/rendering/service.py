"""Render an invoice as HTML and PDF from one layout; keep each PDF once rendered."""

from flask import Response, render_template
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import undefer

from portal.database import begin_write
from portal.extensions import db
from portal.models import Invoice, InvoicePdf
from portal.rendering.pdf import html_to_pdf

# Bump when the PDF layout changes: cached PDFs of an older layout are rendered again.
TEMPLATE_VERSION = "2"


def invoice_html(invoice: Invoice) -> str:
    """Render the legal layout as an HTML fragment (pages link css/document.css)."""
    return render_template("invoices/_document.html", invoice=invoice)


def render_pdf(invoice: Invoice) -> bytes:
    """Render the invoice's PDF now, without looking at the cache."""
    return html_to_pdf(render_template("pdf/invoice.html", invoice=invoice))


def _fresh(cached: InvoicePdf | None, xml_sha256: str) -> bool:
    return (
        cached is not None
        and cached.xml_sha256 == xml_sha256
        and cached.template_version == TEMPLATE_VERSION
    )


def invoice_pdf(invoice: Invoice) -> bytes:
    """Return the invoice's PDF, rendering and storing it only when no fresh copy is kept.

    An issued invoice never changes, so its PDF is keyed by the signed XML's hash and the
    layout version. A hit is a plain read. A miss renders outside any write transaction
    (about 90 ms: no write lock held meanwhile), then takes the write lock with
    begin_write() and commits the cache row at once. Committing here is deliberate: the
    row is a pure function of data already committed, so committing it early loses
    nothing, and a caller that renders many PDFs never holds SQLite's write lock for
    long. begin_write() commits what the caller's session already holds, so call this
    outside the caller's own unfinished write (the sending job calls it while building a
    message whose pending Message-ID it commits right after anyway).
    """
    invoice_id, xml_sha256 = invoice.id, invoice.xml_sha256
    cached = db.session.get(InvoicePdf, invoice_id, options=[undefer(InvoicePdf.data)])
    if _fresh(cached, xml_sha256):
        return cached.data
    data = render_pdf(invoice)
    begin_write()
    # Another worker may have stored it while this one rendered: read again under the lock.
    cached = db.session.get(
        InvoicePdf, invoice_id, options=[undefer(InvoicePdf.data)], populate_existing=True
    )
    if _fresh(cached, xml_sha256):
        # Serve the stored bytes, so the page and the email carry the very same file.
        stored = cached.data
        db.session.rollback()
        return stored
    if cached is None:
        db.session.add(
            InvoicePdf(
                invoice_id=invoice_id,
                xml_sha256=xml_sha256,
                template_version=TEMPLATE_VERSION,
                data=data,
            )
        )
    else:
        cached.xml_sha256 = xml_sha256
        cached.template_version = TEMPLATE_VERSION
        cached.data = data
    try:
        db.session.commit()
    except IntegrityError:
        # PostgreSQL has no write lock up front: a concurrent insert of the same PDF wins.
        db.session.rollback()
    return data


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
