"""A broadcast to 10,000 and 100,000 residents against the fake Bot API, at 30/s and 1,000/s.

Run by hand from the repository root::

    .venv/bin/python bench/broadcast.py [--sizes 10000 100000] [--rates 30 1000]
        [--window 60] [--db sqlite|postgresql] [--faults [--fault-size 3000]]

Each (audience size, rate) runs in its own subprocess, so its peak memory is its own:
  1. residents and identities are bulk-inserted (not timed);
  2. fan-out: a whole-sub-district notice is walked into the outbox by the real job
     (`handlers.notice_jobs.fan_out`), timed, with tracemalloc's peak for that phase;
  3. sending: the real Deliverer drains through the real TelegramAdapter into FakeTelegram with
     its global limit at the given rate, for `--window` seconds or until everything is sent.
     Achieved rate = sent / elapsed; 429s are counted by the fake; the bot process's CPU time
     over the same span, as a share of one core (near 100 %: the CPU, not the budget, limits); a broadcast that does not
     finish inside the window is extrapolated (audience / achieved rate) and marked so.
The fake Bot API runs in a process of its own (Telegram is elsewhere too); peak RSS
(ru_maxrss) is the bot's process only.

`--faults` runs the failure case instead (bench/broadcast_faults.py): the bot as its own
process (`python -m bot run`) against a fake enforcing 30/s and 1/s per chat, 5 % of sends
answered 429 retry_after=3 and 1 % of residents blocked (403); a notice to `--fault-size`
residents, SIGKILL at 40 %, restart. Then an onboarding burst: 80 residents sending /start at
once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, select  # noqa: E402

from bot.app import build_app  # noqa: E402
from bot.config import BotSettings, DatabaseSettings, Settings  # noqa: E402
from bot.messaging.telegram import TelegramAdapter  # noqa: E402
from bot.messaging.telegram_settings import TelegramSettings  # noqa: E402
from handlers.notice_jobs import fan_out  # noqa: E402
from storage import notices, outbox  # noqa: E402
from storage.people import Identity, Resident  # noqa: E402
from storage.territory import Building  # noqa: E402
from tests.fakes.telegram_server import FakeTelegram  # noqa: E402

DEMO = ROOT / "content" / "territory" / "demo.json"
BASE_USER = 1_000_000
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


async def _database(kind: str, tmp: str) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp}/bench.sqlite3", None
    import asyncpg

    name = f"bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(PG_ADMIN)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", name


async def _drop(name: str | None) -> None:
    if name is None:
        return
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


async def _populate(sessions, size: int) -> None:
    async with sessions() as s:
        buildings = (await s.execute(select(Building.id, Building.estate_id))).all()
    chunk = 5000
    for start in range(0, size, chunk):
        n = min(chunk, size - start)
        async with sessions() as s, s.begin():
            ids = (await s.scalars(insert(Resident).returning(Resident.id), [
                dict(display_name=f"r{start + i}", language="zh-Hans" if i % 3 else "en",
                     estate_id=buildings[(start + i) % len(buildings)][1],
                     building_id=buildings[(start + i) % len(buildings)][0], unit="101",
                     verified=True) for i in range(n)])).all()
            await s.execute(insert(Identity), [
                dict(platform="telegram", platform_user_id=str(BASE_USER + start + i),
                     chat_id=str(BASE_USER + start + i), resident_id=rid)
                for i, rid in enumerate(ids)])


async def populated_notice(sessions, size: int, dedupe_key: str):
    """`size` residents and a whole-sub-district notice waiting to be fanned out to them."""
    await _populate(sessions, size)
    async with sessions() as s, s.begin():
        return await notices.system_notice(
            s, category="event", estate_ids=None, dedupe_key=dedupe_key,
            texts={"zh-Hans": "社区通知：本周六上午九点大扫除。", "en": "Clean-up: Sat 9am."})


class _FakeProcess:
    """FakeTelegram in its own process, as the real Bot API is on another machine: the bot's
    process is measured alone (its CPU and memory), not the fake's."""

    def __init__(self, proc, base_url: str, token: str) -> None:
        self.proc, self.base_url, self.token = proc, base_url, token

    @classmethod
    async def start(cls, rate: float, faults: dict | None = None) -> _FakeProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--fake", str(rate), "--fake-faults",
            json.dumps(faults or {}), cwd=ROOT,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        hello = json.loads(await proc.stdout.readline())
        return cls(proc, hello["base_url"], hello["token"])

    async def stats(self) -> dict:
        self.proc.stdin.write(b"stats\n")
        await self.proc.stdin.drain()
        return json.loads(await self.proc.stdout.readline())

    async def stop(self) -> None:
        self.proc.stdin.close()
        await self.proc.wait()


