"""Polls: one vote per resident or household, held by the database; anonymous ballots kept apart
from who voted.

Every poll records *that* a voter key took part in `poll_participations` (primary key: poll and
voter key, so a second vote fails in the database, also under concurrent taps). A named poll
keeps each vote in `poll_votes` (who chose what, so it can be changed before close) and counts it
in `poll_tallies` at once.

An anonymous ballot is never counted by the transaction that records the participation: on
PostgreSQL every row a transaction writes carries its id (`xmin`), so a counter bumped next to
the participation row names the voter. The vote's transaction writes the choice as a bare row of
`poll_pending_ballots` (poll and the choice sealed with a key kept outside the database; a random
row key, so SQLite's rowid order is not the order of voting). `flush_ballots` later moves waiting ballots into the counters in one transaction once at
least `k` (`POLLS_ANONYMITY_BATCH`) are waiting, and at close whatever is left, deleting them;
`erase_traces` then removes the deleted row versions (PostgreSQL `VACUUM`; SQLite runs with
`secure_delete` and truncates its write-ahead log). Counters therefore only ever change by sums
of at least k ballots (the last group at close may be smaller), and live results of an anonymous
poll show only counted ballots. What an administrator can and cannot learn is in the README
("Privacy"). Anonymous votes cannot be changed; named ones can, when the poll allows it.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    LargeBinary,
    String,
    UniqueConstraint,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.audience import Audience, count, percent, refusal
from storage.base import Base, affected, by_id, utcnow
from storage.db import checkpoint_truncate
from storage.people import Resident, household_voter

log = logging.getLogger(__name__)
MIN_OPTIONS, MAX_OPTIONS = 2, 12


# -- sealing a waiting ballot -------------------------------------------------------------------
# The choice of a waiting ballot is encrypted with the ballot key, which lives outside the
# database (POLLS_BALLOT_KEY or its key file, bot/ballot_key.py): whoever holds only the database
# sees that a ballot waits, not what it says. Encrypt-then-MAC with HMAC-SHA256 as the PRF:
# nonce (16 bytes) | mask XOR PRF(key, "k" | nonce)[:2] | PRF(key, "t" | poll | nonce | ct)[:16].
_NONCE, _TAG = 16, 16
SEALED_BYTES = _NONCE + 2 + _TAG


def _prf(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def seal(key: bytes, poll_id: int, mask: int) -> bytes:
    nonce = secrets.token_bytes(_NONCE)
    pad = _prf(key, b"k", nonce)[:2]
    ct = bytes(a ^ b for a, b in zip(mask.to_bytes(2, "big"), pad, strict=True))
    return nonce + ct + _prf(key, b"t", poll_id.to_bytes(8, "big"), nonce, ct)[:_TAG]


def unseal(key: bytes, poll_id: int, sealed: bytes) -> int | None:
    """The mask, or None when the ballot was not sealed with this key for this poll."""
    if len(sealed) != SEALED_BYTES:
        return None
    nonce, ct, tag = sealed[:_NONCE], sealed[_NONCE:_NONCE + 2], sealed[_NONCE + 2:]
    if not hmac.compare_digest(tag, _prf(key, b"t", poll_id.to_bytes(8, "big"), nonce,
                                         ct)[:_TAG]):
        return None
    pad = _prf(key, b"k", nonce)[:2]
    return int.from_bytes(bytes(a ^ b for a, b in zip(ct, pad, strict=True)), "big")


class Poll(Base):
    __tablename__ = "polls"
    id: Mapped[int] = mapped_column(primary_key=True)
    committee_id: Mapped[int | None] = mapped_column(ForeignKey("committees.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("residents.id"))
    question: Mapped[str] = mapped_column(String(300))
    multiple: Mapped[bool] = mapped_column(Boolean, default=False)
    area_kind: Mapped[str] = mapped_column(String(12))
    area_id: Mapped[int]
    verified_only: Mapped[bool] = mapped_column(Boolean, default=True)
    per_household: Mapped[bool] = mapped_column(Boolean, default=False)
    anonymous: Mapped[bool] = mapped_column(Boolean, default=True)
    live_results: Mapped[bool] = mapped_column(Boolean, default=False)
    quorum: Mapped[int | None]  # minimum number of voters for the result to count
    closes_at: Mapped[datetime] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(10), default="open", index=True)
    eligible: Mapped[int | None]  # counted when the poll closes
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]
    # Fan-out cursors (last resident reached): invitations, then results after close.
    invited_upto: Mapped[int] = mapped_column(default=0)
    invites_done: Mapped[bool] = mapped_column(Boolean, default=False)
    results_upto: Mapped[int] = mapped_column(default=0)
    results_done: Mapped[bool] = mapped_column(Boolean, default=False)
    # Anonymous polls: ballots moved from poll_pending_ballots into the counters so far.
    counted: Mapped[int] = mapped_column(default=0)

    @property
    def audience(self) -> Audience:
        return Audience(self.area_kind, self.area_id, self.verified_only)

    @property
    def changeable(self) -> bool:
        return not self.anonymous


class PollOption(Base):
    __tablename__ = "poll_options"
    __table_args__ = (UniqueConstraint("poll_id", "position"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    poll_id: Mapped[int] = mapped_column(ForeignKey("polls.id"), index=True)
    position: Mapped[int]  # 0-based
    label: Mapped[str] = mapped_column(String(100))


class PollParticipation(Base):
    """That a voter key voted; deliberately without time or sequence."""

    __tablename__ = "poll_participations"
    poll_id: Mapped[int] = mapped_column(ForeignKey("polls.id"), primary_key=True)
    voter_key: Mapped[str] = mapped_column(String(24), primary_key=True)


class PollTally(Base):
    """Running count per option: the only place an anonymous choice lands."""

    __tablename__ = "poll_tallies"
    poll_id: Mapped[int] = mapped_column(ForeignKey("polls.id"), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    votes: Mapped[int] = mapped_column(default=0)


class PollPendingBallot(Base):
    """An anonymous ballot not counted yet: the poll and the sealed choice, nothing else. The
    key is random (SQLite stores rows in key order, so the order of rows says nothing); the row
    is deleted when its group is counted."""

    __tablename__ = "poll_pending_ballots"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    poll_id: Mapped[int] = mapped_column(ForeignKey("polls.id"), index=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary(SEALED_BYTES))


class PollVote(Base):
    """Named polls only: who chose what."""

    __tablename__ = "poll_votes"
    poll_id: Mapped[int] = mapped_column(ForeignKey("polls.id"), primary_key=True)
    voter_key: Mapped[str] = mapped_column(String(24), primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), index=True)
    choices: Mapped[list] = mapped_column(default=list)  # option positions
    cast_at: Mapped[datetime] = mapped_column(default=utcnow)
    changed_at: Mapped[datetime | None]


class AssistedVote(Base):
    """A vote a committee member or staff recorded for a resident who was present (`/assist`):
    who assisted whom, in which poll, when; never the choice (an anonymous ballot's choice is
    only ever sealed in `poll_pending_ballots`, as for any other vote). One per resident and
    poll. `disputed_at` is set when the resident says "This was not me"."""

    __tablename__ = "poll_assisted_votes"
    __table_args__ = (UniqueConstraint("poll_id", "resident_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    poll_id: Mapped[int] = mapped_column(ForeignKey("polls.id"), index=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), index=True)
    assistant_id: Mapped[int] = mapped_column(ForeignKey("residents.id"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    disputed_at: Mapped[datetime | None]


@dataclass(frozen=True)
class PollDraft:
    question: str
    options: list[str]
    multiple: bool
    audience: Audience
    per_household: bool
    anonymous: bool
    live_results: bool
    closes_at: datetime
    quorum: int | None
    committee_id: int | None


async def create(session: AsyncSession, draft: PollDraft, author_id: int) -> Poll:
    if not MIN_OPTIONS <= len(draft.options) <= MAX_OPTIONS:
        raise ValueError("a poll has 2 to 12 options")
    poll = Poll(
        committee_id=draft.committee_id, author_id=author_id, question=draft.question,
        multiple=draft.multiple, area_kind=draft.audience.kind, area_id=draft.audience.area_id,
        verified_only=draft.audience.verified_only, per_household=draft.per_household,
        anonymous=draft.anonymous, live_results=draft.live_results, quorum=draft.quorum,
        closes_at=draft.closes_at,
    )
    session.add(poll)
    await session.flush()
    for position, label in enumerate(draft.options):
        session.add(PollOption(poll_id=poll.id, position=position, label=label))
        session.add(PollTally(poll_id=poll.id, position=position, votes=0))
    await session.flush()
    return poll


async def get_poll(session: AsyncSession, poll_id: int | None) -> Poll | None:
    return await by_id(session, Poll, poll_id)


async def options_of(session: AsyncSession, poll_id: int) -> list[PollOption]:
    rows = await session.scalars(
        select(PollOption).where(PollOption.poll_id == poll_id).order_by(PollOption.position))
    return list(rows.all())


class Outcome(enum.StrEnum):
    CAST = "cast"
    CHANGED = "changed"
    UNCHANGED = "unchanged"  # the same choices again
    CLOSED = "closed"
    ALREADY = "already_voted"
    HOUSEHOLD = "household_voted"
    BAD_CHOICE = "bad_choice"
    NO_HOUSEHOLD = "no_household"
    NOT_REGISTERED = "not_registered"
    NOT_IN_AREA = "not_in_area"
    NOT_VERIFIED = "not_verified"
    ASSISTED = "assisted"  # a vote was recorded for this resident with help: not changed


def voter_key(poll: Poll, resident: Resident) -> str | None:
    if poll.per_household:
        household = household_voter(resident)
        return f"h{household}" if household else None
    return f"r{resident.id}"


def valid_choices(poll: Poll, option_count: int, choices: list[int]) -> bool:
    """Positions that exist in this poll, no repeats, one unless multiple choice."""
    if not choices or len(set(choices)) != len(choices):
        return False
    if not poll.multiple and len(choices) != 1:
        return False
    return all(0 <= c < option_count for c in choices)


async def may_vote(session: AsyncSession, poll: Poll, resident: Resident,
                   now: datetime) -> Outcome | None:
    """Why the resident cannot vote at all (before looking at earlier votes), or None."""
    if poll.status != "open" or poll.closes_at <= now:
        return Outcome.CLOSED
    reason = await refusal(session, poll.audience, resident)
    if reason is not None:
        return Outcome(reason)
    if voter_key(poll, resident) is None:
        return Outcome.NO_HOUSEHOLD
    return None


async def cast(session: AsyncSession, poll_id: int, resident: Resident, choices: list[int],
               now: datetime, *, ballot_key: bytes | None,
               assisted_by: int | None = None) -> Outcome:
    """Record a vote for `resident`, by themselves or, with `assisted_by`, by a committee member
    or staff member for a resident who is present: the same rules either way (open poll, area,
    verification, one vote per voter key). An assisted vote never changes an earlier one, and a
    vote recorded with help is not changed afterwards by the resident either (they dispute it)."""
    poll = await session.get(Poll, poll_id)
    if poll is None:
        return Outcome.BAD_CHOICE
    if poll.anonymous and not ballot_key:
        raise ValueError("an anonymous ballot needs the ballot key")
    refused = await may_vote(session, poll, resident, now)
    if refused is not None:
        return refused
    count = await session.scalar(
        select(func.count()).select_from(PollOption).where(PollOption.poll_id == poll_id))
    if not valid_choices(poll, count or 0, choices):
        return Outcome.BAD_CHOICE
    key = voter_key(poll, resident)
    if key is None:  # may_vote has refused a resident without a household already
        return Outcome.NO_HOUSEHOLD
    choices = sorted(choices)
    if await session.get(PollParticipation, (poll_id, key)) is not None:
        # The usual second tap; the primary key below still decides a true race.
        return await _change(session, poll, key, resident, choices, now, assisted_by)
    try:
        async with session.begin_nested():
            session.add(PollParticipation(poll_id=poll_id, voter_key=key))
            if assisted_by is not None:
                session.add(AssistedVote(poll_id=poll_id, resident_id=resident.id,
                                         assistant_id=assisted_by, at=now))
            if poll.anonymous:
                assert ballot_key is not None  # checked above
                session.add(PollPendingBallot(id=secrets.randbits(62), poll_id=poll_id, sealed=seal(
                    ballot_key, poll_id, sum(1 << c for c in choices))))
            else:
                session.add(PollVote(poll_id=poll_id, voter_key=key, resident_id=resident.id,
                                     choices=choices, cast_at=now))
            await session.flush()
            if not await _still_open(session, poll_id, now):
                raise _Closed
            if not poll.anonymous:
                await _count(session, poll_id, choices, +1)
    except _Closed:
        return Outcome.CLOSED
    except IntegrityError:
        return await _change(session, poll, key, resident, choices, now, assisted_by)
    return Outcome.CAST


class _Closed(Exception):
    pass


class _TooFew(Exception):
    pass


async def _still_open(session: AsyncSession, poll_id: int, now: datetime) -> bool:
    """Orders a vote against closing: the shared lock lets voters run side by side but makes
    `close` wait for them, and a vote that comes after the close sees it and is undone with its
    participation row. (SQLite runs one writer at a time, so there it is a plain read.)"""
    return await session.scalar(
        select(Poll.id).where(Poll.id == poll_id, Poll.status == "open", Poll.closes_at > now)
        .with_for_update(read=True)) is not None


async def _change(session: AsyncSession, poll: Poll, key: str, resident: Resident,
                  choices: list[int], now: datetime, assisted_by: int | None = None) -> Outcome:
    if not poll.changeable or assisted_by is not None:
        return Outcome.HOUSEHOLD if poll.per_household else Outcome.ALREADY
    vote = await session.scalar(
        select(PollVote).where(PollVote.poll_id == poll.id, PollVote.voter_key == key)
        .with_for_update())
    if vote is None or vote.resident_id != resident.id:
        return Outcome.HOUSEHOLD if poll.per_household else Outcome.ALREADY
    if await assisted_vote(session, poll.id, resident.id) is not None:
        return Outcome.ASSISTED
    if not await _still_open(session, poll.id, now):
        return Outcome.CLOSED
    if sorted(vote.choices) == choices:
        return Outcome.UNCHANGED
    await _count(session, poll.id, list(vote.choices), -1)
    await _count(session, poll.id, choices, +1)
    vote.choices = choices
    vote.changed_at = now
    return Outcome.CHANGED


async def _count(session: AsyncSession, poll_id: int, positions: list[int], delta: int) -> None:
    for position in sorted(positions):  # one lock order for every voter: no deadlocks
        await session.execute(
            update(PollTally).where(PollTally.poll_id == poll_id, PollTally.position == position)
            .values(votes=PollTally.votes + delta).execution_options(synchronize_session=False))


async def has_voted(session: AsyncSession, poll: Poll, resident: Resident) -> bool:
    key = voter_key(poll, resident)
    if key is None:
        return False
    return await session.get(PollParticipation, (poll.id, key)) is not None


async def my_choices(session: AsyncSession, poll: Poll, resident: Resident) -> list[int] | None:
    """A named vote's choices (None for anonymous polls: nobody can know them)."""
    if poll.anonymous:
        return None
    key = voter_key(poll, resident)
    vote = await session.get(PollVote, (poll.id, key)) if key else None
    return list(vote.choices) if vote and vote.resident_id == resident.id else None


