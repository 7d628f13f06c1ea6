"""/queue, /stats and the duplicate look-up over 100,000 reports, on SQLite and PostgreSQL.

Run by hand from the repository root::

    .venv/bin/python bench/reports_queue_stats.py [--reports N] [--pg DSN]

Builds a fresh database by the migrations, loads the demo territory, bulk-inserts N reports
spread over a year (about 8 % still open, the rest fixed or closed, some overdue) across the
demo zones and teams, then times the queries the commands run: a team's queue (overdue first,
top 20 and the count), /stats over 30 days (zones and teams side by side) and the
"same problem nearby?" look-up made before filing. Then drops the reports' own indexes and
times the same queries again, to show what the indexes buy.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import and_, insert, or_, select, text  # noqa: E402

from bot.app import load_territory_file  # noqa: E402
from storage import report_stats  # noqa: E402
from storage import reports as rep  # noqa: E402
from storage.db import create_engine, session_factory  # noqa: E402
from storage.migrate import upgrade_async  # noqa: E402
from storage.people import Resident  # noqa: E402
from storage.territory import Team  # noqa: E402

DEMO = ROOT / "content" / "territory" / "demo.json"
INDEXES = ["ix_reports_team_open", "ix_reports_near", "ix_reports_escalate",
           "ix_reports_period"]
CATEGORIES = ["lighting", "roads", "rubbish", "greenery", "water", "noise", "parking", "other"]


async def populate(sessions, n: int, now: datetime) -> None:
    rnd = random.Random(42)
    async with sessions() as s, s.begin():
        await s.execute(insert(Resident), [{"display_name": f"r{i}"} for i in range(2000)])
        resident_ids = list((await s.scalars(select(Resident.id))).all())
        teams = list((await s.scalars(select(Team))).all())
    joint = {t.zone_id: t.id for t in teams if not t.categories}
    crew = next(t.id for t in teams if t.categories)
    zones = list(joint)
    rows = []
    for i in range(n):
        created = now - timedelta(minutes=rnd.uniform(0, 365 * 24 * 60))
        zone = rnd.choice(zones)
        category = rnd.choice(CATEGORIES)
        team = crew if category in ("lighting", "roads") else joint[zone]
        r = rnd.random()
        age_days = (now - created).days
        status = ("new" if r < 0.03 else "acknowledged" if r < 0.05 else "in_progress"
                  if r < 0.07 else "reopened" if r < 0.08 else "fixed" if r < 0.7 else "closed")
        if age_days > 30 and status in ("new", "acknowledged", "in_progress", "reopened") \
                and rnd.random() < 0.9:
            status = "fixed"  # old reports are mostly done
        acked = created + timedelta(hours=rnd.uniform(0.5, 30)) if status != "new" else None
        fixed = created + timedelta(hours=rnd.uniform(2, 200)) if status == "fixed" else None
        rows.append({
            "reference": f"Z-B-{i:07d}", "reporter_id": rnd.choice(resident_ids),
            "category": category, "description": "bench",
            "latitude": 30.60 + rnd.random() * 0.04, "longitude": 104.03 + rnd.random() * 0.03,
            "exact_point": True, "zone_id": zone, "team_id": team, "status": status,
            "urgent": False, "created_at": created,
            "ack_due_at": created + timedelta(days=1), "fix_due_at": created + timedelta(days=8),
            "acknowledged_at": acked, "fixed_at": fixed,
            "closed_at": created + timedelta(days=2) if status == "closed" else None,
            "reopen_count": 1 if rnd.random() < 0.05 else 0,
            "rating": rnd.randint(1, 5) if status == "fixed" and rnd.random() < 0.4 else None,
            "version": 0,
        })
    for start in range(0, n, 5000):
        async with sessions() as s, s.begin():
            await s.execute(insert(rep.Report), rows[start:start + 5000])
    return crew


async def timed(fn, repeat: int) -> float:
    await fn()  # warm
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


async def measure(sessions, now, team_id) -> dict[str, float]:
    async def queue():
        async with sessions() as s:
            rows, total = await rep.queue(s, now, team_ids={team_id})
            assert rows and total

    async def stats():
        async with sessions() as s:
            table = await report_stats.compute(s, now - timedelta(days=30), now)
            assert table.total.received

    async def nearby():
        async with sessions() as s:
            await rep.open_nearby(s, "rubbish", 30.62, 104.045, 250)

    async def escalate_scan():  # the select of rep.claim_overdue, without claiming
        late = or_(rep.Report.fix_due_at < now, and_(rep.Report.acknowledged_at.is_(None),
                                                     rep.Report.ack_due_at < now))
        async with sessions() as s:
            await s.execute(select(rep.Report.id).where(
                rep.Report.status.in_([x.value for x in rep.OPEN]),
                rep.Report.escalated_at.is_(None), late)
                .order_by(rep.Report.fix_due_at).limit(100))

    return {"queue": await timed(queue, 20), "stats (30 days)": await timed(stats, 5),
            "nearby": await timed(nearby, 20), "overdue scan": await timed(escalate_scan, 20)}


async def analyze(engine) -> None:
    """Fresh statistics; on PostgreSQL also the visibility map that index-only scans need
    (what autovacuum does for a live database)."""
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE reports"))
    else:
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE"))


async def run(url: str, n: int) -> None:
    await upgrade_async(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    await load_territory_file(sessions, DEMO)
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    team_id = await populate(sessions, n, now)
    print(f"  inserted {n:,} reports in {time.perf_counter() - t0:.1f} s")
    await analyze(engine)
    with_ix = await measure(sessions, now, team_id)
    async with engine.begin() as conn:
        for name in INDEXES:
            await conn.execute(text(f"DROP INDEX {name}"))
    await analyze(engine)
    without = await measure(sessions, now, team_id)
    for key in with_ix:
        print(f"  {key:16s} {with_ix[key]:8.2f} ms with indexes, {without[key]:8.2f} ms without"
              f"  (x{without[key] / with_ix[key]:.1f})")
    await engine.dispose()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reports", type=int, default=100_000)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"SQLite, {args.reports:,} reports")
        await run(f"sqlite+aiosqlite:///{tmp}/bench.sqlite3", args.reports)
    try:
        import asyncpg

        admin = await asyncpg.connect(args.pg)
    except Exception as exc:
        print(f"PostgreSQL not reachable ({exc}); skipped")
        return
    name = f"bench_reports_{int(time.time())}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        print(f"PostgreSQL, {args.reports:,} reports")
        base = args.pg.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        await run(f"{base}/{name}", args.reports)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
