"""Working a report: acknowledge, in progress, fixed (with a note and photo), reassign within
scope, duplicate of another, close. One rule for every desk: the team card's buttons in chat
(handlers/report_staff.py) and the staff dashboard (web/dashboard) both call these, so each
action is guarded the same way, audited the same way, and told to the reporter and followers
through the outbox in their own language (services.report_cards).

Each function returns a `Worked`: what happened (`done`, or why not) and the report as the
database now holds it. The caller words the outcome and wakes delivery when `pushed`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from services import report_cards as cards
from storage import access, audit, territory
from storage import reports as rep
from storage.access import Scope
from storage.base import reread

if TYPE_CHECKING:
    from bot.context import Services

Outcome = Literal["done", "unknown", "not_yours", "moved_on", "invalid"]
STEPS = {"ack": rep.Status.ACKNOWLEDGED, "progress": rep.Status.IN_PROGRESS}
CLOSE_REASONS = (rep.CloseReason.NOT_RESPONSIBLE, rep.CloseReason.UNABLE)
MAX_NOTE = 500


@dataclass
class Worked:
    outcome: Outcome
    report: rep.Report | None = None
    pushed: bool = False
    team: territory.Team | None = None  # reassigned to

    @property
    def done(self) -> bool:
        return self.outcome == "done"


def is_open(report: rep.Report) -> bool:
    return report.status in [s.value for s in rep.OPEN]


def steps_for(report: rep.Report) -> list[str]:
    """The `set_status` steps this report can take now (an acknowledged one: only
    "progress"); the dashboard offers these, as the team card does (services.report_cards)."""
    return [step for step, to in STEPS.items() if rep.can_become(report.status, to)]


async def report_for(session: AsyncSession, scope: Scope, report_id: int | None
                     ) -> Worked:
    """The report, when this person may act on it (`done`), else `unknown` / `not_yours`."""
    report = await rep.get(session, report_id, fresh=True)
    if report is None:
        return Worked("unknown")
    if not cards.may_act(scope, report):
        return Worked("not_yours", report)
    return Worked("done", report)


async def reassign_targets(session: AsyncSession, services: Services, scope: Scope,
                           report: rep.Report) -> set[int] | None:
    """Teams a report may be handed to by this person: those their scope reaches, together
    with the teams working the report's own station; None for admins (every team)."""
    _, teams = await access.reach(session, scope, services.geo,
                                  await access.station_estates(session, report.estate_id))
    return teams


async def reassign_choices(session: AsyncSession, services: Services, scope: Scope,
                           report: rep.Report) -> list[territory.Team]:
    allowed = await reassign_targets(session, services, scope, report)
    return [tm for tm in await territory.teams_other_than(session, report.team_id)
            if allowed is None or tm.id in allowed]


async def _move(session: AsyncSession, services: Services, scope: Scope, actor_id: int,
                report_id: int | None, to: rep.Status, action: str, now: datetime, *,
                open_only: bool = False, told: str | None = None, photo: str | None = None,
                then: Callable[[rep.Report], Awaitable[None]] | None = None,
                how: Mapping[str, Any] | None = None, detail: Mapping[str, Any] | None = None,
                ) -> Worked:
    """The frame of every status change: the report if this person may act on it (and, with
    `open_only`, while it is open); the guarded transition (`how`: its reason, note, ...),
    which a concurrent change may have beaten (`moved_on`); `then` (a duplicate's followers);
    the audit record (with `detail`) and the push to reporter and followers (`told`, `photo`:
    the note and picture they read)."""
    found = await (_checked if open_only else report_for)(session, scope, report_id)
    if not found.done:
        return found
    report = found.report
    assert report is not None
    if await rep.transition(session, report.id, to, actor_id=actor_id, now=now,
                            **(how or {})) is None:
        return Worked("moved_on", await reread(session, report))
    if then is not None:
        await then(report)
    report = await rep.get(session, report.id, fresh=True)
    assert report is not None
    await audit.record(session, actor_id, f"report.{action}", report.reference,
                       status=report.status, **(detail or {}))
    await cards.notify_status(session, services, report, note=told, photo=photo)
    return Worked("done", report, pushed=True)


async def _checked(session: AsyncSession, scope: Scope, report_id: int | None) -> Worked:
    found = await report_for(session, scope, report_id)
    if found.done and not is_open(found.report):  # type: ignore[arg-type]
        return Worked("moved_on", found.report)
    return found


