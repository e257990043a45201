"""Bulk send: a draft of conditions and per-row recipients, then one batch of deliveries.

A draft keeps the conditions the seller loaded invoices by, which rows are ticked (or all
that match, but the unticked), and the recipients edited row by row. Sending stores the
batch and its deliveries in one unit of work; a job then enqueues them and packs the
invoices' data into messages for the tax authority, so the click that queues thousands
answers at once. The batch goes on whatever the browser does; pausing holds what has not
started, resuming queues exactly that again (docs/decisions.md, "Bulk send").
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from functools import lru_cache

from flask import current_app
from sqlalchemy import exists, func, insert, select, update

from portal import audit
from portal.database import after_commit, write
from portal.extensions import db
from portal.inputs import recipients_error, text_error
from portal.invoices import projection
from portal.invoices import service as listing
from portal.models import Batch, BatchRow, Customer, Delivery, Invoice, MailSettings
from portal.outbox import service as outbox
from portal.runtime.queue import HIGH, enqueue_calls
from portal.sending.addresses import AddressList, clean_display_name, parse_addresses
from portal.statuses import ACTIVE, BatchStatus, OutboxStatus
from portal.types import utcnow

log = logging.getLogger(__name__)

CHUNK = 1000  # deliveries per insert and per enqueue round trip
# Send status conditions the bulk page offers, as the list's tabs.
SEND_CONDITIONS = ("not_sent", "failed", "all")


# --- the draft: conditions, rows, selection --------------------------------------------------


def filters_of(batch: Batch) -> listing.Filters:
    values = json.loads(batch.conditions or "{}")
    return listing.Filters(
        **{k: v for k, v in values.items() if k in listing.Filters.__annotations__}
    )


def encode(filters: listing.Filters) -> str:
    values = {k: getattr(filters, k) for k in ("tab", "period", "q", "series", "tax_status",
                                                "received")}  # fmt: skip
    for key in ("date_from", "date_to"):
        value = getattr(filters, key)
        values[key] = value.isoformat() if value else None
    return json.dumps(values)


def _decoded(filters: listing.Filters) -> listing.Filters:
    from datetime import date

    for key in ("date_from", "date_to"):
        value = getattr(filters, key)
        if isinstance(value, str):
            setattr(filters, key, date.fromisoformat(value))
    return filters


def matching(filters: listing.Filters):
    """The ids of issued invoices that match the conditions (a subquery)."""
    filters = _decoded(filters)
    start, end = listing.period_range(filters, listing.today())
    conditions = listing.conditions_of(filters, start, end)
    statuses = listing.TABS.get(filters.tab)
    if statuses:
        conditions.append(Invoice.send_status.in_(statuses))
    return select(Invoice.id).where(Invoice.state == "issued", *conditions)


def create_draft(user_id: int, filters: listing.Filters) -> Batch:
    """Lấy dữ liệu: a new draft with these conditions (earlier drafts of the user stay)."""
    with write():
        batch = Batch(created_by_id=user_id, status=BatchStatus.DRAFT, conditions=encode(filters))
        db.session.add(batch)
    return batch


def selected_ids(batch: Batch) -> list[int]:
    """The invoices the seller ticked, or all that match but those unticked, in order."""
    unticked = exists().where(BatchRow.batch_id == batch.id, BatchRow.invoice_id == Invoice.id,
                              BatchRow.selected.is_(False))  # fmt: skip
    ticked = exists().where(BatchRow.batch_id == batch.id, BatchRow.invoice_id == Invoice.id,
                            BatchRow.selected.is_(True))  # fmt: skip
    query = select(Invoice.id).where(Invoice.id.in_(matching(filters_of(batch))))
    query = query.where(~unticked) if batch.select_all else query.where(ticked)
    return list(db.session.scalars(query.order_by(Invoice.issued_on, Invoice.id)))


@lru_cache(maxsize=20000)
def _parsed(text: str) -> AddressList:
    # Buyers repeat across invoices: check each distinct address text once.
    return parse_addresses(text)


@dataclass
class Row:
    """One invoice on the bulk page, with the recipients it would go to."""

    invoice: Invoice
    name: str
    to: str
    cc: str
    selected: bool
    edited: bool = False
    save_to_customer: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def sendable(self) -> bool:
        return not self.errors


def _row(invoice: Invoice, override: BatchRow | None, batch: Batch) -> Row:
    if override is not None and override.to_addresses is not None:
        name, to, cc = override.recipient_name, override.to_addresses, override.cc_addresses
        edited = True
    else:
        name, to, cc, edited = (
            invoice.buyer_person or invoice.buyer_name,
            invoice.buyer_email,
            "",
            False,
        )
    picked = override.selected if override is not None and override.selected is not None else None
    selected = batch.select_all if picked is None else picked
    row = Row(invoice, name, to, cc, selected, edited,
              bool(override and override.save_to_customer))  # fmt: skip
    row.errors = address_errors(to, cc)
    return row


def address_errors(to: str, cc: str) -> list[str]:
    from flask_babel import gettext as _

    found, count = [], 0
    for text in (to, cc):
        parsed = _parsed(text or "")
        count += len(parsed.addresses)
        found += [_("“%(address)s” is not a valid email address", address=bad)
                  for bad, _reason in parsed.errors]  # fmt: skip
    if not _parsed(to or "").addresses and not found:
        found.append(_("No email address: enter one"))
    if too_many := recipients_error(count):
        found.append(too_many)
    return found


@dataclass
class RowsPage:
    rows: list[Row]
    total: int
    page: int
    pages: int


def rows_page(batch: Batch, page: int, per_page: int = 50) -> RowsPage:
    """One page of the matching invoices, each with its recipients and whether it is ticked."""
    ids = matching(filters_of(batch))
    total = db.session.scalar(select(func.count()).select_from(ids.subquery()))
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    invoices = db.session.scalars(
        select(Invoice).where(Invoice.id.in_(ids)).order_by(Invoice.issued_on, Invoice.id)
        .limit(per_page).offset((page - 1) * per_page)
    ).all()  # fmt: skip
    overrides = _overrides(batch, [i.id for i in invoices])
    return RowsPage([_row(i, overrides.get(i.id), batch) for i in invoices], total, page, pages)


def _overrides(batch: Batch, invoice_ids: list[int]) -> dict[int, BatchRow]:
    rows = db.session.scalars(
        select(BatchRow).where(BatchRow.batch_id == batch.id, BatchRow.invoice_id.in_(invoice_ids))
    )
    return {row.invoice_id: row for row in rows}


def _override(batch: Batch, invoice_id: int) -> BatchRow:
    row = db.session.scalar(
        select(BatchRow).where(BatchRow.batch_id == batch.id, BatchRow.invoice_id == invoice_id)
    )
    if row is None:
        row = BatchRow(batch_id=batch.id, invoice_id=invoice_id)
        db.session.add(row)
    return row


def edit_row(batch_id: int, invoice_id: int, name: str, to: str, cc: str,
             save_to_customer: bool) -> Row:  # fmt: skip
    """Keep the recipients typed for one row (checked as they are typed).

    A value with characters no input may hold (docs/decisions.md, "Inputs") is refused:
    the row keeps what it had and says which field and character were refused.
    """
    from flask_babel import gettext as _

    refused = {}
    for key, label, text, multiline in (
        ("name", _("Recipient name"), name, False),
        ("to", _("Recipient email"), to, True),
        ("cc", _("CC"), cc, True),
    ):
        if error := text_error(text, multiline):
            refused[key] = _("%(field)s: %(error)s", field=label, error=error)
    with write():
        batch = _draft(batch_id)
        invoice = db.session.get(Invoice, invoice_id)
        row = _override(batch, invoice_id)
        first_edit = row.to_addresses is None
        if "name" not in refused:
            row.recipient_name = clean_display_name(name)
        elif first_edit:
            row.recipient_name = invoice.buyer_person or invoice.buyer_name
        if "to" not in refused:
            row.to_addresses = "; ".join(_parsed(to).addresses) if not _parsed(to).errors else to
        elif first_edit:
            row.to_addresses = invoice.buyer_email
        if "cc" not in refused:
            row.cc_addresses = "; ".join(_parsed(cc).addresses) if not _parsed(cc).errors else cc
        elif first_edit:
            row.cc_addresses = ""
        row.save_to_customer = save_to_customer
    result = _row(invoice, row, batch)
    result.errors[:0] = list(refused.values())
    return result


def tick(batch_id: int, invoice_ids: list[int], selected: bool) -> None:
    """Tick or untick rows."""
    with write():
        batch = _draft(batch_id)
        for invoice_id in invoice_ids:
            _override(batch, invoice_id).selected = selected


def tick_all(batch_id: int, selected: bool) -> None:
    """Tick every invoice that matches the conditions (or none): earlier ticks start over."""
    with write():
        batch = _draft(batch_id)
        batch.select_all = selected
        db.session.execute(
            update(BatchRow).where(BatchRow.batch_id == batch.id).values(selected=None)
        )


def _draft(batch_id: int) -> Batch:
    batch = db.session.get(Batch, batch_id)
    if batch is None or batch.status != BatchStatus.DRAFT:
        raise LookupError(batch_id)
    return batch


@dataclass
class Summary:
    """What is ticked: how many, their total, and which cannot go."""

    count: int = 0
    total: Decimal = Decimal(0)
    without_address: list[int] = field(default_factory=list)


def recipients(batch: Batch, ids: list[int]) -> dict[int, tuple[str, str, str, list[str]]]:
    """The effective (name, to, cc, errors) of each invoice, in a few queries."""
    found = {}
    checked: dict[tuple[str, str], list[str]] = {}  # buyers repeat: each pair is checked once
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        overrides = _overrides(batch, chunk)
        rows = db.session.execute(
            select(Invoice.id, Invoice.buyer_person, Invoice.buyer_name, Invoice.buyer_email)
            .where(Invoice.id.in_(chunk))
        )  # fmt: skip
        for invoice_id, person, buyer, email in rows:
            override = overrides.get(invoice_id)
            if override is not None and override.to_addresses is not None:
                name, to, cc = override.recipient_name, override.to_addresses, override.cc_addresses
            else:
                name, to, cc = person or buyer, email, ""
            if (to, cc) not in checked:
                checked[to, cc] = address_errors(to, cc)
            found[invoice_id] = (name, to, cc, checked[to, cc])
    return found


def summary(batch: Batch) -> Summary:
    ids = selected_ids(batch)
    result = Summary(count=len(ids))
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        result.total += sum(
            db.session.scalars(select(Invoice.total_amount).where(Invoice.id.in_(chunk))),
            Decimal(0),
        )
    result.without_address = [i for i, (*_r, errors) in recipients(batch, ids).items() if errors]
    return result


@dataclass
class Preflight:
    """Everything the seller should know before anything goes."""

    going: int
    in_flight: list[int]  # already being sent: skipped (one send at a time per invoice)
    sent_before: list[tuple[Invoice, Delivery]]
    sent_before_count: int
    without_address: list[tuple[Invoice, list[str]]]
    shared_addresses: list[tuple[str, int]]  # one address receiving several invoices
    daily_limit: int | None
    daily_note: str
    estimate_seconds: float
    rate_per_second: float


def preflight(batch: Batch) -> Preflight:
    from flask_babel import gettext as _

    ids = selected_ids(batch)
    who = recipients(batch, ids)
    bad = [i for i, (*_r, errors) in who.items() if errors]
    in_flight = set()
    for start in range(0, len(ids), CHUNK):
        in_flight |= set(db.session.scalars(
            select(Delivery.invoice_id).where(Delivery.invoice_id.in_(ids[start:start + CHUNK]),
                                              Delivery.status.in_(ACTIVE))
        ))  # fmt: skip
    going = [i for i in ids if i not in in_flight and i not in set(bad)]
    before = listing.last_deliveries([i for i in going if i in set(_sent_before(going))])
    sent = [(db.session.get(Invoice, i), d) for i, d in list(before.items())[:20]]
    counts: dict[str, int] = {}
    for invoice_id in going:
        for address in _parsed(who[invoice_id][1]).addresses:
            counts[address.lower()] = counts.get(address.lower(), 0) + 1
    shared = sorted(((a, n) for a, n in counts.items() if n > 1), key=lambda x: -x[1])[:10]
    settings = db.session.scalar(select(MailSettings).limit(1))
    daily, note = (settings.rate_per_day if settings else None), ""
    sender = (settings.sender_email if settings else "").lower()
    if daily is None and sender.endswith(("@gmail.com", "@googlemail.com")):
        daily, note = 500, _("A Gmail account sends to about 500 recipients a day.")
    rate = measured_rate(settings)
    return Preflight(
        going=len(going), in_flight=sorted(in_flight), sent_before=sent,
        sent_before_count=len(before),
        without_address=[(db.session.get(Invoice, i), who[i][3]) for i in bad[:20]],
        shared_addresses=shared, daily_limit=daily, daily_note=note,
        estimate_seconds=len(going) / rate if rate else 0.0, rate_per_second=rate,
    )  # fmt: skip


def _sent_before(ids: list[int]) -> list[int]:
    found = []
    for start in range(0, len(ids), CHUNK):
        found += list(db.session.scalars(
            select(Invoice.id).where(Invoice.id.in_(ids[start:start + CHUNK]),
                                     Invoice.send_status != "not_sent")
        ))  # fmt: skip
    return found


def measured_rate(settings: MailSettings | None) -> float:
    """Invoices a second the system sends: the account's own rate if set, else the last hour's."""
    if settings is not None and settings.rate_per_minute:
        return settings.rate_per_minute / 60
    since = utcnow() - timedelta(hours=1)
    rows = db.session.execute(
        select(func.count(), func.min(Delivery.finished_at), func.max(Delivery.finished_at))
        .where(Delivery.status == OutboxStatus.SENT, Delivery.finished_at >= since)
    ).one()  # fmt: skip
    count, first, last = rows
    if count and count > 10 and first and last and last > first:
        return count / (last - first).total_seconds()
    return float(current_app.config.get("BULK_DEFAULT_RATE", 10))


# --- sending the batch -----------------------------------------------------------------------


@dataclass
class Started:
    batch: Batch
    queued: int
    skipped_in_flight: int
    skipped_without_address: int


def start(batch_id: int, user_id: int) -> Started:
    """Store the batch's deliveries (and what is owed to the tax authority) in one unit of work.

    The deliveries' jobs are enqueued and the tax messages packed by a job, after the
    commit: the click answers in about a second even for thousands of invoices.
    """
    from portal.tax.service import queue_unpacked

    with write():
        batch = _draft(batch_id)
        ids = selected_ids(batch)
        who = recipients(batch, ids)
        in_flight = set()
        for begin in range(0, len(ids), CHUNK):
            in_flight |= set(db.session.scalars(
                select(Delivery.invoice_id).where(
                    Delivery.invoice_id.in_(ids[begin:begin + CHUNK]),
                    Delivery.status.in_(ACTIVE))
            ))  # fmt: skip
        going = [i for i in ids if i not in in_flight and not who[i][3]]
        now = utcnow()
        name_of = lru_cache(maxsize=None)(clean_display_name)  # buyers repeat
        rows = [
            dict(invoice_id=i, method="email", status=OutboxStatus.QUEUED.value, batch_id=batch.id,
                 recipient_name=name_of(who[i][0]),
                 to_addresses=";".join(_parsed(who[i][1]).addresses),
                 cc_addresses=";".join(_parsed(who[i][2]).addresses), bcc_addresses="",
                 created_by_id=user_id, created_at=now, next_attempt_at=now)
            for i in going
        ]  # fmt: skip
        # Inserted as SQL: the ORM's bulk insert took twice as long as the inserts themselves.
        for begin in range(0, len(rows), CHUNK):
            db.session.execute(insert(Delivery.__table__), rows[begin : begin + CHUNK])
        _save_to_customers(batch)
        queue_unpacked(batch.id, user_id)
        projection.refresh(going)
        batch.status = BatchStatus.RUNNING
        batch.started_at = now
        batch.started_by_id = user_id
        batch.total = len(going)
        audit.record("batch.started", target=batch,
                     details={"count": len(going), "in_flight": len(in_flight),
                              "without_address": len(ids) - len(going) - len(in_flight)})  # fmt: skip
        after_commit(lambda: enqueue_calls(HIGH, "portal.bulk.service.launch", [(batch.id,)]))
    return Started(batch, len(going), len(in_flight), len(ids) - len(going) - len(in_flight))


def _save_to_customers(batch: Batch) -> None:
    """Keep edited addresses on the customers whose rows asked for it, for next time."""
    rows = db.session.execute(
        select(BatchRow.to_addresses, Invoice.customer_id)
        .join(Invoice, Invoice.id == BatchRow.invoice_id)
        .where(BatchRow.batch_id == batch.id, BatchRow.save_to_customer.is_(True),
               Invoice.customer_id.is_not(None))
    ).all()  # fmt: skip
    for to, customer_id in rows:
        if to and not _parsed(to).errors:
            db.session.execute(update(Customer).where(Customer.id == customer_id)
                               .values(email="; ".join(_parsed(to).addresses)))  # fmt: skip


def launch(batch_id: int) -> int:
    """Job: enqueue the batch's queued deliveries, then pack its tax data into messages."""
    from portal.sending.service import DELIVERIES
    from portal.tax.service import pack_pending

    ids = list(db.session.scalars(
        select(Delivery.id).where(Delivery.batch_id == batch_id,
                                  Delivery.status == OutboxStatus.QUEUED).order_by(Delivery.id)
    ))  # fmt: skip
    db.session.rollback()
    for begin in range(0, len(ids), CHUNK):
        outbox.enqueue(DELIVERIES, ids[begin : begin + CHUNK])
    pack_pending()
    return len(ids)