async def assisted_vote(session: AsyncSession, poll_id: int, resident_id: int
                        ) -> AssistedVote | None:
    return await session.scalar(select(AssistedVote).where(
        AssistedVote.poll_id == poll_id, AssistedVote.resident_id == resident_id))


async def get_assisted(session: AsyncSession, assisted_id: int | None) -> AssistedVote | None:
    return await by_id(session, AssistedVote, assisted_id)


async def dispute(session: AsyncSession, assisted_id: int, resident_id: int,
                  now: datetime) -> bool:
    """The resident says an assisted vote was not theirs: flagged once (a guarded update)."""
    done = await session.execute(
        update(AssistedVote).where(AssistedVote.id == assisted_id,
                                   AssistedVote.resident_id == resident_id,
                                   AssistedVote.disputed_at.is_(None))
        .values(disputed_at=now).execution_options(synchronize_session=False))
    return affected(done) == 1


async def assisted_count(session: AsyncSession, poll_id: int) -> int:
    return await session.scalar(select(func.count()).select_from(AssistedVote).where(
        AssistedVote.poll_id == poll_id)) or 0


@dataclass(frozen=True)
class OptionResult:
    position: int
    label: str
    votes: int
    percent: object  # Decimal, of voters


@dataclass(frozen=True)
class Results:
    options: list[OptionResult]
    voters: int
    counted: int  # ballots in the counters (anonymous: fewer than voters until the next group)
    eligible: int
    turnout: object  # Decimal
    quorum: int | None
    quorum_met: bool
    assisted: int = 0  # votes recorded with help (/assist)


