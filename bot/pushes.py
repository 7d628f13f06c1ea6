"""One way to push a text to someone in their own language: look up (or take) the recipient's
language, render the key from content/ in it, queue it in the outbox.

Values that depend on the language (an estate's name, a fallback text) are given as callables
taking the language; `buttons` is given a translator in the recipient's language, so labels
are rendered in it too. Bulk fan-outs that render once per language and insert many rows at a
time (notices, poll and survey results) keep their own loop and use `render` and `language`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import Texts
from bot.messaging.model import Button, Outbound
from storage import outbox
from storage.people import language_of_identity

Translate = Callable[..., str]  # t(key, **values) in one language
Localized = Callable[[str], str]  # a value that depends on the language


@dataclass(frozen=True)
class Recipient:
    """An identity and the language its person chose (None: not chosen, the bot's default)."""

    identity_id: int
    language: str | None = None


def language(texts: Texts, chosen: str | None) -> str:
    return chosen or texts.default


async def language_of(session: AsyncSession, texts: Texts, identity_id: int) -> str:
    """The language the person behind an identity reads: theirs, else the bot's default."""
    return language(texts, await language_of_identity(session, identity_id))


def render(texts: Texts, lang: str, key: str, values: Mapping[str, object]) -> str:
    return texts.get(lang, key, **{name: value(lang) if callable(value) else value
                                   for name, value in values.items()})


def translator(texts: Texts, lang: str) -> Translate:
    def t(key: str, **values: object) -> str:
        return render(texts, lang, key, values)
    return t


async def push(session: AsyncSession, texts: Texts, to: int | Recipient, key: str, *,
               buttons: Callable[[Translate], list[list[Button]]] | None = None,
               priority: outbox.Priority = outbox.Priority.NORMAL, group: str | None = None,
               dedupe_key: str | None = None, **values: object) -> bool:
    """Queue `key` for `to` (an identity id, whose language is looked up, or a Recipient whose
    language is known); False when `dedupe_key` was queued before."""
    if isinstance(to, Recipient):
        identity_id, lang = to.identity_id, language(texts, to.language)
    else:
        identity_id, lang = to, await language_of(session, texts, to)
    t = translator(texts, lang)
    out = Outbound(text=render(texts, lang, key, values),
                   buttons=buttons(t) if buttons is not None else [])
    row = await outbox.enqueue(session, identity_id, out.to_json(), priority=priority,
                               group=group, dedupe_key=dedupe_key)
    return row is not None
