"""Moved to `bot.context` (the framework); kept until every handler imports it from there."""

from bot.context import Context, Services

__all__ = ["Context", "Services"]
