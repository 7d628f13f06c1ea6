"""Engine and session factory; SQLite is tuned so concurrent writers queue instead of failing."""

from __future__ import annotations

import sqlite3
from collections import deque
from pathlib import Path

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
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
        _tune_sqlite(engine)
        return engine
    return create_async_engine(url, echo=echo, pool_size=10, max_overflow=20, pool_pre_ping=True)


READ_ONLY = "sqlite_read_only"  # execution option: a deferred transaction, no write lock


def _tune_sqlite(engine: AsyncEngine) -> None:
    sync = engine.sync_engine

    @event.listens_for(sync, "connect")
    def _on_connect(dbapi_conn, _record):
        if type(dbapi_conn) is AsyncAdapt_aiosqlite_connection:
            dbapi_conn.__class__ = _OneHopConnection
        # Let SQLAlchemy, not the driver, decide when a transaction begins.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
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
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _run_statement(conn: sqlite3.Connection, operation: str, parameters, many: bool):
    """One statement, start to finish, on the driver's own thread: open a cursor, execute,
    fetch every row, close the cursor (also when the statement fails)."""
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


class _OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """SQLAlchemy's aiosqlite cursor, with each statement one trip to the driver's thread.

    The stock adapter makes four (cursor, execute, fetchall, close), each a hand-over between
    the event loop and aiosqlite's thread; at a handful of statements an update those hops
    were most of the bot's CPU per update (bench/updates_per_second.py). Here the whole
    statement runs as one function on that thread.

    It also closes the driver cursor of a failed statement, which the stock adapter leaves
    open: a constraint error inside a savepoint (our "insert once" idiom: dedupe keys, double
    taps) then stalled that connection's ROLLBACK TO SAVEPOINT while other writers waited in
    BEGIN IMMEDIATE, until their busy timeout ended in "database is locked".
    tests/test_sqlite_concurrency.py reproduces it.
    """

    __slots__ = ()

    def _run(self, operation, parameters, many: bool) -> None:
        try:
            description, rows, lastrowid, rowcount = self.await_(self._connection._execute(
                _run_statement, self._connection._conn, operation, parameters, many))
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
    __slots__ = ()

    def cursor(self, server_side: bool = False):
        return super().cursor(server_side) if server_side else _OneHopCursor(self)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def reader_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for read paths (progress figures, listings): on SQLite a deferred transaction
    that takes no write lock; elsewhere the same as `session_factory`. Never write with it."""
    if is_sqlite(str(engine.url)):
        engine = engine.execution_options(**{READ_ONLY: True})
    return async_sessionmaker(engine, expire_on_commit=False)