async def results(session: AsyncSession, poll: Poll) -> Results:
    labels = {o.position: o.label for o in await options_of(session, poll.id)}
    rows = (await session.execute(
        select(PollTally.position, PollTally.votes).where(PollTally.poll_id == poll.id)
        .order_by(PollTally.position))).all()
    voters = await session.scalar(select(func.count()).select_from(PollParticipation).where(
        PollParticipation.poll_id == poll.id)) or 0
    eligible = poll.eligible if poll.eligible is not None else await count(
        session, poll.audience, per_household=poll.per_household)
    counted = poll.counted if poll.anonymous else voters
    options = [OptionResult(p, labels[p], v, percent(v, counted)) for p, v in rows]
    return Results(options, voters, counted, eligible, percent(voters, eligible), poll.quorum,
                   poll.quorum is None or voters >= poll.quorum,
                   await assisted_count(session, poll.id))


async def recount(session: AsyncSession, poll_id: int) -> dict[int, int]:
    """A named poll's counts from the votes themselves: checks the counters."""
    counts: dict[int, int] = {}
    for choices in (await session.scalars(
            select(PollVote.choices).where(PollVote.poll_id == poll_id))).all():
        for c in choices:
            counts[c] = counts.get(c, 0) + 1
    return counts


async def close_early(session: AsyncSession, poll_id: int, now: datetime) -> bool:
    """Bring an open poll's closing time forward to now; the clock's job then closes it as at
    any closing time (the last anonymous ballots counted, traces erased, results sent). The
    row lock orders it against votes in flight, as a close does (see _still_open)."""
    done = await session.execute(
        update(Poll).where(Poll.id == poll_id, Poll.status == "open", Poll.closes_at > now)
        .values(closes_at=now).execution_options(synchronize_session=False))
    return affected(done) == 1


