"""Transfer invoice data to the tax authority: the tax kind of the outbox.

A send writes the invoice's submission in the same unit of work as the delivery (docs/
domain.md: the data goes to the tax authority at the same time as the invoice goes to the
buyer). Submissions go in messages (TDiep 203) of one taxpayer and at most 2 MB, whose id
(MTDiep) and bytes are stored before anything is sent. The job looks a message up before
sending it again, so a lost answer or a crash never sends it twice; answers (999, 204) come
back from the submit, from polling, from lookups or pushed to the callback, are stored byte
for byte once, and change each invoice's verdict once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import exists, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload, undefer

from portal import audit
from portal.database import write
from portal.einvoice import tdiep
from portal.extensions import db
from portal.invoices import projection
from portal.models import Delivery, Invoice, TaxExchange, TaxMessage, TaxSettings, TaxSubmission
from portal.outbox import service as outbox
from portal.sending.secrets_box import decrypt, encrypt
from portal.statuses import OutboxStatus
from portal.tax.gateway import Connection, GatewayError, gateway_for
from portal.types import utcnow

log = logging.getLogger(__name__)

# A submission in one of these covers its invoice: no second one is written.
COVERING = ("pending", "accepted")


# --- settings ----------------------------------------------------------------------------


def tax_settings() -> TaxSettings | None:
    return db.session.scalar(select(TaxSettings).order_by(TaxSettings.id).limit(1))


def sender_code(settings: TaxSettings | None = None) -> str:
    settings = settings if settings is not None else tax_settings()
    return (settings.sender_code if settings else "") or current_app.config["TVAN_SENDER_CODE"]


def connection(settings: TaxSettings) -> Connection:
    return Connection(
        endpoint=settings.endpoint,
        username=settings.username,
        password=decrypt(settings.password_encrypted) or "",
        timeout=float(current_app.config.get("TVAN_TIMEOUT", 30)),
    )


def ensure_tax_settings() -> TaxSettings | None:
    """Create the first tax settings from TVAN_* (the sandbox under `make run`)."""
    config = current_app.config
    with write():
        settings = tax_settings()
        if settings is not None and config.get("TVAN_SANDBOX") and settings.provider == "sandbox":
            # The sandbox may have had to take another port, or new credentials, this time.
            settings.endpoint = config["TVAN_ENDPOINT"]
            settings.username = config.get("TVAN_USERNAME") or ""
            settings.password_encrypted = encrypt(config.get("TVAN_PASSWORD") or "")
            settings.callback_secret_encrypted = encrypt(config.get("TVAN_CALLBACK_SECRET") or "")
        if settings is None and config.get("TVAN_ENDPOINT"):
            settings = TaxSettings(
                provider=config.get("TVAN_PROVIDER", "sandbox"),
                endpoint=config["TVAN_ENDPOINT"],
                username=config.get("TVAN_USERNAME") or "",
                password_encrypted=encrypt(config.get("TVAN_PASSWORD") or ""),
                callback_secret_encrypted=encrypt(config.get("TVAN_CALLBACK_SECRET") or ""),
                sender_code=config["TVAN_SENDER_CODE"],
            )
            db.session.add(settings)
    return settings


@dataclass
class TaxValues:
    """What the seller typed on the tax settings page; empty secrets keep the stored ones."""

    provider: str
    endpoint: str
    username: str
    password: str
    sender_code: str
    callback_secret: str
    wait_for_acceptance: bool
    holidays: str


def save_tax_settings(values: TaxValues) -> TaxSettings:
    """Create or update the one TaxSettings row."""
    with write():
        settings = tax_settings()
        if settings is None:
            settings = TaxSettings()
            db.session.add(settings)
        if (settings.endpoint, settings.username) != (values.endpoint, values.username):
            settings.poll_cursor = ""  # another provider account: its answers start over
        settings.provider = values.provider
        settings.endpoint = values.endpoint
        settings.username = values.username
        if values.password:
            settings.password_encrypted = encrypt(values.password)
        if values.callback_secret:
            settings.callback_secret_encrypted = encrypt(values.callback_secret)
        settings.sender_code = values.sender_code
        settings.wait_for_acceptance = values.wait_for_acceptance
        settings.holidays = values.holidays
        audit.record("settings.changed", target=settings,
                     details={"section": "tax", "changes": audit.changes(settings)})  # fmt: skip
        settings.updated_at = utcnow()
    return settings


def test_connection(values: TaxValues) -> tuple[bool, str]:
    """Ask the provider with the typed values; return whether it answered, and its exact answer.

    An empty password uses the stored one only for the stored address and user: the stored
    password never goes to another host (a changed address or user needs it typed again).
    """
    from flask_babel import gettext as _

    stored = tax_settings()
    password = values.password
    if not password and stored is not None:
        if (stored.endpoint, stored.username) != (values.endpoint, values.username):
            return False, _("Enter the password: the address or user changed.")
        password = decrypt(stored.password_encrypted) or ""
    connection = Connection(values.endpoint, values.username, password,
                            timeout=min(15.0, float(current_app.config.get("TVAN_TIMEOUT", 30))))  # fmt: skip
    try:
        answer = gateway_for(values.provider, connection).ping()
    except GatewayError as error:
        outcome = (False, f"{error.code or ''} {error.message}".strip())
    else:
        outcome = (True, answer)
    if stored is not None:
        with write():
            row = db.session.get(TaxSettings, stored.id)
            row.last_test_at, row.last_test_ok = utcnow(), outcome[0]
            row.last_test_message = outcome[1][:1000]
    return outcome


def gateway(settings: TaxSettings | None = None):
    settings = settings if settings is not None else tax_settings()
    if settings is None or not settings.endpoint:
        raise GatewayError("refused", "no connection to a T-VAN is set up")
    return gateway_for(settings.provider, connection(settings))


# --- writing submissions -------------------------------------------------------------------


def covering(invoice_ids: list[int]) -> dict[int, TaxSubmission]:
    rows = db.session.scalars(
        select(TaxSubmission).where(
            TaxSubmission.invoice_id.in_(invoice_ids), TaxSubmission.result.in_(COVERING)
        )
    )
    return {row.invoice_id: row for row in rows}


def submit_invoices(
    invoice_ids: list[int], user_id: int | None = None, delivery_ids: dict[int, int] | None = None
) -> list[TaxSubmission]:
    """Write submissions for the invoices not yet covered, in messages; call inside write().

    Invoices of one taxpayer share messages of at most 2 MB; each message's id and bytes are
    stored now, and its job is enqueued after the commit.
    """
    already = covering(invoice_ids)
    wanted = [i for i in dict.fromkeys(invoice_ids) if i not in already]
    if not wanted:
        return []
    invoices = db.session.scalars(
        select(Invoice).where(Invoice.id.in_(wanted)).options(undefer(Invoice.xml))
        .order_by(Invoice.seller_tax_code, Invoice.id)
    ).all()  # fmt: skip
    code = sender_code()
    made: list[TaxSubmission] = []
    messages: list[TaxMessage] = []
    group: list[Invoice] = []

    def close(group: list[Invoice]) -> None:
        message_code = tdiep.new_message_code(code)
        payload = tdiep.build_203(code, message_code, group[0].seller_tax_code,
                                  [invoice.xml for invoice in group])  # fmt: skip
        message = TaxMessage(message_code=message_code, seller_tax_code=group[0].seller_tax_code,
                             invoice_count=len(group), payload=payload)  # fmt: skip
        db.session.add(message)
        db.session.add(TaxExchange(message=message, direction="out", message_type="203",
                                   message_code=message_code, via="stored", body=payload))  # fmt: skip
        for invoice in group:
            made.append(TaxSubmission(
                invoice_id=invoice.id, message=message, created_by_id=user_id,
                delivery_id=(delivery_ids or {}).get(invoice.id),
            ))  # fmt: skip
        messages.append(message)

    size = 0
    for invoice in invoices:
        item = len(tdiep.invoice_element(invoice.xml))
        full = group and (
            group[0].seller_tax_code != invoice.seller_tax_code
            or size + item > tdiep.MAX_BYTES - 4096
        )
        if full:
            close(group)
            group, size = [], 0
        group.append(invoice)
        size += item
    if group:
        close(group)
    db.session.add_all(made)
    db.session.flush()
    outbox.enqueue_after_commit(TAX, [message.id for message in messages])
    projection.refresh([submission.invoice_id for submission in made])
    return made


def queue_unpacked(batch_id: int, user_id: int | None = None) -> int:
    """Write submissions without their message yet for a bulk send's invoices; inside write().

    One for each invoice of the batch's deliveries that no pending or accepted submission
    covers, in one INSERT ... SELECT (row by row from Python it took a tenth of the click).
    The batch's job packs them into messages (pack_pending) after the commit, so the click
    that sends thousands does not build megabytes of messages first. Returns how many.
    """
    table = TaxSubmission.__table__
    covered = exists().where(
        TaxSubmission.invoice_id == Delivery.invoice_id, TaxSubmission.result.in_(COVERING)
    )
    rows = select(
        Delivery.invoice_id, literal(user_id, table.c.created_by_id.type),
        literal(utcnow(), table.c.created_at.type), literal("pending"), literal(""),
        literal(""), literal(""),
    ).where(Delivery.batch_id == batch_id, ~covered).distinct()  # fmt: skip
    columns = ["invoice_id", "created_by_id", "created_at", "result", "error_code",
               "error_text", "fix_hint"]  # fmt: skip
    return db.session.execute(insert(table).from_select(columns, rows)).rowcount


def pack_pending(limit: int = 100_000) -> int:
    """Pack submissions that have no message yet into messages, each in a unit of work of its own.

    One taxpayer per message and at most 2 MB; each message's job is enqueued after its
    commit, so the first ones are on their way while the rest are packed. Returns how many
    messages were made.
    """
    made = 0
    while True:
        with write():
            waiting = db.session.execute(
                select(TaxSubmission.id, TaxSubmission.invoice_id, Invoice.seller_tax_code)
                .join(Invoice, Invoice.id == TaxSubmission.invoice_id)
                .where(TaxSubmission.message_id.is_(None), TaxSubmission.result == "pending")
                .order_by(Invoice.seller_tax_code, TaxSubmission.id).limit(2000)
            ).all()  # fmt: skip
            if not waiting:
                return made
            seller = waiting[0].seller_tax_code
            group, size, taken = [], 0, []
            for row in waiting:
                if row.seller_tax_code != seller:
                    break
                xml = db.session.scalar(select(Invoice.xml).where(Invoice.id == row.invoice_id))
                item = len(tdiep.invoice_element(xml))
                if group and size + item > tdiep.MAX_BYTES - 4096:
                    break
                group.append(xml)
                taken.append(row.id)
                size += item
            code = sender_code()
            message_code = tdiep.new_message_code(code)
            payload = tdiep.build_203(code, message_code, seller, group)
            message = TaxMessage(message_code=message_code, seller_tax_code=seller,
                                 invoice_count=len(group), payload=payload)  # fmt: skip
            db.session.add(message)
            db.session.add(TaxExchange(message=message, direction="out", message_type="203",
                                       message_code=message_code, via="stored", body=payload))  # fmt: skip
            db.session.flush()
            db.session.execute(update(TaxSubmission).where(TaxSubmission.id.in_(taken))
                               .values(message_id=message.id))  # fmt: skip
            outbox.enqueue_after_commit(TAX, [message.id])
        made += 1
        if made >= limit:
            return made


def ensure_submission(
    invoice_id: int, delivery_id: int | None = None, user_id: int | None = None
) -> TaxSubmission:
    """Return the invoice's covering submission, writing one (in a message of its own) if none.

    Call inside a unit of work. A resend finds the first one: an invoice's data goes to the
    tax authority once (it refuses a repeat with 20609).
    """
    found = covering([invoice_id]).get(invoice_id)
    if found is not None:
        return found
    delivery_ids = {invoice_id: delivery_id} if delivery_id else None
    return submit_invoices([invoice_id], user_id, delivery_ids)[0]


@dataclass
class TransferResult:
    queued: int = 0  # newly written
    retried: int = 0  # a failed message tried again
    in_progress: int = 0  # already on its way or waiting for the answer
    accepted: int = 0  # already accepted: nothing to do
    rejected: int = 0  # rejected: not sent again unchanged


def latest_submissions(invoice_ids: list[int]) -> dict[int, TaxSubmission]:
    """The newest submission of each invoice, in one query."""
    newest = (
        select(db.func.max(TaxSubmission.id))
        .where(TaxSubmission.invoice_id.in_(invoice_ids))
        .group_by(TaxSubmission.invoice_id)
    )
    rows = db.session.scalars(
        select(TaxSubmission).where(TaxSubmission.id.in_(newest))
        .options(joinedload(TaxSubmission.message))
    )  # fmt: skip
    return {row.invoice_id: row for row in rows}


def transfer(invoice_ids: list[int], user_id: int | None) -> TransferResult:
    """Chuyển dữ liệu HĐ đến CQT: send the data of these invoices unless it is on its way.

    An accepted invoice is not sent again, nor a rejected one (unchanged, it would be
    rejected again: it needs a replacing invoice); a message that could not reach the
    provider is tried again at once, with its own id.
    """
    result = TransferResult()
    with write():
        latest = latest_submissions(invoice_ids)
        new, retry = [], set()
        for invoice_id in dict.fromkeys(invoice_ids):
            submission = latest.get(invoice_id)
            if submission is None:
                new.append(invoice_id)
            elif submission.result == "accepted":
                result.accepted += 1
            elif submission.result == "rejected":
                result.rejected += 1
            elif submission.message is not None and submission.message.status in (
                OutboxStatus.FAILED, OutboxStatus.RETRYING,
            ):  # fmt: skip
                retry.add(submission.message_id)
                result.retried += 1
            else:
                result.in_progress += 1
        result.queued = len(submit_invoices(new, user_id))
        if retry:
            db.session.execute(
                update(TaxMessage).where(TaxMessage.id.in_(retry))
                .values(status=OutboxStatus.QUEUED, next_attempt_at=utcnow())
            )  # fmt: skip
            refresh_for_messages(list(retry))
            outbox.enqueue_after_commit(TAX, list(retry))
        unique = list(dict.fromkeys(invoice_ids))
        one = db.session.get(Invoice, unique[0]) if len(unique) == 1 else None
        audit.record("tax.transferred", target=one, details={
            "count": len(unique), "invoice_ids": unique[:100], "queued": result.queued,
            "retried": result.retried, "in_progress": result.in_progress,
            "accepted": result.accepted, "rejected": result.rejected,
        })  # fmt: skip
    return result


# --- the job -------------------------------------------------------------------------------


def perform_message(message_id: int, held: outbox.Claim) -> outbox.Outcome:
    """Send one message; after an earlier attempt, ask the provider about it first."""
    message = db.session.get(TaxMessage, message_id, options=[undefer(TaxMessage.payload)])
    code, payload = message.message_code, message.payload
    try:
        provider = gateway()
    except GatewayError as error:
        return outbox.Outcome.permanent(error.kind, error.code, error.message)
    db.session.rollback()  # hold no read snapshot while the provider talks
    try:
        if held.attempt > 1:
            known = provider.lookup(code)
            if known is not None:
                record_answers(known, "lookup")
                return outbox.Outcome.sent(None, "known to the provider: not sent again")
        if not held.mark_data_sent():
            return outbox.Outcome.temporary("aborted")
        receipt = provider.submit(code, payload)
    except GatewayError as error:
        if error.temporary:
            return outbox.Outcome.temporary(error.kind, error.code, error.message)
        return outbox.Outcome.permanent(error.kind, error.code, error.message)
    answer = record_answers([receipt], "submit")
    if not answer:
        return outbox.Outcome.temporary("no_answer", None, "the provider's answer was not a 999")
    return outbox.Outcome.sent(None, "999 received")


def tax_retry_intervals() -> list[int]:
    """Seconds before each retry of a message the provider could not take (TAX_RETRY_INTERVALS)."""
    raw = str(current_app.config.get("TAX_RETRY_INTERVALS", "30,120,600,1800,3600,3600"))
    return [int(x) for x in raw.split(",") if x.strip()]


def refresh_for_messages(message_ids: list[int]) -> None:
    """Refresh the tax status of the invoices in these messages."""
    projection.refresh(list(db.session.scalars(
        select(TaxSubmission.invoice_id).where(TaxSubmission.message_id.in_(message_ids))
    )))  # fmt: skip


# --- answers -------------------------------------------------------------------------------


def record_answers(answers: list[bytes], via: str) -> int:
    """Store and apply answers (999, 204), each once; return how many were answers."""
    valid = 0
    for xml in answers:
        try:
            with write():
                valid += _apply(xml, via)
        except IntegrityError:
            valid += 1  # stored meanwhile by another worker or the callback: changes nothing
    return valid


def _apply(xml: bytes, via: str) -> bool:
    """Store one answer and apply it, unless it was seen before; False if it is no answer."""
    try:
        answer = tdiep.parse_answer(xml)
    except ValueError:
        log.warning("something that is not a 999 or 204 came by %s; ignored", via)
        return False
    seen = db.session.scalar(
        select(TaxExchange.id).where(
            TaxExchange.direction == "in", TaxExchange.message_code == answer.message_code
        )
    )
    if seen is not None:
        return True  # the same answer again (a doubled 204, a lookup after a push)
    message = db.session.scalar(
        select(TaxMessage).where(TaxMessage.message_code == answer.reference)
    )
    db.session.add(TaxExchange(
        tax_message_id=message.id if message else None, direction="in",
        message_type=answer.message_type, message_code=answer.message_code,
        reference=answer.reference, via=via, body=xml,
    ))  # fmt: skip
    db.session.flush()  # the unique (direction, code) decides a race with another copy
    if message is None:
        log.warning("answer %s refers to unknown message %s", answer.message_code, answer.reference)
        return True
    now = utcnow()
    submissions = db.session.scalars(
        select(TaxSubmission).where(TaxSubmission.message_id == message.id)
        .options(joinedload(TaxSubmission.invoice))
    ).all()  # fmt: skip
    pending = [s for s in submissions if s.result == "pending"]
    decided: dict[str, list[int]] = {"accepted": [], "rejected": []}
    if answer.message_type == tdiep.RECEIPT:
        if message.receipt_at is not None:
            return True
        message.receipt_at, message.receipt_ok = now, answer.accepted
        if not answer.accepted:
            for submission in pending:
                _decide(submission, "rejected", answer.problems, now, decided)
    elif answer.message_type == tdiep.NOTICE:
        if message.notice_at is not None:
            return True
        message.notice_at = now
        if message.receipt_at is None:
            message.receipt_at, message.receipt_ok = now, True
        for submission in pending:
            invoice = submission.invoice
            problems = answer.invalid.get((invoice.form, invoice.series, invoice.number))
            if problems is None and not answer.accepted and not answer.invalid:
                problems = answer.problems  # the notice refuses the message as a whole
            _decide(submission, "rejected" if problems else "accepted", problems or [], now,
                    decided)  # fmt: skip
    projection.refresh([s.invoice_id for s in submissions])
    _release_deliveries(decided["accepted"], decided["rejected"])
    return True


def _decide(submission, result, problems, now, decided) -> None:
    submission.result = result
    submission.decided_at = now
    if problems:
        submission.error_code = "; ".join(p.code for p in problems if p.code)[:32]
        submission.error_text = "\n".join(p.text for p in problems if p.text)
        submission.fix_hint = "\n".join(p.hint for p in problems if p.hint)
    decided[result].append(submission.invoice_id)


def _release_deliveries(accepted: list[int], rejected: list[int]) -> None:
    """Emails held for the authority's acceptance go now, or fail with its reason."""
    from portal.sending.service import DELIVERIES, refresh_invoices

    held = select(Delivery.id).where(Delivery.status == OutboxStatus.HELD)
    going = list(db.session.scalars(held.where(Delivery.invoice_id.in_(accepted))))
    stopped = list(db.session.scalars(held.where(Delivery.invoice_id.in_(rejected))))
    now = utcnow()
    if going:
        db.session.execute(update(Delivery).where(Delivery.id.in_(going))
                           .values(status=OutboxStatus.QUEUED, next_attempt_at=now))  # fmt: skip
        outbox.enqueue_after_commit(DELIVERIES, going)
    if stopped:
        db.session.execute(update(Delivery).where(Delivery.id.in_(stopped))
                           .values(status=OutboxStatus.FAILED, error_kind="tax_rejected",
                                   finished_at=now))  # fmt: skip
    if going or stopped:
        refresh_invoices(going + stopped)


