"""Buyer-facing pages: no login, readable on a phone, no third-party resources."""

import base64
from dataclasses import dataclass

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from portal.buyer import service
from portal.extensions import db, limiter
from portal.models import Invoice
from portal.rendering.service import invoice_file

bp = Blueprint("buyer", __name__)

# A transparent 1x1 GIF for the email-open signal.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
LINK_LIMIT = "30/minute;300/hour"
LOOKUP_LIMIT = "10/minute;100/hour"


@bp.after_request
def private_headers(response: Response) -> Response:
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _open(token: str):
    state = service.resolve(token)
    if state.delivery is None:
        status = 404 if state.problem == "unknown" else 410
        abort(Response(render_template("buyer/gone.html", problem=state.problem), status))
    return state.delivery


@bp.get("/hd/<token>")
@limiter.limit(LINK_LIMIT)
def page(token: str):
    """Show the invoice behind a personal link."""
    delivery = _open(token)
    service.record(delivery.invoice_id, delivery, "link_opened")
    return render_template(
        "buyer/page.html",
        invoice=delivery.invoice,
        pdf_url=url_for("buyer.file", token=token, kind="pdf"),
        xml_url=url_for("buyer.file", token=token, kind="xml"),
        shown_url=url_for("buyer.shown", token=token),
        confirm_url=url_for("buyer.confirm", token=token),
        confirmed=request.args.get("confirmed") == "1",
    )


@bp.post("/hd/<token>/shown")
@limiter.limit(LINK_LIMIT)
def shown(token: str):
    """Record that the page rendered in a browser (the page itself calls this)."""
    delivery = _open(token)
    service.record(delivery.invoice_id, delivery, "page_shown")
    return "", 204


@bp.post("/hd/<token>/confirm")
@limiter.limit(LINK_LIMIT)
def confirm(token: str):
    """Record the buyer's confirmation of receipt."""
    delivery = _open(token)
    service.record(delivery.invoice_id, delivery, "receipt_confirmed")
    return redirect(url_for("buyer.page", token=token, confirmed=1))


@bp.get("/hd/<token>/<any(pdf, xml):kind>")
@limiter.limit(LINK_LIMIT)
def file(token: str, kind: str):
    """Download the PDF or the signed XML, the same bytes the email carried."""
    delivery = _open(token)
    service.record(delivery.invoice_id, delivery, f"{kind}_downloaded")
    return invoice_file(delivery.invoice, kind)


@bp.get("/hd/<token>/o.gif")
@limiter.limit(LINK_LIMIT)
def opened(token: str):
    """Record an email open (weak: mail apps and proxies fetch images by themselves)."""
    state = service.resolve(token)
    if state.delivery is not None:
        service.record(state.delivery.invoice_id, state.delivery, "email_opened")
    return Response(PIXEL, mimetype="image/gif")


def _lookup_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt="invoice-lookup")


def _no_code_typed() -> bool:
    """The plain lookup page costs nothing; every code tried counts against the limit."""
    return request.method == "GET" and "code" not in request.args


@bp.route(service.LOOKUP_PATH, methods=["GET", "POST"])
@limiter.limit(LOOKUP_LIMIT, exempt_when=_no_code_typed)
def lookup():
    """Find an invoice by the lookup code printed on it (typed, or in the printed QR code)."""
    error = None
    source = request.form if request.method == "POST" else request.args
    code = source.get("code", "")[:40]
    if request.method == "POST" or "code" in request.args:
        invoice = service.find_by_lookup_code(code)
        if invoice is not None:
            ticket = _lookup_serializer().dumps(invoice.id)
            return redirect(url_for("buyer.lookup_result", ticket=ticket))
        # The same answer whatever exists: a wrong code reveals nothing.
        error = _("No invoice matches this lookup code.")
    page = render_template("buyer/lookup.html", error=error, code=code)
    return page, 200 if error is None else 404


def _ticket_invoice(ticket: str) -> Invoice:
    try:
        invoice_id = _lookup_serializer().loads(ticket, max_age=3600)
    except (BadSignature, SignatureExpired):
        abort(404)
    return db.session.get(Invoice, invoice_id) or abort(404)


@bp.get("/tra-cuu/<ticket>")
@limiter.limit(LINK_LIMIT)
def lookup_result(ticket: str):
    """Show the invoice found by its lookup code."""
    invoice = _ticket_invoice(ticket)
    service.record(invoice.id, None, "link_opened")
    return render_template(
        "buyer/page.html",
        invoice=invoice,
        pdf_url=url_for("buyer.lookup_file", ticket=ticket, kind="pdf"),
        xml_url=url_for("buyer.lookup_file", ticket=ticket, kind="xml"),
        shown_url=None,
        confirm_url=None,
        confirmed=False,
    )


@bp.get("/tra-cuu/<ticket>/<any(pdf, xml):kind>")
@limiter.limit(LINK_LIMIT)
def lookup_file(ticket: str, kind: str):
    """Download a looked-up invoice's PDF or XML."""
    invoice = _ticket_invoice(ticket)
    service.record(invoice.id, None, f"{kind}_downloaded")
    return invoice_file(invoice, kind)


RECEIPT_LABELS = {  # what one event was, in a visit's story
    "email_opened": "Email opened",
    "link_opened": "Link opened",
    "page_shown": "Invoice page viewed",
    "pdf_downloaded": "PDF downloaded",
    "xml_downloaded": "XML downloaded",
    "receipt_confirmed": "Receipt confirmed by the buyer",
}


@bp.app_template_global()
def receipt_kind_label(kind: str) -> str:
    """The seller-facing words for a receipt event."""
    return _(RECEIPT_LABELS[kind]) if kind in RECEIPT_LABELS else kind


# The tick: what the buyer did, in a word or two (the strongest event of a visit or invoice).
RECEIPT_TICKS = {
    "receipt_confirmed": "Confirmed",
    "pdf_downloaded": "PDF downloaded",
    "xml_downloaded": "XML downloaded",
    "page_shown": "Viewed",
    "email_opened": "Email opened",
    "link_opened": "Link opened",
}


@bp.app_template_global()
def receipt_tick_label(kind: str) -> str:
    """The tick's words: Đã xác nhận, Đã tải PDF, Đã xem..."""
    return _(RECEIPT_TICKS[kind]) if kind in RECEIPT_TICKS else kind


@dataclass
class LookupPrint:
    """Where the buyer looks the invoice up, as printed on it, and a QR code to it."""

    address: str
    code: str
    qr: str  # a PNG data URI


@bp.app_template_global()
def lookup_print(invoice: Invoice) -> LookupPrint:
    """The lookup line and QR code of an invoice's page and PDF."""
    return LookupPrint(
        service.lookup_address(), invoice.lookup_code, service.lookup_qr(invoice.lookup_code)
    )


def timeline(invoice_id: int) -> list[service.Visit]:
    """The invoice's receipt events as visits, oldest first."""
    return service.visits(invoice_id)
