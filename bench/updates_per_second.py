"""Updates handled per second through aiogram and the fake Bot API server, and start-up time.

Run by hand from the repository root::

    .venv/bin/python bench/updates_per_second.py [--updates N] [--users U]

(a) the bare aiogram echo bot of bench/echo_bot.py in this process beside the fake, and (a2)
    the same as its own process;
(b) this bot (build_app + TelegramAdapter, SQLite file in a temporary directory, flood guard on,
    updates spread over U distinct users), answering "/help", in this process;
(c) the same bot as its own process, ``python -m bot run``, against the same fake;
then the time from spawning ``python -m bot run`` to its first getUpdates on a fresh database
(migrations and the demo territory load included).

The fake enforces no limit here, so the bot is told the same (TELEGRAM_PER_SECOND and
TELEGRAM_PER_CHAT_PER_SECOND raised): its replies still pass through the outbox, the lane of
their chat and the budget, which then never makes them wait.

Each rate is timed from pushing N text messages until the fake has answered N sendMessage
calls. Both bots are warmed up first (one message per user, not timed), so (b) measures known
residents rather than first contact; (b) and (c) also answer one guide question first, which
waits for the start-up work the bot otherwise does in its first seconds, during the timing
(loading the guides' tokenizer in a worker thread).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.echo_bot import echo_dispatcher  # noqa: E402
from bot.app import build_app  # noqa: E402
from bot.config import BotSettings, DatabaseSettings, Settings  # noqa: E402
from bot.messaging.telegram import TelegramAdapter  # noqa: E402
from tests.fakes.telegram_server import FakeTelegram  # noqa: E402

DEMO = ROOT / "content" / "territory" / "demo.json"
BASE_USER = 10_000
GUIDE_QUESTION = "/guide how do I sort rubbish"  # answered from the guides' index
UNLIMITED = 100_000.0  # the fake enforces no rate here; neither need the bot


PG_ADMIN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.asynccontextmanager
async def _database(kind: str):
    """A temporary directory and a fresh database for one measurement: an SQLite file in it,
    or a throw-away PostgreSQL database beside BENCH_PG_DSN's (dropped afterwards)."""
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "sqlite":
            yield tmp, f"sqlite+aiosqlite:///{tmp}/bot.sqlite3"
        else:
            async with _pg_database() as url:
                yield tmp, url


@contextlib.asynccontextmanager
async def _pg_database():
    import asyncpg

    name = f"bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    host = PG_ADMIN.split("://", 1)[1].rsplit("/", 1)[0]
    try:
        yield f"postgresql+asyncpg://{host}/{name}"
    finally:
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _env(fake: FakeTelegram, tmp: str, url: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TELEGRAM_", "BOT_", "DATABASE_"))}
    env.update(
        TELEGRAM_BOT_TOKEN=fake.token,
        TELEGRAM_API_BASE=fake.base_url,
        TELEGRAM_POLLING_TIMEOUT="1",
        DATABASE_URL=url or f"sqlite+aiosqlite:///{tmp}/bot.sqlite3",
        BOT_MEDIA_DIR=str(Path(tmp) / "media"),
        **extra,
    )
    return env


async def _spawn(env: dict[str, str], log_file):
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", cwd=ROOT, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=log_file)


async def _terminate(proc) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _first_poll(fake: FakeTelegram, proc, name: str) -> None:
    """Until the process spawned asks the fake for updates (or exits, which is an error)."""
    while fake.calls["getUpdates"] == 0:
        if proc.returncode is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        await asyncio.sleep(0.05)


async def _wait_sent(fake: FakeTelegram, target: int, limit: float) -> None:
    deadline = time.perf_counter() + limit
    while fake.calls["sendMessage"] < target:
        if time.perf_counter() > deadline:
            raise TimeoutError(
                f"only {fake.calls['sendMessage']} of {target} sendMessage calls answered "
                f"within {limit:.0f}s"
            )
        await asyncio.sleep(0.005)


async def _settle(fake: FakeTelegram, quiet: float = 0.3) -> int:
    """Wait until no sendMessage arrived for `quiet` seconds; return the count."""
    last = -1
    while fake.calls["sendMessage"] != last:
        last = fake.calls["sendMessage"]
        await asyncio.sleep(quiet)
    return last


async def _drive(fake: FakeTelegram, n: int, users: int, text: str, limit: float,
                 *, first: str | None = None) -> float:
    # Warm-up: one message per user, not timed; then `first`, one message that waits for
    # the bot's own start-up work (the guides' tokenizer, which it loads in a worker thread in
    # its first seconds: jieba's dictionary, most of a second holding the GIL).
    for i in range(users):
        fake.push_message(BASE_USER + i, text, language_code="en")
    await _wait_sent(fake, users, limit)
    if first is not None:
        fake.push_message(BASE_USER, first, language_code="en")
        await _wait_sent(fake, users + 1, limit)
    base = await _settle(fake)
    start = time.perf_counter()
    for k in range(n):
        fake.push_message(BASE_USER + k % users, text, language_code="en")
    await _wait_sent(fake, base + n, limit)
    return n / (time.perf_counter() - start)


async def bench_echo(n: int, users: int, limit: float) -> float:
    fake = FakeTelegram(record_sent=False)
    await fake.start()
    bot = fake.make_bot()
    dp = echo_dispatcher()
    task = asyncio.create_task(dp.start_polling(bot, handle_signals=False,
                                                close_bot_session=False, polling_timeout=1))
    try:
        return await _drive(fake, n, users, "hello", limit)
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(task, 10)
        await bot.session.close()
        await fake.stop()


async def bench_echo_process(n: int, users: int, limit: float) -> float:
    """(a2): the same echo bot as its own process, as (c) runs ours."""
    fake = FakeTelegram(record_sent=False)
    await fake.start()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / "echo_bot.py"), fake.base_url, fake.token, cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        await _first_poll(fake, proc, "echo bot")
        return await _drive(fake, n, users, "hello", limit)
    finally:
        await _terminate(proc)
        await fake.stop()


