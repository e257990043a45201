"""Render an invoice as HTML and PDF from one template; keep each PDF once rendered."""

from pathlib import Path

from flask import Response, current_app, render_template
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.models import Invoice, InvoicePdf
from portal.rendering.pdf import BOLD, REGULAR, html_to_pdf

# Bump when the PDF layout changes: cached PDFs of an older layout are rendered again.
TEMPLATE_VERSION = "1"


def invoice_html(invoice: Invoice) -> str:
    """The legal layout as an HTML fragment."""
    return render_template("invoices/_document.html", invoice=invoice)


def render_pdf(invoice: Invoice) -> bytes:
    font_dir = Path(current_app.config["PDF_FONT_DIR"])
    html = render_template(
        "pdf/invoice.html",
        invoice=invoice,
        font_regular=str(font_dir / REGULAR),
        font_bold=str(font_dir / BOLD),
    )
    return html_to_pdf(html, font_dir)


def invoice_pdf(invoice: Invoice) -> bytes:
    """Return the invoice's PDF, rendering it only the first time.

    An issued invoice never changes, so its PDF is keyed by the signed XML's hash and the
    layout version. The cache row is committed in its own small transaction: it is a
    pure function of data already committed, so committing it early loses nothing.
    """
    cached = db.session.get(InvoicePdf, invoice.id)
    if (
        cached is not None
        and cached.xml_sha256 == invoice.xml_sha256
        and cached.template_version == TEMPLATE_VERSION
    ):
        return cached.data
    data = render_pdf(invoice)
    if cached is None:
        db.session.add(
            InvoicePdf(
                invoice_id=invoice.id,
                xml_sha256=invoice.xml_sha256,
                template_version=TEMPLATE_VERSION,
                data=data,
            )
        )
    else:
        cached.xml_sha256, cached.template_version, cached.data = (
            invoice.xml_sha256,
            TEMPLATE_VERSION,
            data,
        )
    try:
        db.session.commit()
    except IntegrityError:
        # Another worker rendered the same invoice at the same moment: same bytes.
        db.session.rollback()
    return data


def invoice_xml(invoice: Invoice) -> bytes:
    """The signed XML exactly as issued."""
    return invoice.xml


def file_name(invoice: Invoice, kind: str) -> str:
    """`1K26TAA_00000123.pdf`: the same name on the page, in the email and for the buyer."""
    return f"{invoice.series_label}_{invoice.number_label}.{kind}"


def invoice_file(invoice: Invoice, kind: str, inline: bool = False) -> Response:
    """The PDF or the signed XML as a download (or inline, for a PDF viewed in the browser)."""
    if kind == "pdf":
        response = Response(invoice_pdf(invoice), mimetype="application/pdf")
    else:
        response = Response(invoice_xml(invoice), mimetype="application/xml")
    disposition = "inline" if inline else "attachment"
    response.headers["Content-Disposition"] = (
        f'{disposition}; filename="{file_name(invoice, kind)}"'
    )
    return response
