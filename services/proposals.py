"""The council's agenda as rules: who may propose and support, the threshold that puts a
proposal on the agenda, what a title, body or note must be, and who decides. The chat
(handlers/proposals.py) and anything else that files or decides proposals call these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from storage import kv, proposals, territory
from storage.access import Scope
from storage.audience import Audience, refusal
from storage.people import Resident
from storage.territory import Committee
from storage.territory_loader import proposal_threshold_key

if TYPE_CHECKING:
    from bot.config import DeliberationSettings

MAX_TITLE, MAX_BODY, MAX_NOTE = 120, 2000, 1000
MIN_TITLE, MIN_BODY, MIN_NOTE = 3, 10, 2


def title_problem(text: str) -> str | None:
    """The text key of what is wrong with a title, or None."""
    return None if MIN_TITLE <= len(text) <= MAX_TITLE else "title_length"


def body_problem(text: str) -> str | None:
    return None if MIN_BODY <= len(text) <= MAX_BODY else "body_length"


def note_problem(text: str) -> str | None:
    """A decision's or an implementation's note."""
    return None if MIN_NOTE <= len(text) <= MAX_NOTE else "note_length"


async def threshold(session: AsyncSession, settings: DeliberationSettings,
                    committee: Committee) -> int:
    """The setting for this committee, else the territory file's, else the setting's default."""
    if committee.code in settings.proposal_thresholds:
        return settings.proposal_thresholds[committee.code]
    from_file = await kv.get(session, proposal_threshold_key(committee.code))
    return int(from_file) if from_file else settings.proposal_threshold


async def refused(session: AsyncSession, settings: DeliberationSettings, committee_id: int,
                  resident: Resident) -> str | None:
    """Why this resident may not propose to or support in this committee (not living in its
    area, not verified when the setting asks it), or None."""
    audience = Audience("committee", committee_id, settings.proposals_verified_only)
    return await refusal(session, audience, resident)


async def home_committee(session: AsyncSession, resident: Resident) -> Committee | None:
    return await territory.committee_of_estate(session, resident.estate_id)


@dataclass(frozen=True)
class Submitted:
    proposal: proposals.Proposal | None = None
    refused: str | None = None  # not_registered, a refusal reason, or a text problem


async def submit(session: AsyncSession, settings: DeliberationSettings, resident: Resident, *,
                 title: str, body: str) -> Submitted:
    """A proposal to the resident's home committee, checked whole (the rules may have
    changed since the title was typed)."""
    problem = title_problem(title) or body_problem(body)
    if problem:
        return Submitted(refused=problem)
    committee = await home_committee(session, resident)
    if committee is None:
        return Submitted(refused="not_registered")
    reason = await refused(session, settings, committee.id, resident)
    if reason:
        return Submitted(refused=reason)
    row = await proposals.submit(session, committee_id=committee.id, author_id=resident.id,
                                 title=title, body=body,
                                 threshold=await threshold(session, settings, committee))
    return Submitted(proposal=row)


async def support(session: AsyncSession, settings: DeliberationSettings,
                  proposal: proposals.Proposal, resident: Resident, now: datetime
                  ) -> proposals.Support | str:
    """A resident's support (once; the author's own is refused by storage), or the reason
    they may not give it."""
    reason = await refused(session, settings, proposal.committee_id, resident)
    if reason:
        return reason
    return await proposals.support(session, proposal, resident.id, now)


def council_may(scope: Scope, proposal: proposals.Proposal) -> bool:
    """Who decides and records what was done: admins, and the staff and members of the
    committee the proposal was made to."""
    return scope.everything or proposal.committee_id in scope.committee_ids
