"""Notices pushed to residents: staff announcements, system warnings, emergencies.

A notice is one row; its recipients are never stored as a list. Fan-out walks the audience
(identities joined to residents, filtered in SQL) in keyset-paginated batches and writes each
recipient's message to the outbox with a dedupe key per (notice, identity), advancing a cursor in
the same transaction. Fan-out is claimed with a lease (guarded UPDATE), so two workers never walk
the same notice at once, and a crash mid-way resumes at the cursor without sending anyone twice.

Statuses: scheduled → sending (fan-out running) → sent (fan-out done; the outbox still drains);
cancelled at any point before `sent` (and pending outbox rows are cancelled with it).
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    and_,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage import outbox
from storage.audience import Audience, Each, Kind, Recipient, count, recipients
from storage.base import Base, affected, utcnow
from storage.people import Identity, Resident
from storage.subscriptions import CATEGORIES
from storage.volunteer_teams import volunteer_resident_ids

LANGUAGES = ("zh-Hans", "en")
FANOUT_LEASE = timedelta(seconds=60)


class NoticeStatus(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    CANCELLED = "cancelled"


class Notice(Base):
    __tablename__ = "notices"
    __table_args__ = (Index("ix_notices_status_scheduled_at", "status", "scheduled_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    category: Mapped[str] = mapped_column(String(20))
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    audience_kind: Mapped[str] = mapped_column(String(20))
    audience_ids: Mapped[list] = mapped_column(default=list)  # what the sender chose
    # The audience resolved to estates / buildings when the notice was made; None = all.
    estate_ids: Mapped[list | None]
    building_ids: Mapped[list | None]
    texts: Mapped[dict]  # language → text; one key means the same text for everyone
    photo: Mapped[str | None] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(12), default=NoticeStatus.SCHEDULED.value)
    scheduled_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("residents.id"))
    # Where the sender's progress message goes; None for system notices.
    sender_identity_id: Mapped[int | None] = mapped_column(ForeignKey("identities.id"))
    dedupe_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    fanout_cursor: Mapped[int] = mapped_column(default=0)  # last identity id queued
    fanout_owner: Mapped[str | None] = mapped_column(String(32))
    fanout_lease_at: Mapped[datetime | None]
    fanout_done_at: Mapped[datetime | None]
    recipients: Mapped[int] = mapped_column(default=0)
    progress_seq: Mapped[int] = mapped_column(default=0)
    progress_done: Mapped[bool] = mapped_column(Boolean, default=False)
    cancelled_at: Mapped[datetime | None]

    @property
    def group(self) -> str:
        return group_of(self.id)

    @property
    def ignores_preferences(self) -> bool:
        """Emergencies reach everyone at once, whatever their subscriptions or quiet hours."""
        return self.urgent or self.category == "emergency"


class NoticeResponse(Base):
    """A resident's answer to an emergency notice: one per resident, changeable."""

    __tablename__ = "notice_responses"
    __table_args__ = (UniqueConstraint("notice_id", "resident_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id"), index=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"))
    answer: Mapped[str] = mapped_column(String(10))  # safe / help
    at: Mapped[datetime] = mapped_column(default=utcnow)


def group_of(notice_id: int) -> str:
    """Outbox group of a notice's messages to residents (what `outbox.figures` counts)."""
    return f"notice:{notice_id}"


def progress_group(notice_id: int) -> str:
    return f"notice:{notice_id}:progress"


def recipient_key(notice_id: int, identity_id: int) -> str:
    return f"n{notice_id}:{identity_id}"


class NoticeError(ValueError):
    """A notice that cannot be made; `code` names the text explaining why."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def clean_texts(texts: dict[str, str]) -> dict[str, str]:
    cleaned = {lang: (text or "").strip() for lang, text in texts.items()}
    cleaned = {lang: text for lang, text in cleaned.items() if text}
    if not cleaned:
        raise NoticeError("empty_text")
    return cleaned


async def create_notice(
    session: AsyncSession, *, category: str, audience_kind: str, audience_ids: list[int],
    estate_ids: list[int] | None, building_ids: list[int] | None, texts: dict[str, str],
    photo: str | None = None, scheduled_at: datetime | None = None, urgent: bool = False,
    created_by: int | None = None, sender_identity_id: int | None = None,
    dedupe_key: str | None = None,
) -> Notice | None:
    """A notice ready to go at `scheduled_at` (now when None); None when `dedupe_key` exists."""
    if category not in CATEGORIES:
        raise NoticeError("unknown_category")
    if audience_kind not in set(Kind):
        raise NoticeError("unknown_audience")
    notice = Notice(
        category=category, urgent=urgent or category == "emergency", audience_kind=audience_kind,
        audience_ids=list(audience_ids), estate_ids=estate_ids, building_ids=building_ids,
        texts=clean_texts(texts), photo=photo, status=NoticeStatus.SCHEDULED.value,
        scheduled_at=scheduled_at or utcnow(), created_by=created_by,
        sender_identity_id=sender_identity_id, dedupe_key=dedupe_key,
    )
    if dedupe_key is None:
        session.add(notice)
        await session.flush()
        return notice
    if await session.scalar(select(Notice.id).where(Notice.dedupe_key == dedupe_key)):
        return None
    from sqlalchemy.exc import IntegrityError

    try:
        async with session.begin_nested():
            session.add(notice)
            await session.flush()
    except IntegrityError:  # a concurrent caller won the race
        return None
    return notice


async def system_notice(
    session: AsyncSession, *, category: str, estate_ids: list[int] | None,
    texts: dict[str, str], dedupe_key: str, urgent: bool = False, photo: str | None = None,
) -> Notice | None:
    """Queue a notice from the system itself (no staff author) for the notices fan-out.

    - `category`: one of emergency / weather / guide / event / convenience. Residents receive it
      only if subscribed to that category, and non-urgent notices wait for the end of their quiet
      hours. `category="emergency"` or `urgent=True` ignore both and go at URGENT priority
      (emergencies also carry "I am safe" / "I need help" buttons).
    - `estate_ids`: the estates whose residents receive it; None for the whole sub-district
      (every resident with a home). An empty list reaches nobody and is refused (ValueError).
    - `texts`: text per language, keys "zh-Hans" and/or "en"; each resident gets their language,
      else zh-Hans, else whichever is given.
    - `dedupe_key`: idempotence (≤120 chars, e.g. "cap:<identifier>"); when a notice with this key
      exists already, nothing is created and None is returned.
    - `photo`: a path on disk or a platform file id, sent with the text as caption.

    Raises NoticeError (a ValueError) for an unknown category or when every text is blank.
    Runs in the caller's transaction: nothing goes out until it commits. The notices job then
    fans it out (within seconds) and the deliverer sends it. Returns the Notice (use
    `notice.id` with `cancel_notice`, and `outbox.figures(session, group_of(notice.id))`).
    """
    if estate_ids is not None and not estate_ids:
        raise ValueError("estate_ids is empty: pass None for the whole sub-district")
    return await create_notice(
        session, category=category,
        audience_kind=Kind.SUBDISTRICT if estate_ids is None else Kind.ESTATE,
        audience_ids=list(estate_ids or []), estate_ids=estate_ids, building_ids=None,
        texts=texts, photo=photo, urgent=urgent, dedupe_key=dedupe_key,
    )


async def cancel_notice(session: AsyncSession, notice_id: int) -> bool:
    """Stop a notice: recipients not yet fanned out get nothing, and its messages still waiting
    in the outbox are cancelled (those already handed to the platform cannot be taken back).
    False when the notice is unknown, already cancelled, or fully delivered."""
    stoppable = [NoticeStatus.DRAFT.value, NoticeStatus.SCHEDULED.value,
                 NoticeStatus.SENDING.value]
    result = await session.execute(
        update(Notice).where(Notice.id == notice_id, Notice.status.in_(stoppable))
        .values(status=NoticeStatus.CANCELLED.value, cancelled_at=utcnow(), fanout_owner=None))
    if affected(result):
        await outbox.cancel_group(session, group_of(notice_id))
        return True
    # Fan-out finished, but the outbox may still hold messages not yet sent.
    if not await session.scalar(select(Notice.id).where(
            Notice.id == notice_id, Notice.status == NoticeStatus.SENT.value)):
        return False
    if not await outbox.cancel_group(session, group_of(notice_id)):
        return False
    await session.execute(update(Notice).where(Notice.id == notice_id)
                          .values(status=NoticeStatus.CANCELLED.value, cancelled_at=utcnow()))
    return True


async def get(session: AsyncSession, notice_id: int) -> Notice | None:
    return await session.get(Notice, notice_id)


async def update_scheduled(session: AsyncSession, notice_id: int, *,
                           texts: dict[str, str] | None = None,
                           scheduled_at: datetime | None = None) -> bool:
    """Edit a notice that has not started going out; False when it already has."""
    values: dict = {}
    if texts is not None:
        values["texts"] = clean_texts(texts)
    if scheduled_at is not None:
        values["scheduled_at"] = scheduled_at
    result = await session.execute(
        update(Notice).where(Notice.id == notice_id,
                             Notice.status == NoticeStatus.SCHEDULED.value).values(**values)
    )
    return bool(affected(result))


async def recent_by(session: AsyncSession, resident_id: int | None, limit: int = 10
                    ) -> list[Notice]:
    """The latest notices made by this person (all notices when None: admins)."""
    q = select(Notice).order_by(Notice.id.desc()).limit(limit)
    if resident_id is not None:
        q = q.where(Notice.created_by == resident_id)
    return list((await session.scalars(q)).all())


# -- fan-out -----------------------------------------------------------------------------------

async def start_due(session: AsyncSession, now: datetime) -> list[int]:
    """Scheduled notices whose time has come become `sending` (guarded: exactly once)."""
    ids = list((await session.scalars(
        select(Notice.id).where(Notice.status == NoticeStatus.SCHEDULED.value,
                                Notice.scheduled_at <= now).order_by(Notice.id)
    )).all())
    started = []
    for notice_id in ids:
        result = await session.execute(
            update(Notice).where(Notice.id == notice_id,
                                 Notice.status == NoticeStatus.SCHEDULED.value)
            .values(status=NoticeStatus.SENDING.value))
        if affected(result):
            started.append(notice_id)
    return started


async def claim_fanout(session: AsyncSession, now: datetime) -> tuple[int, str] | None:
    """Take the lease on one notice whose fan-out is unfinished and not being walked by a live
    worker; returns (notice id, lease token)."""
    candidates = (await session.scalars(
        select(Notice.id).where(
            Notice.status == NoticeStatus.SENDING.value, Notice.fanout_done_at.is_(None),
            or_(Notice.fanout_owner.is_(None), Notice.fanout_lease_at < now - FANOUT_LEASE),
        ).order_by(Notice.urgent.desc(), Notice.id).limit(5)
    )).all()
    for notice_id in candidates:
        token = secrets.token_hex(8)
        result = await session.execute(
            update(Notice).where(
                Notice.id == notice_id, Notice.status == NoticeStatus.SENDING.value,
                Notice.fanout_done_at.is_(None),
                or_(Notice.fanout_owner.is_(None), Notice.fanout_lease_at < now - FANOUT_LEASE),
            ).values(fanout_owner=token, fanout_lease_at=now))
        if affected(result):
            return notice_id, token
    return None


async def urgent_waiting(session: AsyncSession, now: datetime) -> bool:
    """An emergency is due or half fanned out with nobody walking it: bulk work should yield."""
    return bool(await session.scalar(select(Notice.id).where(
        Notice.urgent.is_(True),
        or_(and_(Notice.status == NoticeStatus.SCHEDULED.value, Notice.scheduled_at <= now),
            and_(Notice.status == NoticeStatus.SENDING.value, Notice.fanout_done_at.is_(None),
                 Notice.fanout_owner.is_(None))),
    ).limit(1)))


async def release_fanout(session: AsyncSession, notice_id: int, token: str) -> None:
    """Hand the lease back; the cursor keeps where the walk stopped."""
    await session.execute(update(Notice).where(Notice.id == notice_id,
                                               Notice.fanout_owner == token)
                          .values(fanout_owner=None))


def audience_of(notice: Notice) -> Audience:
    """Who the notice is for: the places resolved when it was made (None: all), volunteers
    only for a notice to volunteers, and not those who switched its category off unless it
    ignores preferences (an emergency)."""
    return Audience(
        estate_ids=None if notice.estate_ids is None else tuple(notice.estate_ids),
        building_ids=None if notice.building_ids is None else tuple(notice.building_ids),
        among=volunteer_resident_ids() if notice.audience_kind == Kind.VOLUNTEERS else None,
        category=None if notice.ignores_preferences else notice.category)


Queue = Callable[[AsyncSession, Notice, list[Recipient]], Awaitable[int]]


async def fanout_batch(session: AsyncSession, notice_id: int, token: str, queue: Queue,
                       now: datetime, batch: int = 500) -> tuple[bool, int] | None:
    """Queue the next page of recipients and move the cursor, in the caller's transaction.

    `queue(session, notice, recipients)` queues their messages (bot/pushes.py: rendered in each one's
    language, priority and group of the notice) and says how many were new.
    Returns (more may follow, messages newly queued), or None when the lease was lost (another
    worker took over, or the notice was cancelled): roll back and stop.
    """
    notice = await session.scalar(
        select(Notice).where(Notice.id == notice_id, Notice.fanout_owner == token,
                             Notice.status == NoticeStatus.SENDING.value)
        .execution_options(populate_existing=True))
    if notice is None:
        return None
    page = await recipients(session, audience_of(notice), after=notice.fanout_cursor,
                            limit=batch)
    queued = await queue(session, notice, page.recipients) if page.recipients else 0
    done = page.looked_at < batch
    values: dict = {"fanout_lease_at": now, "recipients": Notice.recipients + queued}
    if page.last is not None:
        values["fanout_cursor"] = page.last
    if done:
        values.update(fanout_done_at=now, fanout_owner=None, status=NoticeStatus.SENT.value)
    result = await session.execute(
        update(Notice).where(Notice.id == notice_id, Notice.fanout_owner == token,
                             Notice.status == NoticeStatus.SENDING.value).values(**values))
    if not affected(result):
        return None
    return not done, queued


def text_for(notice: Notice, language: str | None) -> str:
    texts = notice.texts
    for lang in (language, "zh-Hans", "en"):
        if lang and texts.get(lang):
            return texts[lang]
    return next(iter(texts.values()))


# -- progress of a notice going out ------------------------------------------------------------

async def needing_progress(session: AsyncSession) -> list[Notice]:
    rows = await session.scalars(
        select(Notice).where(Notice.sender_identity_id.is_not(None),
                             Notice.progress_done.is_(False),
                             Notice.status.in_([NoticeStatus.SENDING.value,
                                                NoticeStatus.SENT.value,
                                                NoticeStatus.CANCELLED.value]))
        .order_by(Notice.id))
    return list(rows.all())


# -- emergency answers -------------------------------------------------------------------------

ANSWERS = ("safe", "help")


async def record_response(session: AsyncSession, notice_id: int, resident_id: int,
                          answer: str) -> str | None:
    """Store (or change) a resident's answer; returns their previous answer."""
    if answer not in ANSWERS:
        raise ValueError(answer)
    row = await session.scalar(select(NoticeResponse).where(
        NoticeResponse.notice_id == notice_id, NoticeResponse.resident_id == resident_id))
    if row is not None:
        previous, row.answer, row.at = row.answer, answer, utcnow()
        await session.flush()
        return previous
    from sqlalchemy.exc import IntegrityError

    try:
        async with session.begin_nested():
            session.add(NoticeResponse(notice_id=notice_id, resident_id=resident_id,
                                       answer=answer))
            await session.flush()
    except IntegrityError:  # a double tap raced us; the row exists now
        row = await session.scalar(select(NoticeResponse).where(
            NoticeResponse.notice_id == notice_id, NoticeResponse.resident_id == resident_id))
        previous, row.answer, row.at = row.answer, answer, utcnow()
        await session.flush()
        return previous
    return None


async def was_recipient(session: AsyncSession, notice_id: int, resident_id: int) -> bool:
    return bool(await session.scalar(
        select(outbox.OutboxMessage.id)
        .join(Identity, Identity.id == outbox.OutboxMessage.identity_id)
        .where(outbox.OutboxMessage.group_key == group_of(notice_id),
               Identity.resident_id == resident_id).limit(1)))


@dataclass
class BuildingAnswers:
    building_id: int | None
    recipients: int
    safe: int
    help: int

    @property
    def silent(self) -> int:
        return self.recipients - self.safe - self.help


async def answers_by_building(session: AsyncSession, notice_id: int) -> list[BuildingAnswers]:
    """Residents who received the notice and how they answered, per building (SQL aggregates:
    no resident list is loaded)."""
    reached = (
        select(Identity.resident_id.label("rid"))
        .join(outbox.OutboxMessage, outbox.OutboxMessage.identity_id == Identity.id)
        .where(outbox.OutboxMessage.group_key == group_of(notice_id))
        .distinct().subquery()
    )
    q = (
        select(Resident.building_id, func.count(),
               func.count(NoticeResponse.id).filter(NoticeResponse.answer == "safe"),
               func.count(NoticeResponse.id).filter(NoticeResponse.answer == "help"))
        .select_from(reached)
        .join(Resident, Resident.id == reached.c.rid)
        .outerjoin(NoticeResponse, and_(NoticeResponse.notice_id == notice_id,
                                        NoticeResponse.resident_id == Resident.id))
        .group_by(Resident.building_id)
        .order_by(Resident.building_id)
    )
    return [BuildingAnswers(b, n, s, h) for b, n, s, h in (await session.execute(q)).all()]


async def residents_by_answer(session: AsyncSession, notice_id: int, answer: str | None,
                              limit: int = 30) -> list[Resident]:
    """Residents who answered `answer` (None: who received it and have not answered)."""
    if answer is not None:
        q = (select(Resident).join(NoticeResponse, NoticeResponse.resident_id == Resident.id)
             .where(NoticeResponse.notice_id == notice_id, NoticeResponse.answer == answer))
    else:
        reached = (select(Identity.resident_id)
                   .join(outbox.OutboxMessage, outbox.OutboxMessage.identity_id == Identity.id)
                   .where(outbox.OutboxMessage.group_key == group_of(notice_id)))
        q = select(Resident).where(
            Resident.id.in_(reached),
            ~exists().where(and_(NoticeResponse.notice_id == notice_id,
                                 NoticeResponse.resident_id == Resident.id)))
    q = q.order_by(Resident.building_id, Resident.unit, Resident.id).limit(limit)
    return list((await session.scalars(q)).all())


async def count_reachable(session: AsyncSession, notice: Notice) -> int:
    """How many identities the notice would reach now (a preview figure; one COUNT query)."""
    return await count(session, audience_of(notice), each=Each.IDENTITY)

