"""Notices end to end through the Telegram adapter and the fake Bot API: audience, blocked
users, 429s, an emergency's "I need help", restarts of the scheduler and of the sender."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from bot.app import build_app
from bot.config import BotSettings, DatabaseSettings, Settings
from bot.messaging.telegram import TelegramAdapter
from bot.scheduler import Clock
from handlers.notice_jobs import fan_out, render_for, report_progress
from storage import notices, outbox, roles_service
from storage.outbox import OutboxMessage
from storage.people import Identity
from tests.fakes.telegram_server import FakeTelegram
from tests.notice_support import add_resident

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "content" / "territory" / "demo.json"
STAFF = 5000


def _settings(tmp_path: Path, url: str | None) -> Settings:
    return Settings(
        database=DatabaseSettings(
            DATABASE_URL=url or f"sqlite+aiosqlite:///{tmp_path}/bot.sqlite3"),
        bot=BotSettings(media_dir=tmp_path / "media", flood_burst=10_000),
    )


async def _app(tmp_path, fake, *, clock=None, per_second=30.0, url=None):
    adapter = TelegramAdapter(fake.token, api_base=fake.base_url, polling_timeout=1,
                              per_second=per_second)
    app = await build_app(_settings(tmp_path, url), {"telegram": adapter}, territory=DEMO,
                          clock=clock)
    await app.start(schedule=False)
    return app


async def _until(predicate, app, limit=20.0):
    """Tick the notices jobs (as the scheduler would) until `predicate()` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not await predicate():
        assert loop.time() < deadline, "condition not reached"
        await fan_out(app.sessions, app.services, app.deliverer)
        await report_progress(app.sessions, app.services, app.deliverer)
        await asyncio.sleep(0.1)


def _button(fake, entry, label):
    for text, data in fake.buttons(entry):
        if label in text:
            return data
    raise AssertionError(f"no button {label!r} in {fake.buttons(entry)}")


async def _press(fake, uid, label, *, after=0):
    entry = await fake.wait_for(lambda e: e["chat_id"] == uid and any(
        label in t for t, _ in fake.buttons(e)), since=after)
    mark = len(fake.sent)
    fake.push_callback(uid, _button(fake, entry, label), message_id=entry["message_id"])
    return mark


async def _say(fake, uid, text):
    mark = len(fake.sent)
    fake.push_message(uid, text)
    return mark


