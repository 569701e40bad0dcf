"""resident.awaiting_answer_since: staff asked the resident a question

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 23:25:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('resident', schema=None) as batch_op:
        batch_op.add_column(sa.Column('awaiting_answer_since', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    # Residents with a ticket waiting for them today.
    op.execute("UPDATE resident SET awaiting_answer_since = CURRENT_TIMESTAMP WHERE openid IN "
               "(SELECT openid FROM ticket WHERE status = 'waiting')")


def downgrade() -> None:
    with op.batch_alter_table('resident', schema=None) as batch_op:
        batch_op.drop_column('awaiting_answer_since')
