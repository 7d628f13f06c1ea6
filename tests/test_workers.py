"""Several bot processes on one database ("workers"): what must hold whichever worker gets an
update. Two apps on one database stand for two processes here: each has its own engine,
connections, dispatcher and in-process locks, and shares only the database with the other."""

from __future__ import annotations

import asyncio

import pytest

from bot.router import CommandSpec
from bot.scheduler import Job, _guard
from storage import dialog
from storage.people import Identity


async def _ran(ran: list, args: tuple) -> None:
    ran.append(args[2])


async def _count(ctx) -> None:
    """Read, wait, write: two of these for one person at once lose a count."""
    n = int(ctx.data.get("n", 0))
    await asyncio.sleep(0.01)
    ctx.goto("counting", n=n + 1)
    ctx.reply(str(n + 1))


async def test_one_persons_updates_are_handled_one_at_a_time_across_workers(db_url, make_app):
    first, chat1 = await make_app(db_url)
    second, chat2 = await make_app(db_url, territory=False)
    for app in (first, second):
        app.dispatcher.router.commands["count"] = CommandSpec("count", _count, None)
    await chat1.say("ann", "hello")  # the person exists before the race

    await asyncio.gather(*((chat1 if i % 2 else chat2).say("ann", "/count") for i in range(20)))

    async with first.sessions() as s:
        identity = (await s.execute(
            Identity.__table__.select().where(Identity.platform_user_id == "ann"))).first()
        state = await dialog.load(s, identity.id)
    assert state is not None and state.data["n"] == 20
    counted = sorted(int(m.out.text) for chat in (chat1, chat2) for m in chat.sent
                     if m.chat_id == "ann" and (m.out.text or "").isdigit())
    assert counted == list(range(1, 21))  # each count seen once: none read a stale state


async def test_a_worker_without_the_sender_lease_leaves_its_replies_to_the_holder(pg_url, make_app):
    """All of the bot's sends keep within one budget: the worker holding the sender lease sends
    them, including the replies of updates another worker handled; the holder is woken at once
    (NOTIFY), not at its next poll. Scheduled jobs run in the holder only."""
    holder, held_chat = await make_app(pg_url, deliver=True)
    other, other_chat = await make_app(pg_url, territory=False, deliver=True)
    for _ in range(100):
        if holder.deliverer.leads():
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.5)  # the new holder's pause (delivery.TAKEOVER_PAUSE), and some
    assert holder.deliverer.leads() and not other.deliverer.leads()
    # Sharing the budget, every worker (the holder too) leaves its replies to the sender.
    assert not other.deliverer.sends_replies() and not holder.deliverer.sends_replies()

    loop = asyncio.get_running_loop()
    began = loop.time()
    await other_chat.say("bo", "/start")
    for _ in range(100):
        if any(m.chat_id == "bo" for m in held_chat.sent):
            break
        await asyncio.sleep(0.02)
    took = loop.time() - began
    assert any("Please choose a language" in (m.out.text or "") for m in held_chat.sent
               if m.chat_id == "bo")
    assert not [m for m in other_chat.sent if m.chat_id == "bo"]  # nothing sent by the other
    assert took < 0.9  # woken by the commit, not by its one-second poll

    ran = []
    job = Job("t-count", lambda settings: 60.0, lambda *args: _ran(ran, args))
    for app in (holder, other):
        await _guard(job, set())(app.sessions, app.services, app.deliverer)
    assert ran == [holder.deliverer]  # the jobs run once, in the holder

    # The holder goes (its lease connection closes): the other takes over, and its sends.
    await holder.stop()
    for _ in range(200):
        if other.deliverer.leads():
            break
        await asyncio.sleep(0.05)
    assert other.deliverer.leads()
    await other_chat.say("bo", "/help")
    for _ in range(100):
        if any(m.chat_id == "bo" for m in other_chat.sent):
            break
        await asyncio.sleep(0.02)
    assert any(m.chat_id == "bo" for m in other_chat.sent)


async def test_the_flood_guard_holds_across_workers_with_redis(sqlite_url, tmp_path, make_app):
    """A sender's messages spread over two workers meet one bucket (BOT_REDIS_URL): a burst
    of 3 lets 3 through in all, not 3 a worker; the warning is said once. Without Redis each
    worker would let its own 3 through."""
    import secrets

    import redis.asyncio as redis

    url = "redis://127.0.0.1:6379/15"
    probe = redis.from_url(url)
    try:
        await probe.ping()
    except Exception:
        pytest.skip("Redis not reachable on 127.0.0.1:6379")
    prefix = f"test-flood-{secrets.token_hex(4)}:"
    first, chat1 = await make_app(sqlite_url, flood_burst=3, flood_rate=0.01, redis_url=url)
    second, chat2 = await make_app(sqlite_url, territory=False, flood_burst=3,
                                   flood_rate=0.01, redis_url=url)
    for app in (first, second):
        app.dispatcher.flood.prefix = prefix
    try:
        for i in range(8):
            await (chat1 if i % 2 else chat2).say("zed", f"/help {i}")
        answered = [m for chat in (chat1, chat2) for m in chat.sent if m.chat_id == "zed"]
        slow = [m for m in answered if "too fast" in (m.out.text or "")
                or "太快" in (m.out.text or "")]
        assert len(answered) - len(slow) == 3 and len(slow) == 1
    finally:
        await probe.delete(*[k async for k in probe.scan_iter(prefix + "*")] or ["-"])
        await probe.aclose()


async def test_a_tick_during_a_long_run_is_skipped_quietly(sqlite_url, make_app, caplog):
    """The real scheduler, a job ticking every 0.1 s that takes 0.4 s: runs never overlap,
    they follow one another, and neither APScheduler nor the bot warns about the ticks that
    came while one ran (under load it logged one a tick)."""
    import logging

    from bot.scheduler import build_scheduler

    app, _ = await make_app(sqlite_url)
    running, peak, runs = 0, 0, []

    async def slow(*args) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        runs.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.4)
        running -= 1

    caplog.set_level(logging.DEBUG)
    scheduler = build_scheduler(app.sessions, app.services, app.deliverer,
                                [Job("t-slow", 0.1, slow)])
    scheduler.start()
    try:
        for _ in range(100):
            if len(runs) >= 3:
                break
            await asyncio.sleep(0.05)
    finally:
        await scheduler.stop()
    assert len(runs) >= 3 and peak == 1
    assert all(b - a >= 0.39 for a, b in zip(runs, runs[1:], strict=False))
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("t-slow still running" in r.getMessage() for r in caplog.records)
