"""Claim, perform, finish and reconcile outbox items: the database decides, Redis only wakes.

An item (an email delivery, a tax submission) is a row with the columns of
`portal.models.OutboxItem`. Its life (docs/decisions.md, "Outbox"):

    queued --claim--> sending --perform--> sent | failed | unknown
                                   \\--temporary failure--> retrying --when due--> queued

A job `run(kind, id)` claims the row with a conditional update, so that one worker at most
holds it, whatever RQ or Redis do; performs it; and records the outcome in one unit of
work. "When to try again" is `next_attempt_at` on the row. The reconciler (a job on the
high-priority queue, enqueued every few seconds by the worker pool) turns due retries back
into queued items and enqueues them, re-enqueues queued items whose job Redis lost, and
resolves claims whose worker died: back to queued when the data had not gone out, unknown
when it had (`data_sent_at`, written just before the data goes out), unless the kind is
`resend_safe` (its next attempt asks the other side first): then it is tried again.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import redis
from flask import Flask, current_app
from rq import get_current_job
from rq.job import Job
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import OperationalError

from portal.database import after_commit, write
from portal.extensions import db
from portal.runtime.queue import DEFAULT, enqueue_calls, get_redis
from portal.statuses import OutboxStatus
from portal.types import utcnow

log = logging.getLogger(__name__)

RUN = "portal.outbox.service.run"
RUN_MANY = "portal.outbox.service.run_many"
# Items per job when many are enqueued at once (a batch, due retries).
JOB_SIZE = 10
# How long an item's pointer to its chunk's job is kept (as long as a failed job is).
POINTER_TTL = 24 * 3600
# How many times the other side may ask us to slow down before an item fails after all.
MAX_DEFERRALS = 100
# RQ job states in which the job will still run (or is running).
PENDING_JOB_STATES = {b"queued", b"started", b"scheduled", b"deferred"}


@dataclass(frozen=True)
class Outcome:
    """What performing an item came to: its next status, and why."""

    status: OutboxStatus  # SENT, RETRYING (a temporary failure), FAILED or UNKNOWN
    kind: str = ""  # why it did not succeed: a key of the kind's reasons
    code: int | None = None  # the other side's answer code, if it answered
    message: str = ""  # the other side's answer, or what went wrong on our side
    retry_now: bool = False  # try again at once (our side was interrupted, not theirs)
    wait: float | None = None  # seconds before the next try, instead of the kind's intervals
    # False: the other side asked us to slow down; the attempt does not use up a retry.
    counts: bool = True

    @classmethod
    def sent(cls, code: int | None, message: str) -> Outcome:
        return cls(OutboxStatus.SENT, "", code, message)

    @classmethod
    def temporary(cls, kind: str, code: int | None = None, message: str = "") -> Outcome:
        return cls(OutboxStatus.RETRYING, kind, code, message)

    @classmethod
    def permanent(cls, kind: str, code: int | None = None, message: str = "") -> Outcome:
        return cls(OutboxStatus.FAILED, kind, code, message)

    @classmethod
    def unknown(cls, kind: str, code: int | None = None, message: str = "") -> Outcome:
        return cls(OutboxStatus.UNKNOWN, kind, code, message)


@dataclass(frozen=True)
class Kind:
    """One kind of outbox item and what differs between kinds: how to perform and record it."""

    name: str
    model: type
    # perform(item_id, claim) -> Outcome; runs outside any unit of work and must call
    # claim.mark_data_sent() just before the data leaves (and stop if it returns False).
    perform: Callable[[int, Claim], Outcome]
    # Seconds to wait before each retry; the item fails after len() + 1 attempts.
    retry_intervals: Callable[[], list[int]]
    # log_attempt(claim, outcome, status, now): keep the attempt, inside the unit of work, after
    # the item's row took the outcome.
    log_attempt: Callable | None = None
    # on_change(item_ids): refresh what is derived from the items (the invoices' status).
    on_change: Callable[[list[int]], None] | None = None
    timeout: int = 180  # seconds RQ lets one job run
    # Whether sending again after a lost answer is safe because each attempt first asks the
    # other side whether it has the item (a T-VAN knows its message ids; an SMTP server does
    # not): then a worker that died after the data means "try again", not "unknown".
    resend_safe: bool = False
    # maintain(): extra upkeep the reconciler runs for this kind (polling for answers, say).
    maintain: Callable[[], dict] | None = None
    # pace(now): seconds to wait before the next item may start (the account's rate), or 0.
    pace: Callable[[datetime], float] | None = None


@dataclass
class Claim:
    """A worker's hold on one item for one attempt."""

    kind: Kind
    item_id: int
    attempt: int
    claimed_at: datetime
    claimed_by: str
    data_sent: bool = False

    def mark_data_sent(self, **values) -> bool:
        """Record that the data is about to go out (with values such as the link's hash).

        False when the claim was lost meanwhile (the reconciler gave up on this worker):
        the caller must then not send anything.
        """
        statement = _data_sent_statement(self.kind.model, tuple(sorted(values)))
        with write():
            result = db.session.connection().execute(
                statement, {"item_id": self.item_id, "attempt": self.attempt, "now": utcnow(),
                            **values},
            )  # fmt: skip
        self.data_sent = result.rowcount == 1
        return self.data_sent


