"""Numbered choices: what a typed number means on a platform without buttons.

Such a platform shows a message's buttons as `[1] …`, `[2] …`, row by row. The choices of the
latest message shown to an identity are kept here, so a number means that prompt's buttons only
(a message without buttons in between, "type the new number of places", makes `3` the number 3)
and still does after a restart or in another process. The payloads are the signed button
payloads; dispatch verifies them again when one is used.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, upsert, utcnow
from storage.people import Identity


class NumberedChoices(Base):
    __tablename__ = "numbered_choices"
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id"), primary_key=True)
    choices: Mapped[list]  # [[label, payload], ...] in the order they are numbered
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def numbered(buttons) -> list[tuple[str, str]]:
    """(label, payload) of a message's buttons in the order they are numbered from 1."""
    return [(b.label, b.payload) for row in buttons for b in row]


def numbers_shown(out) -> list[tuple[int, str]]:
    """(number, label) as a platform without buttons shows a message's buttons: numbered on
    from `out.number_from`, as `remember` stored them, which is what a typed number picks."""
    return list(enumerate((label for label, _ in numbered(out.buttons)), out.number_from or 1))


def shows_something(out) -> bool:
    return bool(out.text or out.photo or out.document or out.voice or out.buttons)


async def remember(session: AsyncSession, identity_id: int, out, *, extend: bool = False
                   ) -> int:
    """`out` (an Outbound) is about to be shown: its buttons become the numbered choices; a
    message without any ends the previous ones, unless it only brings an attachment (a photo,
    voice note or file, each with its caption) or is a note about the answer just refused
    (`keeps_choices`). One showing nothing (a bare button
    acknowledgement) leaves them as they are. `extend`: `out` belongs to the prompt shown just
    before (one reply of several messages, /pending's items): its buttons are numbered on,
    and a message of it without buttons ends nothing. The number its first button gets."""
    if not shows_something(out):
        return 1
    earlier = await current(session, identity_id) if extend else []
    if not out.buttons:
        # An attachment without buttons (a report card's photo or voice note, sent after the
        # card's text and actions) asks nothing, and a refusal ("no estate of that name: pick
        # one from the list") points back at the list: the choices just shown stay.
        if not extend and not (out.photo or out.voice or out.document or out.keeps_choices):
            await session.execute(delete(NumberedChoices).where(
                NumberedChoices.identity_id == identity_id))
        return len(earlier) + 1
    choices = [list(pair) for pair in [*earlier, *numbered(out.buttons)]]
    stmt = upsert(session, NumberedChoices).values(identity_id=identity_id, choices=choices,
                                          updated_at=utcnow())
    # An upsert: two windows of one person may show a prompt at the same moment.
    await session.execute(stmt.on_conflict_do_update(
        index_elements=["identity_id"],
        set_={"choices": stmt.excluded.choices, "updated_at": stmt.excluded.updated_at}))
    return len(earlier) + 1


def as_number(text: str | None) -> int | None:
    text = (text or "").strip()
    if not text or len(text) > 3 or not text.isdecimal():
        return None
    return int(text)


async def pick(session: AsyncSession, identity_id: int, text: str | None) -> str | None:
    """The payload a typed number stands for, or None when it is no current choice."""
    number = as_number(text)
    if number is None or number < 1:
        return None
    choices = await current(session, identity_id)
    return choices[number - 1][1] if number <= len(choices) else None


async def current(session: AsyncSession, identity_id: int) -> list[tuple[str, str]]:
    row = await session.get(NumberedChoices, identity_id, populate_existing=True)
    return [(label, payload) for label, payload in row.choices] if row is not None else []


async def current_for(session: AsyncSession, platform: str, user_id: str
                      ) -> list[tuple[str, str]]:
    identity_id = await session.scalar(select(Identity.id).where(
        Identity.platform == platform, Identity.platform_user_id == user_id))
    return await current(session, identity_id) if identity_id is not None else []
