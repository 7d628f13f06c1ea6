"""500 votes at once, each in its own session and connection, some of them double taps: the
database keeps one vote per voter and the tally is exact. Closing while votes arrive counts every
accepted vote and nothing after."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from storage import polls
from storage.audience import Audience
from storage.db import create_engine, session_factory
from storage.migrate import upgrade_async
from storage.people import Resident
from storage.territory import Estate
from storage.territory_loader import load_territory
from tests.conftest import DEMO

KEY = b"k" * 32  # the ballot key (bot/ballot_key.py)

VOTERS, DUPLICATES = 450, 50


async def _setup(url: str, *, anonymous: bool):
    import json

    await upgrade_async(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    async with sessions() as s, s.begin():
        await load_territory(s, json.loads(DEMO.read_text(encoding="utf-8")))
        estate = await s.scalar(select(Estate).where(Estate.code == "victoria"))
        residents = [Resident(estate_id=estate.id, verified=True) for _ in range(VOTERS)]
        s.add_all(residents)
        await s.flush()
        now = polls.utcnow()
        poll = await polls.create(s, polls.PollDraft(
            question="Repaint?", options=["a", "b", "c", "d"], multiple=False,
            audience=Audience("estate", estate.id, True), per_household=False,
            anonymous=anonymous, live_results=False, closes_at=now + timedelta(hours=1),
            quorum=None, committee_id=estate.committee_id), residents[0].id)
        return engine, sessions, poll.id, [r.id for r in residents]


class _Unbounded:
    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return None


# SQLite has one writer: there, taps queue for a pooled connection; PostgreSQL takes all 500.
_GATE: dict[str, object] = {}


async def _vote(sessions, poll_id: int, resident_id: int, choice: int) -> polls.Outcome:
    async with _GATE.get("gate") or _Unbounded(), sessions() as s, s.begin():
        resident = await s.get(Resident, resident_id)
        return await polls.cast(s, poll_id, resident, [choice], polls.utcnow(), ballot_key=KEY)


@pytest.mark.parametrize("anonymous", [True, False])
async def test_500_concurrent_votes_are_counted_exactly(db_url, anonymous):
    _GATE["gate"] = asyncio.Semaphore(5) if db_url.startswith("sqlite") else None
    engine, sessions, poll_id, ids = await _setup(db_url, anonymous=anonymous)
    choice = {r: r % 4 for r in ids}
    taps = [(r, choice[r]) for r in ids] + [(r, choice[r]) for r in ids[:DUPLICATES]]

    async def flush(minimum: int, delay: float) -> int:
        await asyncio.sleep(delay)
        async with sessions() as s, s.begin():
            return await polls.flush_ballots(s, poll_id, minimum=minimum, ballot_key=KEY)

    # Anonymous ballots are counted in groups while votes arrive, by racing workers.
    flushes = [flush(25, i * 0.02) for i in range(12)] if anonymous else []
    *outcomes, = await asyncio.gather(*(_vote(sessions, poll_id, r, c) for r, c in taps),
                                      *flushes)
    flushed = outcomes[len(taps):]
    outcomes = outcomes[:len(taps)]
    if anonymous:
        flushed += await asyncio.gather(flush(1, 0), flush(1, 0))
        assert all(n == 0 or n >= 25 for n in flushed[:-2])
        assert sum(flushed) == VOTERS
    counted = Counter(o for o in outcomes)
    assert counted[polls.Outcome.CAST] == VOTERS
    # A double tap: refused in an anonymous poll, "already your vote" in a named one.
    refused = polls.Outcome.ALREADY if anonymous else polls.Outcome.UNCHANGED
    assert counted[refused] == DUPLICATES
    async with sessions() as s:
        poll = await s.get(polls.Poll, poll_id)
        res = await polls.results(s, poll)
        participations = await s.scalar(select(func.count()).select_from(
            polls.PollParticipation).where(polls.PollParticipation.poll_id == poll_id))
        recount = await polls.recount(s, poll_id)
    assert participations == res.voters == VOTERS
    expected = dict(Counter(choice.values()))
    assert {o.position: o.votes for o in res.options} == expected
    assert recount == ({} if anonymous else expected)
    await engine.dispose()


async def test_close_races_with_votes(db_url):
    _GATE["gate"] = asyncio.Semaphore(5) if db_url.startswith("sqlite") else None
    engine, sessions, poll_id, ids = await _setup(db_url, anonymous=True)

    async def close_twice():
        await asyncio.sleep(0.01)
        results = []
        for _ in range(2):
            async with sessions() as s, s.begin():
                results.append(await polls.close(s, poll_id, polls.utcnow(), ballot_key=KEY))
        return results

    votes = [_vote(sessions, poll_id, r, 0) for r in ids[:200]]
    *outcomes, closes = await asyncio.gather(*votes, close_twice())
    assert closes == [True, False]
    accepted = sum(1 for o in outcomes if o == polls.Outcome.CAST)
    assert all(o in (polls.Outcome.CAST, polls.Outcome.CLOSED) for o in outcomes)
    async with sessions() as s:
        poll = await s.get(polls.Poll, poll_id)
        res = await polls.results(s, poll)
    assert res.voters == res.options[0].votes == accepted
    await engine.dispose()
