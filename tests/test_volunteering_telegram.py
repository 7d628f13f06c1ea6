"""Volunteering end to end through aiogram and the fake Bot API: publish, sign up to capacity,
waitlist, cancel and promote, reminders fired by the scheduler, check-in, hours."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bot.app import build_app
from bot.config import BotSettings, DatabaseSettings, Settings
from bot.messaging.telegram import TelegramAdapter
from bot.scheduler import Clock, run_jobs_once
from storage import people, roles_service, territory, verification
from tests.fakes.telegram_server import FakeTelegram

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "content" / "territory" / "demo.json"
ORG, R1, R2, R3 = 501, 502, 503, 504


class Chat:
    """A Telegram user talking to the bot through the fake server."""

    def __init__(self, fake: FakeTelegram, uid: int) -> None:
        self.fake, self.uid = fake, uid

    async def say(self, text: str, expect: str) -> dict:
        mark = len(self.fake.sent)
        self.fake.push_message(self.uid, text, language_code="en")
        return await self.fake.wait_for_text(self.uid, expect, since=mark)

    async def press(self, entry: dict, label: str, expect: str) -> dict:
        data = next((d for t, d in self.fake.buttons(entry) if label in t), None)
        assert data is not None, f"no {label!r} in {self.fake.buttons(entry)}"
        mark = len(self.fake.sent)
        self.fake.push_callback(self.uid, data, language_code="en",
                                message_id=entry["message_id"])
        return await self.fake.wait_for_text(self.uid, expect, since=mark)

    async def expect(self, text: str, since: int = 0) -> dict:
        return await self.fake.wait_for_text(self.uid, text, since=since)


async def test_volunteering_through_telegram(tmp_path):
    fake = FakeTelegram()
    await fake.start()
    clock = Clock()
    settings = Settings(
        database=DatabaseSettings(DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/bot.sqlite3"),
        bot=BotSettings(media_dir=tmp_path / "media", flood_burst=10_000))
    adapter = TelegramAdapter(fake.token, api_base=fake.base_url, polling_timeout=1)
    app = await build_app(settings, {"telegram": adapter}, territory=DEMO, clock=clock)
    try:
        async with app.sessions() as s, s.begin():
            await roles_service.change_role(s, f"telegram:{ORG}", "committee", "zhonghai",
                                            actor_id=None, grant=True, create_missing=True)
            estate = await territory.estate_by_code(s, "zhonghai-mingcheng")
            for uid in (ORG, R1, R2, R3):
                _, resident, _ = await people.get_or_create_identity(
                    s, "telegram", str(uid), str(uid), f"Volunteer {uid}")
                resident.language = "en"
                await verification.set_home(s, resident, estate.id)
        await app.start()
        org, r1, r2, r3 = (Chat(fake, u) for u in (ORG, R1, R2, R3))

        # The organiser publishes one shift with two places and announces it.
        start = (clock().astimezone(ZoneInfo("Asia/Shanghai")) + timedelta(days=3)).replace(
            hour=9, minute=0, second=0, microsecond=0)
        await org.say("/newactivity", "What is its title?")
        cat = await org.say("Visit lonely elders", "Which category?")
        place = await org.press(cat, "Elderly care", "Where is it?")
        await org.press(place, "Zhonghai Mingcheng", "Describe the activity")
        await org.say("Tea, a chat, help with the phone.", "Now the shifts")
        bad = await org.say(f"{start:%Y-%m-%d} 9am 2", "could not read this line")
        assert "Preview" not in bad["text"]
        done = await org.say(f"{start:%Y-%m-%d} 09:00-11:00 2", "Shifts so far")
        aud = await org.press(done, "Done", "Who is it for?")
        preview = await org.press(aud, "Residents of this estate", "Preview:")
        await org.press(preview, "Publish and announce", "going out to 3 residents")
        await run_jobs_once(app.sessions, app.services, app.deliverer, app.jobs)

        # Two sign up, the third waits.
        note = await r1.expect("New volunteer activity: Visit lonely elders")
        card = await r1.press(note, "See the shifts", "Shifts:")
        await r1.press(card, "Sign up", "You are signed up")
        await r2.expect("New volunteer activity")
        listing = await r2.say("/volunteer", "Volunteer activities")
        card = await r2.press(listing, "Visit lonely elders", "Shifts:")
        assert "1/2 signed up" in card["text"]
        await r2.press(card, "Sign up", "You are signed up")
        listing = await r3.say("/volunteer", "Volunteer activities")
        card = await r3.press(listing, "Visit lonely elders", "Shifts:")
        await r3.press(card, "Join the waitlist", "number 1 on the waitlist")

        # r1 cancels; r3 is promoted and told through the outbox.
        mine = await r1.say("/myshifts", "Visit lonely elders")
        mark = len(fake.sent)
        await r1.press(mine, "Cancel my place", "no longer signed up")
        await r3.expect("you are now signed up for Visit lonely elders", since=mark)

        # The scheduler's tick sends the day-before reminder, once.
        clock.advance(start - clock() - timedelta(hours=24) + timedelta(minutes=1))
        mark = len(fake.sent)
        await run_jobs_once(app.sessions, app.services, app.deliverer, app.jobs)
        await run_jobs_once(app.sessions, app.services, app.deliverer, app.jobs)
        await r2.expect("Reminder: your volunteer shift Visit lonely elders", since=mark)
        await r3.expect("Reminder: your volunteer shift Visit lonely elders", since=mark)
        await r2.say("/help", "What you can do")  # let any second reminder arrive first
        reminders = [e for e in fake.sent[mark:] if e["chat_id"] in (R2, R3)
                     and (e["text"] or "").startswith("Reminder")]
        assert len(reminders) == 2, fake.dump_sent()

        # During the shift: r3 checks in with the button, r2 with the organiser's code.
        clock.advance(timedelta(hours=24, minutes=5))
        mine = await r3.say("/myshifts", "Visit lonely elders")
        await r3.press(mine, "Check in", "You are checked in")
        listing = await org.say("/roster", "Which shift?")
        roster = await org.press(listing, "Visit lonely elders", "Check-in code")
        code = roster["text"].split("Check-in code: ")[1][:6]
        await r2.say(f"/checkin {code}", "You are checked in")
        await r2.say(f"/checkin {code}", "already checked in")

        clock.advance(timedelta(hours=3))
        hours = await r3.say("/myhours", "Your volunteer hours")
        # Checked in 6 minutes after the start: 1 h 54 min served.
        assert "1.9 hours in 1 shift." in hours["text"]
        assert "Visit lonely elders: 1.9" in hours["text"]
        await r1.say("/myhours", "No volunteer hours recorded yet")
        assert not fake.internal_errors
    finally:
        await app.stop()
        await fake.stop()
