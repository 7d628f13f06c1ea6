"""The one way to push something to someone: the recipient's language is picked here (theirs,
else a fallback the caller names, else the bot's default), and every text of the push is
rendered in it, then queued in the outbox.

- `push(...)`: one key to one identity, its language looked up (an identity id) or known (a
  `Recipient`); values that depend on the language (an estate's name, a fallback text) are
  callables taking the language or `Key`s (a text key of their own), and `buttons` gets a
  translator in the recipient's language.
- `Batch`: many pushes (one recipient's card and photos, a fan-out's page of thousands),
  rendered through `Batch.reader(recipient)` (one translator per language) and inserted in one
  statement by `send`. A push whose text is more than one key (a report card, a poll's results
  table) is built with that reader.

Nothing outside this module picks a recipient's language or writes to the outbox (besides
dispatch's replies, in the writer's own language); tests/test_pushes.py reads the source for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import Texts
from bot.messaging.model import Button, Outbound, PushKind
from storage import outbox
from storage.base import utcnow
from storage.people import language_of_identity

Localized = Callable[[str], str]  # a value that depends on the language


@dataclass(frozen=True)
class Recipient:
    """An identity and the language its person chose (None: not chosen); `fallback` is read
    when they chose none (e.g. the language a question was asked in), before the default."""

    identity_id: int
    language: str | None = None
    fallback: str | None = None


class Translator:
    """t(key, **values) in one language; `lang` says which."""

    __slots__ = ("texts", "lang")

    def __init__(self, texts: Texts, lang: str) -> None:
        self.texts, self.lang = texts, lang

    def __call__(self, key: str, **values: object) -> str:
        return render(self.texts, self.lang, key, values)


Translate = Translator
Buttons = Callable[[Translator], list[list[Button]]]


class Key:
    """A value that is itself a text key (a category's or a state's name), rendered in the
    language of the text it goes into."""

    __slots__ = ("name", "values")

    def __init__(self, name: str, **values: object) -> None:
        self.name, self.values = name, values


def render(texts: Texts, lang: str, key: str, values: Mapping[str, object]) -> str:
    def value(v: object) -> object:
        if isinstance(v, Key):
            return render(texts, lang, v.name, v.values)
        return v(lang) if callable(v) else v
    return texts.get(lang, key, **{name: value(v) for name, v in values.items()})


def translator(texts: Texts, lang: str) -> Translator:
    """A translator in a language already known (the reader's own, in a reply)."""
    return Translator(texts, lang)


def reader(texts: Texts, to: Recipient) -> Translator:
    """The translator in the language `to` reads: the one place it is picked."""
    return Translator(texts, to.language or to.fallback or texts.default)


async def language_of(session: AsyncSession, texts: Texts, identity_id: int) -> str:
    """The language the person behind an identity reads: theirs, else the bot's default."""
    return reader(texts, Recipient(identity_id, await language_of_identity(
        session, identity_id))).lang


Facts = Callable[[Translator], dict[str, str]]  # a push's facts, in the reader's language


def message(t: Translator, key: str, *, buttons: Buttons | None = None,
            photo: str | None = None, edit_of: str | None = None,
            push_kind: PushKind | None = None, facts: Facts | None = None,
            **values: Any) -> Outbound:
    """`push_kind` and `facts`: what the push is and its facts (model.PUSH_FACTS), for a
    platform that reaches some readers by a fixed form only (WeChat's templates)."""
    return Outbound(text=t(key, **values), buttons=buttons(t) if buttons is not None else [],
                    photo=photo, edit_of=edit_of,
                    push=push_kind.value if push_kind is not None else None,
                    facts=facts(t) if facts is not None else {})


async def push(session: AsyncSession, texts: Texts, to: int | Recipient, key: str, *,
               buttons: Buttons | None = None, photo: str | None = None,
               edit_of: str | None = None, push_kind: PushKind | None = None,
               facts: Facts | None = None,
               priority: outbox.Priority = outbox.Priority.NORMAL, group: str | None = None,
               dedupe_key: str | None = None, not_before: datetime | None = None,
               **values: Any) -> bool:
    """Queue `key` for `to` (an identity id, whose language is looked up, or a Recipient whose
    language is known); False when `dedupe_key` was queued before."""
    if not isinstance(to, Recipient):
        to = Recipient(to, await language_of_identity(session, to))
    out = message(reader(texts, to), key, buttons=buttons, photo=photo, edit_of=edit_of,
                  push_kind=push_kind, facts=facts, **values)
    row = await outbox.enqueue(session, to.identity_id, out.to_json(), priority=priority,
                               group=group, dedupe_key=dedupe_key, not_before=not_before)
    return row is not None


class Batch:
    """Pushes gathered, each rendered in its recipient's language, then queued in one insert
    (rows whose dedupe key was queued before are skipped)."""

    def __init__(self, texts: Texts) -> None:
        self.texts = texts
        self.rows: list[dict] = []
        self._readers: dict[str, Translator] = {}

    def reader(self, to: Recipient) -> Translator:
        t = reader(self.texts, to)
        return self._readers.setdefault(t.lang, t)

    def add(self, identity_id: int, out: Outbound | Sequence[Outbound], *,
            priority: outbox.Priority = outbox.Priority.NORMAL, group: str | None = None,
            dedupe_key: str | None = None, not_before: datetime | None = None) -> None:
        """Queue what was built with `reader(...)` for that identity: one message, or several
        in order (a card and its photos). A dedupe key is unique: give one with a single
        message only."""
        for one in [out] if isinstance(out, Outbound) else out:
            self.rows.append({"identity_id": identity_id, "payload": one.to_json(),
                              "priority": int(priority), "group_key": group,
                              "dedupe_key": dedupe_key,
                              "next_attempt_at": not_before or utcnow()})

    def tell(self, to: Recipient, key: str, *, buttons: Buttons | None = None,
             photo: str | None = None, priority: outbox.Priority = outbox.Priority.NORMAL,
             group: str | None = None, dedupe_key: str | None = None,
             not_before: datetime | None = None, **values: Any) -> None:
        """`push`, gathered into the batch."""
        self.add(to.identity_id, message(self.reader(to), key, buttons=buttons, photo=photo,
                                         **values),
                 priority=priority, group=group, dedupe_key=dedupe_key, not_before=not_before)

    async def send(self, session: AsyncSession) -> int:
        """Insert what was gathered; how many were new."""
        rows, self.rows = self.rows, []
        return await outbox.enqueue_many(session, rows)
