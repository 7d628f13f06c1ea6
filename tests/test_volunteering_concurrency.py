"""200 residents race for 20 places on PostgreSQL: the database hands out exactly 20."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from storage import volunteering as vol
from storage.db import create_engine, session_factory
from storage.migrate import upgrade_async
from storage.people import Resident
from tests.conftest import PG_OK, _create_pg, _drop_pg

pytestmark = pytest.mark.skipif(not PG_OK, reason="PostgreSQL not reachable")
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


async def test_200_residents_race_for_20_places_with_double_taps():
    name, url = await _create_pg()
    engine = None
    try:
        await upgrade_async(url)
        engine = create_engine(url)
        sessions = session_factory(engine)
        async with sessions() as s, s.begin():
            people = [Resident(display_name=f"r{i}") for i in range(201)]
            s.add_all(people)
            await s.flush()
            org, *ids = [p.id for p in people]
            start = NOW + timedelta(days=2)
            activity = await vol.create_activity(
                s, title="Patrol", category="safety_patrol", description="", audience="everyone",
                organiser_id=org, shifts=[vol.ShiftSpec(start, start + timedelta(hours=2), 20)])
            await vol.publish(s, activity.id)
            (shift,) = await vol.shifts_of(s, activity.id)

        async def tap(rid: int):
            async with sessions() as s, s.begin():  # each its own session and transaction
                return await vol.sign_up(s, shift.id, rid, NOW)

        # Every resident taps twice at once; the first 40 a third time.
        taps = [tap(rid) for rid in ids] + [tap(rid) for rid in ids] + [tap(r) for r in ids[:40]]
        results = await asyncio.gather(*taps)
        counts = {o: sum(r.outcome == o for r in results) for o in vol.SignupOutcome}
        assert counts[vol.SignupOutcome.CONFIRMED] == 20
        assert counts[vol.SignupOutcome.WAITLISTED] == 180
        assert counts[vol.SignupOutcome.ALREADY] == 240

        async with sessions() as s:
            sh = await s.get(vol.Shift, shift.id)
            assert (sh.taken, sh.capacity, sh.queue_seq) == (20, 20, 200)
            rows = (await s.scalars(select(vol.Signup).where(vol.Signup.shift_id == shift.id)
                                    .order_by(vol.Signup.queue_no))).all()
            assert len(rows) == 200 and len({r.resident_id for r in rows}) == 200
            # The first twenty numbers hold the places; the queue behind them has no gaps.
            assert [r.status for r in rows] == ["confirmed"] * 20 + ["waitlisted"] * 180
            assert [r.queue_no for r in rows] == list(range(1, 201))
            lines = await vol.roster(s, shift.id)
            assert [x.position for x in lines if x.position] == list(range(1, 181))
            assert await s.scalar(select(func.count()).select_from(vol.Reminder)) == 40

        # Ten cancel at once: the first ten waiting move up, in queue order.
        confirmed = [r for r in rows if r.status == "confirmed"][:10]

        async def cancel(signup):
            async with sessions() as s, s.begin():
                res = await vol.cancel_signup(s, signup.id, signup.resident_id, NOW,
                                              timedelta(hours=6))
                return [p.queue_no for p in res.promoted]

        promoted = sorted(n for ns in await asyncio.gather(*map(cancel, confirmed)) for n in ns)
        assert promoted == list(range(21, 31))
        async with sessions() as s:
            sh = await s.get(vol.Shift, shift.id)
            assert sh.taken == 20
    finally:
        if engine is not None:
            await engine.dispose()
        await _drop_pg(name)
