"""UI language (Vietnamese by default, English selectable) and number/date formats."""

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Flask,
    current_app,
    has_request_context,
    redirect,
    request,
    session,
    url_for,
)
from flask_babel import get_locale

from portal.extensions import babel

bp = Blueprint("i18n", __name__)


def select_locale() -> str:
    """The session's language; for the API, the one the client asks for; else Vietnamese."""
    default = current_app.config["BABEL_DEFAULT_LOCALE"]
    if not has_request_context():
        return default
    if request.blueprint == "api":
        # Other software has no session: `Accept-Language: en` asks for English messages.
        return request.accept_languages.best_match(current_app.config["LANGUAGES"]) or default
    lang = session.get("lang")
    return lang if lang in current_app.config["LANGUAGES"] else default


def format_money(value: Decimal | int | None, places: int | None = None) -> str:
    """Format money Vietnamese style: 1.234.567 (comma before decimals, if any)."""
    if value is None:
        return ""
    value = Decimal(value)
    if places is None:
        places = (
            0
            if value == value.to_integral_value()
            else min(6, max(0, -value.normalize().as_tuple().exponent))
        )
    text = f"{abs(value):,.{places}f}"
    text = text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")
    return ("-" if value < 0 else "") + text


def format_date(value: date | datetime | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = to_local(value).date()
    return value.strftime("%d/%m/%Y")


def format_datetime(value: datetime | None) -> str:
    if value is None:
        return ""
    return to_local(value).strftime("%d/%m/%Y %H:%M")


def to_local(value: datetime) -> datetime:
    return value.astimezone(ZoneInfo(current_app.config["PORTAL_TIMEZONE"]))


@bp.post("/lang/<lang>")
def set_language(lang: str):
    """Switch the UI language for this browser session."""
    if lang in current_app.config["LANGUAGES"]:
        session["lang"] = lang
    from portal.web import safe_target

    return redirect(safe_target(request.form.get("next"), url_for("invoices.index")))


def init_app(app: Flask) -> None:
    babel.init_app(app, locale_selector=select_locale)
    app.register_blueprint(bp)
    app.jinja_env.filters["money"] = format_money
    app.jinja_env.filters["date"] = format_date
    app.jinja_env.filters["datetime"] = format_datetime
    app.jinja_env.globals["get_locale"] = get_locale
