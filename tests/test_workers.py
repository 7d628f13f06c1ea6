"""Several bot processes on one database ("workers"): what must hold whichever worker gets an
update. Two apps on one database stand for two processes here: each has its own engine,
connections, dispatcher and in-process locks, and shares only the database with the other."""

from __future__ import annotations

import asyncio

from bot.router import CommandSpec
from storage import dialog
from storage.people import Identity


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
