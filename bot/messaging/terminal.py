"""A terminal chat: one person typing to the bot, for trying it out without any platform.

Buttons become numbered choices (type the number); a location is typed as `/location LAT LON`.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from typing import TextIO

from bot.messaging.model import (
    Capabilities,
    Inbound,
    InboundHandler,
    Kind,
    Limits,
    MediaRef,
    Outbound,
    SendResult,
    parse_command,
)


class TerminalAdapter:
    platform = "terminal"
    limits = Limits(per_second=1000, per_chat_per_second=1000)
    capabilities = Capabilities(buttons=False, location=False, photos=False, voice=False,
                                edit=False)

    def __init__(self, user: str = "resident", *, stdin: TextIO | None = None,
                 stdout: TextIO | None = None, language: str = "zh-hans") -> None:
        self.user = user
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.language = language
        self._choices: dict[str, str] = {}
        self._refs = itertools.count(1)
        self._ids = itertools.count(1)
        self._task: asyncio.Task | None = None
        self.finished = asyncio.Event()

    async def start(self, on_inbound: InboundHandler) -> None:
        self._task = asyncio.create_task(self._loop(on_inbound), name="terminal")

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _loop(self, on_inbound: InboundHandler) -> None:
        try:
            while True:
                self.stdout.write("> ")
                self.stdout.flush()
                line = await asyncio.to_thread(self.stdin.readline)
                if not line:  # end of input
                    break
                line = line.rstrip("\n")
                if line.strip() in ("/quit", "/exit"):
                    break
                inbound = self.parse(line)
                if inbound is not None:
                    await on_inbound(inbound)
        finally:
            self.finished.set()

    def parse(self, line: str) -> Inbound | None:
        base = dict(platform=self.platform, user_id=self.user, chat_id=self.user,
                    update_id=None, language_hint=self.language, display_name=self.user)
        stripped = line.strip()
        if stripped in self._choices:
            return Inbound(kind=Kind.BUTTON, payload=self._choices[stripped], **base)
        cmd = parse_command(stripped)
        if cmd and cmd[0] == "location":
            try:
                lat, lon = (float(x) for x in cmd[1].replace(",", " ").split())
            except ValueError:
                self.stdout.write("usage: /location LAT LON\n")
                return None
            return Inbound(kind=Kind.LOCATION, latitude=lat, longitude=lon, **base)
        if cmd and cmd[0] in ("photo", "voice") and cmd[1]:
            return Inbound(kind=Kind.PHOTO if cmd[0] == "photo" else Kind.VOICE,
                           media=MediaRef(platform_id=cmd[1]), **base)
        if cmd:
            return Inbound(kind=Kind.COMMAND, text=stripped, command=cmd[0], args=cmd[1], **base)
        return Inbound(kind=Kind.TEXT, text=line, **base)

    async def send(self, chat_id: str, outbound: Outbound) -> SendResult:
        lines = []
        if outbound.text:
            lines.append(outbound.text)
        if outbound.photo:
            lines.append(f"[photo: {outbound.photo}]")
        if outbound.document:
            lines.append(f"[document: {outbound.document}]")
        if outbound.buttons:
            self._choices = {}
            n = 0
            for row in outbound.buttons:
                for button in row:
                    n += 1
                    self._choices[str(n)] = button.payload
                    lines.append(f"  [{n}] {button.label}")
        if lines:
            self.stdout.write("\n".join(lines) + "\n")
            self.stdout.flush()
        return SendResult.sent(str(next(self._refs)))

    async def fetch_media(self, ref: MediaRef) -> bytes:
        from pathlib import Path

        return await asyncio.to_thread(Path(ref.platform_id).read_bytes)
