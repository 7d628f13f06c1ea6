"""Three `python -m bot run` workers on one PostgreSQL, behind Telegram's webhook on one shared
port, as a sub-district would run them; the fake Bot API posts the updates as Telegram does
(one chat's in order, again when not answered) and enforces 50/s and 1/s a chat.

500 residents write twice each (some updates posted twice), then a notice goes to all of them;
one worker is SIGKILLed and started again: one handling updates while residents write, or the
one holding the sender lease during the notice (another takes the lease, the notice and the
jobs over). Each update is answered once and in order, the notice reaches everyone (twice only
for the few a killed sender had in flight), and the fake never refused a send for its limits:
three workers, one budget."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from bot.app import load_territory_file
from handlers.notice_jobs import fan_out  # noqa: F401  (the job the workers run)
from storage import notices
from storage.db import create_engine, session_factory
from storage.migrate import upgrade_async
from tests.fakes.telegram_server import FakeTelegram
from tests.notice_support import add_resident

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "content" / "territory" / "demo.json"
RATE = 50
WORKERS = 3
RESIDENTS = list(range(30_000, 30_500))
GREETING = "Please choose a language"
HELP = "/report"
NOTICE = "社区通知：周六上午九点大扫除"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _prepare(url: str) -> None:
    await upgrade_async(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    try:
        await load_territory_file(sessions, DEMO)
        async with sessions() as s, s.begin():
            for uid in RESIDENTS:
                await add_resident(s, str(uid), "victoria", "1", platform="telegram",
                                   lang="en")
    finally:
        await engine.dispose()


def _env(fake: FakeTelegram, url: str, tmp: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TELEGRAM_", "BOT_", "DATABASE_", "WEATHER_", "CAP_"))}
    env.update(TELEGRAM_BOT_TOKEN=fake.token, TELEGRAM_API_BASE=fake.base_url,
               TELEGRAM_PER_SECOND=str(RATE), DATABASE_URL=url,
               BOT_MEDIA_DIR=str(tmp / "media"), BOT_FLOOD_BURST="10000",
               BOT_WEBHOOK_URL=f"http://127.0.0.1:{port}/telegram/webhook",
               BOT_WEBHOOK_HOST="127.0.0.1", BOT_WEBHOOK_PORT=str(port),
               BOT_WEBHOOK_SECRET="workers-secret", BOT_WORKERS=str(WORKERS))
    return env


async def _start(env: dict[str, str], tmp: Path, index: int, generation: int = 0):
    log = (tmp / f"worker{index}.{generation}.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", cwd=ROOT, env=dict(env, BOT_WORKER_INDEX=str(index)),
        stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log)
    return proc, tmp / f"worker{index}.{generation}.log"


async def _until(predicate, within: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("victim", ["worker", "sender"])
async def test_three_workers_one_killed_nothing_lost_nothing_doubled_one_budget(
        pg_url, tmp_path, victim):
    """`worker`: a worker handling updates is killed while residents write; `sender`: the
    worker holding the sender lease is killed during the notice, and another takes over."""
    await _prepare(pg_url)
    fake = FakeTelegram(global_rate=RATE, per_chat_rate=1, deliver_webhook=True)
    await fake.start()
    port = _free_port()
    env = _env(fake, pg_url, tmp_path, port)
    procs, logs = {}, {}
    try:
        # The first worker up takes the sender lease; the one killed below is another (a
        # killed holder may re-send its requests in flight: tests/test_delivery_blackbox.py).
        for i in range(WORKERS):
            procs[i], logs[i] = await _start(env, tmp_path, i)
            await _until(lambda i=i: "running on Telegram" in logs[i].read_text(errors="replace"),
                         90, f"worker {i} up")

        def replies(uid: int) -> list[str]:
            return [e["text"] or "" for e in fake.sent if e["chat_id"] == uid]

        # Each resident: /start then /help; every tenth /start posted a second time (a
        # redelivery, same update id).
        for n, uid in enumerate(RESIDENTS):
            first = fake.push_message(uid, "/start", first_name=f"R{uid}", language_code="en",
                                      entities=[{"type": "bot_command", "offset": 0,
                                                 "length": 6}])
            if n % 10 == 0:
                fake.push_raw_update(dict(first))
            fake.push_message(uid, "/help", first_name=f"R{uid}", language_code="en",
                              entities=[{"type": "bot_command", "offset": 0, "length": 5}])

        async def kill(index: int) -> None:
            procs[index].send_signal(signal.SIGKILL)  # without a word
            await procs[index].wait()
            await asyncio.sleep(1.0)
            procs[index], logs[index] = await _start(env, tmp_path, index, generation=1)

        if victim == "worker":  # mid-way through the answers
            await _until(lambda: sum(1 for uid in RESIDENTS if replies(uid)) >= 150, 120,
                         "a third of the residents answered")
            await kill(1)

        def answered(uid: int) -> bool:
            texts = replies(uid)
            return any(GREETING in t for t in texts) and any(HELP in t for t in texts)

        await _until(lambda: all(answered(uid) for uid in RESIDENTS), 240, "every answer")

        # A notice to all of them, fanned out by whichever worker holds the sender lease.
        engine = create_engine(pg_url)
        try:
            async with session_factory(engine)() as s, s.begin():
                await notices.system_notice(
                    s, category="event", estate_ids=None, dedupe_key="workers-test",
                    texts={"zh-Hans": NOTICE, "en": NOTICE})
        finally:
            await engine.dispose()
        def noticed() -> int:
            return len({e["chat_id"] for e in fake.sent if NOTICE in (e["text"] or "")})

        if victim == "sender":  # worker 0 took the lease first; a third of the way through
            await _until(lambda: noticed() >= len(RESIDENTS) // 3, 120, "a third noticed")
            await kill(0)
        await _until(lambda: noticed() >= len(RESIDENTS), 240, "the notice to everyone")
        await asyncio.sleep(1.5)  # anything doubled would show now

        problems, doubled = defaultdict(list), []
        for uid in RESIDENTS:
            texts = replies(uid)
            greetings = [i for i, t in enumerate(texts) if GREETING in t]
            helps = [i for i, t in enumerate(texts) if HELP in t and GREETING not in t]
            notes = [t for t in texts if NOTICE in t]
            if len(greetings) != 1 or len(helps) != 1:
                problems["answered other than once"].append((uid, texts))
            elif greetings[0] > helps[0]:
                problems["out of order"].append((uid, texts))
            if not notes:
                problems["notice lost"].append(uid)
            elif len(notes) > 1:
                doubled.append(uid)
        assert not problems, {k: v[:3] for k, v in problems.items()}
        # A killed sender may re-send what it had in flight (its requests not yet answered,
        # answers not yet written: 2 x max(4, rate / 10)); any other worker, nothing.
        assert len(doubled) <= (2 * max(4, RATE // 10) if victim == "sender" else 0), doubled
        assert fake.limit_refusals == 0, fake.refusal_log[:5]
        last: dict[int, float] = {}
        for t, chat in fake.accepted_at:
            if chat in last:
                assert t - last[chat] >= 1.0 - 1e-6, chat
            last[chat] = t
        assert fake.webhook["max_connections"] in (40, "40")
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
        await fake.stop()
