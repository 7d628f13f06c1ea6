"""The failure case of bench/broadcast.py (run it as `bench/broadcast.py --faults`).

1. A notice to SIZE residents, the bot as its own process (`python -m bot run`) against a fake
   Bot API (its own process) enforcing 30/s and 1/s per chat, answering 5 % of sends with 429
   retry_after=3 and 403 for 1 % of residents. SIGKILL at 40 %, restart, until every reachable
   resident has it. Prints the rate under 429s (before the kill), the doubles after the kill
   against the deliverer's documented bound, the fake's refusals for its own limits and its
   busiest second.
2. An onboarding burst: 80 residents send /start and /help at once to the bot (in-process,
   fake enforcing 30/s and 1/s per chat). Prints the 429s the replies met and the number of
   chats whose replies arrived in another order than a lone resident's.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench.broadcast import (
    BASE_USER,
    DEMO,
    ROOT,
    _database,
    _drop,
    _FakeProcess,
    populated_notice,
)
from bot.app import build_app
from bot.config import BotSettings, DatabaseSettings, Settings
from bot.delivery import RateBudget
from bot.messaging.telegram import TelegramAdapter
from storage import notices, outbox
from tests.fakes.telegram_server import FakeTelegram

RATE = 30.0


def _settings(url: str, tmp: str) -> Settings:
    return Settings(database=DatabaseSettings(DATABASE_URL=url),
                    bot=BotSettings(media_dir=Path(tmp) / "media", flood_burst=10_000))


async def _bot(fake: _FakeProcess, url: str, tmp: str, n: int):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TELEGRAM_", "BOT_", "DATABASE_", "WEATHER_", "CAP_"))}
    env.update(TELEGRAM_BOT_TOKEN=fake.token, TELEGRAM_API_BASE=fake.base_url,
               TELEGRAM_POLLING_TIMEOUT="1", DATABASE_URL=url,
               BOT_MEDIA_DIR=str(Path(tmp) / "media"))
    log = (Path(tmp) / f"bot{n}.log").open("wb")  # the child keeps it
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=log, stderr=log)


async def kill_case(size: int, db: str) -> None:
    tmp = tempfile.mkdtemp(prefix="bench-faults-")
    url, dbname = await _database(db, tmp)
    blocked = [BASE_USER + i for i in range(0, size, 100)]
    fake = await _FakeProcess.start(RATE, {"per_chat": 1, "flood_share": 0.05,
                                           "retry_after": 3, "blocked": blocked})
    app = await build_app(_settings(url, tmp), {}, territory=DEMO)
    procs = []
    try:
        notice = await populated_notice(app.sessions, size, "bench-faults")
        procs.append(await _bot(fake, url, tmp, 1))
        while True:
            stats = await fake.stats()
            if stats["sent"] >= 0.4 * size:
                break
            await asyncio.sleep(0.2)
        procs[0].send_signal(signal.SIGKILL)
        await procs[0].wait()
        before = stats
        rate = (before["sent"] - 1) / (before["last"] - before["first"])
        restarted = (await fake.stats())["now"]
        procs.append(await _bot(fake, url, tmp, 2))
        reachable = size - len(blocked)
        t0 = time.monotonic()
        while True:
            async with app.sessions() as s:
                f = await outbox.figures(s, notices.group_of(notice.id))
            if f["sent"] + f["unreachable"] >= size or time.monotonic() - t0 > 4 * size / RATE:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(2.0)
        after = await fake.stats()
        bound = 2 * RateBudget(RATE, 1).max_inflight
        print(f"fault case, {db}, {size} residents @ 30/s, 1/s a chat, 5% 429 retry_after=3, "
              f"{len(blocked)} blocked, SIGKILL at {before['sent']}:")
        print(f"  rate with 429s (before the kill)   : {rate:.1f}/s = {rate / RATE:.2f} of 30/s")
        print(f"  reached / reachable                : {after['chats']} / {reachable}; "
              f"recorded sent {f['sent']}, unreachable {f['unreachable']}")
        print(f"  doubled deliveries after SIGKILL   : {after['doubles']} "
              f"(documented bound {bound})")
        print(f"  429s from the fake's own limits    : {after['limit_refusals']} "
              f"(of {after['http_429']} 429s in all; {before['limit_refusals']} before the "
              f"kill, the rest after the restart)")
        late = [f"{kind} +{t - restarted:.1f}s" for t, kind in after["refusals"]
                if t >= restarted]
        if late:
            print(f"    after the restart (kind, seconds after it): {', '.join(late)}")
        print(f"  busiest second at the fake         : {after['busiest_second']} sends")
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await proc.wait()
        await app.stop()
        await fake.stop()
        await _drop(dbname)


async def onboarding_burst(users: int = 80) -> None:
    fake = FakeTelegram(global_rate=RATE, per_chat_rate=1)
    await fake.start()
    with tempfile.TemporaryDirectory() as tmp:
        adapter = TelegramAdapter(fake.token, api_base=fake.base_url, polling_timeout=1)
        app = await build_app(_settings(f"sqlite+aiosqlite:///{tmp}/bot.sqlite3", tmp),
                              {"telegram": adapter}, territory=DEMO)
        await app.start()
        try:
            ref = BASE_USER - 1
            for text in ("/start", "/help"):
                fake.push_message(ref, text, language_code="zh-hans")
            await _settle(fake)
            expected = [e["text"] for e in fake.messages_to(ref)]
            refused, sends = fake.limit_refusals, fake.sent_count
            chats = [BASE_USER + i for i in range(users)]
            for uid in chats:
                for text in ("/start", "/help"):
                    fake.push_message(uid, text, language_code="zh-hans")
            await _settle(fake, quiet=3.0)
            disorder = sum(1 for uid in chats
                           if [e["text"] for e in fake.messages_to(uid)] != expected)
            print(f"onboarding burst, {users} residents send /start and /help at once "
                  f"(30/s, 1/s a chat):")
            print(f"  sends {fake.sent_count - sends}; 429s caused by the replies: "
                  f"{fake.limit_refusals - refused}; chats with replies out of order or "
                  f"missing: {disorder}")
        finally:
            await app.stop()
            await fake.stop()


async def _settle(fake: FakeTelegram, quiet: float = 2.0) -> None:
    last = -1
    while fake.sent_count != last:
        last = fake.sent_count
        await asyncio.sleep(quiet)


async def run_faults(size: int, db: str) -> None:
    await kill_case(size, db)
    await onboarding_burst()
