"""Outbox: retry state, claims and leases on deliveries; tax messages, submissions, exchanges, settings

Revision ID: b5e2e532a53a
Revises: bace4a57f3e1
Create Date: 2026-12-01 21:33:46.371109

"""
from alembic import op
import sqlalchemy as sa
import portal.types


# revision identifiers, used by Alembic.
revision = 'b5e2e532a53a'
down_revision = 'bace4a57f3e1'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('tax_message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_code', sa.String(length=64), nullable=False),
    sa.Column('seller_tax_code', sa.String(length=14), nullable=False),
    sa.Column('invoice_count', sa.Integer(), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', portal.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('receipt_at', portal.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('receipt_ok', sa.Boolean(), nullable=True),
    sa.Column('notice_at', portal.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('looked_up_at', portal.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', portal.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', portal.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('claimed_by', sa.String(length=120), nullable=False),
    sa.Column('lease_until', portal.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('data_sent_at', portal.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', portal.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('error_kind', sa.String(length=32), nullable=False),
    sa.Column('reply_code', sa.Integer(), nullable=True),
    sa.Column('reply_message', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('message_code')
    )
    with op.batch_alter_table('tax_message', schema=None) as batch_op:
        batch_op.create_index('ix_tax_message_status_next', ['status', 'next_attempt_at'], unique=False)

    op.create_table('tax_settings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('endpoint', sa.String(length=300), nullable=False),
    sa.Column('username', sa.String(length=200), nullable=False),
    sa.Column('password_encrypted', sa.Text(), nullable=False),
    sa.Column('sender_code', sa.String(length=20), nullable=False),
    sa.Column('callback_secret_encrypted', sa.Text(), nullable=False),
    sa.Column('wait_for_acceptance', sa.Boolean(), nullable=False),
    sa.Column('holidays', sa.Text(), nullable=False),
    sa.Column('poll_cursor', sa.String(length=64), nullable=False),
    sa.Column('updated_at', portal.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_test_at', portal.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_test_ok', sa.Boolean(), nullable=True),
    sa.Column('last_test_message', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('tax_exchange',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tax_message_id', sa.Integer(), nullable=True),
    sa.Column('direction', sa.String(length=3), nullable=False),
    sa.Column('message_type', sa.String(length=3), nullable=False),
    sa.Column('message_code', sa.String(length=64), nullable=False),
    sa.Column('reference', sa.String(length=64), nullable=False),
    sa.Column('via', sa.String(length=10), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('at', portal.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tax_message_id'], ['tax_message.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('direction', 'message_code', name='uq_tax_exchange_code')
    )
    with op.batch_alter_table('tax_exchange', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tax_exchange_tax_message_id'), ['tax_message_id'], unique=False)

    op.create_table('tax_submission',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('delivery_id', sa.Integer(), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', portal.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('result', sa.String(length=10), nullable=False),
    sa.Column('error_code', sa.String(length=32), nullable=False),
    sa.Column('error_text', sa.Text(), nullable=False),
    sa.Column('fix_hint', sa.Text(), nullable=False),
    sa.Column('decided_at', portal.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], ),
    sa.ForeignKeyConstraint(['delivery_id'], ['delivery.id'], ),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoice.id'], ),
    sa.ForeignKeyConstraint(['message_id'], ['tax_message.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('tax_submission', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tax_submission_invoice_id'), ['invoice_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_tax_submission_message_id'), ['message_id'], unique=False)
        batch_op.create_index('uq_tax_submission_covering_invoice', ['invoice_id'], unique=True, sqlite_where=sa.text("result IN ('pending', 'accepted')"), postgresql_where=sa.text("result IN ('pending', 'accepted')"))

    # Deliveries become outbox items: keep what each one holds under the new names.
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_attempt_at', portal.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=120), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('lease_until', portal.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('data_sent_at', portal.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('reply_code', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('reply_message', sa.Text(), nullable=False, server_default=''))
    op.execute(
        "UPDATE delivery SET next_attempt_at = queued_at, reply_code = smtp_code, "
        "reply_message = smtp_message"
    )
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.alter_column('next_attempt_at', existing_type=portal.types.UTCDateTime(timezone=True), nullable=False)
        batch_op.drop_index(batch_op.f('ix_delivery_status_queued'))
        batch_op.drop_index('uq_delivery_active_invoice')
        batch_op.create_index('ix_delivery_status_next', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('uq_delivery_active_invoice', ['invoice_id'], unique=True, sqlite_where=sa.text("status IN ('held', 'queued', 'retrying', 'sending')"), postgresql_where=sa.text("status IN ('held', 'queued', 'retrying', 'sending')"))
        batch_op.drop_column('smtp_message')
        batch_op.drop_column('smtp_code')
        batch_op.drop_column('queued_at')

    with op.batch_alter_table('delivery_attempt', schema=None) as batch_op:
        batch_op.add_column(sa.Column('error_kind', sa.String(length=32), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('data_sent', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    with op.batch_alter_table('delivery_attempt', schema=None) as batch_op:
        batch_op.drop_column('data_sent')
        batch_op.drop_column('error_kind')

    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.add_column(sa.Column('queued_at', portal.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('smtp_code', sa.INTEGER(), nullable=True))
        batch_op.add_column(sa.Column('smtp_message', sa.TEXT(), nullable=False, server_default=''))
    op.execute(
        "UPDATE delivery SET queued_at = next_attempt_at, smtp_code = reply_code, "
        "smtp_message = reply_message, status = CASE status WHEN 'retrying' THEN 'queued' "
        "ELSE status END"
    )
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.alter_column('queued_at', existing_type=portal.types.UTCDateTime(timezone=True), nullable=False)
        batch_op.drop_index('ix_delivery_status_next')
        batch_op.drop_index('uq_delivery_active_invoice')
        batch_op.create_index(batch_op.f('ix_delivery_status_queued'), ['status', 'queued_at'], unique=False)
        batch_op.create_index('uq_delivery_active_invoice', ['invoice_id'], unique=True, sqlite_where=sa.text("status IN ('queued', 'sending')"), postgresql_where=sa.text("status IN ('queued', 'sending')"))
        batch_op.drop_column('reply_message')
        batch_op.drop_column('reply_code')
        batch_op.drop_column('data_sent_at')
        batch_op.drop_column('lease_until')
        batch_op.drop_column('claimed_by')
        batch_op.drop_column('next_attempt_at')

    op.drop_table('tax_submission')
    op.drop_table('tax_exchange')
    op.drop_table('tax_settings')
    op.drop_table('tax_message')