async def test_committee_notice_blocked_users_and_429(tmp_path):
    fake = FakeTelegram()
    await fake.start()
    app = None
    try:
        app = await _app(tmp_path, fake)
        async with app.sessions() as s, s.begin():
            for uid in (101, 102, 103, 104):
                await add_resident(s, str(uid), "victoria", "1", platform="telegram")
            await add_resident(s, "105", "rongcheng-houjie", "2", platform="telegram")
            await add_resident(s, "201", "zhonghai-mingcheng", "1", platform="telegram")
            await roles_service.change_role(s, f"telegram:{STAFF}", "committee", "victoria",
                                            actor_id=None, grant=True, create_missing=True)
        fake.blocked.add(103)
        fake.flood_next(2, retry_after=1)
        await _say(fake, STAFF, "/notice")
        mark = await _press(fake, STAFF, "活动")
        mark = await _press(fake, STAFF, "居委会", after=mark)
        mark = await _press(fake, STAFF, "维多利亚居委会", after=mark)
        await fake.wait_for_text(STAFF, "请输入通知内容", since=mark)
        mark = await _say(fake, STAFF, "周六社区义诊")
        mark = await _press(fake, STAFF, "立即发送", after=mark)
        await fake.wait_for_text(STAFF, "正在发送", since=mark)

        async def done():
            async with app.sessions() as s:
                f = await outbox.figures(s, notices.group_of(1))
                n = await notices.get(s, 1)
            return n and n.progress_done and f["pending"] + f["sending"] == 0

        await _until(done, app)
        got = {uid for uid in (101, 102, 103, 104, 105, 201)
               if any("周六社区义诊" in (e["text"] or "") for e in fake.messages_to(uid))}
        assert got == {101, 102, 104, 105}
        assert all(len(fake.messages_to(uid)) == 1 for uid in got)
        assert fake.rate_limited_count >= 2  # the 429s were met, waited out and retried
        async with app.sessions() as s:
            blocked = await s.scalar(select(Identity).where(Identity.platform_user_id == "103"))
            figures = await outbox.figures(s, notices.group_of(1))
        assert blocked.unreachable_at is not None
        assert figures["sent"] == 4 and figures["unreachable"] == 1
        # One progress message, edited in place to its final figures.
        await fake.wait_for_text(STAFF, "已完成", since=mark)
        progress = fake.messages_to(STAFF, include_edits=True)
        final = progress[-1]
        assert final["method"] == "editMessageText" and "已完成" in final["text"]
        assert "已发送 4/5" in final["text"] and "无法送达 1" in final["text"]
        first = next(e for e in progress if (e["text"] or "").startswith("通知 #1：")
                     and e["method"] == "sendMessage")
        assert final["message_id"] == first["message_id"]
        # The next notice skips the blocked resident altogether.
        async with app.sessions() as s, s.begin():
            await notices.system_notice(s, category="event", estate_ids=None,
                                        texts={"zh-Hans": "第二条"}, dedupe_key="second")

        async def second_done():
            async with app.sessions() as s:
                f = await outbox.figures(s, notices.group_of(2))
            return f["sent"] == 5
        await _until(second_done, app)
        assert not any("第二条" in (e["text"] or "") for e in fake.messages_to(103))
    finally:
        if app is not None:
            await app.stop()
        await fake.stop()


async def test_emergency_help_reaches_the_zone_team(tmp_path):
    fake = FakeTelegram()
    await fake.start()
    app = None
    try:
        app = await _app(tmp_path, fake)
        async with app.sessions() as s, s.begin():
            await add_resident(s, "301", "victoria", "4", platform="telegram", unit="402",
                               name="Wang")
            await add_resident(s, "302", "victoria", "5", platform="telegram")
            await roles_service.change_role(s, "telegram:900", "team", "south-joint",
                                            actor_id=None, grant=True, create_missing=True)
            await roles_service.change_role(s, "telegram:901", "team", "north-joint",
                                            actor_id=None, grant=True, create_missing=True)
            estate = await s.scalar(select(notices.Resident.estate_id).where(
                notices.Resident.display_name == "Wang"))
            await notices.system_notice(s, category="emergency", estate_ids=[estate],
                                        texts={"en": "Gas leak: leave now", "zh-Hans": "燃气泄漏"},
                                        dedupe_key="gas")

        async def delivered():
            return bool(fake.messages_to(301)) and bool(fake.messages_to(302))
        await _until(delivered, app)
        mark = await _press(fake, 301, "I need help")
        await fake.wait_for_text(301, "urgent report Z-", since=mark)
        # The urgent report's card, in the team's language, says who and where.
        alert = await fake.wait_for_text(900, "紧急", since=mark)
        assert "Wang" in alert["text"] and "维多利亚" in alert["text"]
        assert "4栋" in alert["text"] and "402" in alert["text"]
        assert not fake.messages_to(901)  # another zone's team hears nothing
        async with app.sessions() as s:
            rows = await notices.answers_by_building(s, 1)
        assert sum(r.help for r in rows) == 1 and sum(r.silent for r in rows) == 1
    finally:
        if app is not None:
            await app.stop()
        await fake.stop()


