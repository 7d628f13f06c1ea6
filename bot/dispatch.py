"""One platform update, end to end: dedupe, load the person and their conversation, route to a
handler, write the replies to the outbox and commit once, then send the replies.

Replies are written in the update's own transaction, already claimed by this process, so a crash
between the commit and the send loses none: the next start resumes them. They leave through the
deliverer's lane for the chat, inside the platform's budget, in order. Edits and messages marked
`ephemeral` (a ballot's ticks) are never written down: they are sent from memory only."""

from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
import weakref
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.context import Context, Services
from bot.flood import FloodGuard, SharedFloodGuard
from bot.i18n import normalize_language
from bot.messaging.model import STORED, Adapter, Capabilities, Inbound, Kind, Outbound
from bot.router import Router
from storage import choices, dialog, outbox, updates
from storage.db import transaction

if TYPE_CHECKING:
    from bot.delivery import Deliverer

log = logging.getLogger(__name__)

MAX_TEXT = 4000
_TOUCH = timedelta(hours=1)
_INVISIBLE = re.compile(r"[\u200b-\u200f\u2028-\u202f\u2060-\u206f\ufeff\u00ad]")


def clean_text(text: str | None) -> str:
    """Text as a handler should see it: no zero-width characters, no surrounding blanks."""
    if not text:
        return ""
    return _INVISIBLE.sub("", unicodedata.normalize("NFC", text)).strip()