def pause(batch_id: int, reason: str = "", user_id: int | None = None) -> None:
    """Tạm dừng: what has not started is held; what is in flight finishes."""
    with write():
        batch = db.session.get(Batch, batch_id)
        if batch is None or batch.status != BatchStatus.RUNNING:
            return
        batch.status = BatchStatus.PAUSED
        batch.pause_reason = reason
        held = _set_status(batch.id, (OutboxStatus.QUEUED, OutboxStatus.RETRYING),
                           OutboxStatus.HELD)  # fmt: skip
        audit.record("batch.paused", target=batch, details={"held": held})
        log.info("batch %s paused (%s): %d held", batch_id, reason or "by the seller", held)


def resume(batch_id: int) -> None:
    """Tiếp tục: exactly the held deliveries are queued again."""
    from portal.sending.service import DELIVERIES

    with write():
        batch = db.session.get(Batch, batch_id)
        if batch is None or batch.status != BatchStatus.PAUSED:
            return
        batch.status, batch.pause_reason = BatchStatus.RUNNING, ""
        ids = list(db.session.scalars(select(Delivery.id).where(
            Delivery.batch_id == batch.id, Delivery.status == OutboxStatus.HELD)))  # fmt: skip
        _set_status(batch.id, (OutboxStatus.HELD,), OutboxStatus.QUEUED)
        audit.record("batch.resumed", target=batch, details={"count": len(ids)})
        outbox.enqueue_after_commit(DELIVERIES, ids)


