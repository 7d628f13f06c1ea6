"""Open311 GeoReport v2: API keys and what each POST brought

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 11:30:00

- open311_keys: keys other systems file and read reports with, kept as a SHA-256 only, each
  over one station or one team, each filing in the name of a resident row of its own (issue 16).
- open311_submissions: per POST the report it filed or was merged into, the contact fields,
  address string and media URL that came with it.
"""
import sqlalchemy as sa
from alembic import op

from storage.base import UTCDateTime

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'open311_keys',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('label', sa.String(length=80), nullable=False),
        sa.Column('key_hash', sa.String(length=64), nullable=False),
        sa.Column('hint', sa.String(length=16), nullable=False),
        sa.Column('scope_kind', sa.String(length=10), nullable=False),
        sa.Column('scope_id', sa.Integer(), nullable=False),
        sa.Column('reporter_id', sa.Integer(), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('revoked_at', UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['reporter_id'], ['residents.id'],
                                name=op.f('fk_open311_keys_reporter_id_residents')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_open311_keys')),
        sa.UniqueConstraint('key_hash', name=op.f('uq_open311_keys_key_hash')),
    )
    op.create_table(
        'open311_submissions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('report_id', sa.Integer(), nullable=False),
        sa.Column('key_id', sa.Integer(), nullable=False),
        sa.Column('merged', sa.Boolean(), nullable=False),
        sa.Column('contact', sa.JSON(), nullable=False),
        sa.Column('address_string', sa.Text(), nullable=True),
        sa.Column('media_url', sa.String(length=500), nullable=True),
        sa.Column('at', UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['key_id'], ['open311_keys.id'],
                                name=op.f('fk_open311_submissions_key_id_open311_keys')),
        sa.ForeignKeyConstraint(['report_id'], ['reports.id'],
                                name=op.f('fk_open311_submissions_report_id_reports')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_open311_submissions')),
    )
    op.create_index(op.f('ix_open311_submissions_key_id'), 'open311_submissions', ['key_id'],
                    unique=False)
    op.create_index(op.f('ix_open311_submissions_report_id'), 'open311_submissions',
                    ['report_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_open311_submissions_report_id'), table_name='open311_submissions')
    op.drop_index(op.f('ix_open311_submissions_key_id'), table_name='open311_submissions')
    op.drop_table('open311_submissions')
    op.drop_table('open311_keys')
