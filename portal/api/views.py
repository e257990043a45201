"""Issue invoices from other software (an ERP, a POS) over JSON, with a bearer token."""

import copy
import re
from datetime import date, datetime, timedelta
from decimal import Decimal, localcontext
from functools import wraps
from zoneinfo import ZoneInfo

from email_validator import EmailNotValidError, validate_email
from flask import Blueprint, Flask, abort, current_app, jsonify, request
from flask_babel import gettext as _

from portal.api.cli import hash_token, tokens_cli
from portal.einvoice.document import (
    VAT_RATES,
    Document,
    Line,
    Party,
    fits_xml_number,
    is_tax_code,
)
from portal.einvoice.totals import apply_totals
from portal.extensions import csrf, db
from portal.inputs import recipients_error, text_error
from portal.issuing.service import IssueError, issue_invoice, load_signer, series_year_problem
from portal.models import ApiToken, Invoice, InvoiceSeries

bp = Blueprint("api", __name__, url_prefix="/api/v1")
# Token-authenticated, not cookie-authenticated: a cross-site page cannot send the token.
csrf.exempt(bp)

OTHER_RATE = re.compile(r"^KHAC:\d{1,2}(\.\d{1,2})?%$")
SERIES = re.compile(r"^([1-7])?(K\d{2}[A-Z][A-Z0-9]{2})$")


