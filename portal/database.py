"""Bind SQLAlchemy and make SQLite behave under a web server and workers at once."""

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from portal.extensions import db

# Write transactions on SQLite start with BEGIN IMMEDIATE: a plain BEGIN that reads then
# writes fails with "database is locked" under concurrent writers (PITFALLS.md).
IMMEDIATE = {"sqlite_immediate": True}


def init_app(app: Flask) -> None:
    db.init_app(app)
    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite":
            _configure_sqlite(engine)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        # Let SQLAlchemy's "begin" event emit BEGIN itself, so it can choose IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        immediate = connection.get_execution_options().get("sqlite_immediate")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def begin_write() -> None:
    """Start the session's transaction as a write transaction (IMMEDIATE on SQLite)."""
    if db.session().in_transaction():
        # A read transaction (loading the user, say) may already be open; end it so the
        # write transaction takes its lock up front.
        db.session.commit()
    db.session.connection(execution_options=IMMEDIATE)
