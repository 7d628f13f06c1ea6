"""An in-memory platform: tests drive the bot with it the way a resident would."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from bot.messaging.model import (
    Capabilities,
    Inbound,
    InboundHandler,
    Kind,
    Limits,
    MediaRef,
    Outbound,
    SendResult,
    SendStatus,
    parse_command,
)

# Update ids are unique across adapters, as a platform's are across restarts of the bot.
_UPDATE_IDS = itertools.count(1)


@dataclass
class Sent:
    chat_id: str
    out: Outbound
    ref: str


@dataclass
class MemoryAdapter:
    platform: str = "memory"
    limits: Limits = field(default_factory=lambda: Limits(per_second=1000, per_chat_per_second=1000))
    capabilities: Capabilities = field(default_factory=Capabilities)
    chats: frozenset[str] | None = None
    sent: list[Sent] = field(default_factory=list)
    blocked: set[str] = field(default_factory=set)
    flood_next: int = 0
    files: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._on_inbound: InboundHandler | None = None
        self._ids = itertools.count(1)
        self._refs = itertools.count(1)

    async def start(self, on_inbound: InboundHandler) -> None:
        self._on_inbound = on_inbound

    async def stop(self) -> None:
        self._on_inbound = None

    async def send(self, chat_id: str, outbound: Outbound) -> SendResult:
        if chat_id in self.blocked:
            return SendResult(SendStatus.UNREACHABLE, error="blocked")
        if self.flood_next > 0:
            self.flood_next -= 1
            return SendResult.flood_wait(1)
        ref = outbound.edit_of or str(next(self._refs))
        if outbound.text or outbound.photo or outbound.document or outbound.edit_of:
            self.sent.append(Sent(chat_id, outbound, ref))
        return SendResult.sent(ref)

    async def fetch_media(self, ref: MediaRef) -> bytes:
        return self.files[ref.platform_id]

    # -- driving it -----------------------------------------------------------------------
    async def deliver(self, inbound: Inbound) -> None:
        assert self._on_inbound is not None, "adapter not started"
        await self._on_inbound(inbound)

    def _inbound(self, user: str, kind: Kind, **kw) -> Inbound:
        kw.setdefault("update_id", str(next(_UPDATE_IDS)))
        kw.setdefault("language_hint", "zh-hans")
        return Inbound(platform=self.platform, user_id=user, chat_id=user, kind=kind, **kw)

    async def say(self, user: str, text: str, **kw) -> None:
        cmd = parse_command(text)
        if cmd:
            await self.deliver(self._inbound(user, Kind.COMMAND, text=text, command=cmd[0],
                                             args=cmd[1], **kw))
        else:
            await self.deliver(self._inbound(user, Kind.TEXT, text=text, **kw))

    async def press(self, user: str, label_or_payload: str, *, raw: bool = False, **kw) -> None:
        """Press a button of the latest message to `user` that has one with this label
        (`raw`: send this exact payload, as a forger would)."""
        payload = label_or_payload if raw else (
            self.find_button(user, label_or_payload) or label_or_payload)
        await self.deliver(self._inbound(user, Kind.BUTTON, payload=payload,
                                         callback_id=str(next(self._ids)), **kw))

    async def share_location(self, user: str, latitude: float, longitude: float) -> None:
        await self.deliver(self._inbound(user, Kind.LOCATION, latitude=latitude,
                                         longitude=longitude))

    async def send_media(self, user: str, kind: Kind, data: bytes, **ref) -> None:
        file_id = f"file{next(self._ids)}"
        self.files[file_id] = data
        await self.deliver(self._inbound(
            user, kind, media=MediaRef(platform_id=file_id, size=len(data), **ref)))

    def find_button(self, user: str, label: str) -> str | None:
        for sent in reversed(self.sent):
            if sent.chat_id != user:
                continue
            for row in sent.out.buttons:
                for button in row:
                    if button.label == label or label in button.label:
                        return button.payload
        return None

    def texts_to(self, user: str) -> list[str]:
        return [s.out.text for s in self.sent if s.chat_id == user]

    def last_text(self, user: str) -> str:
        texts = self.texts_to(user)
        return texts[-1] if texts else ""

    def last(self, user: str) -> Outbound | None:
        mine = [s.out for s in self.sent if s.chat_id == user]
        return mine[-1] if mine else None

    def clear(self) -> None:
        self.sent.clear()