# --- kinds -------------------------------------------------------------------------------


def register(app: Flask, kind: Kind) -> None:
    """Make a kind known to the app (each capability registers its own in init_app)."""
    app.extensions.setdefault("outbox_kinds", {})[kind.name] = kind


def kinds() -> list[Kind]:
    return list(current_app.extensions.get("outbox_kinds", {}).values())


def get_kind(name: str) -> Kind:
    return current_app.extensions["outbox_kinds"][name]


def job_id(kind: Kind, item_id: int) -> str:
    return f"{kind.name}-{item_id}"


def enqueue(kind: Kind, item_ids: list[int]) -> bool:
    """Enqueue the items' jobs in one round trip (call after the commit that made them).

    One item is one job; many go JOB_SIZE to a job (`run_many`): RQ spends about 3 ms of
    Redis round trips on every job, a fifth of a worker's time per email (docs/decisions.md,
    "Outbox"). Each chunk's items point to its job, so the reconciler can tell whether Redis
    still holds the job that will run an item.
    """
    item_ids = list(item_ids)
    if len(item_ids) <= 1 or not current_app.config.get("REDIS_URL"):
        return enqueue_calls(DEFAULT, RUN, [(kind.name, i) for i in item_ids],
                             job_ids=[job_id(kind, i) for i in item_ids], timeout=kind.timeout)  # fmt: skip
    chunks = [item_ids[at : at + JOB_SIZE] for at in range(0, len(item_ids), JOB_SIZE)]
    ids = [f"{job_id(kind, chunk[0])}-{uuid.uuid4().hex[:12]}" for chunk in chunks]
    try:
        with get_redis().pipeline(transaction=False) as pipe:
            for chunk, chunk_job in zip(chunks, ids, strict=True):
                for item_id in chunk:
                    pipe.set(_pointer(kind, item_id), chunk_job, ex=POINTER_TTL)
            pipe.execute()
    except redis.RedisError:
        # Without its pointer an item is looked up by its own job id: the reconciler may
        # then enqueue it a second time, which its claim makes harmless.
        log.warning("could not record the jobs of %d %s items", len(item_ids), kind.name)
    return enqueue_calls(DEFAULT, RUN_MANY, [(kind.name, chunk) for chunk in chunks],
                         job_ids=ids, timeout=kind.timeout * JOB_SIZE)  # fmt: skip


def _pointer(kind: Kind, item_id: int) -> str:
    return f"portal:outbox:job:{job_id(kind, item_id)}"


def enqueue_after_commit(kind: Kind, item_ids: list[int]) -> None:
    """Enqueue the items once the current unit of work has committed them."""
    if item_ids:
        after_commit(lambda: enqueue(kind, list(item_ids)))


# --- who holds a claim -------------------------------------------------------------------

_identity: tuple[int, str] | None = None


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (from /proc), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if fields[0] != "Z" else None


