"""assisted votes; volunteer activities that carry out an adopted proposal

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 11:30:00

- poll_assisted_votes: a vote a committee member or staff member recorded for a resident who
  was present (`/assist`): poll, resident, assistant, time, and when the resident disputed it.
  Never the choice (issue 18).
- survey_responses.assisted_by / disputed_at: answers recorded with help, and the resident's
  dispute (issue 18).
- volunteer_activities.proposal_id: the adopted proposal an activity carries out (issue 18).
"""
import sqlalchemy as sa
from alembic import op

import storage.base

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('poll_assisted_votes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('poll_id', sa.Integer(), nullable=False),
    sa.Column('resident_id', sa.Integer(), nullable=False),
    sa.Column('assistant_id', sa.Integer(), nullable=False),
    sa.Column('at', storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('disputed_at', storage.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['assistant_id'], ['residents.id'],
                            name=op.f('fk_poll_assisted_votes_assistant_id_residents')),
    sa.ForeignKeyConstraint(['poll_id'], ['polls.id'],
                            name=op.f('fk_poll_assisted_votes_poll_id_polls')),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'],
                            name=op.f('fk_poll_assisted_votes_resident_id_residents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_poll_assisted_votes')),
    sa.UniqueConstraint('poll_id', 'resident_id',
                        name=op.f('uq_poll_assisted_votes_poll_id_resident_id'))
    )
    with op.batch_alter_table('poll_assisted_votes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_poll_assisted_votes_poll_id'), ['poll_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_poll_assisted_votes_resident_id'), ['resident_id'],
                              unique=False)
    with op.batch_alter_table('survey_responses', schema=None) as batch_op:
        batch_op.add_column(sa.Column('assisted_by', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('disputed_at', storage.base.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.create_foreign_key(
            batch_op.f('fk_survey_responses_assisted_by_residents'), 'residents',
            ['assisted_by'], ['id'])
    with op.batch_alter_table('volunteer_activities', schema=None) as batch_op:
        batch_op.add_column(sa.Column('proposal_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_volunteer_activities_proposal_id'), ['proposal_id'],
                              unique=False)
        batch_op.create_foreign_key(
            batch_op.f('fk_volunteer_activities_proposal_id_proposals'), 'proposals',
            ['proposal_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('volunteer_activities', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_volunteer_activities_proposal_id_proposals'),
                                 type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_volunteer_activities_proposal_id'))
        batch_op.drop_column('proposal_id')
    with op.batch_alter_table('survey_responses', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_survey_responses_assisted_by_residents'),
                                 type_='foreignkey')
        batch_op.drop_column('disputed_at')
        batch_op.drop_column('assisted_by')
    with op.batch_alter_table('poll_assisted_votes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_poll_assisted_votes_resident_id'))
        batch_op.drop_index(batch_op.f('ix_poll_assisted_votes_poll_id'))
    op.drop_table('poll_assisted_votes')
