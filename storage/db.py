"""Engine and session factory; SQLite is tuned so concurrent writers queue instead of failing."""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

from sqlalchemy import event
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    parsed = make_url(url)
    if is_sqlite(url):
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo, connect_args={
            # Statements run on the event loop's thread (_OneHopCursor) and must never sleep
            # there in SQLite's busy handler: the handler is off (timeout 0) and a statement
            # that finds the database busy is run again on the driver's thread, waiting.
            "timeout": 0, "check_same_thread": False})
        gate = _GATES[engine.sync_engine] = _WriterGate()
        _tune_sqlite(engine, gate)
        return engine
    return create_async_engine(url, echo=echo, pool_size=10, max_overflow=20, pool_pre_ping=True)


READ_ONLY = "sqlite_read_only"  # execution option: a deferred transaction, no write lock
WRITE_WAIT = 30.0  # seconds a writer waits for SQLite's write lock before "database is locked"


class _WriterGate:
    """This process's writers queue here, first come first served, for SQLite's one write lock.

    Left to SQLite, a writer that finds the lock taken sleeps in its busy handler, waking after
    1, 2, 5, ... up to 100 ms to try again: the lock is often free while every waiter sleeps,
    and under load that idle time, not the work, set the rate of updates (py-spy of
    bench/updates_per_second.py: half the samples in `BEGIN IMMEDIATE`). Queued on an asyncio
    lock instead, the next writer starts the moment the last one commits. Other processes on the
    same file still meet SQLite's own busy timeout."""

    def __init__(self) -> None:
        self._turns: dict[asyncio.AbstractEventLoop, _Turns] = {}
        self.holder: int | None = None  # id() of the driver connection holding the lock

    def turns(self) -> _Turns:
        loop = asyncio.get_running_loop()
        turns = self._turns.get(loop)
        if turns is None:
            self._turns = {
                other: held for other, held in self._turns.items() if not other.is_closed()}
            turns = self._turns[loop] = _Turns()
        return turns

    def try_acquire(self, connection: object) -> bool:
        """The lock at once when nobody holds it or waits for it (most transactions: taken
        without a task, a future or a turn of the event loop)."""
        turns = self.turns()
        if turns.held or turns.waiting:
            return False
        turns.held = True
        self.holder = id(connection)
        return True

    async def acquire(self, connection: object) -> None:
        if self.try_acquire(connection):
            return
        turns = self.turns()
        turn = asyncio.get_running_loop().create_future()
        turns.waiting.append(turn)
        try:
            async with asyncio.timeout(WRITE_WAIT):
                await turn
        except BaseException as error:
            if turn.done() and not turn.cancelled():  # handed over, then abandoned: hand on
                turns.hand_on()
            else:
                turn.cancel()
            if isinstance(error, TimeoutError):
                raise sqlite3.OperationalError("database is locked") from None
            raise
        self.holder = id(connection)

    def release(self, connection: object) -> None:
        if self.holder == id(connection):
            self.holder = None
            self.turns().hand_on()


# The gate of each SQLite engine, for `transaction` to queue at before it takes a connection.
_GATES: weakref.WeakKeyDictionary[object, _WriterGate] = weakref.WeakKeyDictionary()


class _Turns:
    """One event loop's queue for the write lock: whoever holds it hands it straight to the
    first still waiting (first come, first served), or leaves it free."""

    __slots__ = ("held", "waiting")

    def __init__(self) -> None:
        self.held = False
        self.waiting: deque[asyncio.Future] = deque()

    def hand_on(self) -> None:
        while self.waiting:
            turn = self.waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.held = False


