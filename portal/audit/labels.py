"""The audit log's words: action codes and their labels, and details read in the reader's language.

The rows keep codes and data; everything here is rendered when the log is read, so an entry
reads in Vietnamese or English whichever language wrote it.
"""

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

# Every action that may be recorded. An action added elsewhere adds its code here (and, if
# its details need words, a describer below).
ACTIONS = {
    "auth.login": _l("Logged in"),
    "auth.login_failed": _l("Failed to log in"),
    "auth.logout": _l("Logged out"),
    "invoice.sent": _l("Sent an invoice"),
    "invoice.resent": _l("Sent an invoice again"),
    "invoice.imported": _l("Imported an invoice"),
    "link.revoked": _l("Turned off a buyer link"),
    "batch.started": _l("Started a bulk send"),
    "batch.paused": _l("Paused a bulk send"),
    "batch.resumed": _l("Resumed a bulk send"),
    "batch.cancelled": _l("Cancelled the rest of a bulk send"),
    "batch.retried_failed": _l("Sent the failed invoices of a bulk send again"),
    "tax.transferred": _l("Transferred invoice data to the tax authority"),
    "settings.changed": _l("Changed settings"),
    "user.created": _l("Created a user"),
    "api_token.created": _l("Created an API token"),
    "api_token.revoked": _l("Revoked an API token"),
    "certificate.registered": _l("Registered a signing certificate"),
    "certificate.approved": _l("Approved a signing certificate"),
    "certificate.removed": _l("Removed a signing certificate"),
}

TARGETS = {
    "invoice": _l("Invoice"),
    "delivery": _l("Delivery"),
    "batch": _l("Bulk send"),
    "user": _l("User"),
    "api_token": _l("API token"),
    "mail_settings": _l("Invoice email settings"),
    "email_template": _l("Email template"),
    "seller": _l("Company profile"),
    "invoice_series": _l("Invoice series"),
    "tax_settings": _l("Tax authority connection"),
    "signing_certificate": _l("Signing certificate"),
}

VIA = {"web": _l("web"), "cli": _l("command line"), "system": _l("system")}

# The settings' fields, by column name, as their forms name them.
FIELDS = {
    "host": _l("SMTP server"),
    "port": _l("Port"),
    "security": _l("Security"),
    "username": _l("User name"),
    "password_encrypted": _l("Password"),
    "sender_name": _l("Sender name"),
    "sender_email": _l("Sender email"),
    "reply_to": _l("Reply-to email"),
    "rate_per_minute": _l("At most this many emails a minute (empty: no limit)"),
    "rate_per_day": _l("At most this many emails a day (empty: no limit)"),
    "subject": _l("Subject"),
    "body_text": _l("Plain-text body"),
    "body_html": _l("HTML body"),
    "name": _l("Company name"),
    "tax_code": _l("Tax code"),
    "address": _l("Address"),
    "phone": _l("Phone"),
    "email": _l("Email"),
    "bank_account": _l("Bank account"),
    "bank_name": _l("Bank"),
    "form": _l("Invoice form"),
    "series": _l("Series"),
    "provider": _l("Transmission provider (T-VAN)"),
    "endpoint": _l("Provider address"),
    "sender_code": _l("Sender code (MNGui)"),
    "callback_secret_encrypted": _l("Secret of pushed answers"),
    "wait_for_acceptance": _l("Buyer emails"),
    "holidays": _l("Holidays besides weekends (one date a line, dd/mm/yyyy)"),
}


def action_label(code: str) -> str:
    label = ACTIONS.get(code)
    return str(label) if label is not None else code


def via_label(via: str) -> str:
    return str(VIA.get(via, via))


def target_text(entry) -> str:
    """The target as the reader says it: "Invoice 1K26TAA 00000012", "Bulk send #3"."""
    if not entry.target_type:
        return ""
    kind = str(TARGETS.get(entry.target_type, entry.target_type))
    if entry.target_label:
        return f"{kind} {entry.target_label}"
    if entry.target_id is not None and entry.target_type not in _SINGLE_ROWS:
        return f"{kind} #{entry.target_id}"
    return kind


# Settings kept in one row: their id says nothing.
_SINGLE_ROWS = {"mail_settings", "email_template", "seller", "tax_settings"}


def csv_header() -> list[str]:
    return [_("Time"), _("User"), _("Via"), _("Action code"), _("Action"), _("Target"),
            _("Details"), _("IP address"), _("User agent")]  # fmt: skip


def _recipients(d: dict) -> str:
    if d.get("method") == "link":
        return _("as a link to copy")
    parts = [_("to %(to)s", to=d.get("to", ""))]
    if d.get("cc"):
        parts.append(_("cc %(cc)s", cc=d["cc"]))
    if d.get("bcc"):
        parts.append(_("bcc %(bcc)s", bcc=d["bcc"]))
    return ", ".join(parts)


def _paused(d: dict) -> str:
    if d.get("automatic") == "in_a_row":
        text = _("paused by itself: %(count)s sends failed in a row", count=d.get("count", ""))
    elif d.get("automatic") == "window":
        text = _("paused by itself: %(failed)s of the last %(count)s sends failed",
                 failed=d.get("failed", ""), count=d.get("count", ""))  # fmt: skip
    else:
        text = ""
    held = _("%(count)s held", count=d.get("held", 0))
    return f"{text}; {held}" if text else held


def _transferred(d: dict) -> str:
    return _("%(count)s selected: %(queued)s queued, %(retried)s tried again, "
             "%(in_progress)s already on their way, %(accepted)s accepted before, "
             "%(rejected)s rejected before",
             **{key: d.get(key, 0) for key in ("count", "queued", "retried", "in_progress",
                                                "accepted", "rejected")})  # fmt: skip


def _settings(d: dict) -> str:
    parts = []
    if d.get("restored_default"):
        parts.append(_("the built-in template is back"))
    for name, change in (d.get("changes") or {}).items():
        field = str(FIELDS.get(name, name))
        if change is None:
            parts.append(_("%(field)s changed", field=field))
        else:
            old, new = ("" if v is None else v for v in change)
            parts.append(f"{field}: {old} → {new}" if old != "" else f"{field}: {new}")
    return "; ".join(parts) or _("saved without changes")


DESCRIBERS = {
    "auth.login_failed": lambda d: _(
        "user name typed: %(username)s", username=d.get("username", "")
    ),
    "invoice.sent": _recipients,
    "invoice.resent": _recipients,
    "invoice.imported": lambda d: _("file %(file)s", file=d.get("file", "")),
    "link.revoked": lambda d: _("delivery #%(id)s", id=d.get("delivery_id", "")),
    "batch.started": lambda d: _("%(count)s invoices queued", count=d.get("count", 0)),
    "batch.paused": _paused,
    "batch.resumed": lambda d: _("%(count)s queued again", count=d.get("count", 0)),
    "batch.cancelled": lambda d: _("%(count)s not sent", count=d.get("count", 0)),
    "batch.retried_failed": lambda d: _("%(count)s sent again", count=d.get("count", 0)),
    "tax.transferred": _transferred,
    "settings.changed": _settings,
    "user.created": lambda d: _("role: %(role)s", role=d.get("role", "")),
}


def describe(entry) -> str:
    """The entry's details in the reader's language (plain key: value for codes without words)."""
    details = entry.details or {}
    describer = DESCRIBERS.get(entry.action)
    if describer is not None:
        try:
            return describer(details)
        except (KeyError, TypeError, ValueError):
            pass  # details of another shape (an older row): shown as data below
    return "; ".join(f"{key}: {value}" for key, value in details.items())
