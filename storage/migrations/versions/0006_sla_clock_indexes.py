"""sla clock indexes and mark rounds

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 00:52:24
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sla_mark', schema=None) as batch_op:
        batch_op.add_column(sa.Column('round', sa.Integer(), nullable=False, server_default='0'))
        batch_op.drop_index(batch_op.f('ux_sla_mark_once'))
        batch_op.create_index('ux_sla_mark_once', ['ticket_id', 'round', 'kind', 'clock', 'level'], unique=True)

    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.add_column(sa.Column('clock_started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.drop_index(batch_op.f('ix_ticket_closure_warn_at'))
        batch_op.drop_index(batch_op.f('ix_ticket_response_warn_at'))
        batch_op.create_index('ix_ticket_sla_closure_due', ['status', 'closure_due_at'], unique=False)
        batch_op.create_index('ix_ticket_sla_closure_warn', ['status', 'closure_warn_at'], unique=False)
        batch_op.create_index('ix_ticket_sla_response', ['status', 'accepted_at', 'response_due_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.drop_index('ix_ticket_sla_response')
        batch_op.drop_index('ix_ticket_sla_closure_warn')
        batch_op.drop_index('ix_ticket_sla_closure_due')
        batch_op.create_index(batch_op.f('ix_ticket_response_warn_at'), ['response_warn_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_ticket_closure_warn_at'), ['closure_warn_at'], unique=False)
        batch_op.drop_column('clock_started_at')

    with op.batch_alter_table('sla_mark', schema=None) as batch_op:
        batch_op.drop_index('ux_sla_mark_once')
        batch_op.create_index(batch_op.f('ux_sla_mark_once'), ['ticket_id', 'kind', 'clock', 'level'], unique=1)
        batch_op.drop_column('round')

