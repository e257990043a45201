"""Bulk send: batches and their rows, deliveries in a batch, held outbox items, mail account rates

Revision ID: e7c41f0a9d2b
Revises: b5e2e532a53a
Create Date: 2026-12-02 01:10:00.000000

"""
from alembic import op
import sqlalchemy as sa
import portal.types


# revision identifiers, used by Alembic.
revision = 'e7c41f0a9d2b'
down_revision = 'b5e2e532a53a'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('batch',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('conditions', sa.Text(), nullable=False),
    sa.Column('select_all', sa.Boolean(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', portal.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_by_id', sa.Integer(), nullable=True),
    sa.Column('started_at', portal.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', portal.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('pause_reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], ),
    sa.ForeignKeyConstraint(['started_by_id'], ['user.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('batch_row',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('selected', sa.Boolean(), nullable=True),
    sa.Column('recipient_name', sa.String(length=200), nullable=False),
    sa.Column('to_addresses', sa.Text(), nullable=True),
    sa.Column('cc_addresses', sa.Text(), nullable=False),
    sa.Column('save_to_customer', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['batch.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoice.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('batch_id', 'invoice_id')
    )
    with op.batch_alter_table('tax_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deferrals', sa.Integer(), nullable=False, server_default='0'))

    with op.batch_alter_table('tax_submission', schema=None) as batch_op:
        batch_op.alter_column('message_id', existing_type=sa.Integer(), nullable=True)

    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deferrals', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('batch_id', sa.Integer(), nullable=True))
        batch_op.create_index('ix_delivery_batch_status', ['batch_id', 'status'], unique=False)
        batch_op.create_index('ix_delivery_claimed_at', ['claimed_at'], unique=False)
        batch_op.create_foreign_key('fk_delivery_batch_id_batch', 'batch', ['batch_id'], ['id'])

    with op.batch_alter_table('mail_settings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rate_per_minute', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('rate_per_day', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('throttled_until', portal.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('throttle_note', sa.Text(), nullable=False, server_default=''))


def downgrade():
    with op.batch_alter_table('mail_settings', schema=None) as batch_op:
        batch_op.drop_column('throttle_note')
        batch_op.drop_column('throttled_until')
        batch_op.drop_column('rate_per_day')
        batch_op.drop_column('rate_per_minute')

    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_constraint('fk_delivery_batch_id_batch', type_='foreignkey')
        batch_op.drop_index('ix_delivery_claimed_at')
        batch_op.drop_index('ix_delivery_batch_status')
        batch_op.drop_column('batch_id')
        batch_op.drop_column('deferrals')

    with op.batch_alter_table('tax_submission', schema=None) as batch_op:
        batch_op.alter_column('message_id', existing_type=sa.Integer(), nullable=False)

    with op.batch_alter_table('tax_message', schema=None) as batch_op:
        batch_op.drop_column('deferrals')

    op.drop_table('batch_row')
    op.drop_table('batch')
