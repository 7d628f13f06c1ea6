"""outbox figures kept as counters per group; an index to prune old rows by age

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 19:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'outbox_groups',
        sa.Column('group_key', sa.String(length=60), nullable=False),
        sa.Column('total', sa.Integer(), nullable=False),
        sa.Column('sent', sa.Integer(), nullable=False),
        sa.Column('failed', sa.Integer(), nullable=False),
        sa.Column('unreachable', sa.Integer(), nullable=False),
        sa.Column('cancelled', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('group_key', name=op.f('pk_outbox_groups')),
    )
    # Groups already under way keep their figures.
    op.execute(
        "INSERT INTO outbox_groups (group_key, total, sent, failed, unreachable, cancelled) "
        "SELECT group_key, COUNT(*), "
        "SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN status = 'unreachable' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END) "
        "FROM outbox WHERE group_key IS NOT NULL GROUP BY group_key")
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_created', ['created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_created')
    op.drop_table('outbox_groups')
