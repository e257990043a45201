"""Helpers every blueprint's views share: fragment-or-page rendering, error pages."""

from urllib.parse import unquote, urlsplit

from flask import Flask, render_template, request
from markupsafe import Markup, escape


def render(page_template: str, fragment_template: str, /, **context) -> str:
    """Answer an htmx request with the fragment and a plain request with the whole page."""
    if getattr(request, "htmx", False) and not request.headers.get("HX-History-Restore-Request"):
        return render_template(fragment_template, **context)
    return render_template(page_template, **context)


def ids_of(values: list[str], limit: int) -> list[int]:
    """The row ids among the values, at most `limit`; anything else is left out.

    `str.isdigit` is true for "²" (which int() refuses) and for numbers no database column
    holds: only up to 18 ASCII digits are an id.
    """
    return [int(v) for v in values if v.isascii() and v.isdigit() and len(v) <= 18][:limit]


def init_app(app: Flask) -> None:
    from portal.sending.templating import TemplateLimitError

    for code in (400, 403, 404, 429, 500):
        app.register_error_handler(code, _error_page)
    app.register_error_handler(TemplateLimitError, _template_limit_page)
    app.jinja_env.filters["email_breaks"] = email_breaks


def email_breaks(addresses: str | None) -> Markup:
    """Let email addresses wrap after "@" and after dots only, never inside a word.

    Addresses stored joined by ";" are shown separated by "; ".
    """
    text = str(escape((addresses or "").replace(";", "; ").replace(";  ", "; ")))
    return Markup(text.replace("@", "@<wbr>").replace(".", ".<wbr>"))  # noqa: S704  (escaped above)


def _error_page(error):
    code = getattr(error, "code", 500) or 500
    return render_template(f"errors/{code}.html", error=error), code


def _template_limit_page(error):
    """A preview of an email whose template goes over its limits for this invoice's data.

    The template passed the check on its sample when saved; this invoice's values make it
    too long (or too slow). Say so, as a send would, instead of a 500.
    """
    from portal.settings.service import limit_reason

    htmx = getattr(request, "htmx", False)
    page = "errors/_template_limit.html" if htmx else "errors/template_limit.html"
    return render_template(page, reason=limit_reason(error)), 422


def safe_target(target: str | None, fallback: str) -> str:
    """A same-site path to go back to after a form, else the fallback (no open redirects).

    Browsers drop tabs and line breaks inside a URL and read a backslash as a slash, so
    "/\t/evil.example" is "//evil.example" to them: a target with any control character,
    space or backslash, or one that is not a plain path after percent-decoding, goes home.
    """
    target = target or ""
    decoded = unquote(target)
    if (
        any(ch <= " " or ch == "\x7f" or ch == "\\" for ch in target + decoded)
        or len(target) > 2000
    ):
        return fallback
    parts = urlsplit(decoded)
    if parts.scheme or parts.netloc or not decoded.startswith("/") or decoded.startswith("//"):
        return fallback
    return target