def token_required(view):
    """Let in requests that carry a live `Authorization: Bearer <token>`."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        found = token and db.session.scalar(
            db.select(ApiToken).filter_by(token_hash=hash_token(token), revoked=False)
        )
        if not found:
            response = jsonify(error="unauthorized", message="A valid bearer token is required.")
            response.status_code = 401
            response.headers["WWW-Authenticate"] = "Bearer"
            abort(response)
        return view(*args, **kwargs)

    return wrapped


# A number in a string is written plainly: "1500000", "-2.5" (no exponent, no spaces).
PLAIN_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")
ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class Problems(list):
    """The problems of one request, each naming its field (a JSON path)."""

    def add(self, field: str, message: str) -> None:
        self.append({"field": field, "message": message})


def _decimal(value, field: str, errors: Problems, positive: bool = False) -> Decimal | None:
    """A JSON number, or a plain decimal number in a string (exact, unlike a float)."""
    if isinstance(value, str) and PLAIN_NUMBER.fullmatch(value.strip()):
        number = Decimal(value.strip())
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = Decimal(str(value))
    else:
        errors.add(field, _("must be a number (or a decimal number in a string)"))
        return None
    if not fits_xml_number(number):
        errors.add(field, _("at most 15 digits before the point and 6 after (the XML's 21)"))
        return None
    if positive and number <= 0:
        errors.add(field, _("must be greater than zero"))
    elif number < 0:
        errors.add(field, _("must not be negative"))
    return number


def _string(data: dict, key: str, field: str, errors: Problems, default: str = "") -> str:
    """A string value, or the default when the key is absent or null."""
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        errors.add(field, _("must be a string"))
        return default
    if error := text_error(value):
        errors.add(field, error)
        return default
    return value.strip()


def _text(
    data: dict, key: str, field: str, errors: Problems, limit: int, required: bool = False
) -> str:
    before = len(errors)
    value = _string(data, key, field, errors)
    if len(errors) > before:
        return value
    if required and not value:
        errors.add(field, _("is required"))
    if len(value) > limit:
        errors.add(field, _("at most %(limit)s characters", limit=limit))
    return value


def _issue_date(data: dict, errors: Problems) -> date:
    """The issue date: today if not given; never in the future nor long past."""
    today = datetime.now(ZoneInfo(current_app.config["PORTAL_TIMEZONE"])).date()
    text = _string(data, "issue_date", "issue_date", errors)
    if not text:
        return today
    try:
        if not ISO_DATE.fullmatch(text):
            raise ValueError(text)
        issued_on = date.fromisoformat(text)
    except ValueError:
        errors.add("issue_date", _("a date as YYYY-MM-DD"))
        return today
    oldest = today - timedelta(days=current_app.config["ISSUE_DATE_MAX_AGE_DAYS"])
    if issued_on > today:
        errors.add("issue_date", _("cannot be in the future"))
    elif issued_on < oldest:
        errors.add("issue_date", _("at most %(days)s days ago (from %(oldest)s)",
                                   days=current_app.config["ISSUE_DATE_MAX_AGE_DAYS"],
                                   oldest=oldest.isoformat()))  # fmt: skip
    return issued_on


def _kind(raw: dict, field: str, errors: Problems) -> int:
    kind = raw.get("kind", 1)
    # true == 1 and 1.0 == 1 in Python: only a JSON integer is a kind.
    if type(kind) is not int or kind not in (1, 2, 3, 4):
        errors.add(f"{field}.kind", _("1, 2, 3 or 4"))
        return 1
    return kind


def _line(index: int, raw, errors: Problems) -> Line | None:
    field = f"lines[{index}]"
    if not isinstance(raw, dict):
        errors.add(field, _("must be an object"))
        return None
    before = len(errors)
    vat_rate = _string(raw, "vat_rate", f"{field}.vat_rate", errors).upper()
    if vat_rate not in VAT_RATES and not OTHER_RATE.match(vat_rate) and len(errors) == before:
        errors.add(f"{field}.vat_rate", _("one of 0%, 5%, 8%, 10%, KCT, KKKNT, KHAC:x%"))
    discount = raw.get("discount_rate")
    line = Line(
        position=index + 1,
        kind=_kind(raw, field, errors),
        name=_text(raw, "name", f"{field}.name", errors, 500, required=True),
        unit=_text(raw, "unit", f"{field}.unit", errors, 50),
        code=_text(raw, "code", f"{field}.code", errors, 50),
        quantity=_decimal(raw.get("quantity", 1), f"{field}.quantity", errors, positive=True),
        unit_price=_decimal(raw.get("unit_price"), f"{field}.unit_price", errors),
        discount_rate=None
        if discount in (None, "")
        else _decimal(discount, f"{field}.discount_rate", errors),
        vat_rate=vat_rate,
    )
    if line.discount_rate is not None and line.discount_rate > 100:
        errors.add(f"{field}.discount_rate", _("a percentage from 0 to 100"))
    if line.quantity is not None and line.unit_price is not None:
        if not fits_xml_number(line.quantity * line.unit_price):
            errors.add(field, _("quantity × unit price is beyond the XML's 15 digits"))
    return line


def _check_totals(doc: Document, errors: Problems) -> None:
    """Refuse an invoice whose computed amounts the XML cannot hold, or a negative total.

    The API issues original invoices only; only an adjusting invoice may total below zero.
    """
    trial = copy.deepcopy(doc)
    with localcontext(prec=80):  # exact, whatever the size: the limits are checked after
        apply_totals(trial)
    for index, line in enumerate(trial.lines):
        if line.amount is not None and not fits_xml_number(line.amount):
            errors.add(f"lines[{index}]", _("the line's amount is beyond the XML's 15 digits"))
    amounts = [trial.total_before_tax, trial.total_tax, trial.total_discount, trial.total_amount]
    amounts += [s.taxable_amount for s in trial.summaries] + [s.tax_amount for s in trial.summaries]
    if not all(fits_xml_number(amount) for amount in amounts):
        errors.add("total_amount", _("the invoice's totals are beyond the XML's 15 digits"))
    elif trial.total_amount < 0:
        errors.add("total_amount", _("must not be negative: the trade discounts exceed the goods"))


def parse_request(data) -> tuple[Document | None, InvoiceSeries | None, list[dict]]:
    """Validate the JSON body into a document to issue; every problem is reported."""
    errors = Problems()
    if not isinstance(data, dict):
        errors.add("", _("the body must be a JSON object"))
        return None, None, errors
    series = None
    before = len(errors)
    match = SERIES.match(_string(data, "series", "series", errors).upper())
    if not match:
        if len(errors) == before:
            errors.add("series", _("like 1K26TAA (form digit + six-character series)"))
    else:
        query = db.select(InvoiceSeries).filter_by(series=match.group(2), active=True)
        if match.group(1):
            query = query.filter_by(form=int(match.group(1)))
        series = db.session.scalar(query.limit(1))
        if series is None:
            errors.add("series", _("no such active series"))
    issued_on = _issue_date(data, errors)
    if series is not None and series_year_problem(series.series, issued_on):
        errors.add("issue_date", _("series %(series)s is for 20%(year)s, the issue date is in "
                                   "%(date_year)s", series=series.series,
                                   year=series.series[1:3], date_year=issued_on.year))  # fmt: skip
    buyer_data = data.get("buyer") if isinstance(data.get("buyer"), dict) else {}
    if not isinstance(data.get("buyer"), dict):
        errors.add("buyer", _("is required, as an object"))
    buyer = Party(
        name=_text(buyer_data, "name", "buyer.name", errors, 400, required=True),
        tax_code=_text(buyer_data, "tax_code", "buyer.tax_code", errors, 14),
        address=_text(buyer_data, "address", "buyer.address", errors, 400),
        email=_text(buyer_data, "email", "buyer.email", errors, 400),
        phone=_text(buyer_data, "phone", "buyer.phone", errors, 50),
        person=_text(buyer_data, "person", "buyer.person", errors, 200),
        code=_text(buyer_data, "code", "buyer.code", errors, 50),
    )
    if buyer.tax_code and not is_tax_code(buyer.tax_code):
        errors.add("buyer.tax_code", _("10 digits, 10 digits-3 digits, or 12 digits"))
    addresses = [a for a in re.split(r"[;,\s]+", buyer.email) if a]
    if too_many := recipients_error(len(addresses)):
        errors.add("buyer.email", too_many)
        addresses = []
    for address in addresses:
        try:
            validate_email(address, check_deliverability=False)
        except EmailNotValidError as error:
            errors.add("buyer.email", f"{address}: {error}")
    currency = _string(data, "currency", "currency", errors, default="VND").upper() or "VND"
    if not re.fullmatch(r"[A-Z]{3}", currency):
        errors.add("currency", _("a three-letter currency code"))
    rate = None
    if currency != "VND":
        rate = _decimal(data.get("exchange_rate"), "exchange_rate", errors, positive=True)
    raw_lines = data.get("lines")
    if not isinstance(raw_lines, list) or not raw_lines or len(raw_lines) > 500:
        errors.add("lines", _("one to 500 lines"))
        raw_lines = []
    lines = [_line(index, raw, errors) for index, raw in enumerate(raw_lines)]
    payment_method = _text(data, "payment_method", "payment_method", errors, 50) or "TM/CK"
    if errors:
        return None, series, errors
    doc = Document(
        form=series.form, series=series.series, number=0, issued_on=issued_on, seller=Party(),
        buyer=buyer, lines=lines, currency=currency, exchange_rate=rate,
        payment_method=payment_method,
    )  # fmt: skip
    _check_totals(doc, errors)
    return (None if errors else doc), series, errors


def _summary(invoice: Invoice) -> dict:
    return {
        "id": invoice.id,
        "form": invoice.form,
        "series": invoice.series,
        "number": invoice.number,
        "issue_date": invoice.issued_on.isoformat(),
        "lookup_code": invoice.lookup_code,
        "total_amount": str(invoice.total_amount),
        "currency": invoice.currency,
        "amount_in_words": invoice.amount_in_words,
        "send_status": invoice.send_status,
    }


@bp.post("/invoices")
@token_required
def create_invoice():
    """Issue an invoice from JSON and answer with its number."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        body = None  # nested deeper than the parser goes: not an invoice either
    doc, series, errors = parse_request(body)
    if errors:
        return jsonify(error="invalid", errors=errors), 422
    try:
        invoice = issue_invoice(doc, series.id, load_signer(), source="api")
    except IssueError as error:
        return jsonify(error="cannot_issue", message=str(error)), 409
    return jsonify(_summary(invoice)), 201


@bp.get("/invoices/<int:invoice_id>")
@token_required
def get_invoice(invoice_id: int):
    """One invoice's summary."""
    invoice = db.session.get(Invoice, invoice_id)
    if invoice is None:
        return jsonify(error="not_found"), 404
    return jsonify(_summary(invoice))


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.cli.add_command(tokens_cli)
