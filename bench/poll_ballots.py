"""Vote casting rate and tally time for a poll with 100,000 ballots, on SQLite and PostgreSQL.

Run by hand from the repository root::

    .venv/bin/python bench/poll_ballots.py [--ballots 100000] [--cast 2000] [--workers 20]

For each database: 100,000 verified residents are bulk-inserted in one estate; an anonymous and
a named single-choice poll are created. `--cast` votes go through `storage.polls.cast` (the code
path of a button press: eligibility, the participation row, the guarded poll update, counters),
from `--workers` concurrent sessions, and the rate is reported. The anonymous poll's ballots
then wait sealed in `poll_pending_ballots`; counting them as the polls job does (one transaction,
then VACUUM or the WAL truncate) is timed. The rest of the 100,000 ballots
are then bulk-inserted (participations and counters for the anonymous poll; votes for the named
one), and the tally is timed: `results` (counters, what residents see) and, for the named poll,
`recount` (every vote read back). PostgreSQL is skipped when 127.0.0.1:5432 does not answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, select, update  # noqa: E402

from storage import polls  # noqa: E402
from storage.audience import Audience  # noqa: E402
from storage.base import utcnow  # noqa: E402
from storage.db import create_engine, session_factory  # noqa: E402
from storage.migrate import upgrade_async  # noqa: E402
from storage.people import Resident  # noqa: E402
from storage.territory import Estate  # noqa: E402
from storage.territory_loader import load_territory  # noqa: E402

DEMO = ROOT / "content" / "territory" / "demo.json"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
OPTIONS = 5
KEY = secrets.token_bytes(32)  # the ballot key the bot keeps outside the database


async def _fill(sessions, ballots: int):
    async with sessions() as s, s.begin():
        await load_territory(s, json.loads(DEMO.read_text(encoding="utf-8")))
        estate = await s.scalar(select(Estate).where(Estate.code == "victoria"))
        for start in range(0, ballots, 10_000):
            await s.execute(insert(Resident), [
                {"estate_id": estate.id, "verified": True}
                for _ in range(start, min(ballots, start + 10_000))])
        ids = list((await s.scalars(select(Resident.id).order_by(Resident.id))).all())
        made = []
        for anonymous in (True, False):
            poll = await polls.create(s, polls.PollDraft(
                question="Bench", options=[f"o{i}" for i in range(OPTIONS)], multiple=False,
                audience=Audience("estate", estate.id, True), per_household=False,
                anonymous=anonymous, live_results=False,
                closes_at=utcnow() + timedelta(days=1), quorum=None,
                committee_id=estate.committee_id), ids[0])
            made.append(poll.id)
    return ids, made


async def _cast_many(sessions, poll_id: int, ids: list[int], workers: int) -> float:
    queue = list(ids)

    async def worker():
        while queue:
            rid = queue.pop()
            async with sessions() as s, s.begin():
                resident = await s.get(Resident, rid)
                outcome = await polls.cast(s, poll_id, resident, [rid % OPTIONS], utcnow(),
                                           ballot_key=KEY)
                assert outcome == polls.Outcome.CAST, outcome

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return time.perf_counter() - t0


async def _count_groups(sessions, engine, poll_id: int, waiting: int) -> float:
    """Anonymous ballots wait in poll_pending_ballots: count them as the polls job does (one
    transaction takes every waiting ballot of the poll), then vacuum / truncate the WAL."""
    t0 = time.perf_counter()
    counted = 0
    while counted < waiting:
        async with sessions() as s, s.begin():
            n = await polls.flush_ballots(s, poll_id, minimum=1, ballot_key=KEY)
        assert n > 0
        counted += n
    await polls.erase_traces(engine)
    return time.perf_counter() - t0


async def _bulk_rest(sessions, poll_id: int, anonymous: bool, ids: list[int]) -> None:
    async with sessions() as s, s.begin():
        for start in range(0, len(ids), 10_000):
            chunk = ids[start:start + 10_000]
            await s.execute(insert(polls.PollParticipation), [
                {"poll_id": poll_id, "voter_key": f"r{r}"} for r in chunk])
            if not anonymous:
                await s.execute(insert(polls.PollVote), [
                    {"poll_id": poll_id, "voter_key": f"r{r}", "resident_id": r,
                     "choices": [r % OPTIONS], "cast_at": utcnow()} for r in chunk])
        if anonymous:  # as if counted in groups already (flush_ballots)
            await s.execute(update(polls.Poll).where(polls.Poll.id == poll_id)
                            .values(counted=polls.Poll.counted + len(ids)))
        for position in range(OPTIONS):
            extra = sum(1 for r in ids if r % OPTIONS == position)
            await s.execute(update(polls.PollTally).where(
                polls.PollTally.poll_id == poll_id, polls.PollTally.position == position)
                .values(votes=polls.PollTally.votes + extra))


async def run_one(label: str, url: str, ballots: int, cast: int, workers: int) -> None:
    await upgrade_async(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    t0 = time.perf_counter()
    ids, (anon_id, named_id) = await _fill(sessions, ballots)
    print(f"[{label}] {ballots:,} residents inserted in {time.perf_counter() - t0:.1f}s")
    for poll_id, anonymous in ((anon_id, True), (named_id, False)):
        kind = "anonymous" if anonymous else "named"
        cast_ids, rest = ids[:cast], ids[cast:]
        seconds = await _cast_many(sessions, poll_id, cast_ids, workers)
        print(f"[{label}] {kind}: cast {cast:,} votes with {workers} workers in {seconds:.2f}s"
              f" = {cast / seconds:,.0f} votes/s ({seconds / cast * 1000:.2f} ms each)")
        if anonymous:
            seconds = await _count_groups(sessions, engine, poll_id, cast)
            print(f"[{label}] {kind}: counted the {cast:,} waiting ballots (as the polls job"
                  f" does) and erased their traces in {seconds * 1000:.0f} ms")
        await _bulk_rest(sessions, poll_id, anonymous, rest)
        async with sessions() as s:
            poll = await s.get(polls.Poll, poll_id)
            t0 = time.perf_counter()
            res = await polls.results(s, poll)
            tally = time.perf_counter() - t0
            assert res.voters == ballots, res.voters
            assert sum(o.votes for o in res.options) == ballots
            line = f"[{label}] {kind}: tally of {res.voters:,} ballots (counters) {tally * 1000:.1f} ms"
            if not anonymous:
                t0 = time.perf_counter()
                counts = await polls.recount(s, poll_id)
                recount = time.perf_counter() - t0
                assert sum(counts.values()) == ballots
                line += f"; full recount from the votes {recount * 1000:.0f} ms" \
                        f" (x{recount / tally:,.0f})"
            print(line)
    await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ballots", type=int, default=100_000)
    parser.add_argument("--cast", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        await run_one("sqlite", f"sqlite+aiosqlite:///{tmp}/bench.sqlite3", args.ballots,
                      args.cast, args.workers)
    try:
        import asyncpg

        admin = await asyncpg.connect(PG_ADMIN, timeout=3)
    except Exception as exc:  # noqa: BLE001 - any failure means: no PostgreSQL here
        print(f"[postgresql] skipped: {exc}")
        return
    name = f"bench_polls_{secrets.token_hex(4)}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        await run_one("postgresql", f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}",
                      args.ballots, args.cast, args.workers)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
