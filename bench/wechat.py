"""WeChat: callback answer time under concurrent callbacks, and a broadcast against the fake.

Run by hand from the repository root::

    .venv/bin/python bench/wechat.py [--callbacks 200] [--size 10000] [--rate 200]
        [--out-of-window 0.01] [--db sqlite|postgresql]

1. Callbacks: `--callbacks` followers follow the account at once: signed subscribe events
   posted concurrently to the real adapter, each on its own connection, from a process of its
   own (as WeChat's servers are elsewhere). Figures: the time until each POST was answered
   (p50 / p99 / max; WeChat retries after 5 s), beside the same burst against an adapter whose
   handler does nothing (what 200 connections cost on this machine), and the time until every
   greeting had reached the fake API.
2. Broadcast: `--size` residents with WeChat identities, a whole-sub-district notice fanned out
   by the real job and sent by the real Deliverer through the real adapter to the fake, which
   answers -1 ("system busy") above `--rate` calls a second, the same figure as the adapter's
   budget (WECHAT_PER_SECOND). A share of them (`--out-of-window`) has been silent for more
   than 48 hours: their customer-service message is refused with 45015 and goes as a template
   message. Figures: achieved rate against the budget, -1 answers, and per resident the
   messages that arrived (0 lost, 0 doubled expected).

The fake API runs in the bot's process (and shares its two cores with it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402

from bench.broadcast import _database, _drop  # noqa: E402
from bot.app import build_app  # noqa: E402
from bot.config import BotSettings, DatabaseSettings, Settings  # noqa: E402
from bot.messaging.wechat import WeChatAdapter  # noqa: E402
from handlers.notice_jobs import fan_out  # noqa: E402
from storage import notices, outbox  # noqa: E402
from storage.people import Identity, Resident  # noqa: E402
from storage.territory import Building  # noqa: E402
from tests.fakes.wechat_server import TEMPLATE_IDS, FakeWeChat  # noqa: E402

DEMO = ROOT / "content" / "territory" / "demo.json"
def _openid(n: int) -> str:
    return f"oBench{n:022d}"


async def _app(db: str, fake: FakeWeChat, rate: float):
    tmp = tempfile.mkdtemp(prefix="bench-wechat-")
    url, dbname = await _database(db, tmp)
    adapter = WeChatAdapter(fake.app_id, fake.app_secret, fake.token, api_base=fake.base_url,
                            host="127.0.0.1", port=0, templates=TEMPLATE_IDS,
                            per_second=rate, per_chat_per_second=2.0)
    settings = Settings(database=DatabaseSettings(DATABASE_URL=url),
                        bot=BotSettings(media_dir=Path(tmp) / "media", flood_burst=10_000))
    app = await build_app(settings, {"wechat": adapter}, territory=DEMO)
    return app, adapter, dbname


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def post_burst(url: str, n: int) -> None:
    """In a process of its own, as WeChat's servers are: `n` signed subscribe events posted at
    once, each on its own connection; prints the answer times (seconds) as JSON."""
    import json

    poster = FakeWeChat()
    times: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        async def one(i: int) -> None:
            xml, _ = poster._xml(_openid(i), "event", {"Event": "subscribe", "EventKey": ""})
            query, body = poster.envelope(xml, openid=_openid(i))
            began = time.perf_counter()
            async with http.post(url, params=query, data=body.encode()) as resp:
                assert resp.status == 200 and await resp.text() == "success"
            times.append(time.perf_counter() - began)

        await asyncio.gather(*(one(i) for i in range(n)))
    print(json.dumps(times))


async def _burst(url: str, n: int) -> list[float]:
    import json

    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--post-burst", url, "--callbacks", str(n),
        stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return json.loads(out)


async def baseline(n: int) -> list[float]:
    """The same burst against the adapter with a handler that does nothing: what the
    connections and the HTTP alone cost on this machine."""
    fake = FakeWeChat()
    await fake.start()
    adapter = WeChatAdapter(fake.app_id, fake.app_secret, fake.token, api_base=fake.base_url,
                            host="127.0.0.1", port=0)

    async def nothing(inbound) -> None:
        return None

    await adapter.start(nothing)
    try:
        return await _burst(f"http://127.0.0.1:{adapter.bound_port}/wechat", n)
    finally:
        await adapter.stop()
        await fake.stop()


async def callbacks(n: int, db: str, rate: float) -> dict:
    base = await baseline(n)
    fake = FakeWeChat(rate=None)
    await fake.start()
    app, adapter, dbname = await _app(db, fake, rate)
    try:
        await app.start(schedule=False)
        users = [_openid(i) for i in range(n)]
        for u in users:
            fake.follower(u)  # in the window: they follow now
        url = f"http://127.0.0.1:{adapter.bound_port}/wechat"
        t0 = time.perf_counter()
        times = await _burst(url, n)
        for u in users:
            await fake.wait_for_text(u, "请选择语言", timeout=300)
        done = time.perf_counter() - t0
        return dict(callbacks=n, db=db, p50_ms=round(statistics.median(times) * 1000, 1),
                    p99_ms=round(_pct(times, 0.99) * 1000, 1),
                    max_ms=round(max(times) * 1000, 1),
                    no_handler_p50_ms=round(statistics.median(base) * 1000, 1),
                    no_handler_p99_ms=round(_pct(base, 0.99) * 1000, 1),
                    all_greeted_s=round(done, 2), handled=adapter.handled)
    finally:
        await app.stop()
        await fake.stop()
        await _drop(dbname)


async def _populate(sessions, size: int) -> None:
    async with sessions() as s:
        buildings = (await s.execute(select(Building.id, Building.estate_id))).all()
    for start in range(0, size, 5000):
        n = min(5000, size - start)
        async with sessions() as s, s.begin():
            ids = (await s.scalars(insert(Resident).returning(Resident.id), [
                dict(display_name=f"r{start + i}", language="zh-Hans",
                     estate_id=buildings[(start + i) % len(buildings)][1],
                     building_id=buildings[(start + i) % len(buildings)][0], unit="101",
                     verified=True) for i in range(n)])).all()
            await s.execute(insert(Identity), [
                dict(platform="wechat", platform_user_id=_openid(start + i),
                     chat_id=_openid(start + i), resident_id=rid)
                for i, rid in enumerate(ids)])


async def broadcast(size: int, rate: float, out_of_window: float, db: str,
                    window: float) -> dict:
    fake = FakeWeChat(rate=rate)
    await fake.start()
    app, adapter, dbname = await _app(db, fake, rate)
    try:
        await _populate(app.sessions, size)
        stale = set(range(0, size, max(1, round(1 / out_of_window)))) if out_of_window else set()
        for i in range(size):
            fake.follower(_openid(i))
            if i in stale:
                fake.out_of_window(_openid(i))
        async with app.sessions() as s, s.begin():
            notice = await notices.system_notice(
                s, category="event", estate_ids=None, dedupe_key="bench",
                texts={"zh-Hans": "社区通知：本周六上午九点大扫除。"})
        t0 = time.perf_counter()
        queued = await fan_out(app.sessions, app.services, None)
        fanout_s = time.perf_counter() - t0
        await app.start(schedule=False)
        t0 = time.perf_counter()
        with contextlib.suppress(AssertionError):  # not all within the window: figures say so
            await fake.wait_for(lambda e: True, since=size - 1, timeout=window)  # the size-th
        elapsed = time.perf_counter() - t0
        await asyncio.sleep(2.0)  # anything doubled would arrive now
        per_user = Counter(e["touser"] for e in fake.sent)
        kinds = Counter(e["kind"] for e in fake.sent)
        async with app.sessions() as s:
            figures = await outbox.figures(s, notices.group_of(notice.id))
        span = (max(e["at"] for e in fake.sent) - min(e["at"] for e in fake.sent)
                if fake.sent else 0.0)
        return dict(
            size=size, db=db, budget_per_s=rate, queued=queued,
            fanout_s=round(fanout_s, 2), elapsed_s=round(elapsed, 1),
            achieved_per_s=round(len(fake.sent) / span, 1) if span else None,
            api_calls=fake.calls, busiest_second_calls=fake.busiest_second(),
            system_busy=sum(1 for c, _ in fake.refused if c == -1),
            out_of_window_45015=sum(1 for c, _ in fake.refused if c == 45015),
            by_customer_service=kinds["custom"], by_template=kinds["template"],
            lost=sum(1 for i in range(size) if per_user[_openid(i)] == 0),
            doubled=sum(1 for n in per_user.values() if n > 1),
            outbox_sent=figures["sent"], outbox_failed=figures["failed"],
            tokens_fetched=fake.tokens_issued,
        )
    finally:
        await app.stop()
        await fake.stop()
        await _drop(dbname)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--callbacks", type=int, default=200)
    p.add_argument("--size", type=int, default=10_000)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--out-of-window", type=float, default=0.01)
    p.add_argument("--window", type=float, default=600.0)
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--only", choices=["callbacks", "broadcast"])
    p.add_argument("--post-burst", metavar="URL", help=argparse.SUPPRESS)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.post_burst:
        asyncio.run(post_burst(args.post_burst, args.callbacks))
        return
    if args.only != "broadcast":
        print(asyncio.run(callbacks(args.callbacks, args.db, args.rate)))
    if args.only != "callbacks":
        print(asyncio.run(broadcast(args.size, args.rate, args.out_of_window, args.db,
                                    args.window)))


if __name__ == "__main__":
    main()
