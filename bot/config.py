"""Settings, one class per concern, read from the environment (and `.env`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

_common = {"env_file": ".env", "extra": "ignore"}


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(**_common)

    url: str = Field(
        default="sqlite+aiosqlite:///data/bot.sqlite3", validation_alias="DATABASE_URL"
    )
    echo: bool = Field(default=False, validation_alias="DATABASE_ECHO")


class TelegramSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TELEGRAM_", **_common)

    bot_token: SecretStr | None = None
    api_base: str | None = None  # another Bot API server (self-hosted, or the tests' fake)
    # Telegram allows about 30 messages a second per bot; paid broadcasts lift that to 1,000.
    paid_broadcasts: bool = False
    per_second: float = 30.0
    per_chat_per_second: float = 1.0
    polling_timeout: int = 30


class WebhookSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOT_WEBHOOK_", **_common)

    url: str | None = None
    secret: SecretStr | None = None
    host: str = "0.0.0.0"
    port: int = 8080
    path: str = "/telegram/webhook"


class BotSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOT_", **_common)

    default_language: str = "zh-Hans"
    media_dir: Path = Path("data/media")
    territory_file: Path = Path("content/territory/demo.json")
    # Per-user flood guard: a burst of `flood_burst` messages, then `flood_rate` a second.
    flood_burst: int = 8
    flood_rate: float = 2.0
    timezone: str = "Asia/Shanghai"
    # Secret that signs button payloads; generated and stored in the database when unset.
    secret: SecretStr | None = None
    delivery_max_attempts: int = 6


class DeliberationSettings(BaseSettings):
    """Polls, surveys and the council's agenda."""

    model_config = SettingsConfigDict(env_prefix="POLLS_", **_common)

    # Residents reached per fan-out step (invitations, results); each step is one transaction.
    fanout_batch: int = 500
    # Supporters a proposal needs to reach the council's agenda; per committee code overrides,
    # e.g. POLLS_PROPOSAL_THRESHOLDS='{"zhonghai": 30}'.
    proposal_threshold: int = 20
    proposal_thresholds: dict[str, int] = Field(default_factory=dict)
    # Only verified residents may propose and support.
    proposals_verified_only: bool = True


class Settings:
    """All settings of one process, built once by the composition root."""

    def __init__(self, **overrides) -> None:
        self.database = overrides.pop("database", None) or DatabaseSettings()
        self.telegram = overrides.pop("telegram", None) or TelegramSettings()
        self.webhook = overrides.pop("webhook", None) or WebhookSettings()
        self.bot = overrides.pop("bot", None) or BotSettings()
        self.polls = overrides.pop("polls", None) or DeliberationSettings()
        if overrides:
            raise TypeError(f"unknown settings: {sorted(overrides)}")