async def test_scheduled_notice_fires_once_across_a_restart(tmp_path, db_url):
    fake = FakeTelegram()
    await fake.start()
    try:
        app = await _app(tmp_path, fake, url=db_url)
        async with app.sessions() as s, s.begin():
            for uid in range(400, 412):
                await add_resident(s, str(uid), "victoria", "2", platform="telegram")
            await notices.create_notice(
                s, category="event", audience_kind="estate", audience_ids=[], estate_ids=None,
                building_ids=None, texts={"zh-Hans": "明早体检"},
                scheduled_at=app.services.clock() + timedelta(hours=1))
        await fan_out(app.sessions, app.services, app.deliverer)  # not due yet
        await app.stop()

        clock = Clock()
        clock.advance(timedelta(hours=2))
        app = await _app(tmp_path, fake, clock=clock, url=db_url)
        # The restarted worker starts the fan-out and "dies" after the first page.
        now = clock()
        async with app.sessions() as s, s.begin():
            assert await notices.start_due(s, now) == [1]
            assert await notices.start_due(s, now) == []  # started exactly once
            notice_id, token = await notices.claim_fanout(s, now)
        async with app.sessions() as s, s.begin():
            await notices.fanout_batch(s, notice_id, token, render_for(app.services, now), now, 5)
        await app.stop()

        clock.advance(timedelta(minutes=5))  # the dead worker's lease runs out
        app = await _app(tmp_path, fake, clock=clock, url=db_url)

        async def all_sent():
            async with app.sessions() as s:
                return (await outbox.figures(s, notices.group_of(1)))["sent"] == 12
        await _until(all_sent, app)
        for _ in range(3):
            await fan_out(app.sessions, app.services, app.deliverer)
        await asyncio.sleep(0.5)
        counts = Counter(e["chat_id"] for e in fake.sent if "明早体检" in (e["text"] or ""))
        assert counts == {uid: 1 for uid in range(400, 412)}
        await app.stop()
    finally:
        await fake.stop()


async def test_killed_sender_resumes_without_doubles(tmp_path, db_url):
    """Stop the deliverer abruptly mid-broadcast, start a new app: every resident gets the
    notice, and only messages in flight at the kill may arrive twice."""
    fake = FakeTelegram(global_rate=100)
    await fake.start()
    residents = list(range(10_000, 10_300))
    try:
        app = await _app(tmp_path, fake, per_second=100, url=db_url)
        async with app.sessions() as s, s.begin():
            for uid in residents:
                await add_resident(s, str(uid), "zhonghai-mingcheng", str(1 + uid % 12),
                                   platform="telegram")
            await notices.system_notice(s, category="event", estate_ids=None,
                                        texts={"zh-Hans": "大扫除"}, dedupe_key="clean")
        await fan_out(app.sessions, app.services, app.deliverer)
        for _ in range(1500):  # until the broadcast is well under way
            if fake.sent_count >= 60:
                break
            await asyncio.sleep(0.02)
        task = app.deliverer._task
        task.cancel()  # the process dies: no result of the current round is recorded
        with contextlib.suppress(asyncio.CancelledError):
            await task
        app.deliverer._task = None
        async with app.sessions() as s:
            in_flight = set((await s.scalars(select(OutboxMessage.identity_id).where(
                OutboxMessage.status == "sending"))).all())
            chat_of = dict((await s.execute(select(Identity.id, Identity.chat_id))).all())
        await app.stop()
        assert in_flight  # the kill really happened mid-round
        sent_before = fake.sent_count
        assert sent_before < len(residents)

        app = await _app(tmp_path, fake, per_second=100, url=db_url)

        async def all_sent():
            async with app.sessions() as s:
                return (await outbox.figures(s, notices.group_of(1)))["sent"] == len(residents)
        await _until(all_sent, app, limit=30)
        await app.stop()
        counts = Counter(e["chat_id"] for e in fake.sent if "大扫除" in (e["text"] or ""))
        assert set(counts) == set(residents)  # nobody skipped
        doubled = {chat for chat, n in counts.items() if n > 1}
        assert all(n <= 2 for n in counts.values())
        assert doubled <= {int(chat_of[i]) for i in in_flight}  # only those in flight
    finally:
        await fake.stop()