async def serve_fake(rate: float, faults: dict | None = None) -> None:
    faults = faults or {}
    fake = FakeTelegram(global_rate=rate, per_chat_rate=faults.get("per_chat"),
                        record_sent=False)
    await fake.start()
    fake.blocked.update(faults.get("blocked", []))
    if faults.get("flood_share"):
        fake.flood_share(faults["flood_share"], faults.get("retry_after", 3))
    print(json.dumps({"base_url": fake.base_url, "token": fake.token}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"stats":
            stamps = [t for t, _ in fake.accepted_at]
            print(json.dumps({
                "sent": fake.sent_count, "http_429": fake.rate_limited_count,
                "limit_refusals": fake.limit_refusals, "busiest_second": fake.busiest_second(),
                "doubles": sum(n - 1 for n in fake.sent_count_by_chat.values() if n > 1),
                "chats": len(fake.sent_count_by_chat),
                "first": stamps[0] if stamps else None, "last": stamps[-1] if stamps else None,
                "refusals": [[t, kind] for t, _, kind in fake.refusal_log],
                "now": time.monotonic()}), flush=True)
    await fake.stop()



async def one(size: int, rate: float, window: float, db: str) -> dict:
    logging.basicConfig(level=logging.WARNING)
    tmp = tempfile.mkdtemp(prefix="bench-broadcast-")
    url, dbname = await _database(db, tmp)
    fake = await _FakeProcess.start(rate)
    adapter = TelegramAdapter(fake.token, api_base=fake.base_url, per_second=rate,
                              paid_broadcast=rate > 30)
    settings = Settings(database=DatabaseSettings(DATABASE_URL=url),
                        telegram=TelegramSettings(paid_broadcasts=rate > 30),
                        bot=BotSettings(media_dir=Path(tmp) / "media"))
    app = await build_app(settings, {"telegram": adapter}, territory=DEMO)
    try:
        notice = await populated_notice(app.sessions, size, "bench")
        tracemalloc.start()
        t0 = time.perf_counter()
        queued = await fan_out(app.sessions, app.services, None)
        fanout_s = time.perf_counter() - t0
        _, fanout_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

        app.deliverer.start()
        t0, cpu0 = time.perf_counter(), time.process_time()
        sent = 0
        while time.perf_counter() - t0 < window:
            await asyncio.sleep(0.2)
            # What the Bot API accepted (the outbox learns it at the end of each round).
            sent = (await fake.stats())["sent"]
            if sent >= size:
                break
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        await app.deliverer.stop()
        async with app.sessions() as s:
            recorded = (await outbox.figures(s, notices.group_of(notice.id)))["sent"]
        achieved = sent / elapsed if elapsed else 0.0
        return dict(
            size=size, rate=rate, db=db, queued=queued, fanout_s=round(fanout_s, 2),
            fanout_per_s=round(queued / fanout_s) if fanout_s else None,
            fanout_peak_mib=round(fanout_peak / 2**20, 2),
            sent=sent, recorded=recorded, elapsed_s=round(elapsed, 1), achieved_per_s=round(achieved, 1),
            share_of_limit=round(achieved / rate, 3), http_429=(await fake.stats())["http_429"],
            finished=sent >= size,
            # The bot's process (the fake has its own): 1.0 is one core busy all the time.
            cpu_share=round(cpu / elapsed, 2) if elapsed else None,
            total_s=round(elapsed, 1) if sent >= size else round(size / achieved, 1)
            if achieved else None,
            peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        )
    finally:
        await app.stop()
        await adapter.bot.session.close()
        await fake.stop()
        await _drop(dbname)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--rates", type=float, nargs="+", default=[30.0, 1000.0])
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--one", nargs=2, type=float, help=argparse.SUPPRESS)
    parser.add_argument("--fake", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--fake-faults", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--faults", action="store_true",
                        help="the failure case: 429s, 403s, SIGKILL, onboarding burst")
    parser.add_argument("--fault-size", type=int, default=3000)
    args = parser.parse_args()
    if args.fake:
        asyncio.run(serve_fake(args.fake, json.loads(args.fake_faults)))
        return
    if args.faults:
        from bench.broadcast_faults import run_faults

        asyncio.run(run_faults(args.fault_size, args.db))
        return
    if args.one:
        result = asyncio.run(one(int(args.one[0]), args.one[1], args.window, args.db))
        print(json.dumps(result))
        return
    rows = []
    for size in args.sizes:
        for rate in args.rates:
            out = subprocess.run(
                [sys.executable, __file__, "--one", str(size), str(rate), "--window",
                 str(args.window), "--db", args.db],
                capture_output=True, text=True, cwd=ROOT, env=os.environ, check=False)
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(_line(row), flush=True)


def _line(r: dict) -> str:
    total = f"{r['total_s']:.0f}s" + ("" if r["finished"] else " (extrapolated)")
    return (f"{r['db']:<10} {r['size']:>7} residents @ {r['rate']:>6.0f}/s: "
            f"fan-out {r['queued']} in {r['fanout_s']}s ({r['fanout_per_s']}/s, "
            f"peak {r['fanout_peak_mib']} MiB traced) | sent {r['sent']} in {r['elapsed_s']}s "
            f"= {r['achieved_per_s']}/s, {r['share_of_limit']:.0%} of limit, "
            f"{r['http_429']} x 429, {r['recorded']} recorded sent, bot CPU {r['cpu_share']:.0%} of a core "
            f"| whole broadcast {total} | peak RSS {r['peak_rss_mib']} MiB")


if __name__ == "__main__":
    main()
