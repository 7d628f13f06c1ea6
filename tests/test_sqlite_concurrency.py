"""SQLite under concurrent writers: a constraint error inside a savepoint must not stall others."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from storage import outbox
from storage.db import create_engine, session_factory
from storage.migrate import upgrade_async
from storage.people import get_or_create_identity


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
