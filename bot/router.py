"""How features declare what they answer: commands, button actions, dialog states, media."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bot.messaging.model import Kind
from bot.payloads import Action

Handler = Callable[..., Awaitable[None]]
A = TypeVar("A", bound=Action)
Fallback = Callable[..., Awaitable[bool]]  # True when it answered the text


@dataclass(frozen=True)
class CommandSpec:
    name: str
    handler: Handler
    help_key: str | None  # text key shown by /help; None hides the command
    roles: tuple[str, ...] = ()  # any of these role kinds may use it; empty: everyone
    order: int = 100
    # For rights that are not roles (a volunteer-team lead): /help lists the command only when
    # this says the person may use it. The handler still checks.
    visible: Callable[..., Awaitable[bool]] | None = None


@dataclass
class Router:
    commands: dict[str, CommandSpec] = field(default_factory=dict)
    buttons: dict[str, Handler] = field(default_factory=dict)
    # Button actions whose payloads expire: action -> "vote" or "staff" (their age limits are
    # settings); the signer stamps them and refuses them when too old.
    fresh: dict[str, str] = field(default_factory=dict)
    states: dict[str, Handler] = field(default_factory=dict)
    media: dict[Kind, Handler] = field(default_factory=dict)
    text_fallbacks: list[tuple[int, Fallback]] = field(default_factory=list)
    # Declared conversations (bot/conversation.py) by their dialog state: /back reaches them.
    conversations: dict[str, Any] = field(default_factory=dict)

    def command(self, *names: str, help_key: str | None = None, roles: tuple[str, ...] = (),
                order: int = 100, visible: Callable[..., Awaitable[bool]] | None = None):
        def register(fn: Handler) -> Handler:
            for name in names:
                self.commands[name] = CommandSpec(name, fn, help_key if name == names[0]
                                                  else None, roles, order, visible)
            return fn
        return register

    def button(self, action: str, *, fresh: str | None = None):
        """A button action; `fresh="vote"` or `"staff"` gives its payloads an age limit."""
        if fresh not in (None, "vote", "staff"):
            raise ValueError(f"unknown freshness {fresh!r}")

        def register(fn: Handler) -> Handler:
            self.buttons[action] = fn
            if fresh:
                self.fresh[action] = fresh
            return fn
        return register

    def action(self, kind: type[A]) -> Callable[[Callable[[Any, A], Awaitable[None]]],
                                                 Callable[[Any, A], Awaitable[None]]]:
        """The handler of one typed action (bot/payloads.py): called with the context and the
        pressed button's fields; a payload that does not fit them is refused as invalid."""
        def register(fn: Callable[[Any, A], Awaitable[None]]) -> Callable[[Any, A], Awaitable[None]]:
            async def run(ctx: Any) -> None:
                press = kind.unpack(ctx.args)
                if press is None:
                    ctx.button_invalid()
                    return
                await fn(ctx, press)

            self.buttons[kind.code] = run
            if kind.fresh:
                self.fresh[kind.code] = kind.fresh
            return fn
        return register

    def state(self, *names: str):
        """Inputs (text, location, media) while the conversation is in one of these states."""
        def register(fn: Handler) -> Handler:
            for name in names:
                self.states[name] = fn
            return fn
        return register

    def on(self, kind: Kind):
        """A location, photo, voice note... sent outside any conversation."""
        def register(fn: Handler) -> Handler:
            self.media[kind] = fn
            return fn
        return register

    def text_fallback(self, priority: int = 100):
        """Free text outside any conversation; the handler returns True when it answered."""
        def register(fn: Fallback) -> Fallback:
            self.text_fallbacks.append((priority, fn))
            return fn
        return register

    def include(self, other: Router) -> None:
        for name, spec in other.commands.items():
            if name in self.commands:
                raise ValueError(f"command /{name} registered twice")
            self.commands[name] = spec
        for table in ("buttons", "states", "media", "conversations"):
            mine, theirs = getattr(self, table), getattr(other, table)
            clash = set(mine) & set(theirs)
            if clash:
                raise ValueError(f"{table} registered twice: {sorted(clash)}")
            mine.update(theirs)
        self.fresh.update(other.fresh)
        self.text_fallbacks.extend(other.text_fallbacks)
        self.text_fallbacks.sort(key=lambda item: item[0])
