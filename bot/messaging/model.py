"""The neutral messaging model shared by every platform adapter.

Handlers speak only in these types; an adapter translates them to and from its platform.
"""

from __future__ import annotations

import asyncio
import enum
import math
import re
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

CALLBACK_LIMIT = 64  # bytes; Telegram's limit, the tightest of the platforms we target


class Kind(enum.StrEnum):
    TEXT = "text"
    COMMAND = "command"
    BUTTON = "button"
    LOCATION = "location"
    PHOTO = "photo"
    VOICE = "voice"
    DOCUMENT = "document"
    CONTACT = "contact"


@dataclass(frozen=True)
class MediaRef:
    """A platform file the bot can fetch later with `Adapter.fetch_media`."""

    platform_id: str
    size: int | None = None
    mime_type: str | None = None
    file_name: str | None = None
    duration: int | None = None  # seconds, for voice notes
    width: int | None = None
    height: int | None = None



# An adapter that must not answer its platform before an update is safely stored (a webhook:
# the platform sends again only what went unanswered) sets an event here for the update's
# handling; the dispatcher sets it as soon as the update's transaction has committed.
STORED: ContextVar[asyncio.Event | None] = ContextVar("stored", default=None)

@dataclass(frozen=True)
class Inbound:
    platform: str
    user_id: str
    chat_id: str
    kind: Kind
    update_id: str | None = None
    language_hint: str | None = None
    display_name: str | None = None
    text: str | None = None
    command: str | None = None
    args: str = ""
    payload: str | None = None  # button payload, as sent; verified by dispatch
    message_ref: str | None = None  # the message a button belonged to
    callback_id: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    media: MediaRef | None = None
    phone: str | None = None
    at: datetime | None = None

    def __post_init__(self) -> None:
        # Every adapter builds its updates here, so this is the one place where what a user
        # typed is made safe to store: NUL bytes (PostgreSQL refuses them in any text) are
        # removed from text, command, arguments, name and phone.
        for name in ("text", "command", "args", "display_name", "phone"):
            value = getattr(self, name)
            if value and "\x00" in value:
                object.__setattr__(self, name, value.replace("\x00", ""))
        # A location is only a location with real coordinates; anything else (missing, NaN,
        # out of range) arrives as an unreadable message, which dispatch answers as such.
        if self.kind == Kind.LOCATION and not valid_point(self.latitude, self.longitude):
            object.__setattr__(self, "kind", Kind.TEXT)
            object.__setattr__(self, "text", "")
            object.__setattr__(self, "latitude", None)
            object.__setattr__(self, "longitude", None)


def valid_point(latitude: object, longitude: object) -> bool:
    """True for a finite latitude in [-90, 90] and longitude in [-180, 180]."""
    if isinstance(latitude, bool) or isinstance(longitude, bool):
        return False
    if not isinstance(latitude, int | float) or not isinstance(longitude, int | float):
        return False
    return (math.isfinite(latitude) and math.isfinite(longitude)
            and -90 <= latitude <= 90 and -180 <= longitude <= 180)


class PushKind(enum.StrEnum):
    """What a push is, for a platform that can reach someone only by a fixed form outside a
    window (WeChat's template messages, one per kind). Pushes of no kind have no such form."""

    NOTICE = "notice"
    REPORT_STATUS = "report_status"
    REMINDER = "reminder"
    POLL = "poll"  # an invitation to vote


# The facts each kind of push carries besides its text (Outbound.facts): short values in the
# reader's language; `time`, `deadline`: ISO 8601 datetimes in the bot's time zone.
PUSH_FACTS: dict[PushKind, tuple[str, ...]] = {
    PushKind.NOTICE: ("title", "text", "time"),
    PushKind.REPORT_STATUS: ("ref", "category", "status", "time", "note"),
    PushKind.REMINDER: ("title", "time"),
    PushKind.POLL: ("title", "deadline"),
}


@dataclass(frozen=True)
class Button:
    label: str
    payload: str


