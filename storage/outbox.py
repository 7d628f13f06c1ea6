"""The outbox: every push of every feature is a row here until the platform has it.

Rows are claimed in small batches (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the write lock on
SQLite), so several senders never take the same row and a crash leaves the row to be claimed
again once its claim goes stale.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ForeignKey,
    Index,
    String,
    Table,
    and_,
    bindparam,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, affected, upsert, utcnow
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


TERMINAL = (Status.SENT.value, Status.FAILED.value, Status.UNREACHABLE.value,
            Status.CANCELLED.value)


class OutboxMessage(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "priority", "next_attempt_at", "id"),
        Index("ix_outbox_created", "created_at"),
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


class OutboxGroup(Base):
    """Running figures of a group (a notice, a poll), kept with the rows: progress reads one
    row instead of counting a broadcast's 100,000, and the figures outlive pruned rows."""

    __tablename__ = "outbox_groups"
    group_key: Mapped[str] = mapped_column(String(60), primary_key=True)
    total: Mapped[int] = mapped_column(default=0)
    sent: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    unreachable: Mapped[int] = mapped_column(default=0)
    cancelled: Mapped[int] = mapped_column(default=0)


def _insert(session: AsyncSession, model: Any) -> Any:
    return upsert(session, model)


async def _count_queued(session: AsyncSession, counts: dict[str, int]) -> None:
    """`counts[group]` more rows were queued in these groups."""
    counts = {g: n for g, n in counts.items() if g and n}
    if not counts:
        return
    stmt = _insert(session, OutboxGroup)
    stmt = stmt.on_conflict_do_update(index_elements=["group_key"],
                                      set_={"total": OutboxGroup.total + stmt.excluded.total})
    await session.execute(stmt, [{"group_key": g, "total": n} for g, n in sorted(counts.items())])


async def _count_finished(session: AsyncSession, status: str, groups: list[str | None]) -> None:
    """Rows of these groups (one entry a row) reached a final `status`."""
    counts: dict[str, int] = {}
    for g in groups:
        if g:
            counts[g] = counts.get(g, 0) + 1
    column = getattr(OutboxGroup, status)
    for g, n in sorted(counts.items()):  # sorted: concurrent writers lock in one order
        await session.execute(update(OutboxGroup).where(OutboxGroup.group_key == g)
                              .values({column: column + n}))


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
    else:
        try:
            async with session.begin_nested():
                session.add(row)
                await session.flush()
        except IntegrityError:
            return None
    if group is not None:
        await _count_queued(session, {group: 1})
    return row


async def enqueue_claimed(session: AsyncSession, identity_id: int, payloads: list[dict]
                          ) -> list[int]:
    """Replies: queued already claimed by this process, which sends them as soon as the
    transaction commits. Kept in the outbox so a crash between commit and send loses none
    (the next sender resumes them); never counted in a group."""
    now = utcnow()
    rows = [dict(identity_id=identity_id, priority=int(Priority.REPLY), payload=p,
                 status=Status.SENDING.value, attempts=1, claimed_at=now,
                 next_attempt_at=now, created_at=now) for p in payloads]
    # Core, not the unit of work: every update writes its replies here.
    if len(rows) == 1:
        return [(await session.execute(_INSERT_ONE, rows[0])).scalar_one()]
    result = await session.execute(_INSERT_MANY, rows)
    return list(result.scalars().all())


async def enqueue_replies(session: AsyncSession, identity_id: int, payloads: list[dict]
                          ) -> None:
    """Replies for another process to send: the one holding the sender lease, when several
    workers share a PostgreSQL and so one budget (bot/delivery.py). Waiting, at the replies'
    priority, ahead of every push; the holder is woken when this transaction commits."""
    now = utcnow()
    await session.execute(_INSERT_PENDING, [
        dict(identity_id=identity_id, priority=int(Priority.REPLY), payload=p,
             status=Status.PENDING.value, attempts=0, next_attempt_at=now, created_at=now)
        for p in payloads])
    await notify(session)


WAKE_CHANNEL = "outbox_wake"


async def notify(session: AsyncSession) -> None:
    """Tell the sender there is something new to send, when this transaction commits
    (PostgreSQL's NOTIFY; one per transaction however often it is called). Elsewhere a no-op:
    on SQLite the one sending process is this one."""
    if session.bind.dialect.name == "postgresql":
        await session.execute(text(f"NOTIFY {WAKE_CHANNEL}"))


_TABLE: Table = OutboxMessage.__table__  # type: ignore[assignment]  # a Table, typed wider
_INSERT_ONE = insert(_TABLE).returning(_TABLE.c.id)
_INSERT_MANY = insert(_TABLE).returning(_TABLE.c.id, sort_by_parameter_order=True)
_INSERT_PENDING = insert(_TABLE)


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


