"""The outbox drains through an adapter: retried on flood, stopped for blocked residents,
resumed after a restart with nothing sent twice."""

from __future__ import annotations

from sqlalchemy import select, update

from bot.delivery import Deliverer
from bot.messaging.memory import MemoryAdapter
from storage import outbox
from storage.base import utcnow
from storage.db import create_engine, session_factory
from storage.migrate import upgrade_async
from storage.people import Identity, get_or_create_identity


async def _setup(url, users):
    await upgrade_async(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    async with sessions() as s, s.begin():
        ids = []
        for u in users:
            ident, _, _ = await get_or_create_identity(s, "memory", u, u, None)
            ids.append(ident.id)
    return engine, sessions, ids


async def _enqueue(sessions, ids, group):
    async with sessions() as s, s.begin():
        for i in ids:
            await outbox.enqueue(s, i, {"text": f"hello {i}"}, group=group,
                                 dedupe_key=f"{group}:{i}")


async def test_flood_blocked_and_restart(db_url):
    users = [f"u{i}" for i in range(40)]
    engine, sessions, ids = await _setup(db_url, users)
    adapter = MemoryAdapter()
    adapter.blocked.add("u3")
    adapter.flood_next = 2
    try:
        await _enqueue(sessions, ids, "n1")
        first = Deliverer(engine, sessions, {"memory": adapter}, batch=15)
        await first.drain_once()  # one batch, then the "process" dies
        # Restart: a new deliverer continues from the database.
        second = Deliverer(engine, sessions, {"memory": adapter}, batch=15)
        second.budgets["memory"].pause(0)
        for _ in range(20):
            async with sessions() as s, s.begin():
                # flood retries wait for retry_after; move them to now for the test
                await s.execute(update(outbox.OutboxMessage).values(next_attempt_at=utcnow()))
            if not await second.drain_once():
                break
        async with sessions() as s:
            figures = await outbox.figures(s, "n1")
            blocked = await s.scalar(select(Identity).where(Identity.platform_user_id == "u3"))
        assert figures["sent"] == 39 and figures["unreachable"] == 1, figures
        assert blocked.unreachable_at is not None
        per_user = {}
        for sent in adapter.sent:
            per_user[sent.chat_id] = per_user.get(sent.chat_id, 0) + 1
        assert set(per_user.values()) == {1} and len(per_user) == 39
    finally:
        await engine.dispose()