async def bench_bot(n: int, users: int, limit: float, db: str = "sqlite") -> tuple[float, int]:
    fake = FakeTelegram(record_sent=False)
    await fake.start()
    app = None
    async with _database(db) as (tmp, url):
        # The guard stays on (its cost is measured) but with a burst that fits the run, so
        # no resident is throttled: ceil(N/U) messages each, plus the warm-up one.
        burst = max(BotSettings().flood_burst, math.ceil(n / users) + 2)
        settings = Settings(
            database=DatabaseSettings(DATABASE_URL=url),
            bot=BotSettings(media_dir=Path(tmp) / "media", flood_burst=burst),
        )
        adapter = TelegramAdapter(fake.token, api_base=fake.base_url, polling_timeout=1,
                                  per_second=UNLIMITED, per_chat_per_second=UNLIMITED)
        try:
            app = await build_app(settings, {"telegram": adapter}, territory=DEMO)
            await app.start()
            return await _drive(fake, n, users, "/help", limit, first=GUIDE_QUESTION), burst
        finally:
            if app is not None:
                await app.stop()
            await fake.stop()


async def bench_process(n: int, users: int, limit: float, db: str = "sqlite") -> float:
    """(c): the bot as its own process, started (and warmed up) before the timing."""
    fake = FakeTelegram(record_sent=False)
    await fake.start()
    async with _database(db) as (tmp, url):
        burst = max(BotSettings().flood_burst, math.ceil(n / users) + 2)
        env = _env(fake, tmp, url, TELEGRAM_PER_SECOND=str(UNLIMITED),
                   TELEGRAM_PER_CHAT_PER_SECOND=str(UNLIMITED), BOT_FLOOD_BURST=str(burst))
        with (Path(tmp) / "bot.log").open("wb") as log_file:
            proc = await _spawn(env, log_file)
            try:
                await _first_poll(fake, proc, "bot")
                return await _drive(fake, n, users, "/help", limit, first=GUIDE_QUESTION)
            finally:
                await _terminate(proc)
                await fake.stop()


async def bench_startup(limit: float) -> float:
    fake = FakeTelegram(record_sent=False)
    await fake.start()
    with tempfile.TemporaryDirectory() as tmp:
        env = _env(fake, tmp)
        log_path = Path(tmp) / "bot.log"
        with log_path.open("wb") as log_file:
            start = time.perf_counter()
            proc = await _spawn(env, log_file)
            try:
                while fake.calls["getUpdates"] == 0:
                    if proc.returncode is not None:
                        err = log_path.read_text(errors="replace")[-2000:]
                        raise RuntimeError(f"bot exited with {proc.returncode}:\n{err}")
                    if time.perf_counter() - start > limit:
                        raise TimeoutError("no getUpdates from the bot")
                    await asyncio.sleep(0.01)
                return time.perf_counter() - start
            finally:
                await _terminate(proc)
                await fake.stop()


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--updates", type=int, default=2000, help="text messages per bot")
    p.add_argument("--users", type=int, default=200, help="distinct senders")
    p.add_argument("--rounds", type=int, default=5,
                   help="rounds of (a), (b), (a2), (c); this machine's speed drifts by a third "
                        "from minute to minute, so the ratios are medians of paired rounds")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per measurement")
    p.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite",
                   help="database of (b) and (c); postgresql: a throw-away database beside "
                        "BENCH_PG_DSN (default postgresql://postgres@127.0.0.1:5432/test)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)

    # Rounds of (a), (b), (a2), (c) one after the other: the machine's speed drifts (a shared
    # host), so each ratio is taken within a round and the median of the rounds is reported.
    # Like for like: (b) and (a) share this process with the fake; (c) and (a2) are processes
    # of their own, the fake here.
    ratios_b, ratios_c, ratios_ca = [], [], []
    for k in range(1, args.rounds + 1):
        echo = await bench_echo(args.updates, args.users, args.timeout)
        ours, burst = await bench_bot(args.updates, args.users, args.timeout, args.database)
        echo_alone = await bench_echo_process(args.updates, args.users, args.timeout)
        alone = await bench_process(args.updates, args.users, args.timeout, args.database)
        ratios_b.append(ours / echo)
        ratios_c.append(alone / echo_alone)
        ratios_ca.append(alone / echo)
        print(f"round {k}: in this process: (a) echo {echo:5.0f}/s, (b) ours {ours:5.0f}/s = "
              f"{ours / echo:.3f};  own processes: (a2) echo {echo_alone:5.0f}/s, (c) "
              f"`python -m bot run` {alone:5.0f}/s = {alone / echo_alone:.3f}", flush=True)
    print(f"({args.updates} updates from {args.users} users per measurement, /help, flood guard "
          f"on with burst {burst}, {args.database})")
    print(f"ratio (b)/(a),  median of {args.rounds}: {statistics.median(ratios_b):.3f}  "
          "(both in this process, beside the fake)")
    print(f"ratio (c)/(a2), median of {args.rounds}: {statistics.median(ratios_c):.3f}  "
          "(both their own process: the bot as it runs)")
    print(f"ratio (c)/(a),  median of {args.rounds}: {statistics.median(ratios_ca):.3f}  "
          "(the figure of earlier notes: ours alone against the echo beside the fake)")
    startup = await bench_startup(args.timeout)
    print(f"start-up of `python -m bot run` to first getUpdates (fresh SQLite): {startup:.2f} s")


if __name__ == "__main__":
    asyncio.run(main())
