"""The staff dashboard's report queue over 100,000 reports on PostgreSQL: server time per page.

Run by hand from the repository root::

    .venv/bin/python bench/dashboard.py [--reports 100000] [--requests 200] [--pg DSN]

Builds a fresh PostgreSQL database by the migrations, loads the demo territory, bulk-inserts
the reports as bench/reports_queue_stats.py does (a year of them, about 8 % still open, spread
over the demo's zones and teams), then serves the app's web application on loopback and asks
for queue pages as a signed-in admin (every report) and as a zone team's member: the default
queue (open, overdue first), filtered by zone and category, every status, and a deep page.
For each, the server's own time (the Server-Timing header the dashboard sets: the guard's
session check, the queries and the template) p50 / p99 over `--requests` pages, and the
client's round trip on loopback beside it. Then the first contentful paint of the admin's
queue page in Debian's Chromium (/usr/bin/chromium, headless; `--fcp N` loads, 0 for none).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
from sqlalchemy import text  # noqa: E402

from bench.reports_queue_stats import populate  # noqa: E402
from bot.app import build_app  # noqa: E402
from bot.config import BotSettings, DatabaseSettings, Settings  # noqa: E402
from bot.messaging.memory import MemoryAdapter  # noqa: E402
from storage import dashboard as dash  # noqa: E402
from storage import roles_service  # noqa: E402
from storage.people import roles_of  # noqa: E402
from storage.territory import Team  # noqa: E402

DEMO = ROOT / "content" / "territory" / "demo.json"
TIMING = re.compile(r"app;dur=([\d.]+)")
FCP_JS = ("() => new Promise(done => new PerformanceObserver(list => {"
          " const e = list.getEntriesByName('first-contentful-paint')[0];"
          " if (e) done(e.startTime); }).observe({type: 'paint', buffered: true}))")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def signed_in(app, who: str, role: str, scope: str | None) -> str:
    """A session cookie for a person holding a role (as the sign-in link would make)."""
    async with app.sessions() as s, s.begin():
        await roles_service.change_role(s, who, role, scope, actor_id=None, grant=True,
                                        create_missing=True)
        person = await roles_service.find_resident(s, who, create=False)
        return await dash.create_session(s, person.id, await roles_of(s, person.id),
                                         datetime.now(UTC), timedelta(hours=8), language="en")


async def first_paints(base: str, cookie: str, runs: int) -> list[float]:
    """First contentful paint of /dashboard/reports in Debian's Chromium, headless."""
    from playwright.async_api import async_playwright

    paints = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium",
                                           args=["--no-sandbox", "--disable-gpu"])
        try:
            for _ in range(runs):
                context = await browser.new_context()
                await context.add_cookies([{"name": "dashboard_session", "value": cookie,
                                            "url": base + "/dashboard/"}])
                page = await context.new_page()
                await page.goto(base + "/dashboard/reports", wait_until="load")
                paints.append(await page.evaluate(FCP_JS))
                await context.close()
        finally:
            await browser.close()
    return paints


async def run(dsn: str, n: int, requests: int, fcp_runs: int) -> None:
    name = f"bench_dash_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = f"postgresql+asyncpg://{dsn.split('://', 1)[1].rsplit('/', 1)[0]}/{name}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-dash-"))
    adapter = MemoryAdapter()
    settings = Settings(database=DatabaseSettings(DATABASE_URL=url),
                        bot=BotSettings(media_dir=tmp / "media", web_url="http://127.0.0.1",
                                        web_host="127.0.0.1", web_port=0))
    app = await build_app(settings, {adapter.platform: adapter}, territory=DEMO)
    try:
        t0 = time.perf_counter()
        team_id = await populate(app.sessions, n, datetime.now(UTC))
        async with app.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE reports"))
        print(f"{n:,} reports inserted in {time.perf_counter() - t0:.0f} s")
        await app.start(deliver=False, schedule=False)
        base = f"http://127.0.0.1:{app.web.port}"
        async with app.sessions() as s:
            team = await s.get(Team, team_id)
        cookies = {"admin": await signed_in(app, "memory:bench-admin", "admin", None),
                   "team": await signed_in(app, "memory:bench-team", "team", team.code)}
        pages = [("admin", "/dashboard/reports"),
                 ("admin", "/dashboard/reports?category=rubbish&zone=1"),
                 ("admin", "/dashboard/reports?status=all"),
                 ("admin", "/dashboard/reports?status=all&page=1000"),
                 ("team", "/dashboard/reports"),
                 ("team", "/dashboard/reports?status=fixed")]
        print(f"queue pages on PostgreSQL, {requests} requests each (ms):")
        print(f"{'viewer':7} {'page':45} {'rows':>8} {'server p50':>10} {'p99':>7} "
              f"{'round trip p50':>15} {'p99':>7}")
        for viewer, path in pages:
            async with aiohttp.ClientSession(cookies={"dashboard_session": cookies[viewer]}) \
                    as http:
                server, trip, total = [], [], "?"
                for i in range(requests + 5):
                    began = time.perf_counter()
                    async with http.get(base + path) as r:
                        body = await r.text()
                        assert r.status == 200, (r.status, body[:300])
                        elapsed = (time.perf_counter() - began) * 1000
                        dur = float(TIMING.search(r.headers["Server-Timing"]).group(1))
                    if i >= 5:  # the first few warm the caches and the pool
                        server.append(dur)
                        trip.append(elapsed)
                found = re.search(r'id="queue-count">([\d,]+)', body)
                total = found.group(1) if found else "?"
            print(f"{viewer:7} {path:45} {total:>8} {statistics.median(server):10.1f} "
                  f"{pct(server, 99):7.1f} {statistics.median(trip):15.1f} "
                  f"{pct(trip, 99):7.1f}")
        if fcp_runs:
            paints = await first_paints(base, cookies["admin"], fcp_runs)
            print(f"first contentful paint of the admin's queue page in Chromium, {fcp_runs} "
                  f"loads (fresh context each): p50 {statistics.median(paints):.0f} ms, "
                  f"max {max(paints):.0f} ms")
    finally:
        await app.stop()
        admin = await asyncpg.connect(dsn)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reports", type=int, default=100_000)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--fcp", type=int, default=10, metavar="N",
                   help="page loads in Chromium for the first contentful paint (0: none)")
    args = p.parse_args()
    asyncio.run(run(args.pg, args.reports, args.requests, args.fcp))


if __name__ == "__main__":
    main()
