"""Staff verify residents; admins grant roles in chat; every privileged action is audited."""

from __future__ import annotations

from bot.delivery import Deliverer
from storage import audit, roles_service


async def test_invite_pending_and_grant(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    async with app.sessions() as s, s.begin():
        await roles_service.change_role(s, "memory:staff", "staff", "sxs-station",
                                        actor_id=None, grant=True, create_missing=True)
        await roles_service.change_role(s, "memory:boss", "admin", None, actor_id=None,
                                        grant=True, create_missing=True)
    # Staff make an invite code; a resident redeems it.
    await chat.say("staff", "/invite")
    await chat.press("staff", "维多利亚")
    code = chat.last_text("staff").split("：")[1].split("\n")[0]
    await chat.say("res", "/start")
    await chat.press("res", "English")
    await chat.say("res", f"/join {code}")
    assert chat.last_text("res") == "You are verified as a resident of Victoria Garden."
    await chat.say("res", "/join WRONG123")
    assert "not right" in chat.last_text("res")

    # Another resident asks for approval; staff approve from the queue.
    await chat.say("p", "/start")
    await chat.press("p", "English")
    await chat.press("p", "Shenxianshu Compound")
    await chat.press("p", "Skip")
    await chat.press("p", "Skip")
    await chat.press("p", "Ask for approval")
    assert "request is in" in chat.last_text("p")
    await chat.say("p", "/verify")
    assert "already waiting" in chat.last_text("p")
    await chat.say("staff", "/pending")
    await chat.press("staff", "通过")
    assert chat.last_text("staff") == "已通过。"
    await chat.press("staff", "通过")  # a double tap
    assert chat.last_text("staff") == "这条申请已经处理过了。"
    deliverer = Deliverer(app.engine, app.sessions, app.adapters)
    await deliverer.drain_once()
    assert chat.last_text("p") == "You are now a verified resident."

    # Residents cannot use staff or admin commands; admins grant in chat.
    await chat.say("res", "/pending")
    assert "not allowed" in chat.last_text("res")
    await chat.say("boss", "/grant memory:res committee victoria")
    assert "已授予" in chat.last_text("boss")
    await chat.say("boss", "/grant memory:res mayor")
    assert "未知角色" in chat.last_text("boss")
    await chat.say("boss", "/audit")
    assert "role.grant" in chat.last_text("boss")
    async with app.sessions() as s:
        actions = {e.action for e in await audit.recent(s)}
    assert {"invite.create", "verify.invite", "verify.approve", "role.grant"} <= actions


async def test_audit_in_local_time_naming_who_acted(make_app, sqlite_url):
    """/audit reads in the bot's timezone like every other screen, and an entry without a
    person says whether the scheduler, the bot itself or the command line acted."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from sqlalchemy import update

    app, chat = await make_app(sqlite_url)
    async with app.sessions() as s, s.begin():
        await roles_service.change_role(s, "memory:boss", "admin", None, actor_id=None,
                                        grant=True, create_missing=True)
        await audit.record(s, None, "poll.close", "poll:7", by="scheduler")
        await audit.record(s, None, "proposal.agenda", "proposal:3", by="system")
        await s.flush()
        # 23:30 UTC is 07:30 the next morning in Shanghai.
        await s.execute(update(audit.AuditEntry).values(
            at=datetime(2026, 12, 1, 23, 30, tzinfo=UTC)))
    assert app.services.settings.bot.timezone == "Asia/Shanghai"
    assert datetime(2026, 12, 1, 23, 30, tzinfo=UTC).astimezone(
        ZoneInfo("Asia/Shanghai")).hour == 7
    await chat.say("boss", "/audit")
    lines = chat.last_text("boss").splitlines()
    assert lines[0] == "最近的操作："
    assert "2026-12-02 07:30 系统（自动） proposal.agenda proposal:3" in lines
    assert "2026-12-02 07:30 定时任务 poll.close poll:7" in lines
    assert "2026-12-02 07:30 命令行 role.grant" in "\n".join(lines)
    assert "#cli" not in chat.last_text("boss")
