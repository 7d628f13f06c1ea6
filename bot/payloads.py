"""Typed button payloads: one small class per action, with its fields.

    @dataclass(frozen=True)
    class ShowGuide(Action, code="gshow"):
        number: int

    ctx.button(title, ShowGuide(number=7))           # packed and signed in one place

    @router.action(ShowGuide)
    async def show(ctx: Context, press: ShowGuide):   # the handler receives fields, not strings

A payload travels as `code:field:field` (then signed, bot/signing.py), within Telegram's 64
bytes. Fields are `int`, `str`, `bool` or a `Literal` of strings; a field with a default may be
missing from a payload drawn by an older version. Codes are declared once across the whole bot:
a second class with the same code fails at import, so two features can never answer each
other's buttons. A payload whose fields do not parse as declared (a button of an older shape) is
refused as an invalid button before the handler runs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal, Self, get_args, get_origin, get_type_hints

_RESERVED = (":", "~")


class BadPayload(ValueError):
    pass


class Action:
    code: ClassVar[str]
    fresh: ClassVar[str | None] = None  # "vote" or "staff": the payload expires (BOT_FRESH_*)
    _codes: ClassVar[dict[str, type[Action]]] = {}

    def __init_subclass__(cls, *, code: str = "", fresh: str | None = None,
                          abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if abstract:  # a base of several actions' fields (bot/conversation.py's StepAnswer)
            return
        if not code or any(c in code for c in _RESERVED):
            raise ValueError(f"bad action code {code!r}")
        if fresh not in (None, "vote", "staff"):
            raise ValueError(f"unknown freshness {fresh!r}")
        known = Action._codes.get(code)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise ValueError(f"action code {code!r} is {known.__qualname__}'s already")
        cls.code, cls.fresh = code, fresh
        Action._codes[code] = cls

    def pack(self) -> list[str]:
        """The fields as the strings of a payload, in declaration order."""
        return [_dump(getattr(self, f.name)) for f in dataclasses.fields(self)]  # type: ignore[arg-type]

    @classmethod
    def unpack(cls, args: list[str]) -> Self | None:
        """The action a payload's arguments stand for, or None when they do not fit."""
        declared = dataclasses.fields(cls)  # type: ignore[arg-type]
        if len(args) > len(declared):
            return None
        hints = _hints(cls)
        values: dict[str, Any] = {}
        for i, f in enumerate(declared):
            if i >= len(args):
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    return None
                continue
            try:
                values[f.name] = _load(hints[f.name], args[i])
            except BadPayload:
                return None
        return cls(**values)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = get_type_hints(cls)
    return hints


def _dump(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    text = str(value)
    if any(c in text for c in _RESERVED):
        raise BadPayload(f"a payload field may not contain ':' or '~': {text!r}")
    return text


def _load(kind: Any, raw: str) -> Any:
    if kind is bool:
        if raw not in ("0", "1"):
            raise BadPayload(raw)
        return raw == "1"
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise BadPayload(raw) from None
    if kind is str:
        return raw
    if get_origin(kind) is Literal:
        if raw not in get_args(kind):
            raise BadPayload(raw)
        return raw
    raise TypeError(f"payload fields are int, str, bool or Literal, not {kind!r}")


def codes() -> dict[str, type[Action]]:
    """Every declared action, by code (for tests and the router's checks)."""
    return dict(Action._codes)
