"""Making a notice, for every desk: the chat's /notice (handlers/notices.py) and the staff
dashboard (web/dashboard) both call these, so the audience is checked against the sender's
scope the same way (services.notice_audience), the preview counts the same reachable people,
and the notice is created and audited the same way; the notices-fanout job then sends it.
Also who may manage a notice once made, cancelling it, its delivery figures, and an
emergency's answers building by building (the chat's /notices and the dashboard show the same)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from services import notice_audience as aud
from storage import audit, notices, outbox, territory
from storage.access import Scope
from storage.base import reread
from storage.notices import Notice, NoticeError, NoticeStatus
from storage.people import Resident
from storage.territory import Estate

if TYPE_CHECKING:
    from services.geo import TerritoryIndex

MAX_TEXT = 3500  # leaves room for the category header within one platform message


def clean_texts(texts: dict[str, str]) -> dict[str, str]:
    """The notice's texts by language: empty ones dropped; NoticeError when none is left or
    one is too long."""
    kept = {lang: text.strip() for lang, text in texts.items() if text and text.strip()}
    if not kept:
        raise NoticeError("empty_text")
    if any(len(text) > MAX_TEXT for text in kept.values()):
        raise NoticeError("too_long")
    return kept


async def reachable(session: AsyncSession, geo: TerritoryIndex, scope: Scope, category: str, kind: str,
                    target: int | None) -> int:
    """How many chats a notice to this audience would reach now (the preview's figure);
    NoticeError when the audience is not the sender's to choose."""
    resolved = await aud.resolve(session, geo, scope, kind, target)
    probe = Notice(category=category, urgent=category == "emergency",
                   audience_kind=resolved.kind, estate_ids=resolved.estate_ids,
                   building_ids=resolved.building_ids)
    return await notices.count_reachable(session, probe)


async def create(session: AsyncSession, geo: TerritoryIndex, scope: Scope, *, category: str, kind: str,
                 target: int | None, texts: dict[str, str], photo: str | None,
                 at: datetime, now: datetime, created_by: int,
                 sender_identity_id: int | None) -> Notice:
    """The notice, ready to go at `at` (now: at once). The audience is checked again here:
    roles may have changed while the draft waited. NoticeError when refused."""
    resolved = await aud.resolve(session, geo, scope, kind, target)
    notice = await notices.create_notice(
        session, category=category, audience_kind=resolved.kind,
        audience_ids=[resolved.target_id] if resolved.target_id else [],
        estate_ids=resolved.estate_ids, building_ids=resolved.building_ids,
        texts=texts, photo=photo, scheduled_at=at, created_by=created_by,
        sender_identity_id=sender_identity_id)
    assert notice is not None  # no dedupe key: always created
    await audit.record(session, created_by, "notice.create", f"notice:{notice.id}",
                       category=notice.category, audience=resolved.kind,
                       target_id=resolved.target_id,
                       scheduled=at.isoformat() if at != now else None)
    return notice


def may_manage(scope: Scope, resident_id: int, notice: Notice) -> bool:
    """Admins, the notice's author, and (for a system notice) staff covering all its estates."""
    covered = notice.estate_ids is not None and all(scope.covers_estate(e)
                                                    for e in notice.estate_ids)
    return (scope.everything or notice.created_by == resident_id
            or (notice.created_by is None and covered))


@dataclass(frozen=True)
class Progress:
    total: int  # recipients queued by the fan-out so far
    sent: int
    waiting: int
    failed: int
    unreachable: int
    done: bool  # fan-out finished (or cancelled) and nothing waits


async def progress(session: AsyncSession, notice: Notice) -> Progress:
    figures = await outbox.figures(session, notice.group)
    waiting = figures["pending"] + figures["sending"]
    done = waiting == 0 and (notice.fanout_done_at is not None
                             or notice.status == NoticeStatus.CANCELLED)
    return Progress(notice.recipients, figures["sent"], waiting, figures["failed"],
                    figures["unreachable"], done)


def may_cancel(notice: Notice, figures: dict[str, int]) -> bool:
    """Whether a cancel is offered: before it goes, while it goes, or sent with messages still
    waiting (those are dropped)."""
    return notice.status in (NoticeStatus.SCHEDULED, NoticeStatus.SENDING) or (
        notice.status == NoticeStatus.SENT and figures["pending"] > 0)


async def cancel(session: AsyncSession, actor_id: int, notice: Notice) -> str:
    """Cancel a notice the actor may manage (the caller has checked may_manage): "cancelled",
    "already_cancelled" or "cannot_cancel" (it went out meanwhile). Audited when done."""
    if notice.status == NoticeStatus.CANCELLED:
        return "already_cancelled"
    if not await notices.cancel_notice(session, notice.id):
        notice = await reread(session, notice)  # someone else may have cancelled it meanwhile
        return ("already_cancelled" if notice.status == NoticeStatus.CANCELLED
                else "cannot_cancel")
    await audit.record(session, actor_id, "notice.cancel", f"notice:{notice.id}")
    return "cancelled"


@dataclass(frozen=True)
class BuildingLine:
    estate: Estate | None  # None: residents with no building on record
    building: str | None  # its number
    safe: int
    help: int
    silent: int
    total: int


@dataclass(frozen=True)
class Answers:
    """An emergency notice's answers: counts building by building, and the names of those who
    need help or have not answered, only of residents whose home the viewer covers."""

    buildings: list[BuildingLine]
    needing: list[Resident]
    silent: list[Resident]


async def emergency_answers(session: AsyncSession, scope: Scope, notice: Notice, *,
                            help_limit: int = 50, silent_limit: int = 20) -> Answers:
    lines = []
    for row in await notices.answers_by_building(session, notice.id):
        building = await territory.building_by_id(session, row.building_id)
        estate = await territory.estate(session, building.estate_id) if building else None
        lines.append(BuildingLine(estate, building.number if building else None, row.safe,
                                  row.help, row.silent, row.recipients))
    needing = [r for r in await notices.residents_by_answer(session, notice.id, "help",
                                                            help_limit)
               if scope.covers_estate(r.estate_id)]
    silent = [r for r in await notices.residents_by_answer(session, notice.id, None,
                                                           silent_limit)
              if scope.covers_estate(r.estate_id)]
    return Answers(lines, needing, silent)