def cancel(batch_id: int) -> None:
    """Hủy phần còn lại: what has not been sent is not sent; what is in flight finishes."""
    with write():
        batch = db.session.get(Batch, batch_id)
        if batch is None or batch.status not in (BatchStatus.RUNNING, BatchStatus.PAUSED):
            return
        batch.status = BatchStatus.CANCELLED
        batch.finished_at = utcnow()
        cancelled = _set_status(
            batch.id,
            (OutboxStatus.QUEUED, OutboxStatus.RETRYING, OutboxStatus.HELD),
            OutboxStatus.CANCELLED,
        )
        audit.record("batch.cancelled", target=batch, details={"count": cancelled})


def retry_failed(batch_id: int, user_id: int) -> int:
    """Gửi lại các HĐ lỗi: a new delivery, to the same recipients, of each failed invoice only."""
    from portal.sending.service import DELIVERIES

    with write():
        batch = db.session.get(Batch, batch_id)
        if batch is None or batch.status not in (BatchStatus.DONE, BatchStatus.CANCELLED):
            return 0
        latest = (
            select(func.max(Delivery.id)).where(Delivery.batch_id == batch.id)
            .group_by(Delivery.invoice_id)
        )  # fmt: skip
        failed = db.session.scalars(select(Delivery).where(
            Delivery.id.in_(latest), Delivery.status == OutboxStatus.FAILED)).all()  # fmt: skip
        busy = set(db.session.scalars(select(Delivery.invoice_id).where(
            Delivery.invoice_id.in_([d.invoice_id for d in failed]),
            Delivery.status.in_(ACTIVE))))  # fmt: skip
        now = utcnow()
        made = [
            Delivery(invoice_id=d.invoice_id, method="email", batch_id=batch.id,
                     recipient_name=d.recipient_name, to_addresses=d.to_addresses,
                     cc_addresses=d.cc_addresses, created_by_id=user_id, next_attempt_at=now)
            for d in failed if d.invoice_id not in busy
        ]  # fmt: skip
        db.session.add_all(made)
        db.session.flush()
        batch.status, batch.finished_at, batch.pause_reason = BatchStatus.RUNNING, None, ""
        projection.refresh([d.invoice_id for d in made])
        audit.record("batch.retried_failed", target=batch,
                     details={"count": len(made), "busy": len(busy)})  # fmt: skip
        outbox.enqueue_after_commit(DELIVERIES, [d.id for d in made])
    return len(made)


