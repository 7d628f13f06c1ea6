"""What a handler receives: the message, the person, their conversation, and the services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from aiohttp import ClientSession
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Settings
from bot.i18n import Texts
from bot.media import MediaStore
from bot.messaging.model import Adapter, Button, Capabilities, Inbound, Outbound
from bot.payloads import Action
from bot.pushes import Buttons, Recipient, push
from bot.signing import Signer
from storage import outbox
from storage.access import HeldRole, Scope, scope_from_roles, scope_of
from storage.people import ROLES_CHANGED, Identity, Resident

if TYPE_CHECKING:  # names only: the framework never imports a feature when it runs
    from bot.router import CommandSpec
    from services.geo import TerritoryIndex
    from services.guides import GuideIndex
    from services.report_catalog import Catalog, WorkCalendar


@dataclass(frozen=True)
class Services:
    """Long-lived collaborators, built once by the composition root (bot/app.py build_app);
    nothing here is created or replaced while an update is handled."""

    texts: Texts
    signer: Signer
    geo: TerritoryIndex
    settings: Settings
    clock: Callable[[], datetime]  # an aware "now" (bot.scheduler.Clock in the app)
    media: MediaStore
    # Sessions for read-only paths (storage.db.reader_factory): on SQLite no write lock.
    readers: async_sessionmaker[AsyncSession]
    http: ClientSession  # shared by the process's outgoing requests, closed by App.stop
    commands: tuple[CommandSpec, ...]  # what /help lists, in its order
    adapters: Mapping[str, Adapter]  # by platform (a report's photo is fetched through it)
    catalog: Catalog  # report categories (settings.reports.categories_file or content/)
    calendar: WorkCalendar  # working days for report deadlines
    guides: GuideIndex  # the service guides, searched by /guide and free text
    ballot_key: bytes | None = None  # seals waiting anonymous ballots (bot/ballot_key.py)

    def local_iso(self, at: datetime) -> str:
        """A moment in the bot's timezone, ISO 8601 (a push's facts: model.PUSH_FACTS)."""
        return at.astimezone(ZoneInfo(self.settings.bot.timezone)).isoformat(timespec="minutes")

    def local_time(self, at: datetime) -> str:
        """A moment as residents read it: date and minute in the bot's timezone."""
        return at.astimezone(ZoneInfo(self.settings.bot.timezone)).strftime("%Y-%m-%d %H:%M")


@dataclass
class Context:
    inbound: Inbound
    session: AsyncSession
    identity: Identity
    resident: Resident
    lang: str
    services: Services
    capabilities: Capabilities
    state: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)  # a button's arguments
    replies: list[Outbound] = field(default_factory=list)
    pushed: bool = False
    is_new: bool = False
    # The roles the person held when the update began (read with the person), or None:
    # read when first needed.
    roles: Sequence[HeldRole] | None = None
    _scope: Scope | None = None
    _facts: dict[str, Any] = field(default_factory=dict)

    # -- texts -------------------------------------------------------------------------
    def t(self, key: str, **values) -> str:
        return self.services.texts.get(self.lang, key, **values)

    def t_for(self, lang: str, key: str, **values) -> str:
        return self.services.texts.get(lang, key, **values)

    @property
    def now(self) -> datetime:
        return self.services.clock()

    # -- replies -----------------------------------------------------------------------
    def reply(self, text: str, buttons: list[list[Button]] | None = None, **extra) -> Outbound:
        out = Outbound(text=text, buttons=buttons or [], **extra)
        self.replies.append(out)
        return out

    def say(self, key: str, buttons: list[list[Button]] | None = None, **values) -> Outbound:
        return self.reply(self.t(key, **values), buttons)

    def refuse(self, key: str, **values) -> Outbound:
        """Input the current step cannot take, answered with a note that leaves the step's
        choices standing: typing a number next still picks from the prompt before."""
        return self.reply(self.t(key, **values), keeps_choices=True)

    def button(self, label: str, action: str | Action, *args: object,
               identity_id: int | None = None) -> Button:
        """A button signed for its recipient (this person unless `identity_id`): a typed
        action (bot/payloads.py), or an action code and its arguments."""
        target = self.identity.id if identity_id is None else identity_id
        return Button(label, self.services.signer.sign(target, action, *args))

    def button_invalid(self) -> None:
        """A press this bot cannot take (forged, foreign, of an older shape): said once."""
        note = self.t("common.button_invalid")
        self.reply(note, answer_callback=self.inbound.callback_id, notice=note)

    def typed(self, *keys: str) -> bool:
        """The message is the text of one of these keys, in any language and any case:
        residents type a button's label ("skip", "跳过") instead of pressing it."""
        said = (self.inbound.text or "").strip().casefold()
        return bool(said) and any(said == word.casefold() for key in keys
                                  for word in self.services.texts.all_languages(key))

    # -- a pressed button's arguments --------------------------------------------------
    def int_arg(self, i: int = 0, default: int | None = -1) -> int | None:
        """Argument `i` as an int; `default` when missing or not a number (payloads are signed,
        but a button drawn by an older version may carry other arguments)."""
        try:
            return int(self.args[i])
        except (IndexError, ValueError):
            return default

    def int_args(self, n: int) -> list[int] | None:
        """The first `n` arguments as non-negative ints, or None when they are not."""
        try:
            values = [int(a) for a in self.args[:n]]
        except ValueError:
            return None
        return values if len(values) == n and all(v >= 0 for v in values) else None

    # -- conversation state ------------------------------------------------------------
    def goto(self, state: str, **data: Any) -> None:
        """Enter a state; `data` replaces what the conversation remembered."""
        self.state = state
        self.data = dict(data)

    def remember(self, **data: Any) -> None:
        self.data.update(data)

    def finish(self) -> None:
        self.state = None
        self.data = {}

    # -- people and rights -------------------------------------------------------------
    async def scope(self) -> Scope:
        if self._scope is None:
            if self.roles is None or self.session.info.get(ROLES_CHANGED):
                self._scope = await scope_of(self.session, self.resident.id)
            else:
                self._scope = await scope_from_roles(self.session, self.roles)
        return self._scope

    async def fact(self, name: str, load: Callable[[], Awaitable[Any]]) -> Any:
        """A fact about the person read once per update (e.g. "leads a team", asked by
        several commands' visibility in one /help), so one update costs one query for it."""
        if name not in self._facts:
            self._facts[name] = await load()
        return self._facts[name]

    # -- pushes to others, through the outbox ------------------------------------------
    async def tell(self, to: int | Recipient, key: str, *,
                   buttons: Buttons | None = None,
                   priority: outbox.Priority = outbox.Priority.NORMAL,
                   group: str | None = None, dedupe_key: str | None = None,
                   **values: Any) -> None:
        """Push `key` to someone else in their language (bot/pushes.py), through the outbox."""
        await push(self.session, self.services.texts, to, key, buttons=buttons,
                   priority=priority, group=group, dedupe_key=dedupe_key, **values)
        self.pushed = True
