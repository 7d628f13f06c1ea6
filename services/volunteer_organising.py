"""Organising a volunteer activity: where it may be held, whom it may be for, what a shift may
be, and publishing it (audited, the announcement requested). One rule for the chat's
/newactivity (handlers/volunteering_organise.py) and the staff dashboard's form
(web/dashboard/volunteering.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit, territory
from storage import volunteering as vol
from storage.access import Scope
from storage.people import RoleKind

MAX_TITLE, MAX_DESCRIPTION, MAX_SKILLS, MAX_SHIFTS = 80, 1000, 120, 20
MAX_AHEAD = timedelta(days=366)


async def allowed_estates(session: AsyncSession, scope: Scope, home_estate_id: int | None,
                          proposal_committee: int | None = None) -> list[territory.Estate]:
    """The estates an organiser may hold an activity in: those their scope covers; a team lead
    without a territorial role, at home; carrying out a proposal, within the area of the
    committee that adopted it."""
    estates = await territory.estates(session)
    allowed = [e for e in estates if scope.covers_estate(e.id)]
    if not allowed and home_estate_id:
        allowed = [e for e in estates if e.id == home_estate_id]
    if proposal_committee:
        allowed = [e for e in allowed if e.committee_id == proposal_committee]
    return allowed


def audiences(scope: Scope, estate_id: int | None) -> list[str]:
    """Whom an activity at this place may be published to (storage.volunteering.AUDIENCES)."""
    options = []
    if estate_id:
        options.append("estate")
    if estate_id or len(scope.committee_ids) == 1:
        # A point outside any estate still belongs to the organiser's own committee.
        options.append("committee")
    if scope.has(RoleKind.ADMIN, RoleKind.STAFF):
        options.append("everyone")
    return options


def check_shift(start: datetime, end: datetime, capacity: int, skills: str,
                now: datetime) -> vol.ShiftSpec | str:
    """A shift as given, or the key (volunteering.*) of what is wrong with it."""
    if end <= start:
        return "shift_end_before_start"
    if start <= now:
        return "shift_in_past"
    if start > now + MAX_AHEAD:
        return "shift_too_far"
    if not 1 <= capacity <= vol.MAX_CAPACITY:
        return "shift_capacity"
    if len(skills) > MAX_SKILLS:
        return "shift_skills_too_long"
    return vol.ShiftSpec(start, end, capacity, skills)


Published = Literal["published", "announcing", "already"]


async def publish(session: AsyncSession, actor_id: int, activity: vol.Activity,
                  announce: bool) -> Published:
    """A draft published once (a second press changes nothing), audited; with `announce`, its
    announcement requested (the announcements job sends it in batches), audited too."""
    if not await vol.publish(session, activity.id):
        return "already"
    await audit.record(session, actor_id, "volunteering.publish", f"activity:{activity.id}",
                       audience=activity.audience)
    if announce and await vol.request_announcement(session, activity.id):
        await audit.record(session, actor_id, "volunteering.announce",
                           f"activity:{activity.id}")
        return "announcing"
    return "published"