@dataclass
class Outbound:
    text: str = ""
    buttons: list[list[Button]] = field(default_factory=list)
    request_location: str | None = None  # label of a "share location" key
    request_contact: str | None = None
    photo: str | None = None  # a path on disk or a platform file id
    document: str | None = None  # a path on disk
    document_name: str | None = None
    voice: str | None = None
    edit_of: str | None = None  # message ref to edit in place
    answer_callback: str | None = None  # ack a button press (spinner stops)
    notice: str | None = None  # short toast for a button press
    # Never written down, not even in the outbox (an anonymous ballot's ticks): sent from
    # memory only, so a crash may lose it.
    ephemeral: bool = False
    # A platform without buttons shows them as numbers from this one on (None: 1); set by the
    # deliverer, which numbers one reply's messages as one prompt (storage.choices).
    number_from: int | None = None
    # A note about the input just given ("no estate of that name: pick one from the list"):
    # on a platform without buttons the numbers of the prompt before still hold after it.
    keeps_choices: bool = False
    # A push of a kind (PushKind's value) and its facts by name (PUSH_FACTS): what a platform
    # fills its fixed form for that kind with when the text itself cannot go.
    push: str | None = None
    facts: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        # Field by field rather than dataclasses.asdict, which deep-copies every value
        # recursively: every reply of every update is written down through here.
        data: dict[str, Any] = {}
        for name in _STORED_FIELDS:
            value = getattr(self, name)
            if value not in (None, "", [], {}, False):
                data[name] = value
        if self.buttons:
            data["buttons"] = [[[b.label, b.payload] for b in row] for row in self.buttons]
        if self.facts:
            data["facts"] = dict(self.facts)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outbound:
        data = dict(data)
        rows = data.pop("buttons", [])
        out = cls(**data)
        out.buttons = [[Button(label, payload) for label, payload in row] for row in rows]
        return out


# What an outbox row keeps of a message (buttons and facts are copied apart); `ephemeral` and
# `number_from` are for the moment of sending only.
_STORED_FIELDS = tuple(
    f.name for f in fields(Outbound)
    if f.name not in ("buttons", "facts", "ephemeral", "number_from"))


class SendStatus(enum.StrEnum):
    SENT = "sent"
    RETRY = "retry"
    UNREACHABLE = "unreachable"
    FAILED = "failed"


@dataclass(frozen=True)
class SendResult:
    status: SendStatus
    message_ref: str | None = None
    retry_after: float = 0.0
    error: str | None = None
    flood: bool = False  # the platform's rate limit (429): pause the whole sender
    # UNREACHABLE for this message only, and only now (outside a platform's window, with no
    # other way for it): the recipient is not gone, and their other messages are still tried.
    for_now: bool = False

    @classmethod
    def flood_wait(cls, seconds: float) -> SendResult:
        return cls(SendStatus.RETRY, retry_after=seconds, error="flood", flood=True)

    @classmethod
    def sent(cls, ref: str | None = None) -> SendResult:
        return cls(SendStatus.SENT, message_ref=ref)


# Set by the deliverer around each send: an adapter whose one send may make several API calls
# (a media upload and the message, a refused message and the form sent instead) enters
# `API_CALL.get()()` around each call, when set, so that every call is counted against the
# platform's budget and not only the first.
API_CALL: ContextVar[Callable[[], AbstractAsyncContextManager[None]] | None] = ContextVar(
    "api_call", default=None)


@dataclass(frozen=True)
class Limits:
    per_second: float  # messages a second overall
    per_chat_per_second: float


@dataclass(frozen=True)
class Capabilities:
    buttons: bool = True
    location: bool = True
    photos: bool = True
    voice: bool = True
    edit: bool = True


InboundHandler = Callable[[Inbound], Awaitable[None]]


class Adapter(Protocol):
    platform: str
    limits: Limits
    capabilities: Capabilities
    # The chats this adapter delivers to: None for every chat of its platform (a bot account).
    # A terminal window serves only the person typing in it; pushes to anyone else wait in
    # the outbox for the window that serves them.
    @property
    def chats(self) -> frozenset[str] | None: ...

    async def start(self, on_inbound: InboundHandler) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, chat_id: str, outbound: Outbound) -> SendResult: ...

    async def fetch_media(self, ref: MediaRef) -> bytes: ...


@runtime_checkable
class AttachesRuntime(Protocol):
    """An adapter that needs the process's database and HTTP client (WeChat keeps its access
    token in the database and calls the API through the shared session): the composition root
    hands them over once, before the adapter starts."""

    def attach(self, *, sessions: Any = None, http: Any = None) -> None: ...


_COMMAND = re.compile(r"^/([A-Za-z][A-Za-z0-9_]{0,31})(?:@\w+)?(?:\s+(.*))?$", re.DOTALL)


def parse_command(text: str | None) -> tuple[str, str] | None:
    """`/start@bot args` -> ("start", "args"); None when the text is not a command."""
    if not text:
        return None
    match = _COMMAND.match(text.strip())
    if not match:
        return None
    return match.group(1).lower(), (match.group(2) or "").strip()
