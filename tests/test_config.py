"""Settings that work wherever the bot is started from."""

from __future__ import annotations

from bot.config import BotSettings


def test_the_demo_territory_is_found_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BOT_TERRITORY_FILE", raising=False)
    assert BotSettings().territory_file.is_file()
