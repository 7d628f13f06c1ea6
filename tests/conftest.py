"""Shared fixtures: real SQLite files, a real PostgreSQL when one answers, the demo territory."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

import pytest

from bot.app import build_app
from bot.config import BotSettings, DatabaseSettings, Settings
from bot.messaging.memory import MemoryAdapter

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "content" / "territory" / "demo.json"
PG_ADMIN = os.environ.get("TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_available() -> bool:
    async def probe() -> bool:
        import asyncpg

        try:
            conn = await asyncpg.connect(PG_ADMIN, timeout=3)
        except Exception:
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


PG_OK = _pg_available()
COVERED: set[str] = set()


@pytest.fixture(autouse=True)
def _no_real_network(monkeypatch):
    """Any connection outside loopback fails loudly."""
    import socket

    real = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("::1", "localhost")
                                          or host.startswith("/")):
            raise RuntimeError(f"test tried to reach the network: {address}")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/bot.sqlite3"


async def _create_pg() -> tuple[str, str]:
    import asyncpg

    name = f"bot_test_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    return name, f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


async def _drop_pg(name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request, tmp_path):
    """Both databases: storage tests run on each."""
    if request.param == "sqlite":
        COVERED.add("sqlite")
        yield f"sqlite+aiosqlite:///{tmp_path}/bot.sqlite3"
        return
    if not PG_OK:
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432")
    name, url = await _create_pg()
    COVERED.add("postgresql")
    yield url
    await _drop_pg(name)


@pytest.fixture
async def pg_url():
    """A throw-away PostgreSQL database, for what only PostgreSQL does (several workers)."""
    if not PG_OK:
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432")
    name, url = await _create_pg()
    COVERED.add("postgresql")
    yield url
    await _drop_pg(name)


def make_settings(url: str, tmp_path: Path, **bot) -> Settings:
    return Settings(database=DatabaseSettings(DATABASE_URL=url),
                    bot=BotSettings(media_dir=tmp_path / "media", **bot))


@pytest.fixture
async def make_app(tmp_path):
    """Builds an app on a URL with a memory adapter; stops everything it built."""
    apps = []

    async def build(url: str, adapter: MemoryAdapter | None = None, *, territory=True,
                    deliver=False, **bot):
        adapter = adapter or MemoryAdapter()
        bot.setdefault("flood_burst", 10_000)  # stories type fast; one test checks the guard
        app = await build_app(make_settings(url, tmp_path, **bot), {adapter.platform: adapter},
                              territory=DEMO if territory else None)
        await app.start(deliver=deliver, schedule=False)
        apps.append(app)
        return app, adapter

    yield build
    for app in apps:
        await app.stop()


def pytest_terminal_summary(terminalreporter):
    covered = ", ".join(sorted(COVERED)) or "none"
    terminalreporter.write_line(f"databases covered by storage tests: {covered}")
    # The memory adapter's handler tests run on WeChat (tests/test_handlers_on_wechat.py):
    # how many ran there, and how many cannot apply (NOT_ON_WECHAT, each with its reason).
    counts: dict[str, int] = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            if (nodeid.startswith("tests/test_handlers_on_wechat.py::")
                    and getattr(report, "when", "call") in ("call", "setup")
                    and not nodeid.endswith("_exists_and_says_why")):
                if outcome == "passed" and report.when != "call":
                    continue
                counts[outcome] = counts.get(outcome, 0) + 1
    if counts:
        terminalreporter.write_line(
            "handler tests on WeChat: {} passed, {} failed, {} errors, {} not applicable "
            "on WeChat".format(*(counts.get(k, 0) for k in ("passed", "failed", "error",
                                                               "skipped"))))
