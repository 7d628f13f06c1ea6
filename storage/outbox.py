"""The outbox: every push of every feature is a row here until the platform has it.

Rows are claimed in small batches (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the write lock on
SQLite), so several senders never take the same row and a crash leaves the row to be claimed
again once its claim goes stale.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, Index, String, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, utcnow
from storage.people import Identity


class Priority(enum.IntEnum):
    REPLY = 0  # an answer to something the resident just did
    URGENT = 10  # emergencies
    NORMAL = 50
    BULK = 90


class Status(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    CANCELLED = "cancelled"


class OutboxMessage(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "priority", "next_attempt_at", "id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id"), index=True)
    priority: Mapped[int] = mapped_column(default=Priority.NORMAL.value)
    payload: Mapped[dict]
    status: Mapped[str] = mapped_column(String(12), default=Status.PENDING.value)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    message_ref: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(String(200))
    group_key: Mapped[str | None] = mapped_column(String(60), index=True)
    # Makes enqueueing idempotent: the same logical push is queued at most once.
    dedupe_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


async def enqueue(
    session: AsyncSession,
    identity_id: int,
    payload: dict,
    *,
    priority: Priority = Priority.NORMAL,
    group: str | None = None,
    dedupe_key: str | None = None,
    not_before: datetime | None = None,
) -> OutboxMessage | None:
    """Queue one message (an `Outbound.to_json()`); None when `dedupe_key` was queued before."""
    row = OutboxMessage(
        identity_id=identity_id, priority=int(priority), payload=payload,
        group_key=group, dedupe_key=dedupe_key, next_attempt_at=not_before or utcnow(),
    )
    if dedupe_key is None:
        session.add(row)
        await session.flush()
        return row
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        return None
    return row


@dataclass(frozen=True)
class Claimed:
    id: int
    identity_id: int
    platform: str
    chat_id: str
    payload: dict
    attempts: int
    priority: int
    group_key: str | None


async def claim(
    session: AsyncSession, limit: int, *, platform: str | None = None,
    now: datetime | None = None,
) -> list[Claimed]:
    now = now or utcnow()
    q = (
        select(OutboxMessage.id)
        .where(OutboxMessage.status == Status.PENDING.value, OutboxMessage.next_attempt_at <= now)
        .order_by(OutboxMessage.priority, OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if platform is not None:
        q = q.join(Identity, Identity.id == OutboxMessage.identity_id).where(
            Identity.platform == platform
        )
    ids = list((await session.scalars(q)).all())
    if not ids:
        return []
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids))
        .values(status=Status.SENDING.value, claimed_at=now, attempts=OutboxMessage.attempts + 1)
    )
    rows = await session.execute(
        select(OutboxMessage, Identity.platform, Identity.chat_id, Identity.unreachable_at)
        .join(Identity, Identity.id == OutboxMessage.identity_id)
        .where(OutboxMessage.id.in_(ids))
        .order_by(OutboxMessage.priority, OutboxMessage.next_attempt_at, OutboxMessage.id)
    )
    claimed = []
    for msg, plat, chat_id, unreachable_at in rows.all():
        if unreachable_at is not None:
            msg.status = Status.UNREACHABLE.value
            continue
        claimed.append(Claimed(msg.id, msg.identity_id, plat, chat_id, msg.payload,
                               msg.attempts, msg.priority, msg.group_key))
    return claimed


async def mark_sent(session: AsyncSession, msg_id: int, message_ref: str | None) -> None:
    await session.execute(
        update(OutboxMessage).where(OutboxMessage.id == msg_id)
        .values(status=Status.SENT.value, sent_at=utcnow(), message_ref=message_ref, error=None)
    )


async def mark_sent_many(session: AsyncSession, sent: list[tuple[int, str | None]]) -> None:
    """Many `mark_sent` at once (one executemany by primary key: a round costs one trip)."""
    if not sent:
        return
    now = utcnow()
    await session.execute(update(OutboxMessage), [
        {"id": msg_id, "status": Status.SENT.value, "sent_at": now, "message_ref": ref,
         "error": None} for msg_id, ref in sent])


async def mark_retry(
    session: AsyncSession, msg_id: int, at: datetime, error: str | None, *,
    count_attempt: bool = True,
) -> None:
    values = {"status": Status.PENDING.value, "next_attempt_at": at, "error": (error or "")[:200]}
    if not count_attempt:
        values["attempts"] = OutboxMessage.attempts - 1
    await session.execute(update(OutboxMessage).where(OutboxMessage.id == msg_id).values(**values))


async def mark_failed(session: AsyncSession, msg_id: int, error: str | None) -> None:
    await session.execute(
        update(OutboxMessage).where(OutboxMessage.id == msg_id)
        .values(status=Status.FAILED.value, error=(error or "")[:200])
    )


async def mark_unreachable(session: AsyncSession, identity_id: int, msg_id: int) -> None:
    """The recipient blocked the bot: stop every message still waiting for them."""
    await session.execute(
        update(Identity).where(Identity.id == identity_id, Identity.unreachable_at.is_(None))
        .values(unreachable_at=utcnow())
    )
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.identity_id == identity_id,
               OutboxMessage.status.in_([Status.PENDING.value, Status.SENDING.value]))
        .values(status=Status.UNREACHABLE.value)
    )
    await session.execute(
        update(OutboxMessage).where(OutboxMessage.id == msg_id)
        .values(status=Status.UNREACHABLE.value)
    )


async def reclaim_stale(session: AsyncSession, older_than: timedelta) -> int:
    """Claims left by a sender that died are handed back (at-least-once for those in flight)."""
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == Status.SENDING.value,
               OutboxMessage.claimed_at < utcnow() - older_than)
        .values(status=Status.PENDING.value)
    )
    return result.rowcount or 0


async def figures(session: AsyncSession, group: str) -> dict[str, int]:
    rows = await session.execute(
        select(OutboxMessage.status, func.count())
        .where(OutboxMessage.group_key == group)
        .group_by(OutboxMessage.status)
    )
    counts = {s.value: 0 for s in Status}
    counts.update({status: n for status, n in rows.all()})
    return counts


async def next_due(session: AsyncSession) -> datetime | None:
    return await session.scalar(
        select(func.min(OutboxMessage.next_attempt_at))
        .where(OutboxMessage.status == Status.PENDING.value)
    )


async def enqueue_many(session: AsyncSession, rows: list[dict]) -> int:
    """Queue many messages in one statement (bulk fan-out); rows whose `dedupe_key` was queued
    before are skipped. Each row: identity_id, payload, priority, group_key, dedupe_key and
    optionally next_attempt_at (default: now). Returns how many were new."""
    if not rows:
        return 0
    dialect = session.bind.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    now = utcnow()
    values = [{"status": Status.PENDING.value, "attempts": 0, "created_at": now,
               "next_attempt_at": now, **row} for row in rows]
    stmt = insert(OutboxMessage).on_conflict_do_nothing(index_elements=["dedupe_key"])
    stmt = stmt.returning(OutboxMessage.id)
    result = await session.execute(stmt, values)
    return len(result.all())


async def cancel_group(session: AsyncSession, group: str) -> int:
    """Messages of a group not yet handed to the platform are cancelled."""
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.group_key == group, OutboxMessage.status == Status.PENDING.value)
        .values(status=Status.CANCELLED.value)
    )
    return result.rowcount or 0


async def by_dedupe_key(session: AsyncSession, dedupe_key: str) -> OutboxMessage | None:
    """The message queued under this key, e.g. to learn the platform ref of a sent message
    (`message_ref`) before editing it in place."""
    return await session.scalar(
        select(OutboxMessage).where(OutboxMessage.dedupe_key == dedupe_key)
        .execution_options(populate_existing=True))