def _set_status(batch_id: int, from_statuses, to_status) -> int:
    invoice_ids = list(db.session.scalars(select(Delivery.invoice_id).where(
        Delivery.batch_id == batch_id, Delivery.status.in_(from_statuses))))  # fmt: skip
    values = {"status": to_status}
    if to_status == OutboxStatus.QUEUED:
        values["next_attempt_at"] = utcnow()
    if to_status == OutboxStatus.CANCELLED:
        values["finished_at"] = utcnow()
    db.session.execute(update(Delivery).where(Delivery.batch_id == batch_id,
                                              Delivery.status.in_(from_statuses)).values(**values))  # fmt: skip
    projection.refresh(invoice_ids)
    return len(invoice_ids)


# --- watching it ---------------------------------------------------------------------------


@dataclass
class Stats:
    counts: dict[str, int]
    total: int
    done: int
    rate: float  # invoices a second over the last minute
    seconds_left: float | None
    pace: str  # what sets the pace now: "", "account", "daily", "throttled", "pdf", "workers"

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 100


def stats(batch: Batch) -> Stats:
    rows = db.session.execute(
        select(Delivery.status, func.count()).where(Delivery.batch_id == batch.id)
        .group_by(Delivery.status)
    ).all()  # fmt: skip
    counts = {status: count for status, count in rows}
    finals = (OutboxStatus.SENT, OutboxStatus.FAILED, OutboxStatus.UNKNOWN, OutboxStatus.CANCELLED)
    done = sum(counts.get(s, 0) for s in finals)
    total = sum(counts.values())
    since = utcnow() - timedelta(seconds=60)
    recent, first = db.session.execute(
        select(func.count(), func.min(Delivery.finished_at)).where(
            Delivery.batch_id == batch.id, Delivery.status == OutboxStatus.SENT,
            Delivery.finished_at >= since)
    ).one()  # fmt: skip
    window = max(1.0, (utcnow() - first).total_seconds()) if first else 60.0
    rate = recent / window if recent else 0.0
    left = total - done
    seconds = left / rate if rate and batch.status == BatchStatus.RUNNING else None
    return Stats(counts, total, done, rate, seconds, _pace(batch, counts))


