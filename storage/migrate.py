"""Run Alembic migrations from code (the CLI, the app's start-up and the tests)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    # env.py runs its own event loop; keep it off ours.
    await asyncio.to_thread(upgrade, url, revision)


STARTUP_LOCK_KEY = 0x5747A  # "start-up": migrations and the first territory load


@contextlib.asynccontextmanager
async def exclusive_startup(url: str) -> AsyncIterator[None]:
    """One process at a time through start-up on a shared PostgreSQL (an advisory lock), so
    workers started together do not run the same migration or load the territory twice.
    SQLite serves one process; nothing to share."""
    from sqlalchemy import text

    from storage.db import create_engine, is_sqlite

    if is_sqlite(url):
        yield
        return
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": STARTUP_LOCK_KEY})
            await conn.commit()
            try:
                yield
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"),
                                   {"k": STARTUP_LOCK_KEY})
                await conn.commit()
    finally:
        await engine.dispose()
