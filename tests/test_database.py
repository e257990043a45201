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