def waits_for_acceptance(invoice_id: int) -> bool:
    """Whether a buyer email of this invoice must wait for the authority's acceptance."""
    settings = tax_settings()
    if settings is None or not settings.wait_for_acceptance:
        return False
    found = covering([invoice_id]).get(invoice_id)
    return found is None or found.result != "accepted"


# --- upkeep: polling and late answers ---------------------------------------------------------


def maintain() -> dict[str, int]:
    """Pack what is left unpacked, fetch answers since the cursor, look up late answers."""
    counts = {"packed": pack_pending(limit=20), "answers": 0, "looked_up": 0}
    settings = tax_settings()
    if settings is None or not settings.endpoint:
        return counts
    try:
        provider = gateway(settings)
        cursor = settings.poll_cursor
        db.session.rollback()
        answers, new_cursor = provider.fetch(cursor)
    except GatewayError as error:
        log.info("polling the T-VAN: %s", error)
        return counts
    counts["answers"] = record_answers(answers, "poll")
    if new_cursor != cursor:
        with write():
            db.session.execute(update(TaxSettings).where(TaxSettings.id == settings.id)
                               .values(poll_cursor=new_cursor))  # fmt: skip
    # A message whose 204 is late is looked up TAX_LOOKUP_AFTER seconds after it was taken,
    # then every TAX_LOOKUP_EVERY seconds (the answer may have been lost on its way).
    now = utcnow()
    config = current_app.config
    late = now - timedelta(seconds=int(config.get("TAX_LOOKUP_AFTER", 30)))
    again = now - timedelta(seconds=int(config.get("TAX_LOOKUP_EVERY", 300)))
    waiting = db.session.execute(
        select(TaxMessage.id, TaxMessage.message_code).where(
            TaxMessage.status == OutboxStatus.SENT,
            TaxMessage.notice_at.is_(None),
            (TaxMessage.receipt_ok.is_(True)) | TaxMessage.receipt_at.is_(None),
            TaxMessage.finished_at < late,
            (TaxMessage.looked_up_at.is_(None)) | (TaxMessage.looked_up_at < again),
        ).order_by(TaxMessage.looked_up_at.is_not(None), TaxMessage.id).limit(50)
    ).all()  # fmt: skip
    db.session.rollback()
    for message_id, code in waiting:
        try:
            known = provider.lookup(code)
        except GatewayError:
            break
        if known:
            counts["answers"] += record_answers(known, "lookup")
        with write():
            db.session.execute(update(TaxMessage).where(TaxMessage.id == message_id)
                               .values(looked_up_at=utcnow()))  # fmt: skip
        counts["looked_up"] += 1
    return counts


