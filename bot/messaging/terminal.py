"""A terminal chat: people typing to the bot, for trying it out without any platform.

One window is one person at a time: it shows only that person's messages (`chats`), and
`/as NAME` makes it another person. Buttons are shown as numbered choices; what a number means
is kept in the database by the deliverer and dispatch (storage.choices), not here. A line
ending in `\\` goes on on the next line (poll options, one a line). `/location LAT LON`,
`/photo PATH` and `/voice PATH [SECONDS]` stand for what a phone would send.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import sys
import threading
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from bot.i18n import Texts, normalize_language
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
    valid_point,
)
from storage.choices import numbers_shown

NAME_LIMIT = 64  # an identity's platform user id
CONTINUE = "\\"


class TerminalAdapter:
    platform = "terminal"
    limits = Limits(per_second=1000, per_chat_per_second=1000)
    capabilities = Capabilities(buttons=False, location=False, photos=False, voice=False,
                                edit=False)

    def __init__(self, user: str = "resident", *, stdin: TextIO | None = None,
                 stdout: TextIO | None = None, language: str = "zh-hans",
                 texts: Texts | None = None,
                 language_of: Callable[[str], Awaitable[str | None]] | None = None,
                 choices_of: Callable[[str], Awaitable[list[str]]] | None = None,
                 on_switch: Callable[[], None] | None = None) -> None:
        self.user = user
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.language = language
        self.texts = texts or Texts()
        # From whoever runs the window (bot.cli), read from the database: the person's chosen
        # language, the labels of their latest numbered choices, and a nudge for the deliverer
        # to bring a newly served person's waiting messages.
        self.language_of = language_of
        self.choices_of = choices_of
        self.on_switch = on_switch
        self._open = False
        self._prompting = ""  # the prompt shown while waiting for a line
        self._refs = itertools.count(1)
        self._task: asyncio.Task | None = None
        self.finished = asyncio.Event()

    @property
    def chats(self) -> frozenset[str]:
        """Only the person at the keyboard, once the window is open."""
        return frozenset({self.user}) if self._open else frozenset()

    async def start(self, on_inbound: InboundHandler) -> None:
        await self._say("terminal.started", name=self.user)
        await self._show_choices()
        self._open = True
        if self.on_switch is not None:
            self.on_switch()
        self._task = asyncio.create_task(self._loop(on_inbound), name="terminal")

    async def stop(self) -> None:
        self._open = False
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- input ------------------------------------------------------------------------------
    def _read_lines(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
        """In a daemon thread: a Ctrl-C or the end of the program never waits for a line."""
        try:
            while True:
                line = self.stdin.readline()
                loop.call_soon_threadsafe(queue.put_nowait, line)
                if not line:
                    return
        except (OSError, ValueError, RuntimeError):  # stdin closed, or the loop is gone
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, "")

    async def _loop(self, on_inbound: InboundHandler) -> None:
        queue: asyncio.Queue[str] = asyncio.Queue()
        threading.Thread(target=self._read_lines, args=(asyncio.get_running_loop(), queue),
                         name="terminal-stdin", daemon=True).start()
        try:
            while True:
                text = await self._read_message(queue)
                if text is None:  # end of input
                    break
                if text.strip() in ("/quit", "/exit"):
                    break
                inbound = await self.parse(text)
                if inbound is not None:
                    await on_inbound(inbound)
        finally:
            self._open = False
            self.finished.set()

    async def _read_message(self, queue: asyncio.Queue) -> str | None:
        """One message: a line, or several when each but the last ends in a backslash."""
        parts: list[str] = []
        self._prompt("> ")
        while True:
            try:
                line = await queue.get()
            finally:
                self._prompting = ""
            if not line:
                return "\n".join(parts) if parts else None
            line = line.rstrip("\r\n")
            if line.endswith(CONTINUE):
                parts.append(line[:-1])
                self._prompt(". ")
                continue
            parts.append(line)
            return "\n".join(parts)

    def _prompt(self, text: str) -> None:
        self._prompting = text
        self.stdout.write(text)
        self.stdout.flush()

    async def parse(self, text: str) -> Inbound | None:
        """What the person typed as an update; None when the window answered it itself."""
        base: dict[str, Any] = dict(
            platform=self.platform, user_id=self.user, chat_id=self.user, update_id=None,
            language_hint=self.language, display_name=self.user)
        stripped = text.strip()
        cmd = parse_command(stripped)
        name, args = cmd if cmd else (None, "")
        if name == "as":
            await self._switch(args)
            return None
        if name == "location":
            try:
                lat, lon = (float(x) for x in args.replace(",", " ").split())
            except ValueError:
                lat = lon = math.nan
            if not valid_point(lat, lon):  # not a place on Earth: said here, as a typo is
                await self._say("terminal.location_usage")
                return None
            return Inbound(kind=Kind.LOCATION, latitude=lat, longitude=lon, **base)
        if name in ("photo", "voice"):
            media = await self._media(name, args)
            if media is None:
                return None
            return Inbound(kind=Kind.PHOTO if name == "photo" else Kind.VOICE, media=media,
                           **base)
        if cmd:
            return Inbound(kind=Kind.COMMAND, text=stripped, command=name, args=args, **base)
        return Inbound(kind=Kind.TEXT, text=text, **base)

    async def _media(self, kind: str, args: str) -> MediaRef | None:
        """A file on this computer standing for a photo or voice note; a one-line answer when
        it cannot be one."""
        seconds = None
        if kind == "voice":
            head, _, tail = args.rpartition(" ")
            if head and tail.isdecimal():
                args, seconds = head, int(tail)
        if not args:
            await self._say(f"terminal.{kind}_usage")
            return None
        typed = args.strip().strip("'\"")
        try:
            path, size = await asyncio.to_thread(_readable_file, typed)
        except OSError:
            await self._say("terminal.file_unreadable", path=typed)
            return None
        if kind == "voice" and seconds is None:
            seconds = await asyncio.to_thread(_wav_seconds, path)
            if seconds is None:
                await self._say("terminal.voice_usage")
                return None
        return MediaRef(platform_id=str(path), size=size, file_name=path.name,
                        duration=seconds)

    async def _switch(self, args: str) -> None:
        name = args.strip()
        if not name or len(name) > NAME_LIMIT or any(c.isspace() for c in name):
            await self._say("terminal.as_usage", limit=NAME_LIMIT)
            return
        self.user = name
        await self._say("terminal.switched", name=name)
        await self._show_choices()
        if self.on_switch is not None:
            self.on_switch()  # their messages waiting in the outbox come now

    # -- output -----------------------------------------------------------------------------
    async def _lang(self) -> str:
        chosen = await self.language_of(self.user) if self.language_of is not None else None
        return chosen or normalize_language(self.language, self.texts.default)

    async def note(self, key: str, **values) -> None:
        """A line of the terminal's own (e.g. the dashboard's address), in the person's
        language."""
        await self._say(key, **values)

    async def _say(self, key: str, **values) -> None:
        self._write([self.texts.get(await self._lang(), key, **values)])

    async def _show_choices(self) -> None:
        labels = await self.choices_of(self.user) if self.choices_of is not None else []
        if labels:
            lines = [self.texts.get(await self._lang(), "terminal.choices_again")]
            lines += [f"  [{n}] {label}" for n, label in enumerate(labels, 1)]
            self._write(lines)

    def _write(self, lines: list[str]) -> None:
        # A message arriving while the person is at the prompt (someone else's doing) is
        # printed after it, and the prompt again below it.
        self.stdout.write("\n".join(lines) + "\n" + self._prompting)
        self.stdout.flush()

    async def send(self, chat_id: str, outbound: Outbound) -> SendResult:
        lines = []
        if outbound.text:
            lines.append(outbound.text)
        if outbound.photo:
            lines.append(f"[photo: {outbound.photo}]")
        if outbound.document:
            lines.append(f"[document: {outbound.document}]")
        if outbound.voice:
            lines.append(f"[voice: {outbound.voice}]")
        lines += [f"  [{n}] {label}" for n, label in numbers_shown(outbound)]
        if lines:
            self._write(lines)
        return SendResult.sent(str(next(self._refs)))

    async def fetch_media(self, ref: MediaRef) -> bytes:
        return await asyncio.to_thread(Path(ref.platform_id).read_bytes)


def _readable_file(typed: str) -> tuple[Path, int]:
    path = Path(typed).expanduser()
    if not path.is_file() or not os.access(path, os.R_OK):
        raise OSError(f"not a readable file: {path}")
    return path, path.stat().st_size


def _wav_seconds(path: Path) -> int | None:
    try:
        with wave.open(str(path), "rb") as w:
            rate = w.getframerate()
            return max(1, round(w.getnframes() / rate)) if rate else None
    except (wave.Error, EOFError, OSError):
        return None