def _pace(batch: Batch, counts: dict) -> str:
    if batch.status != BatchStatus.RUNNING:
        return ""
    settings = db.session.scalar(select(MailSettings).limit(1))
    now = utcnow()
    if settings is not None:
        if settings.throttled_until and settings.throttled_until > now:
            return "throttled"
        from portal.sending.service import pace_wait

        wait = pace_wait(settings, now)
        if wait:
            return "daily" if wait > 120 else "account"
    rendering = db.session.scalar(
        select(func.count()).select_from(Delivery)
        .where(Delivery.batch_id == batch.id, Delivery.status == OutboxStatus.SENDING,
               Delivery.data_sent_at.is_(None))
    )  # fmt: skip
    return "pdf" if rendering else "workers"


def maintain() -> dict[str, int]:
    """Reconciler upkeep: batches with nothing left in flight are done."""
    running = select(Batch.id).where(Batch.status == BatchStatus.RUNNING)
    active = exists().where(Delivery.batch_id == Batch.id, Delivery.status.in_(ACTIVE))
    ids = list(
        db.session.scalars(
            running.where(~active, Batch.started_at < utcnow() - timedelta(seconds=2))
        )
    )
    db.session.rollback()
    if ids:
        with write():
            db.session.execute(update(Batch).where(Batch.id.in_(ids), Batch.status == BatchStatus.RUNNING)
                               .values(status=BatchStatus.DONE, finished_at=utcnow()))  # fmt: skip
    return {"batches_done": len(ids)}