# --- alarms ---------------------------------------------------------------------------------


def holidays(settings: TaxSettings | None) -> set[date]:
    found = set()
    for line in ((settings.holidays if settings else "") or "").split():
        try:
            found.add(date.fromisoformat(line.strip()))
        except ValueError:
            continue
    return found


def next_working_day(day: date, off: set[date]) -> date:
    day += timedelta(days=1)
    while day.weekday() >= 5 or day in off:
        day += timedelta(days=1)
    return day


def alarm(message: TaxMessage | None, now: datetime | None = None, off: set[date] | None = None):
    """Return "receipt" (no 999 within minutes), "notice" (no 204 by the next working day), or ""."""
    if message is None or message.notice_at is not None:
        return ""
    now = now or utcnow()
    zone = ZoneInfo(current_app.config["PORTAL_TIMEZONE"])
    minutes = int(current_app.config.get("TAX_RECEIPT_ALARM_MINUTES", 10))
    sent = message.data_sent_at or message.finished_at
    if message.receipt_at is None:
        if sent is not None and now - sent > timedelta(minutes=minutes):
            return "receipt"
        return ""
    if not message.receipt_ok:
        return ""
    received = message.receipt_at.astimezone(zone).date()
    deadline = datetime.combine(next_working_day(received, off or set()), time.max, zone)
    return "notice" if now.astimezone(zone) > deadline else ""


