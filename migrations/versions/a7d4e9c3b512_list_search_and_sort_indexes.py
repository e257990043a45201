"""List at 100,000 invoices: a trigram search index, an index on the number, a sort key for totals

Revision ID: a7d4e9c3b512
Revises: 5c1e8a9b2d47
Create Date: 2026-12-02 12:30:00.000000

SQLite: an FTS5 table with the trigram tokenizer over invoice.search_text (external content:
the text stays in invoice), kept in step by three triggers on invoice, and an index on
total_sort, a generated column holding CAST(total_amount AS FLOAT) (money is text on SQLite;
SQLAlchemy cannot reflect an index on an expression, so the expression is a column).
PostgreSQL: pg_trgm and a GIN index on search_text, which serves LIKE '%...%', and an index
on (total_amount, id). Both: an index on number, for the exact lookup of a typed number.

A later batch migration that rebuilds `invoice` on SQLite drops the triggers with the old
table: it must create them again (tests/test_invoices_list.py checks that they work).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a7d4e9c3b512'
down_revision = '5c1e8a9b2d47'
branch_labels = None
depends_on = None

SQLITE_UP = [
    "CREATE VIRTUAL TABLE invoice_search USING fts5("
    "search_text, content='invoice', content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER invoice_search_insert AFTER INSERT ON invoice BEGIN "
    "INSERT INTO invoice_search (rowid, search_text) VALUES (new.id, new.search_text); END",
    "CREATE TRIGGER invoice_search_delete AFTER DELETE ON invoice BEGIN "
    "INSERT INTO invoice_search (invoice_search, rowid, search_text) "
    "VALUES ('delete', old.id, old.search_text); END",
    "CREATE TRIGGER invoice_search_update AFTER UPDATE OF search_text ON invoice BEGIN "
    "INSERT INTO invoice_search (invoice_search, rowid, search_text) "
    "VALUES ('delete', old.id, old.search_text); "
    "INSERT INTO invoice_search (rowid, search_text) VALUES (new.id, new.search_text); END",
    "INSERT INTO invoice_search (invoice_search) VALUES ('rebuild')",
]
SQLITE_DOWN = [
    "DROP TRIGGER invoice_search_update",
    "DROP TRIGGER invoice_search_delete",
    "DROP TRIGGER invoice_search_insert",
    "DROP TABLE invoice_search",
]


def upgrade():
    # Virtual on SQLite (ALTER TABLE can add only those), stored on PostgreSQL (before 18
    # it has no other kind).
    stored = True if op.get_bind().dialect.name == 'postgresql' else None
    op.add_column('invoice', sa.Column('total_sort', sa.Float(), sa.Computed(
        'CAST(total_amount AS FLOAT)', persisted=stored), nullable=True))
    op.create_index('ix_invoice_number', 'invoice', ['number'], unique=False)
    if op.get_bind().dialect.name == 'sqlite':
        for statement in SQLITE_UP:
            op.execute(statement)
        op.create_index('ix_invoice_total_sort', 'invoice', ['total_sort', 'id'], unique=False)
    else:
        # pg_trgm is a trusted extension (PostgreSQL 13+): the database's owner may create it.
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
        op.create_index('ix_invoice_search_trgm', 'invoice', ['search_text'], unique=False,
                        postgresql_using='gin', postgresql_ops={'search_text': 'gin_trgm_ops'})
        op.create_index('ix_invoice_total', 'invoice', ['total_amount', 'id'], unique=False)


def downgrade():
    if op.get_bind().dialect.name == 'sqlite':
        op.drop_index('ix_invoice_total_sort', table_name='invoice')
        for statement in SQLITE_DOWN:
            op.execute(statement)
    else:
        op.drop_index('ix_invoice_total', table_name='invoice')
        op.drop_index('ix_invoice_search_trgm', table_name='invoice')
    op.drop_index('ix_invoice_number', table_name='invoice')
    op.drop_column('invoice', 'total_sort')
