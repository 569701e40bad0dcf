"""write-ahead intake: inbound_message claims, leases and completion

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 21:40:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('inbound_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('done_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('claim_token', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.add_column(sa.Column('lease_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('late', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True))
        batch_op.create_index('ix_inbound_message_undone', ['done_at', 'lease_until'], unique=False)
    # Rows from before write-ahead intake were written with their reply, in one
    # transaction: they are all done.
    op.execute("UPDATE inbound_message SET done_at = received_at")
    with op.batch_alter_table('inbound_message', schema=None) as batch_op:
        batch_op.alter_column('attempts', server_default=None)
        batch_op.alter_column('late', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('inbound_message', schema=None) as batch_op:
        batch_op.drop_index('ix_inbound_message_undone')
        batch_op.drop_column('last_error')
        batch_op.drop_column('late')
        batch_op.drop_column('attempts')
        batch_op.drop_column('lease_until')
        batch_op.drop_column('claim_token')
        batch_op.drop_column('done_at')
