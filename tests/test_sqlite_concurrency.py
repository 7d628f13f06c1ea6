"""SQLite under concurrent writers: a constraint error inside a savepoint must not stall others."""

from __future__ import annotations

import asyncio

from sqlalchemy import event, func, select

from storage import outbox
from storage.db import create_engine, session_factory, transaction
from storage.migrate import upgrade_async
from storage.people import Identity, get_or_create_identity


async def test_repeated_dedupe_keys_from_concurrent_sessions(sqlite_url):
    await upgrade_async(sqlite_url)
    engine = create_engine(sqlite_url)
    sessions = session_factory(engine)
    async with sessions() as s, s.begin():
        identity, _, _ = await get_or_create_identity(s, "memory", "u1", "u1", None)
    gate = asyncio.Semaphore(4)
    queued = []

    async def enqueue(i: int) -> None:
        async with gate, sessions() as s, s.begin():
            row = await outbox.enqueue(s, identity.id, {"text": "x"}, dedupe_key=f"k{i % 20}")
            queued.append(row is not None)

    try:
        # Before the fix the first repeated key stalled every other writer for the whole
        # busy timeout, then failed them with "database is locked".
        await asyncio.wait_for(asyncio.gather(*(enqueue(i) for i in range(200))), 25)
        async with sessions() as s:
            rows = await s.scalar(select(func.count()).select_from(outbox.OutboxMessage))
    finally:
        await engine.dispose()
    assert rows == 20 and queued.count(True) == 20 and len(queued) == 200


async def test_a_writer_in_another_process_is_waited_for_without_stopping_the_loop(sqlite_url):
    """Statements run on the loop's thread with SQLite's busy handler off; one that meets
    another connection's write lock (another process: a CLI command, a second bot) must wait
    for it on the driver's thread, not fail and not freeze everything else the bot does."""
    import sqlite3

    await upgrade_async(sqlite_url)
    engine = create_engine(sqlite_url)
    sessions = session_factory(engine)
    other = sqlite3.connect(sqlite_url.split("///", 1)[1], isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def write() -> int:
        async with sessions() as s, s.begin():
            identity, _, _ = await get_or_create_identity(s, "memory", "u2", "u2", None)
            return identity.id

    clock = asyncio.create_task(ticker())
    try:
        writing = asyncio.create_task(write())
        await asyncio.sleep(0.5)
        assert not writing.done()  # waiting for the other writer, not failed
        assert ticks >= 20  # and the loop ran on meanwhile
        other.execute("COMMIT")
        assert await asyncio.wait_for(writing, 10) > 0
    finally:
        clock.cancel()
        other.close()
        await engine.dispose()


async def test_writers_cancelled_while_waiting_or_writing_do_not_keep_the_write_lock(sqlite_url):
    """A task cancelled while it waits for this process's write lock, or in the middle of its
    transaction, must leave the lock to the next writer: otherwise every later write of the
    process would wait its whole timeout and fail."""
    await upgrade_async(sqlite_url)
    engine = create_engine(sqlite_url)
    sessions = session_factory(engine)
    holding = asyncio.Event()

    async def write(user: str, *, linger: float = 0.0) -> None:
        async with sessions() as s, s.begin():
            await get_or_create_identity(s, "memory", user, user, None)
            holding.set()
            await asyncio.sleep(linger)

    try:
        first = asyncio.create_task(write("a", linger=0.5))
        await holding.wait()
        waiting = asyncio.create_task(write("b"))
        await asyncio.sleep(0.1)
        waiting.cancel()  # cancelled while waiting for the lock
        holding.clear()
        await first
        lingering = asyncio.create_task(write("c", linger=10))
        await holding.wait()
        lingering.cancel()  # cancelled inside its transaction
        for task in (waiting, lingering):
            try:
                await task
            except asyncio.CancelledError:
                pass
        await asyncio.wait_for(write("d"), 3)  # the lock is free again, at once
    finally:
        await engine.dispose()


async def test_writers_take_the_write_lock_in_the_order_they_asked(sqlite_url):
    """This process's writers are served first come, first served, each the moment the one
    before commits; a writer handed the lock but cancelled before it could start hands it on
    (the next one is not left waiting its whole timeout)."""
    await upgrade_async(sqlite_url)
    engine = create_engine(sqlite_url)
    sessions = session_factory(engine)
    order: list[str] = []
    holding, release = asyncio.Event(), asyncio.Event()

    async def write(user: str, *, hold: bool = False) -> None:
        async with sessions() as s, s.begin():
            await get_or_create_identity(s, "memory", user, user, None)
            order.append(user)
            if hold:
                holding.set()
                await release.wait()

    try:
        first = asyncio.create_task(write("first", hold=True))
        await holding.wait()
        queued = []
        for name in ("b", "c", "d", "e"):
            queued.append(asyncio.create_task(write(name)))
            await asyncio.sleep(0.02)  # each asks in turn, behind the one holding the lock
        release.set()
        await asyncio.sleep(0)  # "first" commits and hands the lock to "b" ...
        queued[0].cancel()  # ... which is cancelled before it could resume
        await first
        results = await asyncio.wait_for(
            asyncio.gather(*queued, return_exceptions=True), 3)
        assert isinstance(results[0], asyncio.CancelledError)
        assert order == ["first", "c", "d", "e"]
        await asyncio.wait_for(write("after"), 3)  # and the lock is free at the end
    finally:
        await engine.dispose()


async def test_updates_at_once_queue_for_the_write_lock_before_they_take_a_connection(sqlite_url):
    """An update's transaction (storage.db.transaction) waits for this process's write lock
    before it takes a connection: a hundred at once then need one connection, not every one
    the pool allows, and the pool does not close and open its extra connections between
    batches (each opening reads the schema anew). One that fails before writing anything, or
    is cancelled while waiting, leaves the lock to the next."""
    await upgrade_async(sqlite_url)
    engine = create_engine(sqlite_url)
    sessions = session_factory(engine)
    opened = 0

    @event.listens_for(engine.sync_engine, "connect")
    def _opened(*_args) -> None:
        nonlocal opened
        opened += 1

    async def update(user: str, hold: asyncio.Event | None = None) -> None:
        async with transaction(sessions) as s:
            await get_or_create_identity(s, "memory", user, user, None)
            if hold is not None:
                await hold.wait()

    async def other_writer(user: str) -> None:  # a writer of the other kind, among them
        async with sessions() as s, s.begin():
            await get_or_create_identity(s, "memory", user, user, None)

    async def fails_first() -> None:
        async with transaction(sessions):
            raise LookupError("before any statement")

    try:
        for batch in range(3):
            await asyncio.wait_for(asyncio.gather(
                *(update(f"u{batch}-{i}") for i in range(100)),
                *(other_writer(f"o{batch}-{i}") for i in range(3))), 20)
        release = asyncio.Event()
        blocker = asyncio.create_task(update("blocker", release))
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(update("cancelled"))
        await asyncio.sleep(0.05)
        waiting.cancel()  # while it waits for the lock
        release.set()
        await blocker
        try:
            await fails_first()
        except LookupError:
            pass
        await asyncio.wait_for(update("after"), 3)  # the lock is free, at once
        async with sessions() as s:
            users = set(await s.scalars(select(Identity.platform_user_id)))
    finally:
        await engine.dispose()
    assert len(users) == 3 * 103 + 2 and "cancelled" not in users
    assert opened <= 6, f"{opened} connections opened for 311 writers"
