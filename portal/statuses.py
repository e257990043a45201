"""Every status the portal shows, with its Vietnamese and English label, in one place.

The words are the ones in docs/domain.md's glossary. Labels are English message ids
translated to Vietnamese by the catalog (translations/parts/statuses.po).
"""

from enum import StrEnum

from flask_babel import lazy_gettext as _l


class OutboxStatus(StrEnum):
    """Where one item the portal owes the outside world (an email, a tax submission) stands."""

    QUEUED = "queued"  # waiting for a worker
    HELD = "held"  # waits for something else first (the tax authority's acceptance)
    SENDING = "sending"  # claimed by a worker, in flight
    RETRYING = "retrying"  # a temporary failure; tried again at next_attempt_at
    SENT = "sent"  # the receiving server took it
    FAILED = "failed"  # given up, with the reason
    UNKNOWN = "unknown"  # the data went out and no answer came
    CANCELLED = "cancelled"  # the seller called it off before it started

    @property
    def is_active(self) -> bool:
        return self in ACTIVE

    @property
    def is_final(self) -> bool:
        return self not in ACTIVE


ACTIVE = frozenset(
    {OutboxStatus.QUEUED, OutboxStatus.HELD, OutboxStatus.SENDING, OutboxStatus.RETRYING}
)


class SendStatus(StrEnum):
    """An invoice's send status: its latest delivery's status, or not sent."""

    NOT_SENT = "not_sent"
    QUEUED = "queued"
    HELD = "held"
    SENDING = "sending"
    RETRYING = "retrying"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"
    CANCELLED = "cancelled"

    @property
    def label(self) -> str:
        return str(_SEND_LABELS[self])

    @property
    def is_active(self) -> bool:
        return self.value in ACTIVE

    @property
    def needs_attention(self) -> bool:
        """The seller has to look: it failed, or nobody knows whether it arrived."""
        return self in (SendStatus.FAILED, SendStatus.UNKNOWN)

    @property
    def was_sent(self) -> bool:
        """Offer "send again" rather than "send"."""
        return self in (SendStatus.SENT, SendStatus.FAILED, SendStatus.UNKNOWN)

    @property
    def has_reason(self) -> bool:
        """Its row says why: it failed, nobody knows, or it waits to try again."""
        return self.needs_attention or self in (SendStatus.RETRYING, SendStatus.HELD)


_SEND_LABELS = {
    SendStatus.NOT_SENT: _l("Not sent to customer"),
    SendStatus.QUEUED: _l("Sending"),
    SendStatus.HELD: _l("Waiting for the tax authority"),
    SendStatus.SENDING: _l("Sending"),
    SendStatus.RETRYING: _l("Waiting to retry"),
    SendStatus.SENT: _l("Invoice sent to customer"),
    SendStatus.FAILED: _l("Send failed"),
    SendStatus.UNKNOWN: _l("Outcome unknown"),
    SendStatus.CANCELLED: _l("Send cancelled"),
}


class BatchStatus(StrEnum):
    """Where a bulk send stands."""

    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"

    @property
    def label(self) -> str:
        return str(_BATCH_LABELS[self])


_BATCH_LABELS = {
    BatchStatus.DRAFT: _l("Draft"),
    BatchStatus.RUNNING: _l("Sending"),
    BatchStatus.PAUSED: _l("Paused"),
    BatchStatus.CANCELLED: _l("Cancelled"),
    BatchStatus.DONE: _l("Done"),
}


def batch_status_label(status: str) -> str:
    try:
        return BatchStatus(status).label
    except ValueError:
        return status


class TaxStatus(StrEnum):
    """Where the transfer of an invoice's data to the tax authority stands."""

    NOT_SENT = "tax_not_sent"
    PENDING = "tax_pending"
    ACCEPTED = "tax_accepted"
    REJECTED = "tax_rejected"
    FAILED = "tax_failed"

    @property
    def label(self) -> str:
        return str(_TAX_LABELS[self])


_TAX_LABELS = {
    TaxStatus.NOT_SENT: _l("Not sent to the tax authority"),
    TaxStatus.PENDING: _l("Sent, waiting for the tax authority"),
    TaxStatus.ACCEPTED: _l("Accepted by the tax authority"),
    TaxStatus.REJECTED: _l("Rejected by the tax authority"),
    TaxStatus.FAILED: _l("Sending to the tax authority failed"),
}


def send_status_label(status: str) -> str:
    """The seller's words for a send or delivery status; unknown codes are shown as they are."""
    try:
        return SendStatus(status).label
    except ValueError:
        return status


def tax_status_label(status: str) -> str:
    try:
        return TaxStatus(status).label
    except ValueError:
        return status


def tax_labels() -> dict[str, str]:
    """The tax statuses with their labels, in order (for the list's filter box)."""
    return {status.value: status.label for status in TaxStatus}


def _send(predicate):
    def test(status: str) -> bool:
        try:
            return getattr(SendStatus(status), predicate)
        except ValueError:
            return False

    return test


def init_app(app) -> None:
    """Let templates say a status in the reader's words, and ask what it means."""
    app.add_template_global(send_status_label)
    app.add_template_global(tax_status_label)
    app.add_template_global(batch_status_label)
    # {% if invoice.send_status is pending_send %}: the predicates above, in templates.
    app.jinja_env.tests.update(
        pending_send=_send("is_active"),
        attention_send=_send("needs_attention"),
        explained_send=_send("has_reason"),
        sent_before=_send("was_sent"),
    )