Scope = dict[str, frozenset[str] | None]
"""What a sender delivers: per platform, the chat ids it serves, or None for all of them."""


def _in_scope(scope: Scope):
    """Rows whose recipient is in `scope`; the rest wait for a sender that serves them."""
    parts = [Identity.platform == platform if chats is None
             else and_(Identity.platform == platform, Identity.chat_id.in_(sorted(chats)))
             for platform, chats in sorted(scope.items()) if chats is None or chats]
    if not parts:
        return false()
    return OutboxMessage.identity_id.in_(select(Identity.id).where(or_(*parts)))


async def claim(
    session: AsyncSession, limit: int, *, scope: Scope | None = None,
    now: datetime | None = None,
) -> list[Claimed]:
    """Claim up to `limit` due rows, of the recipients in `scope` (None: every recipient)."""
    now = now or utcnow()
    q = (
        select(OutboxMessage.id)
        .where(OutboxMessage.status == Status.PENDING.value, OutboxMessage.next_attempt_at <= now)
        .order_by(OutboxMessage.priority, OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if scope is not None:
        q = q.where(_in_scope(scope))
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
    claimed, gone = [], []
    for msg, plat, chat_id, unreachable_at in rows.all():
        if unreachable_at is not None:
            msg.status = Status.UNREACHABLE.value
            gone.append(msg.group_key)
            continue
        claimed.append(Claimed(msg.id, msg.identity_id, plat, chat_id, msg.payload,
                               msg.attempts, msg.priority, msg.group_key))
    await _count_finished(session, Status.UNREACHABLE.value, gone)
    return claimed


async def mark_sent(session: AsyncSession, msg_id: int, message_ref: str | None,
                    group: str | None = None) -> None:
    await mark_sent_many(session, [(msg_id, message_ref, group)])


async def mark_sent_many(session: AsyncSession,
                         sent: list[tuple[int, str | None, str | None]]) -> None:
    """Many `mark_sent` at once (one executemany by primary key), with the groups' figures.
    Each entry: (id, message ref, group) of a row this sender claimed."""
    if not sent:
        return
    now = utcnow()
    table = _TABLE
    # Core executemany: the ORM's bulk-by-primary-key path costs milliseconds a call here.
    await session.execute(
        table.update().where(table.c.id == bindparam("row_id"))
        .values(status=Status.SENT.value, sent_at=now, message_ref=bindparam("ref"), error=None),
        [{"row_id": msg_id, "ref": ref} for msg_id, ref, _ in sent])
    await _count_finished(session, Status.SENT.value, [g for _, _, g in sent])


async def mark_retry(
    session: AsyncSession, msg_id: int, at: datetime, error: str | None, *,
    count_attempt: bool = True,
) -> None:
    values = {"status": Status.PENDING.value, "next_attempt_at": at, "error": (error or "")[:200]}
    if not count_attempt:
        values["attempts"] = OutboxMessage.attempts - 1
    await session.execute(update(OutboxMessage).where(OutboxMessage.id == msg_id).values(**values))


async def mark_failed(session: AsyncSession, msg_id: int, error: str | None) -> None:
    groups = (await session.scalars(
        update(OutboxMessage)
        .where(OutboxMessage.id == msg_id, OutboxMessage.status.not_in(TERMINAL))
        .values(status=Status.FAILED.value, error=(error or "")[:200])
        .returning(OutboxMessage.group_key))).all()
    await _count_finished(session, Status.FAILED.value, list(groups))


async def mark_unreachable_now(session: AsyncSession, msg_id: int, error: str | None) -> None:
    """This message cannot reach its recipient now (outside a platform's window, with no
    other way for it): it is given up, `error` says why; the recipient stays reachable and
    their other messages are still tried."""
    groups = (await session.scalars(
        update(OutboxMessage)
        .where(OutboxMessage.id == msg_id, OutboxMessage.status.not_in(TERMINAL))
        .values(status=Status.UNREACHABLE.value, error=(error or "")[:200])
        .returning(OutboxMessage.group_key))).all()
    await _count_finished(session, Status.UNREACHABLE.value, list(groups))


async def mark_unreachable(session: AsyncSession, identity_id: int, msg_id: int) -> None:
    """The recipient blocked the bot: stop every message still waiting for them."""
    await session.execute(
        update(Identity).where(Identity.id == identity_id, Identity.unreachable_at.is_(None))
        .values(unreachable_at=utcnow())
    )
    groups = (await session.scalars(
        update(OutboxMessage)
        .where(OutboxMessage.identity_id == identity_id,
               OutboxMessage.status.in_([Status.PENDING.value, Status.SENDING.value]))
        .values(status=Status.UNREACHABLE.value)
        .returning(OutboxMessage.group_key))).all()
    await _count_finished(session, Status.UNREACHABLE.value, list(groups))


async def push_back(session: AsyncSession, identity_id: int, at: datetime) -> None:
    """Nothing else waiting for this recipient goes before `at`: a message held back (a 429,
    a failed send) is not overtaken by a later one to the same chat."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.identity_id == identity_id,
               OutboxMessage.status == Status.PENDING.value,
               OutboxMessage.next_attempt_at < at)
        .values(next_attempt_at=at))


async def reclaim_stale(session: AsyncSession, older_than: timedelta,
                        claimed_before: datetime | None = None, *,
                        scope: Scope | None = None, pushes_only: bool = False) -> int:
    """Claims left by a sender that died are handed back (at-least-once for those in flight).
    `claimed_before`: only claims older than that moment (a sender's own start: what it claimed
    itself is still on its way). `scope`: only rows of these recipients (a sender serving some
    chats leaves those of other live senders alone). `pushes_only`: replies are left alone
    (each is sent by the live worker that handled its update)."""
    cutoff = utcnow() - older_than
    if claimed_before is not None:
        cutoff = min(cutoff, claimed_before)
    stmt = (update(OutboxMessage)
            .where(OutboxMessage.status == Status.SENDING.value,
                   OutboxMessage.claimed_at < cutoff)
            .values(status=Status.PENDING.value))
    if pushes_only:
        stmt = stmt.where(OutboxMessage.priority != int(Priority.REPLY))
    if scope is not None:
        stmt = stmt.where(_in_scope(scope)).execution_options(synchronize_session=False)
    result = await session.execute(stmt)
    return affected(result) or 0


async def figures(session: AsyncSession, group: str) -> dict[str, int]:
    """A group's figures from its counters: sent, failed, unreachable, cancelled, and the rest
    (`pending`: queued or on their way)."""
    row = await session.get(OutboxGroup, group, populate_existing=True)
    counts = {s.value: 0 for s in Status}
    if row is not None:
        counts.update(sent=row.sent, failed=row.failed, unreachable=row.unreachable,
                      cancelled=row.cancelled)
        counts["pending"] = max(0, row.total - row.sent - row.failed - row.unreachable
                                - row.cancelled)
    return counts


async def prune(session: AsyncSession, before: datetime, limit: int = 5000) -> int:
    """Delete up to `limit` finished rows created before `before` (the figures stay in
    `outbox_groups`); call until it returns less than `limit`."""
    ids = select(OutboxMessage.id).where(OutboxMessage.created_at < before,
                                         OutboxMessage.status.in_(TERMINAL)).limit(limit)
    result = await session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(ids)))
    return affected(result) or 0


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
    now = utcnow()
    values = [{"status": Status.PENDING.value, "attempts": 0, "created_at": now,
               "next_attempt_at": now, "group_key": None, **row} for row in rows]
    stmt = _insert(session, OutboxMessage).on_conflict_do_nothing(index_elements=["dedupe_key"])
    stmt = stmt.returning(OutboxMessage.group_key)
    result = await session.execute(stmt, values)
    groups = list(result.scalars().all())
    counts: dict[str, int] = {}
    for g in groups:
        if g:
            counts[g] = counts.get(g, 0) + 1
    await _count_queued(session, counts)
    return len(groups)


async def cancel_group(session: AsyncSession, group: str) -> int:
    """Messages of a group not yet handed to the platform are cancelled."""
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.group_key == group, OutboxMessage.status == Status.PENDING.value)
        .values(status=Status.CANCELLED.value)
    )
    n = affected(result) or 0
    await _count_finished(session, Status.CANCELLED.value, [group] * n)
    return n


async def by_dedupe_key(session: AsyncSession, dedupe_key: str) -> OutboxMessage | None:
    """The message queued under this key, e.g. to learn the platform ref of a sent message
    (`message_ref`) before editing it in place."""
    return await session.scalar(
        select(OutboxMessage).where(OutboxMessage.dedupe_key == dedupe_key)
        .execution_options(populate_existing=True))


async def release(session: AsyncSession, ids: list[int]) -> None:
    """Claimed rows never attempted (a sender stopping) go back to pending as they were."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), OutboxMessage.status == Status.SENDING.value)
        .values(status=Status.PENDING.value, attempts=OutboxMessage.attempts - 1))