TAX = outbox.Kind(
    name="tax",
    model=TaxMessage,
    perform=perform_message,
    retry_intervals=tax_retry_intervals,
    on_change=refresh_for_messages,
    timeout=120,
    resend_safe=True,
    maintain=maintain,
)


# --- what the pages show ------------------------------------------------------------------


@dataclass
class TaxView:
    """An invoice's transfer as its page shows it."""

    submission: TaxSubmission | None
    message: TaxMessage | None
    exchanges: list[TaxExchange]
    alarm: str


def view(invoice_id: int) -> TaxView:
    submission = latest_submissions([invoice_id]).get(invoice_id)
    message = submission.message if submission else None
    exchanges = []
    if message is not None:
        exchanges = list(db.session.scalars(
            select(TaxExchange).where(TaxExchange.tax_message_id == message.id)
            .order_by(TaxExchange.id)
        ))  # fmt: skip
    return TaxView(submission, message, exchanges, alarm(message, off=holidays(tax_settings())))


def alarms(invoice_ids: list[int]) -> dict[int, str]:
    """The alarms of the list's rows (a late 999 or 204), in one query."""
    off = holidays(tax_settings())
    found = {}
    for invoice_id, submission in latest_submissions(invoice_ids).items():
        if submission.result == "pending":
            kind = alarm(submission.message, off=off)
            if kind:
                found[invoice_id] = kind
    return found
