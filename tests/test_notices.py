"""Staff notices in memory: audiences within scope, subscriptions, quiet hours, emergencies,
scheduling, cancelling, and a fan-out that resumes without doubles."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from handlers.notice_jobs import fan_out
from handlers.notice_jobs import render_for as render
from storage import notices, outbox, roles_service, subscriptions
from storage import volunteer_teams as vteams
from storage.outbox import OutboxMessage, Priority
from storage.reports import Report
from tests.notice_support import add_resident, pump
from tests.report_helpers import jpeg_with_gps


async def _town(app):
    """Residents in two committees (victoria: victoria + rongcheng; zhonghai), a staff member of
    the victoria committee, and the south zone team."""
    async with app.sessions() as s, s.begin():
        await add_resident(s, "v1", "victoria", "1")
        await add_resident(s, "v2", "victoria", "2", lang="zh-Hans")
        await add_resident(s, "r1", "rongcheng-houjie", "1")
        await add_resident(s, "z1", "zhonghai-mingcheng", "3")
        await add_resident(s, "nohome", None)
        await roles_service.change_role(s, "memory:cm", "committee", "victoria", actor_id=None,
                                        grant=True, create_missing=True)
        await roles_service.change_role(s, "memory:boss", "admin", None, actor_id=None,
                                        grant=True, create_missing=True)


async def test_committee_notice_reaches_exactly_its_residents(make_app, db_url):
    app, chat = await make_app(db_url)
    await _town(app)
    await chat.say("cm", "/notice")
    await chat.press("cm", "活动")
    await chat.press("cm", "居委会")
    await chat.press("cm", "维多利亚居委会")
    assert "请输入通知内容" in chat.last_text("cm")
    await chat.say("cm", "周六上午社区义诊")
    assert "目前可送达：3" in chat.last_text("cm")
    await chat.press("cm", "添加英文版本")
    await chat.say("cm", "   ")
    await chat.say("cm", "Free health check on Saturday morning")
    assert "【Event】\nFree health check" in chat.texts_to("cm")[-2]
    await chat.press("cm", "立即发送")
    assert "正在发送" in chat.last_text("cm")
    chat.clear()
    await pump(app)
    for user in ("v1", "v2", "r1"):
        assert chat.texts_to(user) == ["【Event】\nFree health check on Saturday morning"
                                       if user != "v2" else "【活动】\n周六上午社区义诊"]
    assert chat.texts_to("z1") == [] and chat.texts_to("nohome") == []
    # One progress message, then edits of that same message until done.
    progress = [s for s in chat.sent if s.chat_id == "cm"]
    assert progress and all(p.out.edit_of == progress[0].ref for p in progress[1:])
    assert "已完成" in progress[-1].out.text and "已发送 3/3" in progress[-1].out.text
    await chat.say("cm", "/notices")
    assert "已发送 3" in chat.last_text("cm")
    async with app.sessions() as s:
        figures = await outbox.figures(s, notices.group_of(1))
    assert figures["sent"] == 3 and figures["pending"] == 0


async def test_bad_inputs_keep_the_draft(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    await _town(app)
    await chat.say("cm", "/notice")
    await chat.say("cm", "party")
    assert "don't know that kind" in chat.last_text("cm") or "没有这个通知类别" in \
        chat.last_text("cm")
    await chat.say("cm", "活动")
    await chat.say("cm", "居委 nowhere")
    assert "无法识别这个发送范围" in chat.last_text("cm")
    await chat.say("cm", "居委 zhonghai")  # exists, but not theirs
    assert "超出了您的负责范围" in chat.last_text("cm")
    await chat.say("cm", "all")
    assert "超出了您的负责范围" in chat.last_text("cm")
    await chat.say("cm", "楼 victoria 3")
    assert "请输入通知内容" in chat.last_text("cm")
    await chat.say("cm", "   ")
    assert "请输入通知内容" not in chat.last_text("cm")  # blank: told, still waiting
    await chat.say("cm", "x" * 3600)
    assert "太长" in chat.last_text("cm")
    await chat.say("cm", "3号楼停水通知")
    await chat.press("cm", "定时发送")
    await chat.say("cm", "2001-01-01 08:00")
    assert "已经过去" in chat.last_text("cm")
    await chat.say("cm", "明天 25:00")
    assert "无法识别这个时间" in chat.last_text("cm")
    await chat.say("cm", "soon")
    assert "无法识别这个时间" in chat.last_text("cm")
    await chat.say("cm", "明天 08:00")
    assert "将于" in chat.last_text("cm")
    async with app.sessions() as s:
        notice = await notices.get(s, 1)
    assert notice.texts == {"zh-Hans": "3号楼停水通知"} and notice.building_ids
    assert notice.status == "scheduled"
    # A resident cannot use it at all.
    await chat.say("v1", "/notice")
    assert "没有权限" in chat.last_text("v1") or "not allowed" in chat.last_text("v1")


async def test_subscriptions_and_quiet_hours(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url, timezone="Asia/Shanghai")
    await _town(app)
    async with app.sessions() as s, s.begin():
        ids = {i.platform_user_id: i for i in (await s.scalars(
            select(notices.Identity))).all()}
        await subscriptions.set_category(s, ids["v1"].resident_id, "weather", False)
        # Quiet all day long except one minute: any non-urgent notice must wait.
        now = app.services.clock().astimezone(ZoneInfo("Asia/Shanghai"))
        minute = now.hour * 60 + now.minute
        await subscriptions.set_quiet_hours(s, ids["v2"].resident_id,
                                            (minute, (minute + 60) % 1440))
        await notices.system_notice(s, category="weather", estate_ids=None,
                                    texts={"en": "Rain", "zh-Hans": "有雨"}, dedupe_key="w1")
        await notices.system_notice(s, category="emergency", estate_ids=None,
                                    texts={"en": "Flood", "zh-Hans": "洪水"}, dedupe_key="e1")
    await fan_out(app.sessions, app.services, None)
    async with app.sessions() as s:
        rows = (await s.execute(select(OutboxMessage.dedupe_key, OutboxMessage.priority,
                                       OutboxMessage.next_attempt_at))).all()
    by_key = {k: (p, at) for k, p, at in rows}
    weather = {k for k in by_key if k.startswith("n1:")}
    emergency = {k for k in by_key if k.startswith("n2:")}
    assert f"n1:{ids['v1'].id}" not in weather  # switched weather off
    assert f"n2:{ids['v1'].id}" in emergency  # emergencies cannot be switched off
    assert len(emergency) == 4  # everyone with a home
    later = datetime.now(UTC) + timedelta(minutes=30)
    assert by_key[f"n1:{ids['v2'].id}"][1] > later  # waits for the end of quiet hours
    assert by_key[f"n2:{ids['v2'].id}"][1] < datetime.now(UTC) + timedelta(seconds=5)
    assert all(p == Priority.URGENT for k, (p, _) in by_key.items() if k in emergency)
    assert all(p == Priority.BULK for k, (p, _) in by_key.items() if k in weather)


async def test_system_notice_is_idempotent_and_cancellable(make_app, db_url):
    app, chat = await make_app(db_url)
    await _town(app)
    async with app.sessions() as s, s.begin():
        estate = (await s.scalars(select(notices.Resident.estate_id).where(
            notices.Resident.display_name == "z1"))).one()
        first = await notices.system_notice(s, category="guide", estate_ids=[estate],
                                            texts={"zh-Hans": "新指南"}, dedupe_key="g1")
        again = await notices.system_notice(s, category="guide", estate_ids=[estate],
                                            texts={"zh-Hans": "新指南"}, dedupe_key="g1")
        assert first is not None and again is None
        later = await notices.system_notice(s, category="event", estate_ids=None,
                                            texts={"en": "Fair"}, dedupe_key="ev1")
        later.scheduled_at = app.services.clock() + timedelta(hours=1)
    await pump(app)
    assert chat.texts_to("z1") == ["【Service guide】\n新指南"]
    assert chat.texts_to("v1") == []
    async with app.sessions() as s, s.begin():
        assert not await notices.cancel_notice(s, first.id)  # already delivered
        assert await notices.cancel_notice(s, later.id)
    app.services.clock.advance(timedelta(hours=2))
    await pump(app)
    assert chat.texts_to("v1") == []


async def test_fan_out_resumes_after_a_crash_without_doubles(make_app, db_url):
    app, chat = await make_app(db_url)
    async with app.sessions() as s, s.begin():
        for i in range(23):
            await add_resident(s, f"u{i:02d}", "victoria", str(1 + i % 6))
        notice = await notices.system_notice(s, category="event", estate_ids=None,
                                             texts={"en": "Hello"}, dedupe_key="crash")
    now = app.services.clock()
    async with app.sessions() as s, s.begin():
        await notices.start_due(s, now)
        notice_id, token = await notices.claim_fanout(s, now)
    async with app.sessions() as s, s.begin():
        assert (await notices.fanout_batch(s, notice_id, token, render(app.services, now),
                                           now, 5))[1] == 5
    # The worker "dies" after queuing a page whose cursor update was lost (rolled back).
    async with app.sessions() as s:
        await s.begin()
        await notices.fanout_batch(s, notice_id, token, render(app.services, now), now, 5)
        await s.rollback()
    # A live lease is respected; an expired one is taken over and the walk resumes.
    assert await fan_out(app.sessions, app.services, None, batch=4) == 0
    app.services.clock.advance(timedelta(minutes=5))
    assert await fan_out(app.sessions, app.services, None, batch=4) == 18
    async with app.sessions() as s:
        counts = (await s.execute(select(OutboxMessage.identity_id, func.count())
                                  .where(OutboxMessage.group_key == notice.group)
                                  .group_by(OutboxMessage.identity_id))).all()
        done = await notices.get(s, notice_id)
    assert len(counts) == 23 and all(n == 1 for _, n in counts)
    assert done.status == "sent" and done.recipients == 23


async def test_emergency_answers_reach_the_zone_team(make_app, db_url):
    app, chat = await make_app(db_url)
    await _town(app)
    async with app.sessions() as s, s.begin():
        await roles_service.change_role(s, "memory:south", "team", "south-joint", actor_id=None,
                                        grant=True, create_missing=True)
        await add_resident(s, "v3", "victoria", None)
    await chat.say("cm", "/notice")
    await chat.press("cm", "紧急通知")
    await chat.press("cm", "小区")
    await chat.press("cm", "维多利亚")
    await chat.say("cm", "燃气泄漏，请立即撤离")
    await chat.press("cm", "立即发送")
    await pump(app)
    emergency = chat.last("v1")
    assert [b.label for b in emergency.buttons[0]] == ["I am safe", "I need help"]
    # Buttons are signed for their recipient: someone else's copy is refused.
    await chat.press("v2", chat.find_button("v1", "I need help"), raw=True)
    assert "button" in chat.last_text("v2").lower() or "按钮" in chat.last_text("v2")
    await chat.press("v1", "I need help")
    assert "urgent report Z-" in chat.last_text("v1")
    await chat.press("v1", "I need help")  # a double tap: one report only
    await chat.press("v2", "我很安全")
    assert "平安" in chat.last_text("v2")
    await pump(app)
    # The call for help is an urgent report, whose card reaches the zone's team.
    alerts = [t for t in chat.texts_to("south") if "紧急" in t]
    assert len(alerts) == 1 and "v1" in alerts[0] and "#1" in alerts[0]
    # v1 reads English, the team member Chinese: the reason is worded for the reader.
    assert "居民在紧急通知 #1 中点了“我需要帮助”。单元/室：101" in alerts[0]
    assert "pressed" not in alerts[0]
    # What kind of help: chosen from buttons in English, read by the team in Chinese.
    await chat.press("v1", "Trapped")
    assert chat.last_text("v1").startswith("The team is told: Trapped (report Z-")
    await chat.press("v1", "Trapped")
    assert "already knows" in chat.last_text("v1")
    await pump(app)
    updated = [t for t in chat.texts_to("south") if t.startswith("🆘 居民补充了情况")]
    assert len(updated) == 1 and "需要的帮助：被困" in updated[0]
    assert "居民在紧急通知 #1 中点了“我需要帮助”" in updated[0]
    async with app.sessions() as s:
        urgent = (await s.scalars(select(Report).where(Report.urgent.is_(True)))).all()
    assert [r.category for r in urgent] == ["safety"]
    # Staff see who answered, building by building.
    await chat.say("cm", "/notices")
    await chat.press("cm", "#1")
    await chat.press("cm", "回复情况")
    answers = chat.last_text("cm")
    assert "维多利亚 1 号楼：0 / 1 / 0，共 1" in answers
    assert "维多利亚 2 号楼：1 / 0 / 0，共 1" in answers
    assert "需要帮助" in answers and "• v1，138000000v1，维多利亚 1 号楼 101" in answers
    # A resident without a building on record: no "未知 - 号楼", no "---".
    assert "未登记楼栋：0 / 0 / 1，共 1" in answers
    assert "• v3，维多利亚（未登记楼栋）" in answers
    assert "未知" not in answers and "---" not in answers and "- 号楼" not in answers
    # Changing one's mind is kept (one answer per resident).
    await chat.press("v1", "I am safe")
    async with app.sessions() as s:
        rows = await notices.answers_by_building(s, 1)
    assert sum(r.safe for r in rows) == 2 and sum(r.help for r in rows) == 0


async def test_scheduled_notice_edit_cancel_and_fires_once(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    await _town(app)
    for text in ("第一条", "第二条"):
        await chat.say("cm", "/notice")
        await chat.press("cm", "便民服务")
        await chat.say("cm", "居委 victoria")
        await chat.say("cm", text)
        await chat.press("cm", "定时发送")
        await chat.say("cm", "明天 09:00")
        assert "将于 明天 09:00（" in chat.last_text("cm")
    await chat.say("cm", "/notices")
    await chat.press("cm", "#1")
    await chat.press("cm", "修改内容")
    await chat.say("cm", "第一条（已更正）")
    assert "已更新" in chat.last_text("cm")
    await chat.press("cm", "#2")
    await chat.press("cm", "取消通知")
    assert "已取消" in chat.last_text("cm")
    # The old button pressed again: it was cancelled, not "all sent".
    await chat.press("cm", "取消通知")
    assert chat.last_text("cm").startswith("通知 #2 已经取消了")
    await pump(app)
    assert chat.texts_to("v1") == []  # not yet
    app.services.clock.advance(timedelta(days=2))
    await pump(app)
    await pump(app)
    assert chat.texts_to("v1") == ["【Convenience】\n第一条（已更正）"]
    await chat.press("cm", "#1")
    assert "不能再修改" in chat.last_text("cm") or "修改内容" not in str(chat.last("cm").buttons)


async def test_subscribe_menu(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    await _town(app)
    await chat.say("v1", "/subscribe")
    assert "🔒 Emergency (always on)" in str(chat.last("v1").buttons)
    await chat.press("v1", "Emergency")
    assert "cannot be switched off" in chat.last_text("v1")
    menu = [m for m in chat.sent if m.chat_id == "v1"][-2]
    await chat.press("v1", "✅ Weather", message_ref=menu.ref)
    assert chat.last("v1").edit_of == menu.ref  # the menu is redrawn in place
    assert "⬜ Weather" in str(chat.last("v1").buttons)
    await chat.press("v1", "Set quiet hours")
    await chat.say("v1", "25:00-07:00")
    assert "can't read" in chat.last_text("v1")
    await chat.say("v1", "22:00-22:00")
    assert "can't read" in chat.last_text("v1")
    await chat.say("v1", "22:00-07:00")
    assert "22:00–07:00" in chat.last_text("v1")
    await chat.say("v1", "/subscribe")
    await chat.press("v1", "中文")
    assert "我的通知" in chat.last_text("v1")
    async with app.sessions() as s:
        rid = (await s.scalars(select(notices.Identity.resident_id).where(
            notices.Identity.platform_user_id == "v1"))).one()
        assert await subscriptions.opted_out(s, rid) == {"weather"}
        assert await subscriptions.quiet_hours(s, rid) == (22 * 60, 7 * 60)
        assert (await s.get(notices.Resident, rid)).language == "zh-Hans"


def test_quiet_until_across_midnight():
    tz = "Asia/Shanghai"
    at = datetime(2026, 1, 1, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
    assert subscriptions.quiet_until(at, 22 * 60, 7 * 60, tz) == datetime(2026, 1, 1, 23, 0,
                                                                          tzinfo=UTC)
    assert subscriptions.quiet_until(at, 8 * 60, 22 * 60, tz) is None
    early = datetime(2026, 1, 1, 21, 0, tzinfo=UTC)  # 05:00 next day in Shanghai
    assert subscriptions.quiet_until(early, 22 * 60, 7 * 60, tz) == datetime(
        2026, 1, 1, 23, 0, tzinfo=UTC)
    assert subscriptions.parse_quiet_hours("22：00～7:00") == (1320, 420)
    assert subscriptions.parse_quiet_hours("late") is None


async def test_concurrent_workers_never_double_a_recipient(make_app, db_url):
    """Two fan-out workers and two schedulers at once (real concurrency on PostgreSQL)."""
    import asyncio

    app, _ = await make_app(db_url)
    async with app.sessions() as s, s.begin():
        for i in range(60):
            await add_resident(s, f"c{i:02d}", "zhonghai-mingcheng", str(1 + i % 12))
        for key in ("a", "b", "c"):
            await notices.system_notice(s, category="event", estate_ids=None,
                                        texts={"en": key}, dedupe_key=key)
    results = await asyncio.gather(*(fan_out(app.sessions, app.services, None, batch=7)
                                     for _ in range(3)))
    await fan_out(app.sessions, app.services, None, batch=7)
    async with app.sessions() as s:
        counts = (await s.execute(
            select(OutboxMessage.group_key, OutboxMessage.identity_id, func.count())
            .group_by(OutboxMessage.group_key, OutboxMessage.identity_id))).all()
        rows = [await notices.get(s, i) for i in (1, 2, 3)]
    assert sum(results) == 180 and len(counts) == 180
    assert all(n == 1 for *_, n in counts)
    assert all(r.status == "sent" and r.recipients == 60 for r in rows)


async def test_audiences_stay_within_scope(make_app, sqlite_url):
    from services import notice_audience as aud
    from storage.access import scope_of
    from storage.notices import NoticeError
    from storage.territory import Committee, Estate, Station, Zone

    app, chat = await make_app(sqlite_url)
    await _town(app)
    async with app.sessions() as s, s.begin():
        await roles_service.change_role(s, "memory:st", "staff", "sxs-station", actor_id=None,
                                        grant=True, create_missing=True)
    geo = app.services.geo
    async with app.sessions() as s:
        ids = {}
        for model in (Committee, Estate, Station, Zone):
            ids.update({r.code: r.id for r in (await s.scalars(select(model))).all()})
        cm = await scope_of(s, (await s.scalar(select(notices.Identity.resident_id).where(
            notices.Identity.platform_user_id == "cm"))))
        st = await scope_of(s, (await s.scalar(select(notices.Identity.resident_id).where(
            notices.Identity.platform_user_id == "st"))))
        victoria = {ids["victoria"], ids["rongcheng-houjie"]}
        south = await aud.resolve(s, geo, cm, "zone", ids["south"])
        assert set(south.estate_ids) <= victoria and south.estate_ids
        station = await aud.resolve(s, geo, st, "station", ids["sxs-station"])
        assert len(station.estate_ids) == 4
        for kind, target in (("subdistrict", None), ("station", ids["sxs-station"]),
                             ("committee", ids["zhonghai"]),
                             ("estate", ids["zhonghai-mingcheng"])):
            try:
                await aud.resolve(s, geo, cm, kind, target)
            except NoticeError as exc:
                assert exc.code == "out_of_scope"
            else:
                raise AssertionError(f"{kind} should be out of scope")
        for kind, target in (("estate", 99999), ("galaxy", 1), ("committee", None)):
            try:
                await aud.resolve(s, geo, st, kind, target)
            except NoticeError as exc:
                assert exc.code == "unknown_audience"
            else:
                raise AssertionError(f"{kind} should be unknown")


async def test_notice_with_photo(make_app, sqlite_url):
    from bot.messaging.model import Kind

    app, chat = await make_app(sqlite_url)
    await _town(app)
    await chat.say("cm", "/notice")
    await chat.press("cm", "办事指南")
    await chat.say("cm", "estate victoria")
    await chat.send_media("cm", Kind.PHOTO, b"\xff\xd8 not a picture")
    assert "无法使用这个文件" in chat.last_text("cm")  # refused, and the draft goes on
    await chat.send_media("cm", Kind.PHOTO, jpeg_with_gps())
    assert "图片已保存" in chat.last_text("cm")
    await chat.say("cm", "社保卡办理流程见图")
    preview = [m.out for m in chat.sent if m.chat_id == "cm" and m.out.photo]
    assert preview and preview[-1].text == "【办事指南】\n社保卡办理流程见图"
    await chat.press("cm", "立即发送")
    await pump(app)
    got = chat.last("v1")
    assert got.photo == preview[-1].photo and got.text == "【Service guide】\n社保卡办理流程见图"
    # A file of our own media store (not the author's platform file id, which residents on
    # another platform could not be sent), without the camera's EXIF.
    kept = Path(got.photo).read_bytes()  # noqa: ASYNC240 (a test reading one small file)
    assert kept.startswith(b"\xff\xd8") and b"PhoneMaker" not in kept
    assert chat.texts_to("r1") == []  # Rongcheng is another estate of the same committee


async def test_an_emergency_overtakes_a_bulk_fan_out(make_app, sqlite_url):
    app, _ = await make_app(sqlite_url)
    async with app.sessions() as s, s.begin():
        for i in range(40):
            await add_resident(s, f"b{i:02d}", "victoria", str(1 + i % 6))
        await notices.system_notice(s, category="event", estate_ids=None,
                                    texts={"en": "bulk"}, dedupe_key="bulk")
        start = app.services.clock()
        urgent = await notices.system_notice(s, category="emergency", estate_ids=None,
                                             texts={"en": "fire"}, dedupe_key="fire")
        urgent.scheduled_at = start + timedelta(minutes=3)  # falls due mid-walk

    ticks = iter(range(10_000))
    ticking = replace(app.services, clock=lambda: start + timedelta(minutes=next(ticks)))
    await fan_out(app.sessions, ticking, None, batch=4)
    async with app.sessions() as s:
        rows = (await s.execute(select(OutboxMessage.id, OutboxMessage.group_key,
                                       OutboxMessage.identity_id))).all()
        bulk, fire = await notices.get(s, 1), await notices.get(s, 2)
    bulk_ids = [i for i, g, _ in rows if g == "notice:1"]
    fire_ids = [i for i, g, _ in rows if g == "notice:2"]
    assert len(bulk_ids) == len(fire_ids) == 40
    assert max(fire_ids) < max(bulk_ids)  # the emergency went in before the bulk walk ended
    assert min(bulk_ids) < min(fire_ids)  # ... which had started first and then resumed
    assert bulk.status == fire.status == "sent"
    assert len({(g, ident) for _, g, ident in rows}) == 80


async def test_cancelling_while_sending_drops_what_is_waiting(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    await _town(app)
    await chat.say("cm", "/notice")
    await chat.press("cm", "活动")
    await chat.say("cm", "estate victoria")
    await chat.say("cm", "取消测试")
    await chat.press("cm", "立即发送")
    await fan_out(app.sessions, app.services, None)  # queued, not yet delivered
    await chat.say("cm", "/notices")
    await chat.press("cm", "#1")
    await chat.press("cm", "取消通知")
    assert "已取消" in chat.last_text("cm")
    chat.clear()
    await pump(app)
    assert chat.texts_to("v1") == [] and chat.texts_to("v2") == []
    async with app.sessions() as s:
        figures = await outbox.figures(s, notices.group_of(1))
        notice = await notices.get(s, 1)
    assert figures["cancelled"] == 2 and figures["sent"] == 0
    assert notice.status == "cancelled"
    assert "已取消" in chat.last_text("cm")  # the progress message says so


async def test_replies_go_ahead_of_a_bulk_backlog(make_app, sqlite_url):
    from bot.delivery import Deliverer
    from bot.messaging.model import Outbound

    app, chat = await make_app(sqlite_url)
    async with app.sessions() as s, s.begin():
        ids = [(await add_resident(s, f"q{i:03d}", "victoria", "1")).id for i in range(300)]
        for i in ids:
            await outbox.enqueue(s, i, Outbound(text="bulk").to_json(), priority=Priority.BULK)
        await outbox.enqueue(s, ids[-1], Outbound(text="reply").to_json(),
                             priority=Priority.REPLY)
        await outbox.enqueue(s, ids[-2], Outbound(text="urgent").to_json(),
                             priority=Priority.URGENT)
    deliverer = Deliverer(app.engine, app.sessions, app.adapters, batch=50)
    await deliverer.drain_once()
    first_round = [m.out.text for m in chat.sent]
    assert first_round[:2] == ["reply", "urgent"] and len(first_round) == 50


async def test_volunteers_audience_is_volunteers_within_scope(make_app, sqlite_url):
    """"Everyone signed up as a volunteer", within the sender's responsibility."""
    app, chat = await make_app(sqlite_url)
    await _town(app)
    async with app.sessions() as s, s.begin():
        v1 = await add_resident(s, "v-team", "victoria", "1")
        z1 = await add_resident(s, "z-team", "zhonghai-mingcheng", "3")
        team = await vteams.create_team(s, "Elderly care", None, v1.resident_id)
        assert await vteams.join_team(s, team.id, z1.resident_id)
    await chat.say("cm", "/notice")
    await chat.press("cm", "活动")
    await chat.press("cm", "志愿者")
    await chat.say("cm", "周六志愿者培训")
    assert "目前可送达：1" in chat.last_text("cm")  # z-team lives outside victoria committee
    await chat.press("cm", "立即发送")
    await pump(app)
    assert chat.texts_to("v-team") == ["【Event】\n周六志愿者培训"]
    for user in ("v1", "v2", "r1", "z-team"):
        assert chat.texts_to(user) == []
    # The admin's "volunteers" reach every volunteer, typed as well as pressed.
    await chat.say("boss", "/notice")
    await chat.press("boss", "活动")
    await chat.say("boss", "志愿者")
    await chat.say("boss", "感谢所有志愿者")
    assert "目前可送达：2" in chat.last_text("boss")


