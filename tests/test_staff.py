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
