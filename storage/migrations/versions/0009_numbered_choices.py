"""numbered choices of the latest prompt, per identity, for platforms without buttons

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 22:30:00

- numbered_choices: what `1`, `2`, … typed in a terminal (or any platform without buttons)
  stand for, kept in the database so they survive a restart and hold across processes
  (issue 12, 4).
"""
import sqlalchemy as sa
from alembic import op

from storage.base import UTCDateTime

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'numbered_choices',
        sa.Column('identity_id', sa.Integer(), nullable=False),
        sa.Column('choices', sa.JSON(), nullable=False),
        sa.Column('updated_at', UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['identity_id'], ['identities.id'],
                                name=op.f('fk_numbered_choices_identity_id_identities')),
        sa.PrimaryKeyConstraint('identity_id', name=op.f('pk_numbered_choices')),
    )


def downgrade() -> None:
    op.drop_table('numbered_choices')