def test_a_bare_time_already_past_means_tomorrow_and_the_reply_says_so():
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from bot.i18n import Texts
    from services.notice_time import BadTime, parse_when, spoken

    tz = "Asia/Shanghai"
    now = datetime(2026, 12, 2, 19, 0, tzinfo=ZoneInfo(tz)).astimezone(UTC)
    texts = Texts()

    def zh(key, **values):
        return texts.get("zh-Hans", key, **values)

    def local(at):
        return at.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")

    assert local(parse_when("18:30", now, tz)) == "2026-12-03 18:30"
    assert local(parse_when("19:00", now, tz)) == "2026-12-03 19:00"  # now is not the future
    assert local(parse_when("19:05", now, tz)) == "2026-12-02 19:05"
    assert local(parse_when("明天20:00", now, tz)) == "2026-12-03 20:00"
    assert spoken(zh, parse_when("18:30", now, tz), now, tz) == "明天 18:30（2026-12-03）"
    assert spoken(zh, parse_when("19:05", now, tz), now, tz) == "今天 19:05"
    assert spoken(zh, parse_when("12-05 08:00", now, tz), now, tz) == "2026-12-05 08:00"
    en = spoken(lambda k, **v: texts.get("en", k, **v), parse_when("18:30", now, tz), now, tz)
    assert en == "tomorrow at 18:30 (2026-12-03)"
    for said, code in (("今天 18:30", "past"), ("2026-12-01 09:00", "past"),
                       ("2027-03-01 09:00", "far"), ("25:00", "bad")):
        try:
            parse_when(said, now, tz)
        except BadTime as exc:
            assert exc.code == code, said
        else:
            raise AssertionError(said)


async def test_a_refused_answer_leaves_the_steps_numbers_standing(make_app, sqlite_url):
    """Without buttons (WeChat, the terminal) a step's choices are numbers: an audience typed
    wrong is answered with a note, and the number typed next still picks from the audience
    prompt (it was answered as one more unknown audience)."""
    from bot.messaging.memory import MemoryAdapter
    from bot.messaging.model import Capabilities

    app, chat = await make_app(sqlite_url, MemoryAdapter(
        capabilities=Capabilities(buttons=False)), deliver=True)
    await _town(app)
    await chat.say("boss", "/notice")
    await chat.say("boss", "活动")
    prompt = chat.sent[-1].out
    assert [b.label for row in prompt.buttons for b in row][0] == "全街道"
    await chat.say("boss", "居委 nowhere")
    assert "无法识别这个发送范围" in chat.last_text("boss")
    await chat.say("boss", "1")
    assert "全街道" in chat.last_text("boss") and "请输入通知内容" in chat.last_text("boss")
