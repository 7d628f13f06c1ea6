"""The delivery promise attacked from outside: the bot runs as its own process (`python -m bot
run`) against the fake Bot API, which enforces a global and a per-chat limit and injects 429s
for single chats, a burst of global 429s and 403s. A committee member broadcasts to 1,000
residents through /notice; the bot is killed with SIGKILL mid-way and started again.

Every reachable resident gets the notice; at most the documented in-flight bound gets it twice;
the fake never had to refuse a send for its limits; the sender's progress message ends on the
figure the fake received."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections import Counter
from pathlib import Path

from bot.delivery import RateBudget
from storage import roles_service
from storage.db import create_engine, session_factory
from storage.migrate import upgrade_async
from tests.fakes.telegram_server import FakeTelegram
from tests.notice_support import add_resident

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "content" / "territory" / "demo.json"
RATE = 50  # the fake's global limit, and the bot's (TELEGRAM_PER_SECOND)
RESIDENTS = list(range(20_000, 21_000))
BLOCKED = set(RESIDENTS[5::50])  # 20 residents who blocked the bot: 403
CHAT_FLOODED = set(RESIDENTS[7::33])  # 31 chats busy elsewhere: one 429 each
STAFF = 9_000
TEXT = "停水通知：明日 9:00-12:00 检修管道"


async def _prepare(url: str) -> None:
    from bot.app import load_territory_file

    await upgrade_async(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    try:
        await load_territory_file(sessions, DEMO)
        async with sessions() as s, s.begin():
            for uid in RESIDENTS:
                await add_resident(s, str(uid), "victoria", "1", platform="telegram",
                                   lang="zh-Hans")
            await roles_service.change_role(s, f"telegram:{STAFF}", "committee", "victoria",
                                            actor_id=None, grant=True, create_missing=True)
    finally:
        await engine.dispose()


async def _start_bot(fake: FakeTelegram, url: str, tmp: Path, n: int):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TELEGRAM_", "BOT_", "DATABASE_", "WEATHER_", "CAP_"))}
    env.update(TELEGRAM_BOT_TOKEN=fake.token, TELEGRAM_API_BASE=fake.base_url,
               TELEGRAM_POLLING_TIMEOUT="1", TELEGRAM_PER_SECOND=str(RATE),
               DATABASE_URL=url, BOT_MEDIA_DIR=str(tmp / "media"), BOT_FLOOD_BURST="10000")
    log = (tmp / f"bot{n}.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", cwd=ROOT, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log)
    polls = fake.calls["getUpdates"]
    for _ in range(600):
        if fake.calls["getUpdates"] > polls:
            return proc
        assert proc.returncode is None, (tmp / f"bot{n}.log").read_text(errors="replace")
        await asyncio.sleep(0.05)
    raise AssertionError("the bot did not start polling")


def _button(fake, entry, label):
    for text, data in fake.buttons(entry):
        if label in text:
            return data
    raise AssertionError(f"no button {label!r} in {fake.buttons(entry)}")


async def _press(fake, label, since):
    entry = await fake.wait_for(lambda e: e["chat_id"] == STAFF and any(
        label in t for t, _ in fake.buttons(e)), since=since, timeout=30)
    mark = len(fake.sent)
    fake.push_callback(STAFF, _button(fake, entry, label), message_id=entry["message_id"])
    return mark


async def test_broadcast_survives_sigkill_and_429s(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/bot.sqlite3"
    await _prepare(url)
    fake = FakeTelegram(global_rate=RATE, per_chat_rate=1)
    await fake.start()
    fake.blocked.update(BLOCKED)
    for chat in CHAT_FLOODED:
        fake.flood_chat(chat, 1, retry_after=2)
    procs = []
    try:
        procs.append(await _start_bot(fake, url, tmp_path, 1))
        mark = len(fake.sent)
        fake.push_message(STAFF, "/notice")
        mark = await _press(fake, "活动", mark)
        mark = await _press(fake, "居委会", mark)
        mark = await _press(fake, "维多利亚居委会", mark)
        await fake.wait_for_text(STAFF, "请输入通知内容", since=mark, timeout=30)
        mark = len(fake.sent)
        fake.push_message(STAFF, TEXT)
        mark = await _press(fake, "立即发送", mark)

        def delivered() -> int:
            return sum(1 for e in fake.sent if e["chat_id"] != STAFF and TEXT in (e["text"] or ""))

        global_flooded = False
        for _ in range(1200):
            if not global_flooded and delivered() >= 150:
                fake.flood_next(8, retry_after=2)  # the bot's own limit, as Telegram says it
                global_flooded = True
            if delivered() >= 400:
                break
            await asyncio.sleep(0.05)
        procs[0].send_signal(signal.SIGKILL)
        await procs[0].wait()
        at_kill = delivered()
        assert 300 <= at_kill < len(RESIDENTS) - len(BLOCKED), at_kill

        procs.append(await _start_bot(fake, url, tmp_path, 2))
        reachable = len(RESIDENTS) - len(BLOCKED)
        final = None
        for _ in range(2400):
            progress = [e for e in fake.sent if e["chat_id"] == STAFF
                        and (e["text"] or "").startswith("通知 #1")]
            if progress and "已完成" in progress[-1]["text"]:
                final = progress[-1]
                break
            await asyncio.sleep(0.05)
        assert final is not None, fake.dump_sent()
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 20)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        await fake.stop()

    counts = Counter(e["chat_id"] for e in fake.sent
                     if e["chat_id"] != STAFF and TEXT in (e["text"] or ""))
    reached = set(counts)
    assert reached == set(RESIDENTS) - BLOCKED  # no reachable resident missed, none blocked
    doubles = sum(n - 1 for n in counts.values())
    # The bound the deliverer documents: requests in flight plus answers not yet written.
    bound = 2 * RateBudget(RATE, 1).max_inflight
    assert doubles <= bound, (doubles, bound)
    # The bot kept within the limits: the fake never refused a send for its own rates (the
    # 429s it gave were the injected ones), and no second at the fake went over.
    assert fake.limit_refusals == 0, fake.refusal_log
    assert fake.busiest_second() <= RATE
    per_chat = {}
    for t, chat in fake.accepted_at:
        if chat in per_chat:
            assert t - per_chat[chat] >= 1.0 - 1e-6, chat
        per_chat[chat] = t
    # The sender's progress message ends on what the fake received.
    figures = re.search(r"已发送 (\d+)/(\d+).*无法送达 (\d+)", final["text"], re.S)
    assert figures, final["text"]
    sent, total, unreachable = map(int, figures.groups())
    assert (sent, total, unreachable) == (reachable, len(RESIDENTS), len(BLOCKED))
    assert sent == len(reached)
    assert final["method"] in ("editMessageText", "sendMessage")
