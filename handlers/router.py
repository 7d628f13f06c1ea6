"""Moved to `bot.router` (the framework); kept until every handler imports it from there."""

from bot.router import CommandSpec, Handler, Router

__all__ = ["CommandSpec", "Handler", "Router"]