async def open_of_committees(session: AsyncSession, committee_ids: set[int] | None,
                             limit: int = 10) -> list[Poll]:
    """Open polls of these committees (None: all), soonest closing first."""
    q = select(Poll).where(Poll.status == "open").order_by(Poll.closes_at).limit(limit)
    if committee_ids is not None:
        q = q.where(Poll.committee_id.in_(committee_ids))
    return list((await session.scalars(q)).all())


async def of_committees(session: AsyncSession, committee_ids: set[int] | None,
                        limit: int = 50) -> list[Poll]:
    """Polls of these committees (None: all), open and closed, newest first."""
    q = select(Poll).order_by(Poll.id.desc()).limit(limit)
    if committee_ids is not None:
        q = q.where(Poll.committee_id.in_(committee_ids or {-1}))
    return list((await session.scalars(q)).all())


async def due(session: AsyncSession, now: datetime, limit: int = 20) -> list[int]:
    rows = await session.scalars(
        select(Poll.id).where(Poll.status == "open", Poll.closes_at <= now)
        .order_by(Poll.closes_at).limit(limit))
    return list(rows.all())


async def close(session: AsyncSession, poll_id: int, now: datetime, *,
                ballot_key: bytes | None) -> bool:
    """Close once: True only for the one caller whose guarded update changed the row."""
    poll = await session.get(Poll, poll_id)
    if poll is None:
        return False
    eligible = await count(session, poll.audience, per_household=poll.per_household)
    done = await session.execute(
        update(Poll).where(Poll.id == poll_id, Poll.status == "open")
        .values(status="closed", closed_at=now, eligible=eligible)
        .execution_options(synchronize_session=False))
    if affected(done) == 1:
        # Votes are ordered before the close (see _still_open): what waits now is the rest.
        await flush_ballots(session, poll_id, minimum=1, ballot_key=ballot_key)
        await session.refresh(poll)
        return True
    return False


