"""GET requests.json of the Open311 API over many reports, filtered by date and status.

Run by hand from the repository root::

    .venv/bin/python bench/open311.py [--reports N] [--requests K] [--pg DSN] [--sqlite]

Builds a fresh PostgreSQL database by the migrations (and SQLite with --sqlite), loads the
demo territory, bulk-inserts N reports spread over a year (bench/reports_queue_stats.py's
mix: about 8 % open, the rest fixed or closed) with their status events (the note of each fix
or close), starts the bot's web application on a loopback port and times K GETs, one after
another from the same process, of the queries a back-office system would make: the last 90
days' open requests, the last 90 days' closed ones, and 30 days of closed ones 1,000 a page.
Prints p50 / p99 per query, the answer's size and the requests it held.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from sqlalchemy import insert, select, text  # noqa: E402

from bench.reports_queue_stats import populate  # noqa: E402
from bot.app import build_app  # noqa: E402
from bot.config import BotSettings, DatabaseSettings, Open311Settings, Settings  # noqa: E402
from bot.messaging.memory import MemoryAdapter  # noqa: E402
from storage import reports as rep  # noqa: E402
from storage.migrate import upgrade_async  # noqa: E402

DEMO = ROOT / "content" / "territory" / "demo.json"


async def add_events(sessions, now: datetime) -> int:
    """Each report's filing, and for a fixed or closed one the change with its note."""
    async with sessions() as s:
        rows = (await s.execute(select(rep.Report.id, rep.Report.created_at, rep.Report.status,
                                       rep.Report.fixed_at, rep.Report.closed_at))).all()
    events = []
    for report_id, created, status, fixed, closed in rows:
        events.append({"report_id": report_id, "kind": "status", "to_status": "new",
                       "at": created, "detail": {}})
        if status in ("fixed", "closed"):
            events.append({"report_id": report_id, "kind": "status", "from_status": "new",
                           "to_status": status, "note": "bench note", "detail": {},
                           "at": fixed or closed or created + timedelta(days=1)})
    for start in range(0, len(events), 10_000):
        async with sessions() as s, s.begin():
            await s.execute(insert(rep.ReportEvent), events[start:start + 10_000])
    return len(events)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def run(url: str, n: int, k: int, tmp: Path) -> None:
    await upgrade_async(url)
    adapter = MemoryAdapter()
    settings = Settings(database=DatabaseSettings(DATABASE_URL=url),
                        bot=BotSettings(media_dir=tmp / "media", web_url="http://127.0.0.1",
                                        web_host="127.0.0.1", web_port=0),
                        # One caller asking again and again: no rate limit here.
                        open311=Open311Settings(rate_per_minute=1e9, burst=1_000_000))
    app = await build_app(settings, {adapter.platform: adapter}, migrate=False, territory=DEMO)
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    await populate(app.sessions, n, now)
    events = await add_events(app.sessions, now)
    print(f"  inserted {n:,} reports and {events:,} events in {time.perf_counter() - t0:.1f} s")
    if app.engine.dialect.name == "postgresql":
        async with app.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE reports"))
            await conn.execute(text("VACUUM ANALYZE report_events"))
    else:
        async with app.engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
    await app.start(deliver=False, schedule=False)
    base = f"http://127.0.0.1:{app.web.port}/open311/v2/requests.json"
    day = timedelta(days=1)
    queries = {
        "90 days, open": {"start_date": (now - 90 * day).isoformat(),
                          "end_date": now.isoformat(), "status": "open"},
        "90 days, closed": {"start_date": (now - 90 * day).isoformat(),
                            "end_date": now.isoformat(), "status": "closed"},
        "30 days, closed, 1000 a page": {"start_date": (now - 30 * day).isoformat(),
                                         "end_date": now.isoformat(), "status": "closed",
                                         "page_size": "1000"},
    }
    try:
        async with aiohttp.ClientSession() as http:
            for name, params in queries.items():
                times, size, count = [], 0, 0
                for i in range(k + 5):
                    t1 = time.perf_counter()
                    async with http.get(base, params=params) as resp:
                        body = await resp.read()
                        assert resp.status == 200, body[:200]
                    if i >= 5:  # five to warm up
                        times.append((time.perf_counter() - t1) * 1000)
                    size = len(body)
                    count = body.count(b'"service_request_id"')
                print(f"  {name:30s} p50 {statistics.median(times):7.1f} ms  "
                      f"p99 {percentile(times, 99):7.1f} ms  ({count} requests, "
                      f"{size / 1024:.0f} KiB)")
    finally:
        await app.stop()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reports", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--sqlite", action="store_true", help="SQLite too")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.sqlite:
            print(f"SQLite, {args.reports:,} reports")
            await run(f"sqlite+aiosqlite:///{tmp}/bench.sqlite3", args.reports, args.requests,
                      Path(tmp))
        import asyncpg

        admin = await asyncpg.connect(args.pg)
        name = f"bench_open311_{int(time.time())}"
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            print(f"PostgreSQL, {args.reports:,} reports")
            pg = args.pg.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
            await run(f"{pg}/{name}", args.reports, args.requests, Path(tmp))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
