"""Say in the seller's words why a send failed and what to do about it."""

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

REASONS = {
    "auth": _l(
        "The mail server refused the user name or password. Check the invoice email settings."
    ),
    "sender_refused": _l(
        "The mail server does not allow sending from this sender address. Check the sender "
        "address in the invoice email settings."
    ),
    "recipient_refused": _l(
        "The recipient's mailbox does not exist or refused the email. Check the address and send again."
    ),
    "unreachable": _l(
        "Could not reach the mail server. Check its address and port; sending is retried automatically."
    ),
    "temporary": _l("The mail server refused for now; sending is retried automatically."),
    "rejected": _l(
        "The mail server rejected the email (for example as spam or too large). Read its answer below."
    ),
    "tls": _l(
        "The secure connection to the mail server failed. Check the security setting (STARTTLS/SSL)."
    ),
    "no_answer": _l(
        "The mail server did not answer after receiving the email: it may have been delivered. "
        "Ask the buyer before sending again."
    ),
    "no_settings": _l("The invoice email settings are missing."),
    "template_limit": _l(
        "The email template went over its limits for this invoice (too long, too many loop "
        "runs or too slow). Correct it in the email template settings and send again."
    ),
    "bad_header": _l("The email had an invalid header and was not sent."),
    "internal": _l(
        "The email could not be prepared because of an error on our side; it is tried again "
        "automatically. If it keeps failing, contact support."
    ),
    "database_busy": _l(
        "The portal's database was busy, so the email was not sent yet; it is tried again "
        "automatically."
    ),
    "worker_stopped": _l(
        "The sending process stopped before the email went out; it is sent again automatically."
    ),
    "aborted": _l("The send was stopped before the email went out; it is sent again."),
    "tax_rejected": _l(
        "The tax authority did not accept the invoice data, so the email was not sent (the "
        "settings say emails wait for its acceptance). See its reasons on the invoice page."
    ),
}

# Failures on our side: what follows the sentence is our own detail, not the mail server's.
OURS = {
    "internal", "database_busy", "worker_stopped", "aborted", "no_settings", "tax_rejected",
    "template_limit",
}  # fmt: skip

# After the data went out, a stopped worker leaves the outcome open.
UNKNOWN_REASONS = {
    "worker_stopped": _l(
        "The sending process stopped after the email went to the mail server: it may have "
        "been delivered. Ask the buyer before sending again."
    ),
}


# For a send nothing retries (the test email on the settings page): no promise of a retry.
NOT_RETRIED = {
    "unreachable": _l(
        "Could not reach the mail server. Check its address, port and security setting, "
        "and that this computer may connect to it."
    ),
    "temporary": _l("The mail server refused for now. Try again in a few minutes."),
}


def explain(
    kind: str, code: int | None, message: str, retried: bool = True, status: str = ""
) -> str:
    """One sentence for the seller, followed by the server's own answer when there is one.

    Our own faults are never shown as the mail server's answer: their detail (an error
    message, in English) is labelled as technical detail.
    """
    reason = str(
        (UNKNOWN_REASONS.get(kind) if status == "unknown" else None)
        or (None if retried else NOT_RETRIED.get(kind))
        or REASONS.get(kind)
        or _("Sending failed.")
    )
    if kind in OURS:
        if message:
            reason += " " + _("Technical detail: %(detail)s", detail=message)
    elif code or message:
        reason += " " + _("Mail server: %(answer)s", answer=f"{code or ''} {message}".strip())
    return reason