def _machine() -> str:
    """This host and PID namespace: pids are comparable only within one (containers differ)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        namespace = "?"
    return f"{socket.gethostname()}/{namespace}"


def worker_identity() -> str:
    """This process as machine:pid:start-time; the start time tells a reused pid apart."""
    global _identity
    pid = os.getpid()
    if _identity is None or _identity[0] != pid:
        _identity = (pid, f"{_machine()}:{pid}:{_start_time(pid) or '?'}")
    return _identity[1]


def claimer_alive(claimed_by: str) -> bool:
    """Whether the process holding a claim still runs.

    Only a process of this machine whose start time was readable can be told dead; for any
    other (another host or container, no /proc) the lease decides.
    """
    parts = claimed_by.rsplit(":", 2)
    if len(parts) != 3:
        return True
    machine, pid, started = parts
    if machine != _machine() or "?" in machine or started == "?" or not pid.isdigit():
        return True
    return _start_time(int(pid)) == started


# --- one item ----------------------------------------------------------------------------


def claim(kind: Kind, item_id: int) -> Claim | None:
    """Take a queued item for this worker; None when it is not queued (another has it)."""
    model = kind.model
    now = utcnow()
    me = worker_identity()
    lease = timedelta(seconds=int(current_app.config.get("OUTBOX_LEASE", 300)))
    with write():
        if db.engine.dialect.name == "postgresql":
            # Skip a row another worker is claiming right now instead of queueing behind it.
            free = db.session.scalar(
                select(model.id)
                .where(model.id == item_id, model.status == OutboxStatus.QUEUED)
                .with_for_update(skip_locked=True)
            )
            if free is None:
                return None
        wait = kind.pace(now) if kind.pace else 0
        if wait > 0:
            # Over the account's pace: the item waits for its slot without an attempt.
            moved = db.session.execute(
                update(model)
                .where(model.id == item_id, model.status == OutboxStatus.QUEUED)
                .values(status=OutboxStatus.RETRYING, error_kind="paced",
                        next_attempt_at=now + timedelta(seconds=wait))
            ).rowcount  # fmt: skip
            if moved and kind.on_change:
                kind.on_change([item_id])
            return None
        row = (
            db.session.connection()
            .execute(
                _claim_statement(model),
                {"item_id": item_id, "now": now, "me": me, "lease_until": now + lease},
            )
            .first()
        )
        if row is None:
            return None
        if kind.on_change:
            kind.on_change([item_id])
    return Claim(kind, item_id, row.attempts, now, me)


# The claim's and the data mark's statements, built once per kind and run as SQL: building
# and running them through the ORM's bulk update (with the status refreshes) took 3.4 ms of
# the 15 ms a worker spent on an email (README, "Measured"). They change only the item's
# row, which no session holds at that moment.


@functools.cache
def _claim_statement(model):
    return (
        update(model)
        .where(
            model.id == bindparam("item_id"),
            model.status == OutboxStatus.QUEUED,
            model.next_attempt_at <= bindparam("now"),
        )
        .values(
            status=OutboxStatus.SENDING,
            attempts=model.attempts + 1,
            claimed_at=bindparam("now"),
            claimed_by=bindparam("me"),
            lease_until=bindparam("lease_until"),
            data_sent_at=None,
        )
        .returning(model.attempts)
    )


@functools.cache
def _data_sent_statement(model, columns: tuple[str, ...]):
    return (
        update(model)
        .where(
            model.id == bindparam("item_id"),
            model.status == OutboxStatus.SENDING,
            model.attempts == bindparam("attempt"),
        )
        .values(data_sent_at=bindparam("now"), **{c: bindparam(c) for c in columns})
    )


def run_many(kind_name: str, item_ids: list[int]) -> list[str]:
    """Job: run each item in turn, each with the job timeout of one item."""
    kind = get_kind(kind_name)
    results = []
    for item_id in item_ids:
        _arm_job_timeout(kind.timeout)
        results.append(run(kind_name, item_id))
        db.session.remove()  # each item starts from a clean session, as a job of its own would
    return results


def run(kind_name: str, item_id: int) -> str:
    """Job: claim one item, perform it, record the outcome; a second run does nothing."""
    kind = get_kind(kind_name)
    held = claim(kind, item_id)
    if held is None:
        return "skipped"
    try:
        outcome = kind.perform(item_id, held)
    except Exception as error:
        # Our fault (a bug, a locked database), not the other side's: say so, and retry
        # unless the data may already be out.
        db.session.rollback()
        log.exception("%s %s: attempt %s failed on our side", kind.name, item_id, held.attempt)
        problem = "database_busy" if isinstance(error, OperationalError) else "internal"
        message = f"{type(error).__name__}: {error}"[:500]
        if held.data_sent and not kind.resend_safe:
            outcome = Outcome.unknown(problem, None, message)
        else:
            outcome = Outcome.temporary(problem, None, message)
    _disarm_job_timeout()
    finish(held, outcome)
    return outcome.status.value


def _arm_job_timeout(seconds: int) -> None:
    """Give the next item of a chunk its own job timeout (RQ's alarm, see below)."""
    if get_current_job() is not None and threading.current_thread() is threading.main_thread():
        signal.alarm(seconds)


def _disarm_job_timeout() -> None:
    """Stop RQ's job timeout: the outcome of what went out is recorded however long it takes.

    RQ's SimpleWorker times jobs with SIGALRM in the main thread; a timeout raised while
    waiting for the database lock would drop an outcome the other side already gave.
    """
    if get_current_job() is not None and threading.current_thread() is threading.main_thread():
        signal.alarm(0)


def finish(held: Claim, outcome: Outcome) -> None:
    """Record an attempt's outcome; keep trying while the database is locked (up to 2 minutes).

    The outcome of data that went out must not be lost to a lock: if it still cannot be
    written, the lease runs out and the reconciler calls the item unknown.
    """
    patience = float(current_app.config.get("OUTBOX_FINISH_PATIENCE", 120))
    deadline = time.monotonic() + patience
    pause = 0.5
    while True:
        try:
            with write():
                _apply(held, outcome, utcnow())
            return
        except OperationalError:
            if time.monotonic() > deadline:
                raise
            log.warning("%s %s: database busy, recording again", held.kind.name, held.item_id)
            time.sleep(pause)
            pause = min(pause * 2, 8)


@functools.cache
def _outcome_statements(model):
    """Read the held row (and lock it, for PostgreSQL), and write an outcome to it."""
    read = select(model.id, model.status, model.attempts, model.deferrals,
                  model.next_attempt_at).where(model.id == bindparam("item_id"))  # fmt: skip
    write_outcome = (
        update(model)
        .where(model.id == bindparam("item_id"))
        .values(
            status=bindparam("status"),
            deferrals=bindparam("deferrals"),
            next_attempt_at=bindparam("next_attempt_at"),
            error_kind=bindparam("error_kind"),
            reply_code=bindparam("reply_code"),
            reply_message=bindparam("reply_message"),
            lease_until=None,
            finished_at=bindparam("finished_at"),
        )
    )
    return read, read.with_for_update(), write_outcome


def _apply(held: Claim, outcome: Outcome, now: datetime) -> bool:
    """Move the item to the outcome's status, inside the caller's unit of work.

    In SQL on the session's connection, like the claim: the ORM's load and flush of the row
    were a third of recording an outcome. No session holds the row: the caller's unit of
    work began on a clean session.
    """
    kind = held.kind
    read, locked, write_outcome = _outcome_statements(kind.model)
    connection = db.session.connection()
    postgresql = db.engine.dialect.name == "postgresql"
    item = connection.execute(locked if postgresql else read, {"item_id": held.item_id}).first()
    if (
        item is None
        or item.attempts != held.attempt
        or item.status not in (OutboxStatus.SENDING, OutboxStatus.UNKNOWN)
    ):
        # Someone else decided meanwhile (the reconciler gave up on this worker and another
        # attempt started): this attempt's outcome is no longer the item's.
        log.warning("%s %s: attempt %s outcome %s dropped", kind.name, held.item_id,
                    held.attempt, outcome.status)  # fmt: skip
        return False
    status = outcome.status
    deferrals, next_attempt_at = item.deferrals, item.next_attempt_at
    if status == OutboxStatus.RETRYING:
        intervals = kind.retry_intervals()
        deferred = not outcome.counts and deferrals < MAX_DEFERRALS
        if deferred:
            deferrals += 1
        tried = item.attempts - deferrals  # the attempts that used up a retry
        if deferred or tried <= len(intervals):
            wait = outcome.wait
            if wait is None:
                wait = intervals[max(0, tried - 1)] if intervals else 0
            next_attempt_at = now + timedelta(seconds=0 if outcome.retry_now else wait)
        else:
            status = OutboxStatus.FAILED
    connection.execute(write_outcome, {
        "item_id": held.item_id, "status": status, "deferrals": deferrals,
        "next_attempt_at": next_attempt_at, "error_kind": outcome.kind,
        "reply_code": outcome.code, "reply_message": outcome.message,
        "finished_at": now if status.is_final else None,
    })  # fmt: skip
    if kind.log_attempt:
        kind.log_attempt(held, outcome, status, now)
    if kind.on_change:
        kind.on_change([held.item_id])
    return True


# --- the reconciler ------------------------------------------------------------------------


def reconcile() -> dict[str, dict[str, int]]:
    """Job: for every kind, resolve abandoned claims, run what is due, re-enqueue what Redis lost."""
    return {kind.name: reconcile_kind(kind) for kind in kinds()}


def reconcile_kind(kind: Kind) -> dict[str, int]:
    model = kind.model
    now = utcnow()
    counts = {"abandoned": 0, "due": 0, "requeued": 0}
    with write():
        claims = db.session.execute(
            select(
                model.id, model.attempts, model.claimed_at, model.claimed_by,
                model.lease_until, model.data_sent_at,
            ).where(model.status == OutboxStatus.SENDING)
        ).all()  # fmt: skip
        for row in claims:
            if (
                row.lease_until is not None
                and row.lease_until > now
                and claimer_alive(row.claimed_by)
            ):
                continue
            held = Claim(kind, row.id, row.attempts, row.claimed_at, row.claimed_by,
                         data_sent=row.data_sent_at is not None)  # fmt: skip
            if held.data_sent and not kind.resend_safe:
                outcome = Outcome.unknown("worker_stopped", None, "worker stopped after the data")
            else:
                # Before the data, or for a kind whose next attempt asks the other side first.
                message = (
                    "worker stopped " + ("after" if held.data_sent else "before") + " the data"
                )
                outcome = Outcome(OutboxStatus.RETRYING, "worker_stopped", None, message,
                                  retry_now=True)  # fmt: skip
            counts["abandoned"] += _apply(held, outcome, now)
        due = select(model.id).where(
            model.status == OutboxStatus.RETRYING, model.next_attempt_at <= now
        )
        if db.engine.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        due_ids = list(db.session.scalars(due))
        if due_ids:
            db.session.execute(
                update(model).where(model.id.in_(due_ids)).values(status=OutboxStatus.QUEUED)
            )
            if kind.on_change:
                kind.on_change(due_ids)
            enqueue_after_commit(kind, due_ids)
        counts["due"] = len(due_ids)
    counts["requeued"] = _requeue_lost(kind, now)
    if kind.maintain:
        counts.update(kind.maintain())
    return counts


def _requeue_lost(kind: Kind, now: datetime) -> int:
    """Enqueue queued items that waited a while and whose job Redis no longer holds."""
    model = kind.model
    stale_after = int(current_app.config.get("QUEUED_STALE_AFTER", 15))
    ids = list(
        db.session.scalars(
            select(model.id).where(
                model.status == OutboxStatus.QUEUED,
                model.next_attempt_at <= now - timedelta(seconds=stale_after),
            )
        )
    )
    db.session.rollback()  # end the read
    if not ids:
        return 0
    try:
        with get_redis().pipeline(transaction=False) as pipe:
            for item_id in ids:
                pipe.get(_pointer(kind, item_id))
            jobs = [(chunk or b"").decode() or job_id(kind, item_id)
                    for item_id, chunk in zip(ids, pipe.execute(), strict=True)]  # fmt: skip
            for job in jobs:
                pipe.hmget(Job.key_for(job), "status", "started_at")
            states = pipe.execute()
    except redis.RedisError:
        log.warning("Redis is away; %d queued %s items wait for it", len(ids), kind.name)
        return 0
    # A job claims its row within milliseconds of starting: one "started" for longer while
    # its row is still queued belongs to a worker that died in between.
    started_before = (now - timedelta(seconds=stale_after)).strftime("%Y-%m-%dT%H:%M:%S")
    lost = [
        item_id
        for item_id, (state, started) in zip(ids, states, strict=True)
        if state not in PENDING_JOB_STATES
        or (state == b"started" and (started or b"").decode()[:19] < started_before)
    ]
    if lost and enqueue(kind, lost):
        log.info("re-enqueued %d %s items Redis did not hold", len(lost), kind.name)
        return len(lost)
    return 0