def _tune_sqlite(engine: AsyncEngine, gate: _WriterGate) -> None:
    sync = engine.sync_engine

    @event.listens_for(sync, "connect")
    def _on_connect(dbapi_conn, _record):
        if type(dbapi_conn) is AsyncAdapt_aiosqlite_connection:
            dbapi_conn.__class__ = _OneHopConnection
            dbapi_conn._connection.writer_gate = gate
        # Let SQLAlchemy, not the driver, decide when a transaction begins.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        # Deleted rows are overwritten with zeros, not left in free pages (anonymous ballots
        # waiting to be counted are deleted when counted: storage/polls.py).
        cur.execute("PRAGMA secure_delete=ON")
        cur.close()

    @event.listens_for(sync, "begin")
    def _on_begin(conn):
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")  # WAL: readers see a snapshot and block nobody
            return
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then
        # writes can fail with SQLITE_BUSY at once instead of waiting its turn.
        driver = conn.connection.dbapi_connection
        if isinstance(driver, _OneHopConnection):
            driver.begin_immediate()
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def _run_statement(conn: sqlite3.Connection, operation: str, parameters, many: bool):
    """One statement, start to finish: open a cursor, execute, fetch every row, close the
    cursor (also when the statement fails)."""
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        rows = cursor.fetchall() if cursor.description else None
        return cursor.description, rows, cursor.lastrowid, cursor.rowcount
    finally:
        cursor.close()


def _run_waiting(conn: sqlite3.Connection, operation: str, parameters, many: bool):
    """The same on the driver's thread, allowed to wait up to WRITE_WAIT for a busy database."""
    conn.execute(f"PRAGMA busy_timeout={int(WRITE_WAIT * 1000)}")
    try:
        return _run_statement(conn, operation, parameters, many)
    finally:
        conn.execute("PRAGMA busy_timeout=0")


async def _nothing() -> None:
    return None


