"""Volunteering as a story in chat (memory adapter): an organiser publishes, residents sign up,
wait, cancel, get reminded, check in and see their hours."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.delivery import Deliverer
from bot.scheduler import run_jobs_once
from storage import audit, roles_service, subscriptions
from storage import volunteering as vol
from storage.outbox import OutboxMessage
from storage.people import Identity

TZ = ZoneInfo("Asia/Shanghai")


async def _resident(chat, user: str, estate: str = "Zhonghai Mingcheng") -> None:
    await chat.say(user, "/start")
    await chat.press(user, "English")
    await chat.press(user, estate)
    await chat.press(user, "Skip")  # the building, and with it the unit


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def _day(app, days: int) -> datetime:
    now = app.services.clock().astimezone(TZ)
    return (now + timedelta(days=days)).replace(hour=9, minute=0, second=0, microsecond=0)


async def _publish(app, chat, org: str, *, capacity: int = 2, announce: bool = True) -> datetime:
    start = _day(app, 3)
    await chat.say(org, "/newactivity")
    await chat.say(org, "x" * 81)
    assert "81 characters" in chat.last_text(org)
    await chat.say(org, "Park clean-up")
    await chat.say(org, "environment")  # typed instead of pressed
    assert "pick one of the choices below" in chat.texts_to(org)[-2]
    await chat.press(org, "Environment")
    await chat.share_location(org, 39.9, 116.3)  # Beijing
    assert "outside our sub-district" in chat.last_text(org)
    await chat.say(org, "Victoria Garden")  # not in this committee's territory
    assert "could not find that estate" in chat.texts_to(org)[-2]
    await chat.press(org, "Zhonghai Mingcheng")
    await chat.say(org, "Bring gloves; we meet at the gate.")
    assert "DATE START-END PLACES" in chat.last_text(org)
    await chat.say(org, "tomorrow morning\n"
                        f"{start:%Y-%m-%d} 11:00-09:00 5\n"
                        f"{start:%Y-%m-%d} 09:00-11:00 {capacity}")
    replies = "\n".join(chat.texts_to(org)[-2:])
    assert "could not read this line" in replies
    assert "end must be after the start" in replies
    assert f"{start:%Y-%m-%d} 09:00–11:00 × {capacity}" in chat.last_text(org)
    await chat.say(org, "2020-01-01 09:00-10:00 3")
    assert "already passed" in chat.texts_to(org)[-2]
    await chat.press(org, "Done")
    await chat.press(org, "Residents of this estate")
    preview = chat.last_text(org)
    assert preview.startswith("Preview:") and "Park clean-up" in preview
    await chat.press(org, "Publish and announce" if announce else "Publish")
    assert "is published" in chat.last_text(org)
    await chat.press(org, "Publish and announce" if announce else "Publish")  # double tap
    assert "already published" in chat.last_text(org)
    return start


async def _setup(make_app, url):
    app, chat = await make_app(url)
    async with app.sessions() as s, s.begin():
        await roles_service.change_role(s, "memory:org", "committee", "zhonghai",
                                        actor_id=None, grant=True, create_missing=True)
    await chat.say("org", "/start")
    await chat.press("org", "English")
    await chat.say("org", "/cancel")
    for user in ("r1", "r2", "r3"):
        await _resident(chat, user)
    await _resident(chat, "far", "Victoria Garden")
    return app, chat, Deliverer(app.engine, app.sessions, app.adapters)


async def _sign_up(chat, user: str, label: str = "Sign up") -> None:
    await chat.say(user, "/volunteer")
    await chat.press(user, "Park clean-up")
    await chat.press(user, label)


async def test_publish_sign_up_waitlist_cancel_promote_remind_check_in_hours(
        make_app, db_url):
    app, chat, deliverer = await _setup(make_app, db_url)
    start = await _publish(app, chat, "org")
    assert "going out to 3 residents" in chat.texts_to("org")[-2]
    await run_jobs_once(app.sessions, app.services, deliverer, app.jobs)
    await run_jobs_once(app.sessions, app.services, deliverer, app.jobs)  # nothing twice
    await deliverer.drain_once()
    assert sum("New volunteer activity" in t for t in chat.texts_to("r1")) == 1
    assert "New volunteer activity: Park clean-up" in chat.last_text("r1")
    assert "Park clean-up" not in chat.last_text("far")  # not in the audience

    # Two taps from the announcement or from /volunteer.
    await chat.press("r1", "See the shifts")
    await chat.press("r1", "Sign up")
    assert "You are signed up for Park clean-up" in chat.last_text("r1")
    await chat.press("r1", "Sign up")  # a double tap
    assert "already signed up" in chat.last_text("r1")
    await _sign_up(chat, "r2")
    await _sign_up(chat, "r3", "Join the waitlist")
    assert "number 1 on the waitlist" in chat.last_text("r3")
    await chat.say("far", "/volunteer")
    assert "no upcoming volunteer activities" in chat.last_text("far")

    # r1 gives the place up; r3 moves up and is told through the outbox.
    await chat.say("r1", "/myshifts")
    await chat.press("r1", "Cancel my place")
    assert "no longer signed up" in chat.last_text("r1")
    await deliverer.drain_once()
    assert "you are now signed up for Park clean-up" in chat.last_text("r3")

    # The roster, the capacity guard, and the check-in code.
    await chat.say("org", "/roster")
    await chat.press("org", "Park clean-up")
    roster = chat.last_text("org")
    assert "Signed up 2/2" in roster and "(nobody)" in roster
    code = roster.split("Check-in code: ")[1][:6]
    await chat.press("org", "Change places")
    await chat.say("org", "many")
    assert "whole number" in chat.last_text("org")
    await chat.say("org", "1")
    assert "2 volunteers are already signed up" in chat.last_text("org")
    await chat.say("org", "3")
    assert "Places set to 3" in chat.last_text("org")

    # Reminders: the day before, then two hours before; never twice, even run twice.
    clock = app.services.clock
    clock.advance(start - timedelta(hours=24) - clock() + timedelta(minutes=1))
    await run_jobs_once(app.sessions, app.services, deliverer, app.jobs)
    await run_jobs_once(app.sessions, app.services, deliverer, app.jobs)
    await deliverer.drain_once()
    for user in ("r2", "r3"):
        reminders = [t for t in chat.texts_to(user) if t.startswith("Reminder")]
        assert len(reminders) == 1 and "in about 24 hours" in reminders[0]
    assert not [t for t in chat.texts_to("r1") if t.startswith("Reminder")]
    clock.advance(timedelta(hours=22))
    await run_jobs_once(app.sessions, app.services, deliverer, app.jobs)
    await deliverer.drain_once()
    assert "in about 2 hours" in chat.last_text("r2")

    # Too late to cancel now (cut-off 6 h); too early to check in.
    await chat.say("r2", "/myshifts")
    await chat.press("r2", "Cancel my place")
    assert "too late to cancel" in chat.last_text("r2")
    await chat.say("r3", f"/checkin {code}")
    assert "opens shortly before" in chat.last_text("r3")

    # During the shift: the button, the code, and the organiser marks nobody twice.
    clock.advance(timedelta(hours=2, minutes=10))
    await chat.say("r2", "/myshifts")
    await chat.press("r2", "Check in")
    assert "You are checked in" in chat.last_text("r2")
    await chat.say("r3", "/checkin 12")
    assert "six-digit code" in chat.last_text("r3")
    await chat.say("r3", f"/checkin {code}")
    assert "You are checked in" in chat.last_text("r3")
    await chat.say("r1", f"/checkin {code}")
    assert "does not match" in chat.last_text("r1")
    await chat.say("r1", "/volunteer")
    assert "no upcoming" in chat.last_text("r1")  # it has started

    await chat.say("org", "/roster")
    await chat.press("org", "Park clean-up")
    assert chat.last_text("org").count("✓") == 2
    await chat.press("org", "Export CSV")
    doc = chat.last("org")
    assert doc.document and doc.document_name.endswith(".csv")
    rows = list(csv.reader(_read(doc.document).decode("utf-8-sig").splitlines()))
    assert rows[0][:4] == ["Sign-up number", "Resident number", "Name", "Status"]
    assert sorted(r[3] for r in rows[1:]) == ["attended"] * 2

    # Checked in 11 minutes after the start: 1 h 49 min served, counted once the shift ends.
    clock.advance(timedelta(hours=3))
    await chat.say("r2", "/myhours")
    hours = chat.last_text("r2")
    assert "1.8 hours in 1 shift." in hours and "Park clean-up: 1.8" in hours
    await chat.press("r2", "Join the leaderboard")
    await chat.press("r2", "Leaderboard")
    assert "— 1.8" in chat.last_text("r2")
    await chat.say("r2", "/myhours")
    await chat.press("r2", "Yearly card")
    card = chat.last("r2")
    assert card.photo and _read(card.photo)[:8] == b"\x89PNG\r\n\x1a\n"
    async with app.sessions() as s:
        actions = {e.action for e in await audit.recent(s)}
    assert {"volunteering.publish", "volunteering.announce", "volunteering.capacity",
            "volunteering.export"} <= actions


async def test_cancel_shift_tells_everyone_and_overlap_is_refused(make_app, db_url):
    app, chat, deliverer = await _setup(make_app, db_url)
    start = await _publish(app, chat, "org", capacity=1, announce=False)
    await _sign_up(chat, "r1")
    await _sign_up(chat, "r2", "Join the waitlist")
    # A second activity at the same time: r1 cannot be in two places at once.
    await chat.say("org", "/newactivity")
    await chat.say("org", "Tea with elders")
    await chat.press("org", "Elderly care")
    await chat.press("org", "Zhonghai Mingcheng")
    await chat.say("org", "Chat and tea.")
    await chat.say("org", f"{start:%Y-%m-%d} 10:00-12:00 4")
    await chat.press("org", "Done")
    await chat.press("org", "The whole residents' committee")
    await chat.press("org", "Publish")
    await chat.say("r1", "/volunteer")
    await chat.press("r1", "Tea with elders")
    await chat.press("r1", "Sign up")
    assert "overlaps your shift at Park clean-up" in chat.last_text("r1")

    # A committee member elsewhere neither sees nor manages this roster.
    async with app.sessions() as s, s.begin():
        await roles_service.change_role(s, "memory:other", "committee", "victoria",
                                        actor_id=None, grant=True, create_missing=True)
    await chat.say("other", "/start")
    await chat.press("other", "English")
    await chat.say("other", "/roster")
    assert "no upcoming shifts to manage" in chat.last_text("other")

    await chat.say("org", "/roster")
    await chat.press("org", "Park clean-up")
    await chat.press("org", "Cancel this shift")
    assert "everyone waiting will be told" in chat.last_text("org")
    await chat.press("org", "Yes, cancel it")
    assert "2 volunteers are being told" in chat.last_text("org")
    await chat.press("org", "Yes, cancel it")  # a double tap
    assert "already cancelled" in chat.last_text("org")
    await deliverer.drain_once()
    for user in ("r1", "r2"):
        assert "has been cancelled by the organiser" in chat.last_text(user)
    # Now the other activity fits.
    await chat.say("r1", "/volunteer")
    await chat.press("r1", "Tea with elders")
    await chat.press("r1", "Sign up")
    assert "You are signed up for Tea with elders" in chat.last_text("r1")


async def test_residents_cannot_organise_and_teams_need_a_lead(make_app, sqlite_url):
    app, chat, deliverer = await _setup(make_app, sqlite_url)
    await chat.say("r1", "/newactivity")
    assert "not allowed" in chat.last_text("r1")
    await chat.say("r1", "/newteam Helpers")
    assert "not allowed" in chat.last_text("r1")
    await chat.say("org", "/newteam")
    assert "Usage: /newteam" in chat.last_text("org")
    await chat.say("org", "/newteam Elderly care team")
    assert "you are its lead" in chat.last_text("org")
    await chat.say("org", "/newteam Elderly care team")
    assert "already a team called" in chat.last_text("org")
    await chat.say("r1", "/teams")
    await chat.press("r1", "Join Elderly care team")
    assert "You joined" in chat.last_text("r1")
    await chat.say("r2", "/teams")
    await chat.press("r2", "Join Elderly care team")
    await chat.say("r2", "/teammsg")
    assert "Only a team lead" in chat.last_text("r2")

    # Staff make r2 a lead; r2 may then organise and message the team.
    await chat.say("org", "/teamlead 1 memory:r3")
    assert "not a member" in chat.last_text("org")
    await chat.say("org", "/teamlead 1 memory:r2")
    assert "now leads" in chat.last_text("org")
    await chat.say("r2", "/teammsg")
    await chat.say("r2", "y" * 1001)
    assert "1001 characters" in chat.last_text("r2")
    await chat.say("r2", "Meet at 9 on Saturday.")
    assert "Sent to 2 members" in chat.last_text("r2")
    await deliverer.drain_once()
    assert "Meet at 9 on Saturday." in chat.last_text("r1")
    assert "Meet at 9 on Saturday." in chat.last_text("org")
    # A lead without a role: a point outside any estate has no audience for them, so they
    # are asked for another place, and nothing else they typed is lost.
    await chat.say("r2", "/newactivity")
    await chat.say("r2", "Litter pick")
    await chat.press("r2", "Environment")
    await chat.share_location("r2", 30.625, 104.058)
    await chat.say("r2", "Along the river.")
    await chat.say("r2", f"{_day(app, 5):%Y-%m-%d} 08:00-09:30 8")
    await chat.press("r2", "Done")
    assert "pick one of your estates" in chat.texts_to("r2")[-2]
    await chat.press("r2", "Zhonghai Mingcheng")
    assert "Who is it for?" in chat.last_text("r2")
    assert chat.find_button("r2", "Everyone in the sub-district") is None
    await chat.press("r2", "Residents of this estate")
    preview = chat.last_text("r2")
    assert "Litter pick" in preview and "Along the river." in preview and "× 8" in preview
    await chat.say("r1", "/teams")
    await chat.press("r1", "Leave Elderly care team")
    assert "You left" in chat.last_text("r1")


async def test_half_filled_activity_survives_restart(make_app, sqlite_url):
    from bot.messaging.memory import MemoryAdapter

    app, chat, _ = await _setup(make_app, sqlite_url)
    await chat.say("org", "/newactivity")
    await chat.say("org", "Night patrol")
    await chat.press("org", "Safety patrol")
    await app.stop()
    app2, chat2 = await make_app(sqlite_url, MemoryAdapter(), territory=False)
    await chat2.say("org", "Zhonghai Mingcheng")  # typed instead of pressed
    assert "Describe the activity" in chat2.last_text("org")
    await chat2.say("org", "Walk the estate with a torch.")
    start = _day(app2, 4)
    await chat2.say("org", f"{start:%Y-%m-%d} 20:00-22:00 3 torch")
    await chat2.press("org", "Done")
    await chat2.press("org", "Residents of this estate")
    preview = chat2.last_text("org")
    assert "Night patrol" in preview and "Safety patrol" in preview and "torch" in preview
    async with app2.sessions() as s:
        activity = await s.get(vol.Activity, 1)
        assert activity.status == "draft" and activity.category == "safety_patrol"


async def test_announcements_follow_event_subscriptions_and_quiet_hours(make_app, sqlite_url):
    app, chat, deliverer = await _setup(make_app, sqlite_url)
    now_local = app.services.clock().astimezone(TZ)
    quiet = f"{now_local - timedelta(hours=1):%H:%M}-{now_local + timedelta(hours=2):%H:%M}"
    await chat.say("r2", "/subscribe")
    await chat.press("r2", "Set quiet hours")
    await chat.say("r2", quiet)
    async with app.sessions() as s, s.begin():
        r3 = await s.scalar(select(Identity.resident_id).where(Identity.platform_user_id == "r3"))
        await subscriptions.set_category(s, r3, "event", False)
    await _publish(app, chat, "org")
    await run_jobs_once(app.sessions, app.services, deliverer, app.jobs)
    await deliverer.drain_once()
    assert "New volunteer activity: Park clean-up" in chat.last_text("r1")
    assert not any("New volunteer activity" in t for t in chat.texts_to("r2"))  # waits
    assert not any("New volunteer activity" in t for t in chat.texts_to("r3"))  # events off
    async with app.sessions() as s:
        waiting = (await s.scalars(select(OutboxMessage).where(
            OutboxMessage.group_key.like("vol-ann:%"),
            OutboxMessage.status == "pending"))).all()
    assert len(waiting) == 1 and waiting[0].next_attempt_at > app.services.clock()


async def test_help_lists_organiser_commands_only_to_organisers(make_app, sqlite_url):
    app, chat, _ = await _setup(make_app, sqlite_url)

    async def help_for(user: str) -> str:
        # All of the answer: a platform with a shorter message limit (WeChat) splits it.
        before = len(chat.texts_to(user))
        await chat.say(user, "/help")
        return "\n".join(chat.texts_to(user)[before:])

    shown = await help_for("r1")
    assert "/volunteer" in shown and "/newactivity" not in shown and "/teammsg" not in shown
    shown = await help_for("org")
    assert "/newactivity" in shown and "/roster" in shown and "/teammsg" not in shown


async def test_tomorrow_shifts_hours_served_and_a_chinese_roster(make_app, sqlite_url):
    """Shifts typed as "明天 20:00-22:00" (and several on one line); checking in ten minutes
    early credits nothing until the end, and then the shift's two hours, not more; leaving
    early stops the hours; the roster CSV speaks the organiser's language."""
    app, chat, _ = await _setup(make_app, sqlite_url)
    async with app.sessions() as s, s.begin():
        await roles_service.change_role(s, "memory:zorg", "committee", "zhonghai",
                                        actor_id=None, grant=True, create_missing=True)
    await chat.say("zorg", "/start")
    await chat.press("zorg", "中文")
    await chat.say("zorg", "/cancel")
    await chat.say("zorg", "/newactivity")
    await chat.say("zorg", "夜间巡逻")
    await chat.press("zorg", "治安巡逻")
    await chat.press("zorg", "中海名城")
    await chat.say("zorg", "带手电筒，在大门集合。")
    assert "明天 20:00-22:00 6 急救" in chat.last_text("zorg")
    tomorrow = (app.services.clock().astimezone(TZ) + timedelta(days=1)).date()
    await chat.say("zorg", "明天 20:00-22:00 3 手电筒；后天 09:00-10:00 2")
    listed = chat.last_text("zorg")
    assert f"1. {tomorrow:%Y-%m-%d} 20:00–22:00 × 3 · 手电筒" in listed
    assert f"2. {tomorrow + timedelta(days=1):%Y-%m-%d} 09:00–10:00 × 2" in listed
    await chat.press("zorg", "完成")
    await chat.press("zorg", "本小区居民")
    await chat.press("zorg", "发布")
    assert "已发布" in chat.last_text("zorg")
    for user in ("r1", "r2"):
        await chat.say(user, "/volunteer")
        await chat.press(user, "夜间巡逻")
        await chat.press(user, f"Sign up {tomorrow:%m-%d} 20:00")
        assert "You are signed up for 夜间巡逻" in chat.last_text(user)

    clock = app.services.clock
    start = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 20, 0, tzinfo=TZ)
    clock.advance(start - timedelta(minutes=10) - clock())
    for user in ("r1", "r2"):
        await chat.say(user, "/myshifts")
        await chat.press(user, "Check in")
        assert "You are checked in" in chat.last_text(user)
    await chat.say("r1", "/myhours")
    assert "No volunteer hours recorded yet" in chat.last_text("r1")
    clock.advance(timedelta(hours=1, minutes=40))  # 21:30
    await chat.say("r2", "/myshifts")
    await chat.press("r2", "Check out early")
    assert "You are checked out" in chat.last_text("r2")
    await chat.say("r2", "/myhours")
    assert "1.5 hours in 1 shift." in chat.last_text("r2")
    await chat.say("r1", "/myhours")
    assert "No volunteer hours recorded yet" in chat.last_text("r1")  # still on duty
    clock.advance(timedelta(minutes=31))  # past 22:00
    await chat.say("r1", "/myhours")
    assert "2 hours in 1 shift." in chat.last_text("r1")  # not 2 h 10 min

    await chat.say("zorg", "/roster")
    await chat.press("zorg", "夜间巡逻")
    await chat.press("zorg", "导出 CSV")
    doc = chat.last("zorg")
    rows = list(csv.reader(_read(doc.document).decode("utf-8-sig").splitlines()))
    assert rows[0] == ["报名序号", "居民编号", "姓名", "状态", "候补位置", "报名时间",
                       "签到时间", "签退时间"]
    assert sorted(r[3] for r in rows[1:]) == ["已出勤", "已出勤"]
    assert sorted(r[7] for r in rows[1:]) == ["", f"{tomorrow:%Y-%m-%d} 21:30"]
