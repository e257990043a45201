"""Bind SQLAlchemy, make SQLite behave under a web server and workers at once, and `write()`.

Every change to the database goes through `write()`, the one unit of work: it begins the
transaction as a write (BEGIN IMMEDIATE on SQLite), commits when the block ends, refuses to
start while the session holds work that nobody committed, and runs the callbacks registered
with `after_commit()` (enqueueing a job is one) once the commit succeeded.
"""

import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from portal.extensions import db

log = logging.getLogger(__name__)

# Write transactions on SQLite start with BEGIN IMMEDIATE: a transaction that reads first
# and writes later fails with "database is locked" at once when another connection
# committed in between, whatever the busy timeout (docs/decisions.md, "Database").
IMMEDIATE = {"sqlite_immediate": True}


class PendingWorkError(RuntimeError):
    """A unit of work was started while the session held changes nobody committed."""


@dataclass
class UnitOfWork:
    callbacks: list[Callable[[], object]] = field(default_factory=list)


def init_app(app: Flask) -> None:
    db.init_app(app)
    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite":
            _configure_sqlite(engine, int(app.config.get("SQLITE_BUSY_TIMEOUT_MS", 15000)))


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        # Let SQLAlchemy's "begin" event emit BEGIN itself, so it can choose IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms:d}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        immediate = connection.get_execution_options().get("sqlite_immediate")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# A flush sends changes to the database without committing them: remember that it happened,
# so that write() can refuse to commit flushed work it did not start.
@event.listens_for(Session, "after_flush")
def _flushed(session, _context):
    session.info["flushed"] = True


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _ended(session):
    session.info.pop("flushed", None)


def _pending(session: Session) -> list[str]:
    found = [f"new {type(o).__name__}" for o in session.new]
    found += [f"changed {type(o).__name__}" for o in session.dirty if session.is_modified(o)]
    found += [f"deleted {type(o).__name__}" for o in session.deleted]
    if session.info.get("flushed"):
        found.append("flushed, uncommitted changes")
    return found


@contextmanager
def write() -> Iterator[UnitOfWork]:
    """Run the block as one write transaction; commit at its end, then run after-commit callbacks.

    A `write()` inside another joins it: the outer one commits. Entering refuses (raises
    PendingWorkError) when the session holds changes made outside any unit of work, rather
    than quietly committing them with this one.
    """
    session = db.session()
    current = session.info.get("unit_of_work")
    if current is not None:
        yield current
        return
    pending = _pending(session)
    if pending:
        raise PendingWorkError("uncommitted work left in the session: " + ", ".join(pending))
    if session.in_transaction():
        # A read transaction (loading the user, say) may be open; end it so that the write
        # transaction takes its lock up front. Nothing is pending, so nothing is lost.
        session.rollback()
    unit = session.info["unit_of_work"] = UnitOfWork()
    queue = _write_queue(session)
    try:
        if queue is not None:
            fcntl.flock(queue, fcntl.LOCK_EX)
        session.connection(execution_options=IMMEDIATE)
        yield unit
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        if queue is not None:
            fcntl.flock(queue, fcntl.LOCK_UN)
        session.info.pop("unit_of_work", None)
    for callback in unit.callbacks:
        try:
            callback()
        except Exception:
            # The rows are committed; what the callback does (enqueue a job) the reconciler
            # does later too.
            log.exception("after-commit callback %r failed", callback)


# SQLite lets a writer that finds its lock taken poll for it, sleeping 1, 2, 5, 10 ms and
# more between tries: two workers recording emails spent a tenth of their time asleep
# behind locks held for half a millisecond. So every write() first queues on an flock of a
# file beside the database, which the kernel hands to the next waiter the moment it is
# released (docs/decisions.md, "Database"). SQLite's lock stays what decides; writers that
# do not go through write() (a migration, a backup) are waited for as before.
_queues = threading.local()


class _QueueFile:
    """One thread's open descriptor of a queue file, closed with the thread's locals."""

    def __init__(self, path: str):
        try:
            self.fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            self.fd = None  # a read-only folder: SQLite's own waiting only

    def __del__(self):
        if self.fd is not None:
            os.close(self.fd)


def _write_queue(session: Session) -> int | None:
    """This thread's descriptor of the database's queue file, or None (not an SQLite file)."""
    url = session.get_bind().url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    key = (os.getpid(), url.database)  # a forked child must not share its parent's file
    files = _queues.__dict__.setdefault("files", {})
    if key not in files:
        files[key] = _QueueFile(url.database + "-writers")
    return files[key].fd


def after_commit(callback: Callable[[], object]) -> None:
    """Run callback once the current unit of work has committed (never if it rolls back)."""
    unit = db.session().info.get("unit_of_work")
    if unit is None:
        raise RuntimeError("after_commit() outside write()")
    unit.callbacks.append(callback)


def in_unit_of_work() -> bool:
    """Whether a write() is open on this session."""
    return db.session().info.get("unit_of_work") is not None


# Tables the migrations make that no model describes: SQLite's full-text index of the
# invoice list and the shadow tables FTS5 keeps for it (docs/decisions.md, "Invoice list").
UNMODELLED_TABLES = frozenset(
    f"invoice_search{suffix}" for suffix in ("", "_data", "_idx", "_docsize", "_config")
)


def schema_filters(dialect: str) -> dict:
    """Alembic's include hooks for comparing the models with a database of this dialect.

    They skip the FTS5 tables, and the indexes a model declares for the other engine only
    (`Index(...).ddl_if(dialect=...)`), which that engine never has.
    """

    def include_name(name, type_, _parent_names):
        return not (type_ == "table" and name in UNMODELLED_TABLES)

    def include_object(obj, _name, type_, reflected, _compare_to):
        ddl_if = getattr(obj, "_ddl_if", None)
        if type_ == "index" and not reflected and ddl_if is not None and ddl_if.dialect:
            return dialect in (
                [ddl_if.dialect] if isinstance(ddl_if.dialect, str) else ddl_if.dialect
            )
        return True

    return {"include_name": include_name, "include_object": include_object}
