"""households approved by staff, requests bound to a home, anonymous ballots counted in groups

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 19:30:00

- residents.verified_household_id: the household staff approved a resident for (issue 11, 1).
  Left empty for everyone: per-household polls count a household only after staff approve it.
- verification_requests.household_id: the home a request was made for (issue 11, 4).
- buildings.units: a building's own list of units, when the territory file gives one.
- Units are rewritten in one normal form (storage.people.normalize_unit); households that were
  the same flat typed differently are merged into one.
- polls.counted and poll_pending_ballots: anonymous ballots counted in groups (issue 11, 2).
  Existing anonymous polls were counted at once, so counted = their participations.
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('poll_pending_ballots',
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('poll_id', sa.Integer(), nullable=False),
    sa.Column('sealed', sa.LargeBinary(length=34), nullable=False),
    sa.ForeignKeyConstraint(['poll_id'], ['polls.id'],
                            name=op.f('fk_poll_pending_ballots_poll_id_polls')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_poll_pending_ballots'))
    )
    with op.batch_alter_table('poll_pending_ballots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_poll_pending_ballots_poll_id'), ['poll_id'],
                              unique=False)
    with op.batch_alter_table('polls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('counted', sa.Integer(), nullable=False,
                                      server_default='0'))
    with op.batch_alter_table('buildings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('units', sa.JSON(), nullable=True))
    with op.batch_alter_table('residents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('verified_household_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_residents_verified_household_id'),
                              ['verified_household_id'], unique=False)
        batch_op.create_foreign_key(
            batch_op.f('fk_residents_verified_household_id_households'), 'households',
            ['verified_household_id'], ['id'])
    with op.batch_alter_table('verification_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('household_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f('fk_verification_requests_household_id_households'), 'households',
            ['household_id'], ['id'])

    bind = op.get_bind()
    bind.execute(sa.text(
        "UPDATE polls SET counted = (SELECT count(*) FROM poll_participations p "
        "WHERE p.poll_id = polls.id) WHERE anonymous"))
    _normalize_units(bind)


def _normalize_units(bind) -> None:
    from storage.people import normalize_unit

    keep: dict[tuple[int, str], int] = {}
    for hid, building_id, unit in bind.execute(sa.text(
            "SELECT id, building_id, unit FROM households ORDER BY id")).all():
        norm = normalize_unit(unit)
        survivor = keep.get((building_id, norm))
        if survivor is None:
            keep[(building_id, norm)] = hid
            if norm != unit:
                bind.execute(sa.text("UPDATE households SET unit = :u WHERE id = :i"),
                             {"u": norm, "i": hid})
            continue
        for table in ("residents", "verification_requests"):
            bind.execute(sa.text(f"UPDATE {table} SET household_id = :s WHERE household_id = :h"),
                         {"s": survivor, "h": hid})
        bind.execute(sa.text("DELETE FROM households WHERE id = :h"), {"h": hid})
    for rid, unit in bind.execute(sa.text(
            "SELECT id, unit FROM residents WHERE unit IS NOT NULL")).all():
        norm = normalize_unit(unit) or None
        if norm != unit:
            bind.execute(sa.text("UPDATE residents SET unit = :u WHERE id = :i"),
                         {"u": norm, "i": rid})


def downgrade() -> None:
    with op.batch_alter_table('verification_requests', schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f('fk_verification_requests_household_id_households'), type_='foreignkey')
        batch_op.drop_column('household_id')
    with op.batch_alter_table('residents', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_residents_verified_household_id_households'),
                                 type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_residents_verified_household_id'))
        batch_op.drop_column('verified_household_id')
    with op.batch_alter_table('buildings', schema=None) as batch_op:
        batch_op.drop_column('units')
    with op.batch_alter_table('polls', schema=None) as batch_op:
        batch_op.drop_column('counted')
    with op.batch_alter_table('poll_pending_ballots', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_poll_pending_ballots_poll_id'))
    op.drop_table('poll_pending_ballots')