class Dispatcher:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        router: Router,
        services: Services,
        adapters: dict[str, Adapter],
        *,
        flood: FloodGuard | SharedFloodGuard | None,
        deliverer: Deliverer,
        on_first_contact: Callable[[Context], Awaitable[None]] | None = None,
    ) -> None:
        self.sessions = sessions
        self.router = router
        self.services = services
        self.adapters = adapters
        self.flood = flood
        self.deliverer = deliverer
        self.on_first_contact = on_first_contact
        self._draft_ttl = timedelta(hours=services.settings.bot.draft_ttl_hours)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        # For /metrics: updates seen, refused by the flood guard, failed in a handler.
        self.updates = self.flooded = self.errors = 0

    async def handle(self, inbound: Inbound) -> None:
        key = f"{inbound.platform}:{inbound.user_id}"
        self.updates += 1
        allowed, warn = await self.flood.allow(key) if self.flood else (True, False)
        if not allowed:
            self.flooded += 1
            if warn:
                lang = normalize_language(inbound.language_hint,
                                          self.services.settings.bot.default_language)
                await self._send(inbound, [Outbound(
                    text=self.services.texts.get(lang, "common.slow_down"))], None)
            return
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        # One update of a person at a time, in order; different people run in parallel.
        async with lock:
            try:
                await self._handle_locked(inbound)
            except Exception:
                self.errors += 1
                log.exception("update %s from %s failed", inbound.update_id, key)
                lang = normalize_language(inbound.language_hint)
                await self._send(inbound, [Outbound(
                    text=self.services.texts.get(lang, "common.internal_error"))], None)

    async def _handle_locked(self, inbound: Inbound) -> None:
        async with transaction(self.sessions) as session:
            await updates.hold_person(session, inbound.platform, inbound.user_id)
            if inbound.update_id is not None and not await updates.claim(
                session, inbound.platform, str(inbound.update_id)
            ):
                log.info("duplicate update %s ignored", inbound.update_id)
                return
            person = await dialog.load_person(
                session, inbound.platform, inbound.user_id, inbound.chat_id,
                inbound.display_name,
            )
            identity, resident, state = person.identity, person.resident, person.state
            lang = resident.language or normalize_language(
                inbound.language_hint, self.services.settings.bot.default_language)
            expired_draft = dialog.expired(state, self.services.clock(), self._draft_ttl)
            if expired_draft:
                # Said first, then this message is handled as if no conversation were open,
                # so what the person just sent is not swallowed by a forgotten step.
                await dialog.save(session, identity.id, None, {})
                state = None
            adapter = self.adapters.get(inbound.platform)
            if adapter is not None and not adapter.capabilities.buttons:
                inbound = await _numbered_choice(session, identity.id, inbound)
            ctx = Context(
                inbound=inbound, session=session, identity=identity, resident=resident,
                lang=lang, services=self.services,
                capabilities=adapter.capabilities if adapter else Capabilities(),
                state=state.name if state else None,
                data=dict(state.data) if state else {},
                is_new=person.created, roles=person.roles,
            )
            if expired_draft:
                hours = self.services.settings.bot.draft_ttl_hours
                ctx.say("common.draft_expired", hours=f"{hours:g}")
            before = (ctx.state, dict(ctx.data))
            await self._route(ctx)
            now = self.services.clock()
            if (ctx.state, ctx.data) != before or (
                    ctx.state is not None and dialog.expired(state, now, _TOUCH)):
                # A conversation written to is touched; one only answered is re-dated at most
                # hourly, so its expiry runs from the last message without a write per update.
                await dialog.save(session, identity.id, ctx.state, ctx.data, at=now)
            kept = [out.edit_of is None and not out.ephemeral for out in ctx.replies]
            payloads = [out.to_json() for out, keep in zip(ctx.replies, kept, strict=True) if keep]
            if self.deliverer.sends_replies():
                ids = iter(await outbox.enqueue_claimed(session, identity.id, payloads)
                           if payloads else [])
                replies = [(out, next(ids) if keep else None)
                           for out, keep in zip(ctx.replies, kept, strict=True)]
            else:
                # Another worker holds the sender lease, and so the bot's one budget: it sends
                # what this update wrote down. Edits and ephemeral messages (a ballot's ticks)
                # are never written down, so they still go from here.
                if payloads:
                    await outbox.enqueue_replies(session, identity.id, payloads)
                elif ctx.pushed:
                    await outbox.notify(session)
                replies = [(out, None) for out, keep in zip(ctx.replies, kept, strict=True)
                           if not keep]
        stored = STORED.get()
        if stored is not None:
            stored.set()
        if ctx.pushed:
            self.deliverer.wake()
        await self.deliverer.send_replies(inbound.platform, inbound.chat_id, identity.id,
                                          replies)

    async def _route(self, ctx: Context) -> None:
        # What the bot cannot take here (an unknown command, an empty or overlong message) is
        # refused with a note that leaves the latest prompt's numbered choices standing.
        inbound, router = ctx.inbound, self.router
        if inbound.kind == Kind.BUTTON:
            verified = self.services.signer.verify(ctx.identity.id, inbound.payload)
            handler = router.buttons.get(verified[0]) if verified else None
            if verified is None or handler is None:
                ctx.button_invalid()
                return
            ctx.args = verified[1]
            await handler(ctx)
            self._ack(ctx)
            return
        if inbound.kind == Kind.COMMAND:
            name = (inbound.command or "").lower()
            conversation = router.conversations.get(ctx.state or "")
            if name == "back" and conversation is not None:
                await conversation.back(ctx)
                return
            spec = router.commands.get(name)
            if spec is None:
                ctx.refuse("common.unknown_command", command=name[:32])
                return
            if spec.roles and not (await ctx.scope()).has(*spec.roles):
                ctx.refuse("common.not_allowed")
                return
            await spec.handler(ctx)
            return
        if inbound.kind == Kind.TEXT:
            text = clean_text(inbound.text)
            if not text:
                ctx.refuse("common.empty_message")
                return
            if len(text) > MAX_TEXT:
                ctx.refuse("common.too_long", limit=MAX_TEXT)
                return
            ctx.inbound = _with_text(inbound, text)
        if ctx.state and ctx.state in router.states:
            await router.states[ctx.state](ctx)
            return
        if ctx.is_new and self.on_first_contact is not None:
            await self.on_first_contact(ctx)
            return
        if inbound.kind != Kind.TEXT:
            handler = router.media.get(inbound.kind)
            if handler is None:
                ctx.refuse("common.media_not_expected")
            else:
                await handler(ctx)
            return
        for _, fallback in router.text_fallbacks:
            if await fallback(ctx):
                return
        ctx.say("common.not_understood")

    @staticmethod
    def _ack(ctx: Context) -> None:
        """A button press is acknowledged exactly once, so the client's spinner stops."""
        if not ctx.inbound.callback_id:
            return
        if any(r.answer_callback for r in ctx.replies):
            return
        if ctx.replies:
            ctx.replies[0].answer_callback = ctx.inbound.callback_id
        else:
            ctx.replies.append(Outbound(answer_callback=ctx.inbound.callback_id))

    async def _send(self, inbound: Inbound, replies: list[Outbound],
                    identity_id: int | None) -> None:
        """Replies not written down (a flood warning, an internal error): same lane, same
        budget, from memory."""
        await self.deliverer.send_replies(inbound.platform, inbound.chat_id, identity_id,
                                          [(out, None) for out in replies])


async def _numbered_choice(session: AsyncSession, identity_id: int, inbound: Inbound) -> Inbound:
    """On a platform without buttons a number typed is a press of that button of the latest
    prompt shown, when it has one; otherwise it stays the text it is (an answer to "how many
    places?")."""
    if inbound.kind != Kind.TEXT:
        return inbound
    payload = await choices.pick(session, identity_id, inbound.text)
    if payload is None:
        return inbound
    from dataclasses import replace

    return replace(inbound, kind=Kind.BUTTON, payload=payload, text=None)


def _with_text(inbound: Inbound, text: str) -> Inbound:
    from dataclasses import replace

    return replace(inbound, text=text)
