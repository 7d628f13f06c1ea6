"""The platforms the bot can serve, one entry each.

Adding a platform is its adapter module, its settings class beside it, and one line in
`PLATFORMS`: `Settings` gains the settings under the names given here, and `python -m bot run`
serves every platform whose settings say it is configured (all of them in one process, on one
database), or chats in the terminal when none is."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.messaging.telegram_settings import TelegramSettings, WebhookSettings
from bot.messaging.wechat_settings import WeChatSettings


@dataclass(frozen=True)
class Platform:
    name: str
    # (attribute on Settings, settings class) pairs, read from the environment at start-up
    settings: tuple[tuple[str, type], ...]
    configured: Callable[[Any], bool]  # Settings -> serve this platform?
    build: Callable[[Any], Any]  # Settings -> Adapter; imports the platform library lazily
    describe: Callable[[Any], str] = lambda settings: ""  # for the start-up log line
    title: str = ""  # the platform's own spelling of its name, for that line


def _telegram(settings) -> Any:
    from bot.messaging.telegram import TelegramAdapter

    tg, wh = settings.telegram, settings.webhook
    return TelegramAdapter(
        tg.bot_token.get_secret_value(), api_base=tg.api_base,
        per_second=1000.0 if tg.paid_broadcasts else tg.per_second,
        per_chat_per_second=tg.per_chat_per_second, polling_timeout=tg.polling_timeout,
        webhook_url=wh.url, webhook_secret=wh.secret.get_secret_value() if wh.secret else None,
        webhook_host=wh.host, webhook_port=wh.port, paid_broadcast=tg.paid_broadcasts,
        # Several workers share the webhook's port (SO_REUSEPORT: the kernel spreads
        # Telegram's connections over them).
        reuse_port=settings.bot.workers > 1, max_connections=wh.max_connections,
    )


def _wechat(settings) -> Any:
    from bot.messaging.wechat import WeChatAdapter

    adapter = WeChatAdapter.from_settings(settings.wechat)
    adapter.reuse_port = settings.bot.workers > 1
    return adapter


PLATFORMS: list[Platform] = [
    Platform("telegram", (("telegram", TelegramSettings), ("webhook", WebhookSettings)),
             configured=lambda s: s.telegram.bot_token is not None, build=_telegram,
             title="Telegram",
             describe=lambda s: "webhook" if s.webhook.url else "long polling"),
    Platform("wechat", (("wechat", WeChatSettings),), configured=lambda s: s.wechat.configured,
             build=_wechat, title="WeChat",
             describe=lambda s: f"callback on {s.wechat.callback_host}:{s.wechat.callback_port}"
             f"{s.wechat.callback_path}{', safe mode' if s.wechat.aes_key else ''}"),
]
