"""volunteer check-out; a structured reason on generated reports

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 22:30:00

- volunteer_signups.checked_out_at: hours are credited for the time served, up to a check-out
  or the shift's end (issue 12, 8).
- reports.reason: what a report filed by the bot itself says (an emergency's "I need help"),
  kept as a code and values and worded in each reader's language (issue 12, 6).
"""
import sqlalchemy as sa
from alembic import op

import storage.base

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('volunteer_signups', schema=None) as batch_op:
        batch_op.add_column(sa.Column('checked_out_at', storage.base.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.drop_column('reason')
    with op.batch_alter_table('volunteer_signups', schema=None) as batch_op:
        batch_op.drop_column('checked_out_at')
