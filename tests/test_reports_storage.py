"""Report storage over both databases: references, routing over the demo polygons, the
working-day calendar, guarded transitions under concurrency, nearby search and the queue."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from services.report_catalog import Catalog, WorkCalendar
from services.report_routing import route
from storage import reports as rep
from storage.db import create_engine, session_factory
from storage.migrate import upgrade_async
from storage.people import get_or_create_identity
from storage.territory import Team
from tests.conftest import DEMO

SHANGHAI = "Asia/Shanghai"


def _calendar() -> WorkCalendar:
    return WorkCalendar.load(SHANGHAI)


def test_working_days_skip_weekends_and_holidays():
    cal = _calendar()
    # Monday 2026-11-23 10:00 Beijing = 02:00 UTC.
    monday = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    assert cal.add_working_days(monday, 1) == datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    # Six working days from Monday: over the weekend to next Tuesday.
    assert cal.add_working_days(monday, 6) == datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    # Friday evening + 1 working day: Monday, same time.
    friday = datetime(2026, 11, 27, 11, 0, tzinfo=UTC)  # 19:00 local
    assert cal.add_working_days(friday, 1) == datetime(2026, 11, 30, 11, 0, tzinfo=UTC)
    # National Day week: filed on 30 September, 1 working day is 8 October.
    sept30 = datetime(2026, 9, 30, 2, 0, tzinfo=UTC)
    assert cal.add_working_days(sept30, 1) == datetime(2026, 10, 8, 2, 0, tzinfo=UTC)
    # Filed on a holiday: the clock starts at 09:00 on the next working day (Saturday
    # 10 October is a make-up working day).
    holiday = datetime(2026, 10, 3, 6, 0, tzinfo=UTC)
    assert cal.add_working_days(holiday, 1) == datetime(2026, 10, 9, 1, 0, tzinfo=UTC)
    assert cal.add_working_days(holiday, 2) == datetime(2026, 10, 10, 1, 0, tzinfo=UTC)
    assert cal.is_working(date(2026, 10, 10)) and not cal.is_working(date(2026, 10, 5))
    # Zero days: by the end of that working day, local time.
    assert cal.add_working_days(monday, 0) == datetime(2026, 11, 23, 15, 59, tzinfo=UTC)


def test_categories_match_both_languages(tmp_path):
    cat = Catalog.load()
    assert cat.match("路灯坏了")[0][0] == "lighting"
    assert cat.match("street light broken")[0][0] == "lighting"
    assert cat.match("小区门口的路灯不亮了")[0][0] == "lighting"
    assert cat.match("Streetlite")[0][0] == "lighting"  # a typo
    assert cat.match("垃圾桶满了")[0][0] == "rubbish"
    assert cat.match("blocked drain")[0][0] == "water"
    assert cat.match("qwertyuiop") == []
    assert cat.get("lighting").fix_days == 3 and cat.get("roads").fix_days == 6
    assert cat.get("roads").ack_days == 1 and cat.get("roads").duplicate_radius_m == 250
    custom = tmp_path / "cats.toml"
    custom.write_text('[default]\nduplicate_radius_m = 100\n[[category]]\nkey = "x"\n'
                      'name_zh = "某"\nname_en = "X"\n', encoding="utf-8")
    one = Catalog.load(Path(custom)).get("x")
    assert (one.ack_days, one.fix_days, one.duplicate_radius_m) == (1, 6, 100)


async def _db(url: str):
    from bot.app import load_territory_file
    from services.geo import TerritoryIndex

    await upgrade_async(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    await load_territory_file(sessions, DEMO)
    async with sessions() as s:
        geo = await TerritoryIndex.build(s)
    return engine, sessions, geo


async def _resident(session, user: str):
    _, resident, _ = await get_or_create_identity(session, "memory", user, user, None)
    return resident


async def test_routing_over_demo_polygons(db_url):
    engine, sessions, geo = await _db(db_url)
    try:
        async with sessions() as s:
            teams = {t.code: t.id for t in (await s.scalars(select(Team))).all()}
            zones = {p: geo.locate(*p).zone_id for p in [(30.633, 104.04), (30.619, 104.044),
                                                         (30.606, 104.04)]}
            north, central, south = zones.values()
            # Lighting goes to the specialist crew wherever it is.
            r = await route(s, geo, "lighting", latitude=30.633, longitude=104.04)
            assert (r.zone_id, r.team_id) == (north, teams["lighting-roads"])
            # Rubbish goes to the zone's joint team, by point...
            r = await route(s, geo, "rubbish", latitude=30.619, longitude=104.044)
            assert (r.zone_id, r.team_id) == (central, teams["central-joint"])
            assert r.estate_id is not None
            r = await route(s, geo, "noise", latitude=30.6065, longitude=104.052)
            assert (r.zone_id, r.team_id) == (south, teams["south-joint"])
            # ...or, with no point, by the resident's estate.
            victoria = geo.locate(30.606, 104.04).estate_id
            r = await route(s, geo, "rubbish", estate_id=victoria)
            assert (r.zone_id, r.team_id, r.estate_id) == (south, teams["south-joint"], victoria)
            # A point in no zone routes nowhere but the specialists.
            r = await route(s, geo, "rubbish", latitude=31.2, longitude=121.5)
            assert (r.zone_id, r.team_id) == (None, None)
            r = await route(s, geo, "roads", latitude=31.2, longitude=121.5)
            assert r.team_id == teams["lighting-roads"]
    finally:
        await engine.dispose()


def _new(reporter_id: int, **kw) -> rep.NewReport:
    now = datetime.now(UTC)
    base = dict(reporter_id=reporter_id, category="lighting", description="dark",
                ack_due_at=now + timedelta(days=1), fix_due_at=now + timedelta(days=6),
                latitude=30.633, longitude=104.04, exact_point=True)
    base.update(kw)
    return rep.NewReport(**base)


async def test_references_and_concurrent_fixed(db_url):
    engine, sessions, geo = await _db(db_url)
    try:
        now = datetime.now(UTC)
        async with sessions() as s, s.begin():
            ann = await _resident(s, "ann")
            first = await rep.create(s, _new(ann.id), now, 2026)
            second = await rep.create(s, _new(ann.id), now, 2026)
            other_year = await rep.create(s, _new(ann.id), now, 2027)
            staff = await _resident(s, "staff")
            ids = (first.id, staff.id)
        assert (first.reference, second.reference, other_year.reference) == (
            "Z-2026-00001", "Z-2026-00002", "Z-2027-00001")

        # Many filings at once still get distinct numbers.
        async def file_one(i: int) -> str:
            async with sessions() as s, s.begin():
                return (await rep.create(s, _new(ann.id), now, 2026)).reference

        refs = await asyncio.gather(*(file_one(i) for i in range(8)))
        assert len(set(refs)) == 8
        assert sorted(refs)[-1] == "Z-2026-00010"

        # Two staff press "fixed" at the same moment: one transition.
        async def fix() -> str | None:
            async with sessions() as s, s.begin():
                return await rep.transition(s, ids[0], rep.Status.FIXED, actor_id=ids[1],
                                            now=datetime.now(UTC), note="done")

        results = await asyncio.gather(fix(), fix(), fix())
        assert sorted(r is not None for r in results) == [False, False, True]
        async with sessions() as s:
            events = await rep.events_of(s, ids[0])
            row = await s.get(rep.Report, ids[0])
        assert [e.to_status for e in events] == ["new", "fixed"]
        assert row.status == "fixed" and row.fixed_at is not None

        async with sessions() as s, s.begin():
            # Fixed cannot be acknowledged; it can be reopened, once.
            assert await rep.transition(s, ids[0], rep.Status.ACKNOWLEDGED, actor_id=ids[1],
                                        now=now) is None
            assert await rep.transition(s, ids[0], rep.Status.REOPENED, actor_id=ann.id,
                                        now=now) == "fixed"
            assert await rep.transition(s, ids[0], rep.Status.REOPENED, actor_id=ann.id,
                                        now=now) is None
            assert await rep.rate(s, ids[0], ann.id, 5, now) is False  # reopened: not yet
    finally:
        await engine.dispose()


async def test_nearby_queue_and_escalation_claims(db_url):
    engine, sessions, geo = await _db(db_url)
    try:
        now = datetime.now(UTC)
        async with sessions() as s, s.begin():
            ann = await _resident(s, "ann")
            near = await rep.create(s, _new(ann.id, latitude=30.6331, longitude=104.0401), now,
                                    2026)
            far = await rep.create(s, _new(ann.id, latitude=30.6360, longitude=104.0400), now,
                                   2026)
            other_cat = await rep.create(s, _new(ann.id, category="roads"), now, 2026)
            late = await rep.create(s, _new(ann.id, team_id=1, category="rubbish",
                                            fix_due_at=now - timedelta(hours=1),
                                            ack_due_at=now - timedelta(days=2)),
                                    now - timedelta(days=7), 2026)
            young = await rep.create(s, _new(ann.id, team_id=1, category="rubbish"), now, 2026)
            ids = near.id, far.id, other_cat.id, late.id, young.id
        async with sessions() as s:
            found = await rep.open_nearby(s, "lighting", 30.633, 104.04, 250)
            assert [r.id for r, _ in found][:1] == [ids[0]]
            assert ids[1] not in [r.id for r, _ in found]  # 330 m away
            assert ids[2] not in [r.id for r, _ in found]  # another category
            assert 14 < found[0][1] < 15.5
            rows, total = await rep.queue(s, now, team_ids={1})
            assert [r.id for r in rows] == [ids[3], ids[4]] and total == 2

        async def claim() -> list[int]:
            async with sessions() as s, s.begin():
                return [r.id for r in await rep.claim_overdue(s, now)]

        first, second = await asyncio.gather(claim(), claim())
        assert sorted(first + second) == [ids[3]]
        assert await claim() == []
    finally:
        await engine.dispose()


async def test_stats_figures(db_url):
    from storage import report_stats

    engine, sessions, geo = await _db(db_url)
    try:
        now = datetime.now(UTC)
        t0 = now - timedelta(days=3)
        async with sessions() as s, s.begin():
            ann = await _resident(s, "ann")
            a = await rep.create(s, _new(ann.id, zone_id=1, team_id=1), t0, 2026)
            b = await rep.create(s, _new(ann.id, zone_id=1, team_id=1,
                                         fix_due_at=t0 + timedelta(hours=1)), t0, 2026)
            await rep.create(s, _new(ann.id, zone_id=2, team_id=2), t0, 2026)
            await rep.create(s, _new(ann.id, zone_id=2, team_id=2), now - timedelta(days=40),
                             2026)  # outside the period
            for rid, hours in ((a.id, 2), (b.id, 4)):
                await rep.transition(s, rid, rep.Status.ACKNOWLEDGED, actor_id=ann.id,
                                     now=t0 + timedelta(hours=hours))
                await rep.transition(s, rid, rep.Status.FIXED, actor_id=ann.id,
                                     now=t0 + timedelta(hours=hours * 3))
            await rep.transition(s, b.id, rep.Status.REOPENED, actor_id=ann.id, now=now)
            await rep.transition(s, b.id, rep.Status.FIXED, actor_id=ann.id,
                                 now=t0 + timedelta(hours=12))
            await rep.confirm_fixed(s, a.id, ann.id, now)
            assert await rep.rate(s, a.id, ann.id, 4, now)
        async with sessions() as s:
            table = await report_stats.compute(s, now - timedelta(days=30), now)
        zone1 = dict((z.id, f) for z, f in table.zones if z is not None)[1]
        assert zone1.received == 2
        assert abs(zone1.median_ack - 3.0) < 0.01  # hours: median of 2 and 4
        assert abs(zone1.median_fix - 9.0) < 0.01  # 6 and 12
        assert zone1.in_sla_share == 0.5 and zone1.reopen_rate == 0.5
        assert zone1.mean_rating == 4
        assert table.total.received == 3
    finally:
        await engine.dispose()