async def flush_ballots(session: AsyncSession, poll_id: int, minimum: int, *,
                        ballot_key: bytes | None) -> int:
    """Count the waiting anonymous ballots of a poll if at least `minimum` wait: delete them and
    add their sum to the counters in this one transaction. Returns how many were counted (0
    when fewer wait, or another worker took them first: the delete decides). A ballot this key
    cannot open (the key was changed) is put back and stays uncounted."""
    waiting = await session.scalar(select(func.count()).select_from(PollPendingBallot).where(
        PollPendingBallot.poll_id == poll_id)) or 0
    if waiting == 0 or waiting < minimum:
        return 0
    try:
        async with session.begin_nested():
            taken = (await session.execute(
                delete(PollPendingBallot).where(PollPendingBallot.poll_id == poll_id)
                .returning(PollPendingBallot.id, PollPendingBallot.sealed))).all()
            masks, unopened = [], []
            for ballot_id, sealed in taken:
                mask = unseal(ballot_key, poll_id, sealed) if ballot_key else None
                if mask is None:
                    unopened.append((ballot_id, sealed))
                else:
                    masks.append(mask)
            if not masks or len(masks) < minimum:
                # A racing worker took most of them first (what is left came after its
                # snapshot): too few to count as a group; undone, they wait on.
                raise _TooFew
    except _TooFew:
        return 0
    if unopened:
        log.error("poll %s: %d waiting ballots cannot be opened with this ballot key "
                  "(POLLS_BALLOT_KEY changed?); they stay uncounted", poll_id, len(unopened))
        session.add_all(PollPendingBallot(id=i, poll_id=poll_id, sealed=sealed)
                        for i, sealed in unopened)
        await session.flush()
    counts = Counter(p for mask in masks for p in range(MAX_OPTIONS) if mask >> p & 1)
    positions = (await session.scalars(select(PollTally.position).where(
        PollTally.poll_id == poll_id).order_by(PollTally.position))).all()
    # Every counter is rewritten, with 0 where no ballot of the group chose it, so all of a
    # poll's counters carry the last group's transaction: which options the latest group chose
    # cannot be read off which counters changed.
    for position in positions:
        await session.execute(
            update(PollTally).where(PollTally.poll_id == poll_id, PollTally.position == position)
            .values(votes=PollTally.votes + counts.get(position, 0))
            .execution_options(synchronize_session=False))
    await session.execute(update(Poll).where(Poll.id == poll_id)
                          .values(counted=Poll.counted + len(masks))
                          .execution_options(synchronize_session=False))
    return len(masks)


