"""The invoice's status columns, derived from its deliveries, receipt events and tax submissions.

`refresh()` is their one writer. Every unit of work that changes a delivery, a receipt event
or a tax submission calls it for the invoices concerned, so the list (which filters and
counts on these columns) always agrees with the rows they come from.
"""

import functools

from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.orm import aliased

from portal.extensions import db
from portal.models import Delivery, Invoice, ReceiptEvent, TaxMessage, TaxSubmission
from portal.statuses import OutboxStatus, SendStatus, TaxStatus

# Events that show a person has the invoice, strongest first, and the weak one (mail apps
# fetch images alone).
STRONG_RECEIPTS = ("receipt_confirmed", "pdf_downloaded", "xml_downloaded", "page_shown")
WEAK_RECEIPTS = ("email_opened",)


def _latest_delivery_status():
    return (
        select(Delivery.status)
        .where(Delivery.invoice_id == Invoice.id)
        .order_by(Delivery.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _sent_at():
    return (
        select(func.max(Delivery.finished_at))
        .where(Delivery.invoice_id == Invoice.id, Delivery.status == OutboxStatus.SENT)
        .scalar_subquery()
    )


def _first_receipt(column, kinds: tuple[str, ...]):
    return (
        select(column)
        .where(
            ReceiptEvent.invoice_id == Invoice.id,
            ReceiptEvent.kind.in_(kinds),
            ReceiptEvent.possibly_automatic.is_(False),
        )
        .order_by(ReceiptEvent.at, ReceiptEvent.id)
        .limit(1)
        .scalar_subquery()
    )


def _strongest_receipt_kind(kinds: tuple[str, ...]):
    """The strongest of these events by people (confirmed, then a download, then a view).

    The tick says what happened; it is dated by the first event that showed receipt.
    """
    rank = case({kind: position for position, kind in enumerate(kinds)}, value=ReceiptEvent.kind)
    return (
        select(ReceiptEvent.kind)
        .where(
            ReceiptEvent.invoice_id == Invoice.id,
            ReceiptEvent.kind.in_(kinds),
            ReceiptEvent.possibly_automatic.is_(False),
        )
        .order_by(rank, ReceiptEvent.at, ReceiptEvent.id)
        .limit(1)
        .scalar_subquery()
    )


def _tax_status():
    """The newest submission's verdict, or where its message stands.

    Accepted or rejected: the authority's verdict. Pending: not sent while its message was
    never tried; failed while the message is retrying or was given up (the provider could not
    be reached); otherwise sent and waiting for the authority.
    """
    latest = aliased(TaxSubmission)  # its own name: the outer queries read tax_submission too
    newest = (
        select(latest.id)
        .where(latest.invoice_id == Invoice.id)
        .order_by(latest.id.desc())
        .limit(1)
        .correlate(Invoice)
        .scalar_subquery()
    )
    result = select(TaxSubmission.result).where(TaxSubmission.id == newest).scalar_subquery()

    def message(column):
        return (
            select(column)
            .join(TaxSubmission, TaxSubmission.message_id == TaxMessage.id)
            .where(TaxSubmission.id == newest)
            .scalar_subquery()
        )

    status = message(TaxMessage.status)
    failed = (OutboxStatus.RETRYING.value, OutboxStatus.FAILED.value)
    return case(
        (result.is_(None), TaxStatus.NOT_SENT.value),
        (result == "accepted", TaxStatus.ACCEPTED.value),
        (result == "rejected", TaxStatus.REJECTED.value),
        (message(TaxMessage.id).is_(None), TaxStatus.NOT_SENT.value),  # not packed yet
        (message(TaxMessage.attempts) == 0, TaxStatus.NOT_SENT.value),
        (status.in_(failed), TaxStatus.FAILED.value),
        else_=TaxStatus.PENDING.value,
    )


def refresh(invoice_ids: list[int]) -> None:
    """Recompute send status, sent at, received and tax status of these invoices, in SQL."""
    ids = sorted(set(invoice_ids))
    for start in range(0, len(ids), CHUNK):
        _refresh(ids[start : start + CHUNK])


# Invoices per UPDATE: far below SQLite's limit of bound parameters.
CHUNK = 5000


@functools.cache
def _statements():
    """The lock and the UPDATE, built once: building them took most of a refresh's time
    (every email refreshes its invoice twice; README, "Measured")."""
    ids = bindparam("ids", expanding=True)
    lock = select(Invoice.id).where(Invoice.id.in_(ids)).order_by(Invoice.id).with_for_update()
    strong_at = _first_receipt(ReceiptEvent.at, STRONG_RECEIPTS)
    strong_kind = _strongest_receipt_kind(STRONG_RECEIPTS)
    update_statuses = (
        update(Invoice)
        .where(Invoice.id.in_(ids))
        .values(
            send_status=func.coalesce(_latest_delivery_status(), SendStatus.NOT_SENT.value),
            sent_at=_sent_at(),
            received_at=func.coalesce(strong_at, _first_receipt(ReceiptEvent.at, WEAK_RECEIPTS)),
            received_kind=func.coalesce(
                strong_kind, _first_receipt(ReceiptEvent.kind, WEAK_RECEIPTS), ""
            ),
            tax_status=_tax_status(),
        )
    )
    return lock, update_statuses


def _refresh(ids: list[int]) -> None:
    if not ids:
        return
    lock, update_statuses = _statements()
    # Run as SQL on the session's connection (the ORM's bulk update took as long again):
    # the session's pending changes go first, and its invoices are expired below.
    db.session.flush()
    connection = db.session.connection()
    if db.engine.dialect.name == "postgresql":
        # Lock the rows first, in a statement of its own: an UPDATE that waits for another
        # transaction's lock re-reads its target row but not its subqueries, so it would
        # write statuses from a snapshot taken before that transaction committed.
        connection.execute(lock, {"ids": ids})
    connection.execute(update_statuses, {"ids": ids})
    # Invoices loaded in this session read the new values on their next access.
    wanted = set(ids)
    for item in list(db.session.identity_map.values()):
        if isinstance(item, Invoice) and item.id in wanted:
            db.session.expire(
                item, ["send_status", "sent_at", "received_at", "received_kind", "tax_status"]
            )
