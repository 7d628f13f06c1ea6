"""Terminal windows as a newcomer opens them: each `python -m bot chat --as NAME` its own
process on one database, driven through real stdin and stdout (issue 12, 1-4 and 10).

Each window shows only its own person's messages; a push to someone with no window open waits
in the outbox for them; `/as NAME` makes a window someone else; a line ending in a backslash
goes on on the next; numbers mean the latest prompt's choices only, also after a restart."""

from __future__ import annotations

import asyncio
import codecs
import os
import re
import signal
import sys
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from storage import outbox, polls
from storage.db import create_engine, session_factory
from storage.people import Identity
from tests.conftest import ROOT

TIMEOUT = 30.0


def _env(url: str, tmp) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TELEGRAM_", "BOT_", "DATABASE_", "WEATHER_", "CAP_"))}
    env.update(DATABASE_URL=url, BOT_MEDIA_DIR=str(tmp / "media"))
    return env


async def _cli(url: str, tmp, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=ROOT, env=_env(url, tmp),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode()
    return out.decode()


class Window:
    """One `python -m bot chat --as NAME` process, typed to through a pipe."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log) -> None:
        self.name, self.proc, self.log = name, proc, log
        self.out = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, name: str, url: str, tmp, lang: str = "en") -> Window:
        log = (tmp / f"{name}-{time.monotonic_ns()}.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "chat", "--as", name, "--lang", lang, cwd=ROOT,
            env=_env(url, tmp), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=log)
        window = cls(name, proc, log)
        await window.wait_for("> ", since=0)  # the window is open and reading
        return window

    async def _read(self) -> None:
        while chunk := await self.proc.stdout.read(4096):
            self.out += self._decoder.decode(chunk)
            self._changed.set()
        self._changed.set()

    def mark(self) -> int:
        return len(self.out)

    async def type(self, *lines: str) -> None:
        for line in lines:
            self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def wait_for(self, text: str, *, since: int, within: float = TIMEOUT) -> int:
        """Where `text` ends, once it was printed after `since`."""
        deadline = time.monotonic() + within
        while True:
            at = self.out.find(text, since)
            if at >= 0:
                return at + len(text)
            left = deadline - time.monotonic()
            if left <= 0 or (self._reader.done() and self.out.find(text, since) < 0):
                raise AssertionError(f"{self.name}: {text!r} not shown; after the mark:\n"
                                     f"{self.out[since:][-3000:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
            except TimeoutError:
                pass

    async def ask(self, line: str, expect: str) -> int:
        """Type `line`, wait for `expect`; where the answer began."""
        mark = self.mark()
        await self.type(line)
        await self.wait_for(expect, since=mark)
        return mark

    def number(self, label: str, since: int) -> str:
        """The number shown for the choice `label` (the latest one printed after `since`)."""
        found = re.findall(rf"^  \[(\d+)\] {re.escape(label)}$", self.out[since:], re.M)
        assert found, f"{self.name}: no choice {label!r} in:\n{self.out[since:][-2000:]}"
        return found[-1]

    async def choose(self, label: str, since: int, expect: str) -> int:
        return await self.ask(self.number(label, since), expect)

    async def close(self) -> None:
        if self.proc.returncode is None:
            try:
                await self.type("/quit")
                self.proc.stdin.close()
            except (BrokenPipeError, ConnectionResetError):
                pass
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await self._reader
        self.log.close()
        assert self.proc.returncode == 0, self.name


async def _home(window: Window, estate: str = "Victoria Garden", building: str = "2",
                unit: str = "2-301") -> None:
    mark = await window.ask("/start", "[2] English")
    mark = await window.choose("English", mark, f"[3] {estate}")
    mark = await window.choose(estate, mark, "building number")
    mark = await window.choose(building, mark, "unit")
    await window.ask(unit, "Your home is saved")


async def _outbox_of(url: str, name: str) -> list[tuple[str, str]]:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as s:
            rows = await s.execute(
                select(outbox.OutboxMessage.status, outbox.OutboxMessage.payload)
                .join(Identity, Identity.id == outbox.OutboxMessage.identity_id)
                .where(Identity.platform == "terminal", Identity.platform_user_id == name)
                .order_by(outbox.OutboxMessage.id))
            return [(status, payload.get("text", "")) for status, payload in rows.all()]
    finally:
        await engine.dispose()


APPROVED = "You are now a verified resident."


async def test_each_window_shows_only_its_own_persons_messages(db_url, tmp_path):
    """Staff approve in one window; the resident sees it in hers and nowhere else; a push to
    someone with no window waits in the outbox until a window is theirs (`/as NAME`)."""
    await _cli(db_url, tmp_path, "admin", "grant", "terminal:sam", "committee", "victoria")
    mia, sam, tom = await asyncio.gather(*(Window.open(n, db_url, tmp_path)
                                           for n in ("mia", "sam", "tom")))
    try:
        await _home(mia)
        await mia.ask("/verify", "Your request is in")
        # A second resident asks, then closes his window before staff decide.
        ned = await Window.open("ned", db_url, tmp_path)
        await _home(ned, unit="2-302")
        await ned.ask("/verify", "Your request is in")
        await ned.close()

        # One reply of two items is one prompt, numbered on: Ned's are 3 and 4.
        mark = await sam.ask("/pending", "[4] Reject")
        assert re.search(r"mia, Victoria Garden, unit 2-301\n  \[1\] Approve\n  \[2\] Reject\n"
                         r"(> )?ned, Victoria Garden, unit 2-302\n  \[3\] Approve\n  \[4\] Reject",
                         sam.out[mark:]), sam.out[mark:]
        await sam.ask("3", "Approved.")
        await asyncio.sleep(3)  # every open window's sender claims at least twice meanwhile
        assert (outbox.Status.PENDING.value, APPROVED) in await _outbox_of(db_url, "ned")

        mark = await sam.ask("/pending", "[2] Reject")
        assert "mia, Victoria Garden" in sam.out[mark:] and "ned," not in sam.out[mark:]
        mia_mark = mia.mark()
        await sam.choose("Approve", mark, "Approved.")
        await mia.wait_for(APPROVED, since=mia_mark)

        # Sam's window becomes Ned: his waiting message comes, then back to Sam.
        mark = await sam.ask("/as ned", "You are now ned.")
        await sam.wait_for(APPROVED, since=mark)
        mark = await sam.ask("/as sam", "You are now sam.")
        await sam.ask("/pending", "Nobody is waiting for approval.")
    finally:
        for window in (mia, sam, tom):
            await window.close()
    # Written back by the window that showed it (by the time it closed, at the latest).
    assert [s for s, t in await _outbox_of(db_url, "ned") if t == APPROVED] == ["sent"]
    assert mia.out.count(APPROVED) == 1
    assert sam.out.count(APPROVED) == 1  # Ned's, after `/as ned`
    assert APPROVED not in sam.out[:sam.out.index("You are now ned.")]
    assert APPROVED not in tom.out and "unit 2-301" not in tom.out
    assert "Your request is in" not in sam.out and "Approved." not in mia.out


async def test_multi_line_poll_options_and_numbers_after_a_restart(db_url, tmp_path):
    """Poll options typed one a line with a backslash at the end of each but the last; the
    window closed at the next prompt and opened again: `1` is still its first choice."""
    await _cli(db_url, tmp_path, "admin", "grant", "terminal:ann", "committee", "victoria")
    ann = await Window.open("ann", db_url, tmp_path)
    try:
        await ann.ask("/newpoll", "Type the question")
        await ann.ask("Where should the new bench go?", "one per line")
        mark = ann.mark()
        await ann.type("By the gate\\", "By the pond\\", "Near building 3")
        await ann.wait_for("[2] Several options", since=mark)
    finally:
        await ann.close()
    ann = await Window.open("ann", db_url, tmp_path)
    try:
        shown = ann.out[ann.out.index("The choices you saw last"):]
        assert "[1] One option" in shown and "[2] Several options" in shown
        mark = await ann.ask("1", "Choose the area")  # One option
        mark = await ann.choose("Victoria Garden", mark, "Whole estate")
        mark = await ann.choose("Whole estate", mark, "Verified residents only")
        mark = await ann.choose("Verified residents only", mark, "Per resident")
        mark = await ann.choose("Per resident", mark, "Named")
        mark = await ann.choose("Named", mark, "While open")
        mark = await ann.choose("While open", mark, "close")
        await ann.type("48h")
        mark = await ann.wait_for("turnout", since=mark)
        mark = await ann.ask("0", "Preview")
        preview = ann.out[mark:]
        for option in ("By the gate", "By the pond", "Near building 3"):
            assert option in preview, preview
        await ann.choose("Publish", mark, "is published")
    finally:
        await ann.close()
    engine = create_engine(db_url)
    try:
        async with session_factory(engine)() as s:
            poll = await s.scalar(select(polls.Poll).order_by(polls.Poll.id.desc()))
            assert poll.question == "Where should the new bench go?"
            assert poll.multiple is False
            assert [o.label for o in await polls.options_of(s, poll.id)] == [
                "By the gate", "By the pond", "Near building 3"]
    finally:
        await engine.dispose()


async def test_a_number_typed_after_a_prompt_for_a_number_is_that_number(db_url, tmp_path):
    """The roster shows buttons, "Change places" asks for a number without any: `3` is three
    places, not the roster's third button. Shifts are typed one a line, with backslashes."""
    await _cli(db_url, tmp_path, "admin", "grant", "terminal:org", "committee", "zhonghai")
    day = f"{datetime.now(UTC) + timedelta(days=3):%Y-%m-%d}"
    org = await Window.open("org", db_url, tmp_path)
    try:
        await org.ask("/newactivity", "What is its title?")
        mark = await org.ask("Park clean-up", "[5] Other")
        mark = await org.choose("Environment", mark, "Pick an estate")
        await org.choose("Zhonghai Mingcheng", mark, "Describe the activity")
        await org.ask("Bring gloves.", "one a line")
        mark = org.mark()
        await org.type(f"{day} 09:00-11:00 2\\", f"{day} 14:00-16:00 4")
        await org.wait_for("Type more, or press Done", since=mark)
        assert "09:00–11:00 × 2" in org.out[mark:] and "14:00–16:00 × 4" in org.out[mark:]
        mark = await org.choose("Done", mark, "Who is it for?")
        mark = await org.choose("Residents of this estate", mark, "Preview")
        await org.choose("Publish", mark, "is published")
        mark = await org.ask("/roster", "Which shift?")
        assert org.number(f"Park clean-up · {day[5:]} 14:00 (0/4)", mark) == "2"
        mark = await org.ask("2", "Check-in code")  # the afternoon shift
        assert "Signed up 0/4" in org.out[mark:]
        buttons = re.findall(r"^  \[(\d+)\] ", org.out[mark:], re.M)
        assert len(buttons) >= 3, org.out[mark:]  # `3` would have been a button here
        mark = await org.choose("Change places", mark, "Type the new number of places")
        await org.ask("3", "Places set to 3.")
        # The prompt before was one without buttons: `1` now is just a text again.
        await org.ask("1", "didn't understand")
    finally:
        await org.close()


async def test_after_a_refused_answer_the_numbers_still_pick_from_the_list(sqlite_url, tmp_path):
    """A name the bot cannot find, or a number past the end of the list, is answered with a
    note ("pick one from the list"); the list's numbers still hold after that note."""
    win = await Window.open("kai", sqlite_url, tmp_path)
    try:
        mark = await win.ask("/start", "[2] English")
        mark = await win.choose("English", mark, "[3] Victoria Garden")
        number = win.number("Victoria Garden", mark)
        await win.ask("Atlantis Towers", 'could not find an estate called "Atlantis Towers"')
        await win.ask("9", 'could not find an estate called "9"')
        await win.ask(number, "Victoria Garden: pick or type your building number")
    finally:
        await win.close()


async def test_ctrl_c_and_bad_media_paths_get_one_quiet_line(sqlite_url, tmp_path):
    """A bad /photo, /voice or /location (a typo, or a place not on Earth) gets one line in the
    person's language (the window's `--lang` until they choose one); Ctrl-C at the prompt, the
    reader waiting for a line, ends the window at once, without a traceback."""
    zh = await Window.open("lin", sqlite_url, tmp_path, lang="zh-hans")
    try:
        assert "/as 名字" in zh.out  # the opening line tells how to be someone else
        await zh.ask("/photo /no/such/leak.jpg", "无法读取文件 /no/such/leak.jpg，请检查路径后重试。")
        await zh.ask("/voice", "用法：/voice 文件路径 [秒数]")
        await zh.ask("/location 30.6", "用法：/location 纬度 经度")
        mark = await zh.ask("/start", "[2] English")
        await zh.choose("English", mark, "Language set to English.")
        await zh.ask("/photo /no/such/leak.jpg", "Cannot read the file /no/such/leak.jpg.")
        await zh.ask(f"/voice {tmp_path}", "Cannot read the file")  # a folder
        await zh.ask("/location north", "Usage: /location LAT LON")
        await zh.ask("/location 91 200", "Usage: /location LAT LON")  # not on Earth
        await zh.ask("/as two words", "Usage: /as NAME")
        started = time.monotonic()
        zh.proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(zh.proc.wait(), 10)
        took = time.monotonic() - started
    finally:
        await zh.close()
    assert took < 3.0, took
    log = (tmp_path / next(p.name for p in tmp_path.iterdir() if p.name.startswith("lin-")))
    assert "Traceback" not in log.read_text(errors="replace")
    assert "Traceback" not in zh.out and "KeyboardInterrupt" not in zh.out
