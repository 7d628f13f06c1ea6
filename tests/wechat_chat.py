"""The memory adapter's driving interface (say, press, share_location, texts_to, last_text...)
over the real WeChat adapter and the fake WeChat: the handler tests written for the memory
adapter run unchanged on WeChat (tests/test_handlers_on_wechat.py).

A press is what a WeChat resident does: the number the label was shown under, typed back. What
the bot sent is read back from the fake as the resident would see it, and each message's
numbered lines are turned back into its buttons (the label, and the number as the payload)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from bot.messaging.model import Button, Kind, Outbound
from bot.messaging.wechat import WeChatAdapter
from storage import choices
from tests.fakes.wechat_server import FakeWeChat

_CHOICE = re.compile(r"^\[(\d+)\] (.*)$")


class OlderPrompt(AssertionError):
    """A press on a message older than the latest prompt: on WeChat a typed number means the
    latest prompt's choices only, so this press cannot be made there."""


@dataclass
class Sent:
    chat_id: str
    out: Outbound
    ref: str


def _as_outbound(entry: dict) -> Outbound:
    """A WeChat message back as an Outbound: its text, and its numbered lines as buttons."""
    if entry["kind"] == "custom" and entry["msgtype"] == "image":
        return Outbound(photo=entry["media_id"])
    if entry["kind"] == "custom" and entry["msgtype"] == "voice":
        return Outbound(voice=entry["media_id"])
    lines = entry["text"].split("\n")
    buttons: list[list[Button]] = []
    while lines and (found := _CHOICE.match(lines[-1])):
        buttons.insert(0, [Button(found.group(2), found.group(1))])
        lines.pop()
    if buttons and lines and lines[-1] == "":
        lines.pop()
    return Outbound(text="\n".join(lines), buttons=buttons)


class WeChatChat:
    def __init__(self, fake: FakeWeChat, adapter: WeChatAdapter) -> None:
        self.platform = adapter.platform
        self.fake = fake
        self.adapter = adapter
        # What this app's bot said, as a new memory adapter starts empty (one fake WeChat may
        # serve the apps a test builds one after the other).
        self._since = len(fake.sent)

    async def _settle(self) -> None:
        """Until the callback is handled and its replies are with the fake."""
        await asyncio.gather(*(q.join() for q in self.adapter._queues))

    # -- what a resident does ---------------------------------------------------------------
    async def say(self, user: str, text: str, **kw) -> None:
        await self.fake.say(user, text)
        await self._settle()

    async def press(self, user: str, label_or_payload: str, **kw) -> None:
        """Type the number of the choice with this label (or this number), as a resident
        does: only the latest prompt's numbers mean anything, so a label shown on an older
        message only is a press WeChat cannot make (OlderPrompt)."""
        async with self.adapter.sessions() as session:
            current = await choices.current_for(session, self.platform, user)
        labels = [label for label, _ in current]
        if label_or_payload.isdecimal():  # a payload the test read: the number itself
            number = label_or_payload
        else:
            number = self.find_button(user, label_or_payload)
            assert number is not None, f"no choice {label_or_payload!r} shown to {user}"
        n = int(number)
        if not (1 <= n <= len(labels) and (label_or_payload == number
                                            or label_or_payload in labels[n - 1])):
            recent = [s.out.text[:60] for s in self.sent if s.chat_id == user][-3:]
            raise OlderPrompt(f"{label_or_payload!r} ([{number}]) is not a choice of the "
                              f"latest prompt to {user}: {labels}; last said: {recent}")
        await self.say(user, number)

    async def share_location(self, user: str, latitude: float, longitude: float) -> None:
        await self.fake.send_location(user, latitude, longitude)
        await self._settle()

    async def send_media(self, user: str, kind: Kind, data: bytes, **ref) -> None:
        assert kind == Kind.PHOTO, "WeChat voice notes are AMR: see tests/test_wechat.py"
        await self.fake.send_image(user, data)
        await self._settle()

    # -- what the bot said --------------------------------------------------------------------
    @property
    def sent(self) -> list[Sent]:
        return [Sent(e["touser"], _as_outbound(e), str(n))
                for n, e in enumerate(self.fake.sent[self._since:], self._since)]

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
        return [s.out.text for s in self.sent
                if s.chat_id == user and not (s.out.photo or s.out.voice)]

    def last_text(self, user: str) -> str:
        texts = self.texts_to(user)
        return texts[-1] if texts else ""

    def last(self, user: str) -> Outbound | None:
        mine = [s.out for s in self.sent if s.chat_id == user]
        return mine[-1] if mine else None

    def clear(self) -> None:
        self._since = len(self.fake.sent)
