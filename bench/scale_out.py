"""Several workers on one PostgreSQL, behind the fake Bot API's webhook on one shared port.

Run by hand from the repository root (PostgreSQL on BENCH_PG_DSN, default 127.0.0.1):

    .venv/bin/python bench/scale_out.py [--updates N] [--users U] [--residents R]

(a) updates a second through the whole stack with 1, 2 and 3 workers (`python -m bot run`,
    BOT_WORKERS, SO_REUSEPORT), each on a fresh database: N "/help" from U residents, posted
    by the fake as Telegram posts to a webhook (a chat's updates in order, up to
    max_connections at once), timed until the fake has answered N sendMessage calls; printed
    as ratios to one worker, side by side in one run. The fake enforces no rate here, and the
    bot is told the same.
(b) a notice to R residents with 3 workers sharing the budget of a paid broadcast (1,000/s,
    enforced by the fake): the rate achieved ÷ the limit, and how many the fake refused.

This machine has 2 cores: the fake, PostgreSQL and the workers share them, so more workers
than cores mostly shows what sharing costs; the figures that matter are the ratios and that
nothing is lost, doubled or refused.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.app import load_territory_file  # noqa: E402
from storage import notices  # noqa: E402
from storage.db import create_engine, session_factory  # noqa: E402
from storage.migrate import upgrade_async  # noqa: E402
from tests.fakes.telegram_server import FakeTelegram  # noqa: E402
from tests.notice_support import add_resident  # noqa: E402

DEMO = ROOT / "content" / "territory" / "demo.json"
PG_ADMIN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
BASE_USER = 50_000


@contextlib.asynccontextmanager
async def _database(residents: int):
    import asyncpg

    name = f"bench_scale_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    host = PG_ADMIN.split("://", 1)[1].rsplit("/", 1)[0]
    url = f"postgresql+asyncpg://{host}/{name}"
    try:
        await upgrade_async(url)
        engine = create_engine(url)
        sessions = session_factory(engine)
        await load_territory_file(sessions, DEMO)
        async with sessions() as s, s.begin():
            for i in range(residents):
                await add_resident(s, str(BASE_USER + i), "victoria", "1", platform="telegram",
                                   lang="en")
        await engine.dispose()
        yield url
    finally:
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def _workers(fake: FakeTelegram, url: str, n: int, tmp: str, per_second: float):
    port = _port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TELEGRAM_", "BOT_", "DATABASE_", "WEATHER_", "CAP_"))}
    env.update(TELEGRAM_BOT_TOKEN=fake.token, TELEGRAM_API_BASE=fake.base_url,
               TELEGRAM_PER_SECOND=str(per_second), TELEGRAM_PER_CHAT_PER_SECOND="1000",
               DATABASE_URL=url, BOT_MEDIA_DIR=f"{tmp}/media", BOT_FLOOD_BURST="100000",
               BOT_WEBHOOK_URL=f"http://127.0.0.1:{port}/telegram/webhook",
               BOT_WEBHOOK_HOST="127.0.0.1", BOT_WEBHOOK_PORT=str(port),
               BOT_WEBHOOK_SECRET="bench", BOT_WEBHOOK_MAX_CONNECTIONS="100",
               BOT_WORKERS=str(n))
    if per_second >= 1000:
        env["TELEGRAM_PAID_BROADCASTS"] = "true"
    procs, logs = [], []
    try:
        for i in range(n):
            log = Path(tmp) / f"worker{i}.log"
            logs.append(log)
            procs.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", cwd=ROOT,
                env=dict(env, BOT_WORKER_INDEX=str(i)), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=log.open("wb")))
            while "running on Telegram" not in log.read_text(errors="replace"):
                if procs[-1].returncode is not None:
                    raise RuntimeError(log.read_text(errors="replace")[-2000:])
                await asyncio.sleep(0.1)
        yield
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()


async def _wait(predicate, limit: float) -> None:
    deadline = time.perf_counter() + limit
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError("the bench did not finish in time")
        await asyncio.sleep(0.02)


async def updates_per_second(n_workers: int, updates: int, users: int) -> float:
    fake = FakeTelegram(record_sent=False, deliver_webhook=True)
    await fake.start()
    try:
        async with _database(users) as url, contextlib.AsyncExitStack() as stack:
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
            await stack.enter_async_context(_workers(fake, url, n_workers, tmp, 100_000.0))
            for i in range(users):  # warm-up: one each, not timed
                fake.push_message(BASE_USER + i, "/help", language_code="en",
                                  entities=[{"type": "bot_command", "offset": 0, "length": 5}])
            await _wait(lambda: fake.calls["sendMessage"] >= users, 120)
            base = fake.calls["sendMessage"]
            t0 = time.perf_counter()
            for k in range(updates):
                fake.push_message(BASE_USER + k % users, "/help", language_code="en",
                                  entities=[{"type": "bot_command", "offset": 0, "length": 5}])
            await _wait(lambda: fake.calls["sendMessage"] >= base + updates, 600)
            return updates / (time.perf_counter() - t0)
    finally:
        await fake.stop()


async def broadcast(n_workers: int, residents: int) -> tuple[float, int, int]:
    fake = FakeTelegram(record_sent=False, global_rate=1000.0, deliver_webhook=True)
    await fake.start()
    try:
        async with _database(residents) as url, contextlib.AsyncExitStack() as stack:
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
            await stack.enter_async_context(_workers(fake, url, n_workers, tmp, 1000.0))
            engine = create_engine(url)
            async with session_factory(engine)() as s, s.begin():
                await notices.system_notice(
                    s, category="event", estate_ids=None, dedupe_key="bench",
                    texts={"zh-Hans": "社区通知：本周六上午九点大扫除。", "en": "Clean-up."})
            await engine.dispose()
            await _wait(lambda: fake.calls["sendMessage"] >= 1, 120)
            t0, first = time.perf_counter(), fake.calls["sendMessage"]
            await _wait(lambda: fake.calls["sendMessage"] >= residents, 600)
            rate = (fake.calls["sendMessage"] - first) / (time.perf_counter() - t0)
            await asyncio.sleep(2.0)
            return rate, fake.calls["sendMessage"], fake.limit_refusals
    finally:
        await fake.stop()


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--updates", type=int, default=2000)
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--residents", type=int, default=5000)
    args = p.parse_args()
    rates = {}
    for n in (1, 2, 3):
        rates[n] = await updates_per_second(n, args.updates, args.users)
        print(f"(a) {n} worker{'s' if n > 1 else ' '}: {rates[n]:7.0f} updates/s "
              f"({args.updates} updates, {args.users} residents)  ratio to 1 worker: "
              f"{rates[n] / rates[1]:.2f}", flush=True)
    rate, sent, refused = await broadcast(3, args.residents)
    print(f"(b) 3 workers, notice to {args.residents} residents at a 1,000/s limit: "
          f"{rate:.0f}/s = {rate / 1000:.2f} of the limit, {sent} sent "
          f"({sent - args.residents:+d} against one each), {refused} refused by the fake")


if __name__ == "__main__":
    asyncio.run(main())
