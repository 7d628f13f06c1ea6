"""Telegram's settings (TELEGRAM_*, BOT_WEBHOOK_*), beside its adapter and light to import:
the CLI reads them before it knows whether Telegram (and aiogram) is needed at all."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.settings_common import COMMON as _common


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
    # Connections Telegram may open at once to deliver updates (1 to 100; Telegram's default).
    max_connections: int = Field(default=40, ge=1, le=100)
