"""A platform is registered with one entry: Settings gains its settings, the CLI serves it."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from bot import cli, config
from bot.messaging import platforms
from bot.messaging.platforms import PLATFORMS, Platform


class ChirpSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHIRP_", extra="ignore")

    token: str | None = None


def _chirp(built: list) -> Platform:
    return Platform("chirp", (("chirp", ChirpSettings),),
                    configured=lambda s: s.chirp.token is not None,
                    build=lambda s: built.append(s.chirp.token))


def test_a_registered_platform_gets_its_settings(monkeypatch):
    monkeypatch.setattr(config, "PLATFORMS", [*PLATFORMS, _chirp([])])
    monkeypatch.setenv("CHIRP_TOKEN", "secret-1")
    settings = config.Settings()
    assert settings.chirp.token == "secret-1"
    assert settings.telegram.bot_token is None  # the others are still there


def test_run_serves_every_configured_platform_and_only_those(monkeypatch):
    built: list = []
    monkeypatch.setattr(config, "PLATFORMS", [*PLATFORMS, _chirp(built)])
    monkeypatch.setattr(platforms, "PLATFORMS", [*PLATFORMS, _chirp(built)])
    monkeypatch.setenv("CHIRP_TOKEN", "secret-2")
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    served: list = []

    async def serve(settings, chosen):
        served.extend(p.name for p in chosen)
        for p in chosen:
            p.build(settings)
        return 0

    monkeypatch.setattr(cli, "_serve", serve)
    assert cli.main(["run"]) == 0
    assert served == ["chirp"] and built == ["secret-2"]
