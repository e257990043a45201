"""Say in the seller's words where a transfer to the tax authority stands and why."""

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

REASONS = {
    "unreachable": _l(
        "Could not reach the transmission provider (T-VAN); the data is sent again automatically."
    ),
    "no_answer": _l(
        "The transmission provider did not answer; before sending again it is asked whether it "
        "has the data, so nothing is sent twice."
    ),
    "unavailable": _l(
        "The transmission provider cannot take data right now; it is sent again automatically."
    ),
    "auth": _l(
        "The transmission provider refused the user name or password. Check the tax authority "
        "connection settings."
    ),
    "refused": _l(
        "The transmission provider refused the request. Check the tax authority connection "
        "settings, or contact support."
    ),
    "internal": _l("An error on our side stopped the transfer; it is tried again automatically."),
    "database_busy": _l(
        "The portal's database was busy; the transfer is tried again automatically."
    ),
    "worker_stopped": _l("The sending process stopped; the transfer is tried again automatically."),
}

ALARMS = {
    "receipt": _l(
        "No technical receipt (999) from the tax authority %(minutes)s minutes after the data "
        "went out."
    ),
    "notice": _l(
        "The tax authority's data-check notice (204) has not come by the next working day."
    ),
}


def explain(kind: str, code: int | None, message: str) -> str:
    """One sentence for the seller, then what the provider said (or our own detail)."""
    reason = str(REASONS.get(kind) or _("The transfer did not go through."))
    if message and kind in ("internal", "database_busy", "worker_stopped"):
        reason += " " + _("Technical detail: %(detail)s", detail=message)
    elif code or message:
        reason += " " + _("Provider: %(answer)s", answer=f"{code or ''} {message}".strip())
    return reason


def alarm_text(kind: str, minutes: int) -> str:
    return str(ALARMS[kind]) % {"minutes": minutes} if kind in ALARMS else ""
