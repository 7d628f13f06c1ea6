"""The outbox drains through an adapter: retried on flood, stopped for blocked residents,
resumed after a restart with nothing sent twice."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import random
import time
from datetime import timedelta

from sqlalchemy import func, select, update

from bot.delivery import Deliverer, RateBudget
from bot.messaging.memory import MemoryAdapter
from bot.messaging.model import Outbound, SendResult, SendStatus
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


async def test_figures_are_counters_and_pruning_keeps_them(db_url):
    engine, sessions, ids = await _setup(db_url, [f"p{i}" for i in range(6)])
    adapter = MemoryAdapter()
    adapter.blocked.add("p1")
    try:
        await _enqueue(sessions, ids, "g")
        async with sessions() as s, s.begin():  # queued twice: counted once
            assert await outbox.enqueue(s, ids[0], {"text": "again"}, group="g",
                                        dedupe_key="g:" + str(ids[0])) is None
            await outbox.enqueue(s, ids[5], {"text": "late"}, group="g", dedupe_key="late")
            assert await outbox.cancel_group(s, "g") == 7
        await _enqueue(sessions, ids[:4], "h")
        while await Deliverer(engine, sessions, {"memory": adapter}).drain_once():
            pass
        async with sessions() as s:
            g = await outbox.figures(s, "g")
            h = await outbox.figures(s, "h")
            counted = dict((await s.execute(
                select(outbox.OutboxMessage.status, func.count())
                .where(outbox.OutboxMessage.group_key == "h")
                .group_by(outbox.OutboxMessage.status))).all())
        assert g["cancelled"] == 7 and g["sent"] == 0 and g["pending"] == 0
        assert h == {**h, "sent": 3, "unreachable": 1, "pending": 0}
        assert counted == {"sent": 3, "unreachable": 1}
        # Thirty-one days later the rows are gone, the figures are not.
        async with sessions() as s, s.begin():
            assert await outbox.prune(s, utcnow() + timedelta(days=1), limit=4) == 4
            assert await outbox.prune(s, utcnow() + timedelta(days=1), limit=4) == 4
            assert await outbox.prune(s, utcnow() + timedelta(days=1), limit=4) == 3
            assert await outbox.prune(s, utcnow() - timedelta(days=1)) == 0
            left = await s.scalar(select(func.count()).select_from(outbox.OutboxMessage))
            assert left == 0
        async with sessions() as s:
            assert (await outbox.figures(s, "h"))["sent"] == 3
    finally:
        await engine.dispose()


async def test_a_held_back_message_is_not_overtaken(db_url):
    """A transient failure sends the first message back to the outbox: the second one to the
    same chat waits behind it, and other chats go on."""
    engine, sessions, ids = await _setup(db_url, ["a", "b"])

    class Flaky(MemoryAdapter):
        failed = False

        async def send(self, chat_id, outbound):
            if outbound.text == "a1" and not self.failed:
                self.failed = True
                return SendResult(SendStatus.RETRY, error="timeout")
            return await super().send(chat_id, outbound)

    adapter = Flaky()
    try:
        async with sessions() as s, s.begin():
            for text in ("a1", "a2"):
                await outbox.enqueue(s, ids[0], {"text": text})
            await outbox.enqueue(s, ids[1], {"text": "b1"})
        deliverer = Deliverer(engine, sessions, {"memory": adapter})
        assert await deliverer.drain_once()
        assert adapter.texts_to("b") == ["b1"] and adapter.texts_to("a") == []
        async with sessions() as s, s.begin():
            await s.execute(update(outbox.OutboxMessage).values(next_attempt_at=utcnow()))
        while await deliverer.drain_once():
            pass
        assert adapter.texts_to("a") == ["a1", "a2"]
    finally:
        await engine.dispose()


async def test_replies_sent_from_their_update_hand_the_chat_on_to_a_lane(db_url):
    """An update's replies to a chat with nothing queued leave from the update's own task; a
    push queued behind them meanwhile goes next, from a lane task of its own, and the update
    does not wait for it."""
    engine, sessions, ids = await _setup(db_url, ["a"])
    reply_sent, push_sent, push_may_go = asyncio.Event(), asyncio.Event(), asyncio.Event()
    reply_may_go = asyncio.Event()
    senders: dict[str, asyncio.Task | None] = {}

    class Held(MemoryAdapter):
        async def send(self, chat_id, outbound):
            senders[outbound.text] = asyncio.current_task()
            if outbound.text == "reply":
                reply_sent.set()
                await reply_may_go.wait()
            if outbound.text == "push":
                push_sent.set()
                await push_may_go.wait()
            return await super().send(chat_id, outbound)

    adapter = Held()
    deliverer = Deliverer(engine, sessions, {"memory": adapter})
    try:
        handling = asyncio.create_task(deliverer.send_replies(
            "memory", "a", ids[0], [(Outbound(text="reply"), None)]))
        await asyncio.wait_for(reply_sent.wait(), 5)
        async with sessions() as s, s.begin():
            await outbox.enqueue(s, ids[0], {"text": "push"})
        drain = asyncio.create_task(deliverer.drain_once())  # claims the push: behind the reply
        for _ in range(100):
            if deliverer._queued:
                break
            await asyncio.sleep(0.01)
        assert deliverer._queued == 1 and not push_sent.is_set()
        reply_may_go.set()
        await asyncio.wait_for(handling, 5)  # answered: the update is done, the push still out
        await asyncio.wait_for(push_sent.wait(), 5)
        assert not drain.done()
        push_may_go.set()
        await asyncio.wait_for(drain, 5)
        assert adapter.texts_to("a") == ["reply", "push"]
        assert senders["reply"] is handling and senders["push"] not in (handling, drain)
    finally:
        await engine.dispose()


async def test_a_reply_survives_a_crash_between_commit_and_send(make_app, db_url, monkeypatch):
    """The update's transaction commits with its reply in the outbox; the process dies before
    the send. The next start sends the reply, once."""
    # On PostgreSQL a new sender leaves other live workers' fresh claims alone for a grace
    # period; there is no other worker here.
    monkeypatch.setattr("bot.delivery.RECLAIM_GRACE", timedelta(0))
    stuck = asyncio.Event()

    class Dying(MemoryAdapter):
        async def send(self, chat_id, outbound):
            stuck.set()
            await asyncio.Event().wait()  # the process never gets further

    first, dying = await make_app(db_url, Dying())
    task = asyncio.create_task(dying.say("r1", "/help"))
    await stuck.wait()
    task.cancel()  # the process is killed with the reply committed, unsent
    with contextlib.suppress(asyncio.CancelledError):
        await task
    first.deliverer._abandon_lanes = _nothing  # a kill writes nothing more
    await first.stop()

    second, chat = await make_app(db_url, deliver=True)
    for _ in range(200):
        if chat.texts_to("r1"):
            break
        await asyncio.sleep(0.02)
    assert len(chat.texts_to("r1")) == 1 and "/help" in chat.texts_to("r1")[0]


async def _nothing() -> None:
    return None


async def test_budget_pauses_one_chat_or_the_platform_and_resumes_paced():
    budget = RateBudget(30, 1)
    budget._flood("c1", 3.0, time.monotonic())
    assert budget.chat_ready_in("c1") > 2.5 and budget.chat_ready_in("c2") == 0
    assert budget.global_pauses == 0
    for chat in ("c2", "c3"):  # three chats refused within a second: the bot's own limit
        budget._flood(chat, 1.0, time.monotonic())
    assert budget.global_pauses == 1
    start = time.monotonic()
    stamps = []

    async def one(i: int) -> None:
        await budget.acquire(90)
        stamps.append(time.monotonic())
        budget.release(f"x{i}", SendResult.sent("1"))

    await asyncio.gather(*(one(i) for i in range(40)))
    budget.close()
    assert stamps[0] - start >= 0.95  # the pause held
    first_second = [t for t in stamps if t < stamps[0] + 1.0]
    assert len(first_second) <= 30  # resumed paced, not as a burst


async def test_read_sessions_take_no_write_lock(sqlite_url):
    """A progress read held open does not stop a writer (it would, as BEGIN IMMEDIATE)."""
    from storage.db import reader_factory

    engine, sessions, ids = await _setup(sqlite_url, ["w"])
    readers = reader_factory(engine)
    try:
        async with readers() as reader:
            await outbox.figures(reader, "g")  # the read transaction is open from here

            async def write() -> None:
                async with sessions() as s, s.begin():
                    await outbox.enqueue(s, ids[0], {"text": "x"}, group="g")

            await asyncio.wait_for(write(), 5)
            assert (await outbox.figures(reader, "g"))["pending"] == 0  # its own snapshot
        async with readers() as reader:
            assert (await outbox.figures(reader, "g"))["pending"] == 1
    finally:
        await engine.dispose()


async def test_a_new_sender_resumes_a_dead_senders_pushes_at_once(db_url):
    """Pushes are claimed only by the sender holding the lease, so whatever a dead sender left
    "sending" is resumed by the next one at its start, even claimed a moment ago. A reply
    claimed a moment ago may be on its way from a live worker: on PostgreSQL (several workers)
    it is left alone for the grace period; SQLite has one process, so it is resumed too."""
    engine, sessions, ids = await _setup(db_url, ["p", "r"])
    adapter = MemoryAdapter()
    try:
        async with sessions() as s, s.begin():
            await outbox.enqueue(s, ids[0], {"text": "push"}, group="g")
            await outbox.enqueue_claimed(s, ids[1], [{"text": "reply"}])
            await s.execute(update(outbox.OutboxMessage).values(
                status="sending", claimed_at=utcnow() - timedelta(seconds=1)))
        deliverer = Deliverer(engine, sessions, {"memory": adapter})
        deliverer.start()
        for _ in range(250):
            if adapter.texts_to("p"):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        await deliverer.stop()
        assert adapter.texts_to("p") == ["push"]
        postgres = engine.dialect.name == "postgresql"
        assert adapter.texts_to("r") == ([] if postgres else ["reply"])
    finally:
        await engine.dispose()


async def test_arrivals_never_exceed_the_limit_however_long_requests_take():
    """A request reaches the platform anywhere between its grant and its answer (a busy CPU,
    many in flight). Whatever the delays, no second at the platform gets more than the limit."""
    budget = RateBudget(50, 0, max_inflight=40)
    rng = random.Random(7)
    arrivals: list[float] = []

    async def one(i: int) -> None:
        await budget.acquire(50)
        took = rng.uniform(0.0, 0.3)
        arrives = rng.uniform(0.0, took)
        await asyncio.sleep(arrives)
        arrivals.append(time.monotonic())
        await asyncio.sleep(took - arrives)
        budget.release(f"c{i}", SendResult.sent("1"))

    await asyncio.gather(*(one(i) for i in range(200)))
    budget.close()
    arrivals.sort()
    busiest = max(bisect.bisect_left(arrivals, t + 1.0) - k for k, t in enumerate(arrivals))
    assert busiest <= 50, busiest
    assert len(arrivals) / (arrivals[-1] - arrivals[0]) > 50 * 0.7  # and still near the limit
