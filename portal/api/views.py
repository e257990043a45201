"""Issue invoices from other software (an ERP, a POS) over JSON, with a bearer token."""

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import wraps
from zoneinfo import ZoneInfo

from email_validator import EmailNotValidError, validate_email
from flask import Blueprint, Flask, abort, current_app, jsonify, request

from portal.api.cli import hash_token, tokens_cli
from portal.einvoice.document import VAT_RATES, Document, Line, Party, is_tax_code
from portal.extensions import csrf, db
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


def _decimal(value, field: str, errors: list, positive: bool = False) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        errors.append({"field": field, "message": "must be a number"})
        return None
    if (
        not number.is_finite()
        or abs(number) >= Decimal(10) ** 15
        or number.as_tuple().exponent < -6
    ):
        errors.append({"field": field, "message": "out of range or more than 6 decimals"})
        return None
    if positive and number <= 0:
        errors.append({"field": field, "message": "must be greater than zero"})
    return number


def _text(
    data: dict, key: str, field: str, errors: list, limit: int, required: bool = False
) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        errors.append({"field": field, "message": "must be a string"})
        return ""
    value = value.strip()
    if required and not value:
        errors.append({"field": field, "message": "is required"})
    if len(value) > limit or any(ch in value for ch in "\r\n\x00"):
        errors.append({"field": field, "message": f"at most {limit} characters on one line"})
    return value


def parse_request(data) -> tuple[Document | None, InvoiceSeries | None, list[dict]]:
    """Validate the JSON body into a document to issue; every problem is reported."""
    errors: list[dict] = []
    if not isinstance(data, dict):
        return None, None, [{"field": "", "message": "the body must be a JSON object"}]
    match = SERIES.match(str(data.get("series", "")).strip().upper())
    series = None
    if not match:
        errors.append(
            {"field": "series", "message": "like 1K26TAA (form digit + six-character series)"}
        )
    else:
        query = db.select(InvoiceSeries).filter_by(series=match.group(2), active=True)
        if match.group(1):
            query = query.filter_by(form=int(match.group(1)))
        series = db.session.scalar(query.limit(1))
        if series is None:
            errors.append({"field": "series", "message": "no such active series"})
    today = datetime.now(ZoneInfo(current_app.config["PORTAL_TIMEZONE"])).date()
    issued_on = today
    if data.get("issue_date"):
        try:
            issued_on = date.fromisoformat(str(data["issue_date"]))
        except ValueError:
            errors.append({"field": "issue_date", "message": "a date as YYYY-MM-DD"})
        else:
            if issued_on > today:
                errors.append({"field": "issue_date", "message": "cannot be in the future"})
    if series is not None and series_year_problem(series.series, issued_on):
        errors.append(
            {"field": "issue_date", "message": series_year_problem(series.series, issued_on)}
        )
    buyer_data = data.get("buyer") if isinstance(data.get("buyer"), dict) else {}
    if not isinstance(data.get("buyer"), dict):
        errors.append({"field": "buyer", "message": "is required"})
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
        errors.append({"field": "buyer.tax_code",
                       "message": "10 digits, 10 digits-3 digits, or 12 digits"})  # fmt: skip
    for address in filter(None, re.split(r"[;,\s]+", buyer.email)):
        try:
            validate_email(address, check_deliverability=False)
        except EmailNotValidError as error:
            errors.append({"field": "buyer.email", "message": f"{address}: {error}"})
    currency = str(data.get("currency") or "VND").upper()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        errors.append({"field": "currency", "message": "a three-letter currency code"})
    rate = None
    if currency != "VND":
        rate = _decimal(data.get("exchange_rate"), "exchange_rate", errors, positive=True)
    lines = []
    raw_lines = data.get("lines")
    if not isinstance(raw_lines, list) or not raw_lines or len(raw_lines) > 500:
        errors.append({"field": "lines", "message": "one to 500 lines"})
        raw_lines = []
    for index, raw in enumerate(raw_lines):
        field = f"lines[{index}]"
        if not isinstance(raw, dict):
            errors.append({"field": field, "message": "must be an object"})
            continue
        vat_rate = str(raw.get("vat_rate", "")).strip().upper()
        if vat_rate not in VAT_RATES and not OTHER_RATE.match(vat_rate):
            errors.append(
                {
                    "field": f"{field}.vat_rate",
                    "message": "one of 0%, 5%, 8%, 10%, KCT, KKKNT, KHAC:x%",
                }
            )
        kind = raw.get("kind", 1)
        if isinstance(kind, bool) or kind not in (1, 2, 3, 4):
            errors.append({"field": f"{field}.kind", "message": "1, 2, 3 or 4"})
        lines.append(
            Line(
                position=index + 1,
                kind=kind if kind in (1, 2, 3, 4) and not isinstance(kind, bool) else 1,
                name=_text(raw, "name", f"{field}.name", errors, 500, required=True),
                unit=_text(raw, "unit", f"{field}.unit", errors, 50),
                code=_text(raw, "code", f"{field}.code", errors, 50),
                quantity=_decimal(raw.get("quantity", 1), f"{field}.quantity", errors, positive=True),
                unit_price=_decimal(raw.get("unit_price"), f"{field}.unit_price", errors),
                discount_rate=_decimal(raw["discount_rate"], f"{field}.discount_rate", errors)
                if raw.get("discount_rate") not in (None, "") else None,
                vat_rate=vat_rate,
            )
        )  # fmt: skip
    payment_method = _text(data, "payment_method", "payment_method", errors, 50) or "TM/CK"
    if errors:
        return None, series, errors
    doc = Document(
        form=series.form, series=series.series, number=0, issued_on=issued_on, seller=Party(),
        buyer=buyer, lines=lines, currency=currency, exchange_rate=rate,
        payment_method=payment_method,
    )  # fmt: skip
    return doc, series, errors


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
    doc, series, errors = parse_request(request.get_json(silent=True))
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
