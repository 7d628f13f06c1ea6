"""A poll end to end through aiogram and the fake Bot API: publish, invitations through the
outbox, vote, change, a household's second member refused, closing by the scheduler's job,
results with the bar chart pushed to every eligible resident, quorum not met."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from bot.app import build_app
from bot.config import BotSettings, DatabaseSettings, Settings
from bot.messaging.telegram import TelegramAdapter
from bot.scheduler import Clock, run_jobs_once
from storage import polls, territory
from storage.audience import Audience
from tests.deliberation_helpers import grant, make_resident
from tests.fakes.telegram_server import FakeTelegram

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "content" / "territory" / "demo.json"
AUTHOR, ANN, BOB, CY, FAR = 7001, 7002, 7003, 7004, 7005


def _button(fake: FakeTelegram, entry: dict, label: str) -> str:
    for text, data in fake.buttons(entry):
        if text == label:
            return data
    raise AssertionError(f"no button {label!r} in {fake.buttons(entry)}")


async def _press(fake: FakeTelegram, uid: int, entry: dict, label: str) -> int:
    mark = len(fake.sent)
    fake.push_callback(uid, _button(fake, entry, label), language_code="en",
                       message_id=entry["message_id"])
    return mark


async def _answer(fake: FakeTelegram, uid: int, text: str, expect: str) -> dict:
    mark = len(fake.sent)
    fake.push_message(uid, text, language_code="en")
    return await fake.wait_for_text(uid, expect, since=mark)


async def test_poll_through_telegram(tmp_path):
    fake = FakeTelegram()
    await fake.start()
    app = None
    clock = Clock()
    try:
        settings = Settings(
            database=DatabaseSettings(DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/bot.sqlite3"),
            bot=BotSettings(media_dir=tmp_path / "media", flood_burst=10_000))
        adapter = TelegramAdapter(fake.token, api_base=fake.base_url, polling_timeout=1)
        app = await build_app(settings, {"telegram": adapter}, territory=DEMO, clock=clock)
        await app.start(schedule=False)
        s = app.sessions
        await make_resident(s, "telegram", str(AUTHOR), building="6")
        await grant(s, f"telegram:{AUTHOR}", "committee", "victoria")
        await make_resident(s, "telegram", str(ANN), unit="2-101")
        await make_resident(s, "telegram", str(BOB), unit="2-101")  # Ann's household
        await make_resident(s, "telegram", str(CY), unit="3-202")
        await make_resident(s, "telegram", str(FAR), estate="zhonghai-mingcheng")

        await _answer(fake, AUTHOR, "/newpoll", "Type the question")
        await _answer(fake, AUTHOR, "Repaint the playground?", "one per line")
        step = await _answer(fake, AUTHOR, "Yes, this spring\nYes, next year\nNo",
                             "choose one option or several")
        for label, expect in [("One option", "Choose the area"),
                              ("Victoria Garden", "Limit the poll to one building"),
                              ("Whole estate", "Only verified residents"),
                              ("Verified residents only", "One vote per resident"),
                              ("Per household", "Anonymous or named"),
                              ("Named", "Show results while"),
                              ("Only after close", "When does the poll close")]:
            mark = await _press(fake, AUTHOR, step, label)
            step = await fake.wait_for_text(AUTHOR, expect, since=mark)
        await _answer(fake, AUTHOR, "2d", "Minimum turnout")
        preview = await _answer(fake, AUTHOR, "5", "Publish it?")
        assert "One vote per household." in preview["text"]
        mark = await _press(fake, AUTHOR, preview, "Publish")
        await fake.wait_for_text(AUTHOR, "Poll #1 is published", since=mark)

        # The job streams the invitations into the outbox; the running sender delivers them.
        await run_jobs_once(app.sessions, app.services, app.deliverer, app.jobs)
        ballots = {uid: await fake.wait_for_text(uid, "Poll #1: Repaint the playground?")
                   for uid in (ANN, BOB, CY)}
        assert not [e for e in fake.sent if e["chat_id"] == FAR]

        mark = await _press(fake, ANN, ballots[ANN], "2. Yes, next year")
        await fake.wait_for_text(ANN, "You voted in poll #1: 2. Yes, next year", since=mark)
        mark = await _press(fake, ANN, ballots[ANN], "1. Yes, this spring")
        await fake.wait_for_text(ANN, "changed to: 1. Yes, this spring", since=mark)
        mark = await _press(fake, BOB, ballots[BOB], "3. No")
        await fake.wait_for_text(BOB, "Your household has already voted", since=mark)
        mark = await _press(fake, CY, ballots[CY], "3. No")
        await fake.wait_for_text(CY, "You voted in poll #1: 3. No", since=mark)

        # A restart-safe close: the job claims the due poll from the database.
        clock.advance(timedelta(days=2, hours=1))
        mark = len(fake.sent)
        await run_jobs_once(app.sessions, app.services, app.deliverer, app.jobs)
        await run_jobs_once(app.sessions, app.services, app.deliverer, app.jobs)
        for uid in (ANN, BOB, CY, AUTHOR):
            result = await fake.wait_for(
                lambda e, uid=uid: e["chat_id"] == uid and e["method"] == "sendPhoto",
                since=mark)
            caption = result["text"]
            assert "1. Yes, this spring: 1 (50.00%)" in caption
            assert "3. No: 1 (50.00%)" in caption
            assert "Turnout: 2 of 2 eligible (100.00%)" in caption  # two households
            assert "Quorum of 5 voters: NOT met" in caption
        photos = [e for e in fake.sent[mark:] if e["method"] == "sendPhoto"]
        assert len(photos) == 4  # once each, although the job ran twice
        mark = await _press(fake, CY, ballots[CY], "1. Yes, this spring")
        await fake.wait_for_text(CY, "This poll is closed", since=mark)
        assert not fake.internal_errors
    finally:
        if app is not None:
            await app.stop()
        await fake.stop()


async def test_multiple_choice_ticks_edit_the_ballot_in_place(tmp_path):
    fake = FakeTelegram()
    await fake.start()
    app = None
    try:
        settings = Settings(
            database=DatabaseSettings(DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/bot.sqlite3"),
            bot=BotSettings(media_dir=tmp_path / "media", flood_burst=10_000))
        adapter = TelegramAdapter(fake.token, api_base=fake.base_url, polling_timeout=1)
        app = await build_app(settings, {"telegram": adapter}, territory=DEMO)
        await app.start(schedule=False)
        author = await make_resident(app.sessions, "telegram", str(AUTHOR))
        await make_resident(app.sessions, "telegram", str(ANN), unit="2-101")
        async with app.sessions() as s, s.begin():
            estate = await territory.estate_by_code(s, "victoria")
            await polls.create(s, polls.PollDraft(
                question="Which services?", options=["Library", "Gym", "Clinic"],
                multiple=True, audience=Audience("estate", estate.id, True),
                per_household=False, anonymous=True, live_results=False,
                closes_at=app.services.clock() + timedelta(days=1), quorum=None,
                committee_id=estate.committee_id), author)
        await run_jobs_once(app.sessions, app.services, app.deliverer, app.jobs)
        ballot = await fake.wait_for_text(ANN, "Poll #1: Which services?")
        mark = await _press(fake, ANN, ballot, "☐ 1. Library")
        edited = await fake.wait_for(
            lambda e: e["chat_id"] == ANN and e["method"] == "editMessageText", since=mark)
        assert edited["message_id"] == ballot["message_id"]
        labels = [t for t, _ in fake.buttons(edited)]
        assert labels[:3] == ["☑ 1. Library", "☐ 2. Gym", "☐ 3. Clinic"]
        mark = await _press(fake, ANN, edited, "☐ 3. Clinic")
        edited = await fake.wait_for(
            lambda e: e["chat_id"] == ANN and e["method"] == "editMessageText", since=mark)
        mark = await _press(fake, ANN, edited, "Submit my choice")
        await fake.wait_for_text(ANN, "recorded anonymously", since=mark)
        mark = await _press(fake, ANN, edited, "Submit my choice")
        await fake.wait_for_text(ANN, "already voted", since=mark)
        async with app.sessions() as s:
            res = await polls.results(s, await s.get(polls.Poll, 1))
        assert [o.votes for o in res.options] == [0, 0, 0]  # one ballot waits for its group
        assert (res.voters, res.counted) == (1, 0)
        app.services.clock.advance(timedelta(days=2))
        await run_jobs_once(app.sessions, app.services, None, app.jobs)
        async with app.sessions() as s:
            res = await polls.results(s, await s.get(polls.Poll, 1))
        assert [o.votes for o in res.options] == [1, 0, 1]  # counted at close
        assert not fake.internal_errors
    finally:
        if app is not None:
            await app.stop()
        await fake.stop()