def check_failures(delivery: Delivery) -> None:
    """After a permanent failure in a batch: pause it past the thresholds (inside the unit of work).

    20 failures in a row, or a third of the last 50 finished, mean something is wrong for all
    (a wrong password, a blocked sender): stop before burning through the rest.
    """
    from flask_babel import gettext as _

    config = current_app.config
    in_a_row = int(config.get("BULK_PAUSE_IN_A_ROW", 20))
    window = int(config.get("BULK_PAUSE_WINDOW", 50))
    last = list(db.session.scalars(
        select(Delivery.status).where(
            Delivery.batch_id == delivery.batch_id,
            Delivery.status.in_((OutboxStatus.SENT, OutboxStatus.FAILED)))
        .order_by(Delivery.finished_at.desc(), Delivery.id.desc()).limit(window)
    ))  # fmt: skip
    failed = sum(1 for s in last if s == OutboxStatus.FAILED)
    streak = next((n for n, s in enumerate(last) if s != OutboxStatus.FAILED), len(last))
    reason, why = "", {}
    if streak >= in_a_row:
        reason = _("%(count)s sends failed in a row", count=streak)
        why = {"automatic": "in_a_row", "count": streak}
    elif len(last) >= window and failed * 3 >= len(last):
        reason = _("%(failed)s of the last %(count)s sends failed", failed=failed, count=len(last))
        why = {"automatic": "window", "failed": failed, "count": len(last)}
    if reason:
        batch = db.session.get(Batch, delivery.batch_id)
        if batch is not None and batch.status == BatchStatus.RUNNING:
            batch.status = BatchStatus.PAUSED
            batch.pause_reason = reason + ": " + (delivery.error_kind or "")
            held = _set_status(batch.id, (OutboxStatus.QUEUED, OutboxStatus.RETRYING),
                               OutboxStatus.HELD)  # fmt: skip
            audit.record("batch.paused", target=batch, user=None,
                         details={**why, "error_kind": delivery.error_kind or "", "held": held})  # fmt: skip


def batches(limit: int = 50) -> list[Batch]:
    return list(db.session.scalars(
        select(Batch).where(Batch.status != BatchStatus.DRAFT).order_by(Batch.id.desc()).limit(limit)
    ))  # fmt: skip


def batch_rows(batch: Batch, page: int, per_page: int = 50):
    """One page of the batch's deliveries (the newest of each invoice), with their invoices."""
    latest = (
        select(func.max(Delivery.id))
        .where(Delivery.batch_id == batch.id)
        .group_by(Delivery.invoice_id)
    )
    total = db.session.scalar(select(func.count()).select_from(latest.subquery()))
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    rows = db.session.execute(
        select(Delivery, Invoice).join(Invoice, Invoice.id == Delivery.invoice_id)
        .where(Delivery.id.in_(latest)).order_by(Delivery.id).limit(per_page)
        .offset((page - 1) * per_page)
    ).all()  # fmt: skip
    return rows, page, pages