def _is_busy(error: sqlite3.Error) -> bool:
    return (getattr(error, "sqlite_errorcode", 0) & 0xFF) in (
        sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class _OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """SQLAlchemy's aiosqlite cursor, running each statement at once on the event loop's thread.

    The stock adapter hands every call (cursor, execute, fetchall, close) to aiosqlite's thread
    and waits for the answer: about 200 us a hand-over here, against a few microseconds for
    the statements an update runs (an indexed lookup, one row written), so the hand-overs were
    most of the bot's time per update (bench/updates_per_second.py). A statement that finds
    the database busy (another process writing; SQLite answers at once, its busy handler being
    off) is run again on the driver's thread, which waits its turn without holding up the
    loop; so is `executemany`, the bulk writes of a broadcast, which may take a while.

    It also closes the driver cursor of a failed statement, which the stock adapter leaves
    open: a constraint error inside a savepoint (our "insert once" idiom: dedupe keys, double
    taps) then stalled that connection's ROLLBACK TO SAVEPOINT while other writers waited in
    BEGIN IMMEDIATE, until their busy timeout ended in "database is locked".
    tests/test_sqlite_concurrency.py reproduces it.
    """

    __slots__ = ()

    def _run(self, operation, parameters, many: bool) -> None:
        try:
            connection = cast(_OneHopConnection, self._adapt_connection)
            description, rows, lastrowid, rowcount = connection.run(
                _run_statement, operation, parameters, many)
        except Exception as error:
            self._adapt_connection._handle_exception(error)
        if description:
            self.description = description
            self.lastrowid = self.rowcount = -1
            self._rows = deque(rows)
        else:
            self.description = None
            self.lastrowid = lastrowid
            self.rowcount = rowcount

    def execute(self, operation, parameters=None):
        self._run(operation, parameters, False)

    def executemany(self, operation, seq_of_parameters):
        self._run(operation, seq_of_parameters, True)


class _OneHopConnection(AsyncAdapt_aiosqlite_connection):
    """Also takes its turn at the process's writer gate before `BEGIN IMMEDIATE`, and gives
    it back when the transaction ends, however it ends."""

    __slots__ = ()

    def cursor(self, server_side: bool = False):
        return super().cursor(server_side) if server_side else _OneHopCursor(self)

    def run(self, function, operation: str, parameters, many: bool):
        """A statement on the loop's thread, or on the driver's when it must wait (above)."""
        conn = self._connection._conn
        if not many:
            # One hand-over to the greenlet that awaits, costing nothing: AsyncConnection's
            # execute (unlike AsyncSession's) insists that a statement awaited something.
            self.await_(_nothing())
            try:
                return function(conn, operation, parameters, many)
            except sqlite3.OperationalError as error:
                if not _is_busy(error):
                    raise
        return self.await_(self._connection._execute(
            _run_waiting, conn, operation, parameters, many))

    def begin_immediate(self) -> None:
        gate: _WriterGate = self._connection.writer_gate
        if gate.holder == id(asyncio.current_task()):
            gate.holder = id(self)  # queued for by `transaction` before this connection
        elif not gate.try_acquire(self):
            self.await_(gate.acquire(self))
        try:
            self.run(_run_statement, "BEGIN IMMEDIATE", None, False)
        except BaseException:
            gate.release(self)
            raise

    def _end(self, how: str) -> None:
        try:
            # With none open (the pool's reset after a commit) there is nothing to end.
            if self._connection._conn.in_transaction:
                self.run(_run_statement, how, None, False)
        except sqlite3.Error as error:
            self._handle_exception(error)
        finally:
            self._connection.writer_gate.release(self)

    def commit(self) -> None:
        self._end("COMMIT")

    def rollback(self) -> None:
        self._end("ROLLBACK")

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._connection.writer_gate.release(self)

    def terminate(self) -> None:
        # A connection invalidated mid-transaction (its task cancelled inside a statement, a
        # broken connection) is terminated, not rolled back or closed: it gives the lock back
        # too, or every later writer of this process would wait for it in vain.
        try:
            super().terminate()
        finally:
            self._connection.writer_gate.release(self)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session in one transaction, committed when the block ends, rolled back if it raises:
    `async with sessions() as s, s.begin()` for the paths every update takes. That one closes
    the session in a task of its own, shielded from cancellation (a task and three turns of the
    event loop for each session); after a commit closing awaits nothing on either driver, so
    nothing can cut it short, and the shielded close is kept for a block that raised.

    On SQLite it first takes its turn at the writer gate, then a connection: queued after
    taking one, a hundred updates at once held every connection the pool allows (15) while
    one wrote, and the pool closed its 10 extra connections whenever the updates paused and
    opened them again for the next batch (195 openings in 3,000 updates, each reading the
    schema anew: 1 to 3 ms)."""
    bind = sessions.kw.get("bind")
    gate = _GATES.get(bind.sync_engine) if isinstance(bind, AsyncEngine) else None
    task = asyncio.current_task() if gate is not None else None
    if gate is not None:
        await gate.acquire(task)
    try:
        session = sessions()
        try:
            async with session.begin():
                yield session
        except BaseException:
            await session.__aexit__(None, None, None)
            raise
        await session.close()
    finally:
        if gate is not None:
            gate.release(task)  # still ours when no statement ran; else ended with it


def reader_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for read paths (progress figures, listings): on SQLite a deferred transaction
    that takes no write lock; elsewhere the same as `session_factory`. Never write with it."""
    if is_sqlite(str(engine.url)):
        engine = engine.execution_options(**{READ_ONLY: True})
    return async_sessionmaker(engine, expire_on_commit=False)


async def checkpoint_truncate(conn) -> None:
    """Copy SQLite's write-ahead log into the database file and empty it (what erasing traces
    needs: the log holds each commit's page images). Run on the driver's thread allowed to wait
    for writers, as this process's statements are not (their busy handler is off), and tried
    again until no writer of another connection stood in the way."""
    driver = (await conn.get_raw_connection()).driver_connection
    for _ in range(50):
        _, rows, _, _ = await driver._execute(
            _run_waiting, driver._conn, "PRAGMA wal_checkpoint(TRUNCATE)", None, False)
        if not rows[0][0]:  # (busy, log pages, checkpointed pages)
            return
        await asyncio.sleep(0.1)