async def set_status(session: AsyncSession, services: Services, scope: Scope, actor_id: int,
                     report_id: int, step: str, now: datetime) -> Worked:
    """Acknowledge (`ack`) or start (`progress`) an open report."""
    if step not in STEPS:
        return Worked("invalid")
    return await _move(session, services, scope, actor_id, report_id, STEPS[step], step, now,
                       open_only=True)


async def mark_fixed(session: AsyncSession, services: Services, scope: Scope, actor_id: int,
                     report_id: int, now: datetime, *, note: str | None = None,
                     photo: str | None = None) -> Worked:
    """Fixed, with an optional note (at most MAX_NOTE characters) and photo (a media path)."""
    if note is not None and len(note) > MAX_NOTE:
        return Worked("invalid")
    return await _move(session, services, scope, actor_id, report_id, rep.Status.FIXED, "fix",
                       now, told=note, photo=photo, how={"note": note, "photo": photo})


async def reassign(session: AsyncSession, services: Services, scope: Scope, actor_id: int,
                   report_id: int, team_id: int | None, now: datetime) -> Worked:
    """Hand an open report to another team this person may reach; the team gets its card."""
    found = await report_for(session, scope, report_id)
    if not found.done:
        return found
    report = found.report
    assert report is not None
    team = await territory.team(session, team_id)
    allowed = await reassign_targets(session, services, scope, report)
    if team is None or team.id == report.team_id or (allowed is not None
                                                      and team.id not in allowed):
        return Worked("invalid", report)
    if not await rep.reassign(session, report.id, report.team_id, team.id, actor_id=actor_id,
                              now=now):
        return Worked("moved_on", await reread(session, report))
    report = await rep.get(session, report.id, fresh=True)
    assert report is not None
    await audit.record(session, actor_id, "report.reassign", report.reference,
                       to_team=team.code)
    await cards.send_card_to_team(session, services, report, reason="reassigned")
    return Worked("done", report, pushed=True, team=team)


async def close(session: AsyncSession, services: Services, scope: Scope, actor_id: int, report_id: int,
                reason: rep.CloseReason, now: datetime) -> Worked:
    """Close an open report as not ours or unable (a duplicate names its original instead)."""
    if reason not in CLOSE_REASONS:
        return Worked("invalid")
    return await _move(session, services, scope, actor_id, report_id, rep.Status.CLOSED,
                       "close", now, how={"reason": reason}, detail={"reason": reason.value})


async def may_see_original(session: AsyncSession, services: Services, scope: Scope,
                           original: rep.Report, report_id: int | None) -> bool:
    """A report this person may act on, or one with a team they could hand this one to."""
    if cards.may_act(scope, original):
        return True
    report = await rep.get(session, report_id) if report_id else None
    if report is None:
        return False
    allowed = await reassign_targets(session, services, scope, report)
    return allowed is None or original.team_id in allowed


@dataclass
class Original:
    """What a typed reference names for a duplicate: the report (`found`), or why not."""
    outcome: Literal["found", "unknown", "closed"]
    report: rep.Report | None = None


async def find_original(session: AsyncSession, services: Services, scope: Scope, report_id: int | None,
                        reference: str) -> Original:
    """The report a duplicate would point at. A reference outside this person's reach is
    answered as if it did not exist, so "does Z-… exist?" reveals nothing beyond their scope."""
    original = await rep.by_reference(session, reference.strip())
    if original is not None and not await may_see_original(session, services, scope, original,
                                                           report_id):
        original = None
    if original is None or original.id == report_id:
        return Original("unknown")
    if original.status == rep.Status.CLOSED:
        return Original("closed", original)
    return Original("found", original)


async def mark_duplicate(session: AsyncSession, services: Services, scope: Scope, actor_id: int,
                         report_id: int, original: rep.Report, now: datetime, *,
                         note: str) -> Worked:
    """Close a report as a duplicate of `original` (found by find_original); its followers
    follow the original. `note` is what the reporter reads (in the actor's language)."""
    async def followers_follow_the_original(report: rep.Report) -> None:
        await rep.merge_followers(session, report.id, original.id)

    return await _move(
        session, services, scope, actor_id, report_id, rep.Status.CLOSED, "duplicate", now,
        told=note, then=followers_follow_the_original,
        how={"reason": rep.CloseReason.DUPLICATE, "duplicate_of": original.id,
             "note": original.reference},
        detail={"original": original.reference})
