"""The schema migrates on both engines and keeps money exact."""

import pytest

from portal.extensions import db


def test_sqlite_runs_in_wal_mode(app):
    with app.app_context():
        assert db.session.execute(db.text("PRAGMA journal_mode")).scalar() == "wal"


@pytest.mark.postgres
def test_migrations_apply_on_postgresql(postgres_app):
    with postgres_app.app_context():
        tables = set(db.inspect(db.engine).get_table_names())
    assert {"invoice", "invoice_line", "vat_summary", "user", "seller"} <= tables


def test_write_commits_at_the_end_and_runs_callbacks_after_the_commit(app):
    from portal.database import after_commit, write
    from portal.models import Customer

    seen = []
    with app.app_context():
        with write():
            db.session.add(Customer(name="Công ty A"))
            after_commit(lambda: seen.append(db.session.query(Customer).count()))
            assert seen == []
        assert seen == [1]  # the callback ran after the commit, and saw the row


def test_write_rolls_back_and_drops_callbacks_when_the_block_fails(app):
    from portal.database import after_commit, write
    from portal.models import Customer

    seen = []
    with app.app_context():
        with pytest.raises(ValueError), write():
            db.session.add(Customer(name="Công ty A"))
            after_commit(lambda: seen.append("ran"))
            raise ValueError("refused")
        assert seen == [] and db.session.query(Customer).count() == 0


def test_write_refuses_work_a_caller_left_pending(app):
    from portal.database import PendingWorkError, write
    from portal.models import Customer

    with app.app_context():
        db.session.add(Customer(name="left behind"))
        with pytest.raises(PendingWorkError, match="new Customer"), write():
            pass
        db.session.rollback()
        db.session.add(Customer(name="flushed, not committed"))
        db.session.flush()
        with pytest.raises(PendingWorkError, match="flushed"), write():
            pass
        db.session.rollback()
        assert db.session.query(Customer).count() == 0


def test_a_nested_write_joins_the_outer_one(app):
    from portal.database import write
    from portal.models import Customer

    with app.app_context():
        with pytest.raises(RuntimeError), write():
            with write():
                db.session.add(Customer(name="inner"))
            raise RuntimeError("the outer one fails")
        assert db.session.query(Customer).count() == 0  # the inner one did not commit alone


def test_write_takes_the_sqlite_write_lock_up_front(app):
    """Another connection cannot write while a unit of work is open, even before it writes."""
    import sqlite3

    from portal.database import write

    path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    with app.app_context(), write():
        other = sqlite3.connect(path, timeout=0.1)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("INSERT INTO customer (code, name, tax_code, address, email, phone, "
                          "contact_name) VALUES ('', 'x', '', '', '', '', '')")  # fmt: skip
        other.close()


def test_writers_queue_on_a_file_lock_that_passes_on_when_the_unit_of_work_ends(app):
    """A writer in another process waits in the kernel's queue, woken when the lock is free."""
    import fcntl
    import os
    import subprocess
    import sys

    from portal.database import write
    from portal.models import Customer

    path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///") + "-writers"
    probe = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n    print('free')\n"
        "except BlockingIOError:\n    print('held')\n"
    )

    def seen_from_another_process() -> str:
        run = subprocess.run([sys.executable, "-c", probe, path], capture_output=True, text=True)
        return run.stdout.strip()

    with app.app_context():
        with write():
            db.session.add(Customer(name="Công ty A"))
            assert seen_from_another_process() == "held"
        assert seen_from_another_process() == "free"
        with pytest.raises(ValueError), write():
            raise ValueError("the block fails")
        assert seen_from_another_process() == "free"  # a rollback passes it on too
        # A thread of this process has a file of its own, so threads queue as processes do.
        fd = os.open(path, os.O_RDWR)
        with write():
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)


def test_a_pdf_is_never_rendered_inside_a_unit_of_work(app):
    from portal.database import write
    from portal.rendering.service import invoice_pdf
    from tests.factories import make_invoice

    with app.app_context():
        invoice = make_invoice()
        with pytest.raises(RuntimeError, match="inside a unit of work"), write():
            invoice_pdf(invoice)
        data = invoice_pdf(invoice)  # outside: rendered and kept in a short write of its own
        with write():
            assert invoice_pdf(invoice) == data  # a kept copy is a plain read


def _schema_drift():
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from portal.database import schema_filters

    with db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts=schema_filters(connection.dialect.name)
        )
        return compare_metadata(context, db.metadata)


def test_the_migrations_build_the_schema_the_models_describe(app):
    with app.app_context():
        assert _schema_drift() == []


@pytest.mark.postgres
def test_the_migrations_build_the_schema_the_models_describe_on_postgresql(postgres_app):
    with postgres_app.app_context():
        assert _schema_drift() == []
