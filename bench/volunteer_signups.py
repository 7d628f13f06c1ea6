"""Volunteer sign-ups per second under contention, on SQLite and PostgreSQL.

Run by hand from the repository root::

    .venv/bin/python bench/volunteer_signups.py [--residents N] [--places P] [--shifts S]

N residents sign up at once (asyncio.gather, one session and transaction each, at most 30 in
flight: the size of the PostgreSQL connection pool) for S shifts of
P places: every sign-up of one shift fights for the same row (`taken < capacity`). Then a
contended run on a single shift, and finally the cancellations that promote from the waitlist.
PostgreSQL is skipped when it does not answer on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from storage import volunteering as vol  # noqa: E402
from storage.db import create_engine, session_factory  # noqa: E402
from storage.migrate import upgrade_async  # noqa: E402
from storage.people import Resident  # noqa: E402

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


async def _prepare(url: str, residents: int, shifts: int, places: int):
    await upgrade_async(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    async with sessions() as s, s.begin():
        people = [Resident(display_name=f"r{i}") for i in range(residents + 1)]
        s.add_all(people)
        await s.flush()
        ids = [p.id for p in people]
        specs = []
        for i in range(shifts):
            start = NOW + timedelta(days=2, hours=3 * i)
            specs.append(vol.ShiftSpec(start, start + timedelta(hours=2), places))
        a = await vol.create_activity(s, title="Bench", category="other", description="",
                                      audience="everyone", organiser_id=ids[0], shifts=specs)
        await vol.publish(s, a.id)
        shift_ids = [sh.id for sh in await vol.shifts_of(s, a.id)]
    return engine, sessions, ids[1:], shift_ids


CONCURRENCY = asyncio.Semaphore(30)  # as many in flight as the PostgreSQL pool holds


async def _race(sessions, pairs: list[tuple[int, int]]) -> tuple[float, dict[str, int]]:
    async def one(shift_id: int, rid: int):
        async with CONCURRENCY, sessions() as s, s.begin():
            return (await vol.sign_up(s, shift_id, rid, NOW)).outcome.value

    t0 = time.perf_counter()
    outcomes = await asyncio.gather(*[one(sh, rid) for sh, rid in pairs])
    elapsed = time.perf_counter() - t0
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o] = counts.get(o, 0) + 1
    return elapsed, counts


async def _cancel_all_confirmed(sessions, shift_id: int) -> tuple[float, int, int]:
    async with sessions() as s:
        rows = (await s.scalars(select(vol.Signup).where(
            vol.Signup.shift_id == shift_id, vol.Signup.status == "confirmed"))).all()

    async def one(signup):
        async with CONCURRENCY, sessions() as s, s.begin():
            res = await vol.cancel_signup(s, signup.id, signup.resident_id, NOW,
                                          timedelta(hours=6))
            return len(res.promoted)

    t0 = time.perf_counter()
    promoted = sum(await asyncio.gather(*map(one, rows)))
    return time.perf_counter() - t0, len(rows), promoted


async def run(label: str, url: str, residents: int, shifts: int, places: int) -> dict:
    engine, sessions, ids, shift_ids = await _prepare(url, residents, shifts, places)
    try:
        # Spread: each resident picks one of the shifts.
        spread = [(shift_ids[i % len(shift_ids)], rid) for i, rid in enumerate(ids)]
        t_spread, c_spread = await _race(sessions, spread)
        hot = shift_ids[0]
        async with sessions() as s:
            taken = await s.scalar(select(func.sum(vol.Shift.taken)))
        t_cancel, cancelled, promoted = await _cancel_all_confirmed(sessions, hot)
    finally:
        await engine.dispose()
    return {"label": label, "t_spread": t_spread, "c_spread": c_spread, "taken": taken,
            "t_cancel": t_cancel, "cancelled": cancelled, "promoted": promoted}


async def run_hot(label: str, url: str, residents: int, places: int) -> dict:
    engine, sessions, ids, (hot,) = await _prepare(url, residents, 1, places)
    try:
        t, counts = await _race(sessions, [(hot, rid) for rid in ids])
    finally:
        await engine.dispose()
    return {"label": label, "t": t, "counts": counts}


async def _pg_url() -> tuple[str, str] | None:
    import asyncpg

    try:
        admin = await asyncpg.connect(PG_ADMIN, timeout=3)
    except Exception:
        return None
    name = f"bench_vol_{secrets.token_hex(4)}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    return name, f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


async def _drop(name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--residents", type=int, default=1000)
    parser.add_argument("--places", type=int, default=20)
    parser.add_argument("--shifts", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=30)
    args = parser.parse_args()
    global CONCURRENCY
    CONCURRENCY = asyncio.Semaphore(args.concurrency)
    n = args.residents
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for db in ("sqlite", "postgresql"):
            if db == "sqlite":
                urls = [(None, f"sqlite+aiosqlite:///{tmp}/a.sqlite3"),
                        (None, f"sqlite+aiosqlite:///{tmp}/b.sqlite3")]
            else:
                a, b = await _pg_url(), await _pg_url()
                if a is None or b is None:
                    print("postgresql: not reachable, skipped")
                    continue
                urls = [a, b]
            try:
                spread = await run(db, urls[0][1], n, args.shifts, args.places)
                hot = await run_hot(db, urls[1][1], n, args.places)
            finally:
                for name, _ in urls:
                    if name:
                        await _drop(name)
            results.append((spread, hot))

    print(f"{n} residents, {args.shifts} shifts x {args.places} places (spread), "
          f"then {n} residents for one shift of {args.places} (hot)")
    for spread, hot in results:
        label = spread["label"]
        print(f"{label:10s} spread: {n / spread['t_spread']:7.0f} sign-ups/s "
              f"({spread['t_spread']:.2f}s) {spread['c_spread']} taken={spread['taken']}")
        print(f"{label:10s} hot:    {n / hot['t']:7.0f} sign-ups/s ({hot['t']:.2f}s) "
              f"{hot['counts']}")
        print(f"{label:10s} cancel+promote: {spread['cancelled'] / spread['t_cancel']:7.0f}/s "
              f"({spread['cancelled']} cancelled, {spread['promoted']} promoted)")
    if len(results) == 2:
        (s_sp, s_hot), (p_sp, p_hot) = results
        print(f"ratio postgresql/sqlite: spread {s_sp['t_spread'] / p_sp['t_spread']:.2f}x, "
              f"hot {s_hot['t'] / p_hot['t']:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
