"""Building an app that serves the web application on a free loopback port, and API keys."""

from __future__ import annotations

from bot.app import build_app
from bot.config import BotSettings, DatabaseSettings, Open311Settings, Settings
from bot.messaging.memory import MemoryAdapter
from storage import open311
from storage.base import utcnow
from tests.conftest import DEMO


async def web_app(url: str, tmp_path, *, open311_settings: Open311Settings | None = None):
    adapter = MemoryAdapter()
    settings = Settings(
        database=DatabaseSettings(DATABASE_URL=url),
        bot=BotSettings(media_dir=tmp_path / "media", flood_burst=10_000,
                        web_url="http://127.0.0.1", web_host="127.0.0.1", web_port=0),
        open311=open311_settings or Open311Settings())
    app = await build_app(settings, {adapter.platform: adapter}, territory=DEMO)
    await app.start(deliver=False, schedule=False)
    return app, adapter, f"http://127.0.0.1:{app.web.port}/open311/v2"


async def make_key(app, scope: str, label: str = "test client") -> str:
    kind, _, code = scope.partition(":")
    async with app.sessions() as s, s.begin():
        _, token = await open311.create_key(s, label, kind, code, utcnow())
    return token
