"""Login: a session version per user, so that logout ends the user's sessions on the server

Revision ID: f3a9c2d17b40
Revises: e7c41f0a9d2b
Create Date: 2026-12-02 01:25:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f3a9c2d17b40'
down_revision = 'e7c41f0a9d2b'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), nullable=False, server_default='1'))


def downgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_column('session_version')
