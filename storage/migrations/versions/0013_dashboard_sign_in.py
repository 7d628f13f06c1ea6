"""staff dashboard sign-in: one-time login tokens and browser sessions

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 14:15:00

- dashboard_logins: a one-time sign-in link's token (its SHA-256), its person, when it expires
  and when it was used (issue 15).
- dashboard_sessions: a browser session's token (its SHA-256), its person, the roles held when
  it began, the language chosen, when it expires or ended (issue 15).
"""
import sqlalchemy as sa
from alembic import op

import storage.base

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dashboard_logins',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('resident_id', sa.Integer(), nullable=False),
    sa.Column('created_at', storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', storage.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'],
                            name=op.f('fk_dashboard_logins_resident_id_residents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dashboard_logins')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_dashboard_logins_token_hash'))
    )
    with op.batch_alter_table('dashboard_logins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dashboard_logins_resident_id'), ['resident_id'],
                              unique=False)
    op.create_table('dashboard_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('resident_id', sa.Integer(), nullable=False),
    sa.Column('roles', sa.JSON(), nullable=False),
    sa.Column('language', sa.String(length=10), nullable=True),
    sa.Column('created_at', storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', storage.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'],
                            name=op.f('fk_dashboard_sessions_resident_id_residents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dashboard_sessions')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_dashboard_sessions_token_hash'))
    )
    with op.batch_alter_table('dashboard_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dashboard_sessions_resident_id'), ['resident_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('dashboard_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dashboard_sessions_resident_id'))
    op.drop_table('dashboard_sessions')
    with op.batch_alter_table('dashboard_logins', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dashboard_logins_resident_id'))
    op.drop_table('dashboard_logins')
