"""Signatures: the seller's registered signing certificates, and imports waiting for an admin's approval

Revision ID: 5c1e8a9b2d47
Revises: 87821386f0c3
Create Date: 2026-12-02 12:19:03.039050

"""
from alembic import op
import sqlalchemy as sa
import portal.types


# revision identifiers, used by Alembic.
revision = '5c1e8a9b2d47'
down_revision = '87821386f0c3'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('pending_import',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('file_name', sa.String(length=400), nullable=False),
    sa.Column('xml', sa.LargeBinary(), nullable=False),
    sa.Column('xml_sha256', sa.String(length=64), nullable=False),
    sa.Column('form', sa.Integer(), nullable=False),
    sa.Column('series', sa.String(length=6), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('issued_on', sa.Date(), nullable=False),
    sa.Column('buyer_name', sa.String(length=400), nullable=False),
    sa.Column('total_amount', portal.types.Money(precision=24, scale=6), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('related_info', sa.Text(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('certificate_der', sa.LargeBinary(), nullable=False),
    sa.Column('tax_code', sa.String(length=14), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('issuer', sa.Text(), nullable=False),
    sa.Column('serial', sa.String(length=80), nullable=False),
    sa.Column('not_before', portal.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('not_after', portal.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('signing_time', portal.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('uploaded_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', portal.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['uploaded_by_id'], ['user.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('xml_sha256')
    )
    with op.batch_alter_table('pending_import', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pending_import_fingerprint'), ['fingerprint'], unique=False)

    op.create_table('signing_certificate',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('der', sa.LargeBinary(), nullable=False),
    sa.Column('tax_code', sa.String(length=14), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('issuer', sa.Text(), nullable=False),
    sa.Column('serial', sa.String(length=80), nullable=False),
    sa.Column('not_before', portal.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('not_after', portal.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('key_encrypted', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', portal.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('fingerprint')
    )


def downgrade():
    op.drop_table('signing_certificate')
    with op.batch_alter_table('pending_import', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pending_import_fingerprint'))

    op.drop_table('pending_import')