async def polls_to_flush(session: AsyncSession, k: int) -> list[int]:
    """Polls with a full group (at least k) of waiting anonymous ballots."""
    rows = await session.scalars(
        select(PollPendingBallot.poll_id).group_by(PollPendingBallot.poll_id)
        .having(func.count() >= k).order_by(PollPendingBallot.poll_id))
    return list(rows.all())


async def erase_traces(engine) -> None:
    """Remove the old row versions a flush left behind, outside any transaction.

    PostgreSQL keeps a deleted or updated row's old version (with its `xmin`) in the table until
    VACUUM; VACUUM makes that space free and invisible to every query and inspection function,
    though the bytes can stay in the data files until reused, and in WAL segments and backups
    until those are recycled. SQLite runs with `secure_delete` (deleted content is zeroed);
    here its write-ahead log, which holds each commit's page images, is checkpointed and
    truncated."""
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await auto.execute(text("VACUUM poll_pending_ballots, poll_tallies, polls"))
        elif engine.dialect.name == "sqlite":
            await checkpoint_truncate(conn)


async def advance_cursor(session: AsyncSession, poll_id: int, column: str, old: int,
                         new: int | None) -> bool:
    """Move a fan-out cursor from `old`; False when another worker moved it first."""
    done_column = {"invited_upto": "invites_done", "results_upto": "results_done"}[column]
    values = {done_column: True} if new is None else {column: new}
    moved = await session.execute(
        update(Poll).where(Poll.id == poll_id, getattr(Poll, column) == old,
                           getattr(Poll, done_column).is_(False))
        .values(**values).execution_options(synchronize_session=False))
    return affected(moved) == 1


async def pending_fanout(session: AsyncSession, limit: int = 20) -> list[Poll]:
    rows = await session.scalars(
        select(Poll).where(
            ((Poll.status == "open") & Poll.invites_done.is_(False))
            | ((Poll.status == "closed") & Poll.results_done.is_(False)))
        .order_by(Poll.id).limit(limit))
    return list(rows.all())


async def open_for(session: AsyncSession, resident: Resident, limit: int = 10) -> list[Poll]:
    """Open polls whose area includes this resident (verification checked when voting)."""
    rows = await session.scalars(
        select(Poll).where(Poll.status == "open").order_by(Poll.closes_at).limit(200))
    found = []
    for poll in rows.all():
        if await refusal(session, Audience(poll.area_kind, poll.area_id, False), resident) is None:
            found.append(poll)
        if len(found) >= limit:
            break
    return found
