"""Declared conversations (bot/conversation.py): steps in one place, a typed draft kept as JSON,
"back" to the step before with the draft as it was, a stale press refused, a draft of the
older flat layout still read, one that no longer fits dropped with a message."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

import handlers  # every feature's conversations declared
from bot.conversation import Conversation, _load
from storage import dialog
from storage.people import Identity
from tests.deliberation_helpers import grant, make_resident


async def _author(make_app, url, lang="en"):
    app, chat = await make_app(url)
    await make_resident(app.sessions, "memory", "author", lang=lang)
    await grant(app.sessions, "memory:author", "committee", "victoria")
    return app, chat


async def _state(app) -> dialog.DialogState | None:
    async with app.sessions() as s:
        identity = (await s.scalars(select(Identity).where(
            Identity.platform_user_id == "author"))).one()
        return await dialog.load(s, identity.id)


def test_every_declared_step_has_a_prompt():
    conversations = handlers.build_router().conversations
    assert {"poll.draft", "survey.draft", "notice.draft", "report.draft",
            "vol.draft"} <= set(conversations)
    for state, conversation in conversations.items():
        assert isinstance(conversation, Conversation)
        assert conversation.unasked() == [], state


async def test_back_returns_to_the_step_before_with_the_draft_as_it_was(make_app, sqlite_url):
    app, chat = await _author(make_app, sqlite_url)
    await chat.say("author", "/newpoll")
    await chat.say("author", "/back")
    said = chat.texts_to("author")[-2:]
    assert "first step" in said[0] and "question" in said[1]  # and the step is asked again
    await chat.say("author", "Which colour for the fence?")
    await chat.say("author", "Green\nBlue")
    assert chat.find_button("author", "One option") is not None
    # The word works as the command does, and the options step is asked again.
    await chat.say("author", "back")
    assert "options" in chat.last_text("author").lower()
    await chat.say("author", "Red\nYellow\nBlack")
    await chat.press("author", "Several options")
    await chat.press("author", "Victoria Garden")
    await chat.say("author", "/back")  # to the area step
    await chat.say("author", "/back")  # to single/multiple
    assert chat.find_button("author", "Several options") is not None
    state = await _state(app)
    assert state.name == "poll.draft" and state.data["step"] == "multiple"
    assert state.data["draft"]["options"] == ["Red", "Yellow", "Black"]
    assert state.data["draft"]["area_id"] == 0  # the area chosen after it is undone
    await chat.press("author", "One option")
    assert state_step(await _state(app)) == "area"
    # A press drawn for a step the conversation has left is refused, not taken.
    await chat.press("author", "Victoria Garden")
    await chat.say("author", "/back")
    await chat.say("author", "/back")
    assert state_step(await _state(app)) == "multiple"


def state_step(state) -> str:
    return state.data["step"]


async def test_back_in_chinese(make_app, sqlite_url):
    app, chat = await _author(make_app, sqlite_url, lang="zh-Hans")
    await chat.say("author", "/newsurvey")
    await chat.say("author", "小区停车问卷")
    await chat.say("author", "返回")
    assert state_step(await _state(app)) == "title"
    assert "标题" in chat.last_text("author") or "问卷" in chat.last_text("author")


async def test_back_outside_any_conversation_says_so(make_app, sqlite_url):
    app, chat = await _author(make_app, sqlite_url)
    await chat.say("author", "/back")
    assert "nothing" in chat.last_text("author").lower() or \
        "not in the middle" in chat.last_text("author")


async def test_a_draft_of_the_older_flat_layout_is_continued(make_app, sqlite_url):
    app, chat = await _author(make_app, sqlite_url)
    await chat.say("author", "/newpoll")
    async with app.sessions.begin() as s:
        identity = (await s.scalars(select(Identity).where(
            Identity.platform_user_id == "author"))).one()
        await dialog.save(s, identity.id, "poll.draft",
                          {"step": "options", "question": "Which colour for the fence?"})
    await chat.say("author", "Green\nBlue")
    state = await _state(app)
    assert state.data["step"] == "multiple"
    assert state.data["draft"]["question"] == "Which colour for the fence?"
    assert state.data["draft"]["options"] == ["Green", "Blue"]


async def test_a_draft_that_no_longer_fits_is_dropped_with_a_message(make_app, sqlite_url):
    app, chat = await _author(make_app, sqlite_url)
    await chat.say("author", "/newpoll")
    async with app.sessions.begin() as s:
        identity = (await s.scalars(select(Identity).where(
            Identity.platform_user_id == "author"))).one()
        await dialog.save(s, identity.id, "poll.draft",
                          {"step": "options", "draft": {"question": 12}})
    await chat.say("author", "Green\nBlue")
    assert "older version" in chat.last_text("author")
    assert await _state(app) is None
    await chat.say("author", "/newpoll")  # and a new one starts cleanly
    assert state_step(await _state(app)) == "question"


@dataclass
class _Form:
    name: str = ""
    count: int = 0
    ratio: float = 0.0
    tags: list[str] = field(default_factory=list)
    limit: int | None = None


def test_a_draft_reads_back_only_when_its_values_fit_the_fields():
    assert _load(_Form, {"name": "x", "count": 2, "ratio": 1, "tags": ["a"], "limit": None}) \
        == _Form("x", 2, 1, ["a"], None)
    assert _load(_Form, {}) == _Form()
    for bad in ({"count": "2"}, {"count": True}, {"tags": [1]}, {"limit": "x"},
                {"ratio": "1.5"}):
        assert _load(_Form, bad) is None, bad


async def test_a_notice_goes_back_from_its_text_to_the_audience_and_keeps_the_category(
        make_app, sqlite_url):
    app, chat = await _author(make_app, sqlite_url, lang="zh-Hans")
    await chat.say("author", "/notice")
    await chat.press("author", "活动")
    await chat.press("author", "居委会")
    await chat.press("author", "维多利亚居委会")
    assert "请输入通知内容" in chat.last_text("author")
    await chat.say("author", "返回")
    state = await _state(app)
    assert state.data["step"] == "audience" and state.data["draft"]["category"] == "event"
    await chat.say("author", "/back")
    assert state_step(await _state(app)) == "category"
    await chat.press("author", "天气")
    state = await _state(app)
    assert state.data["step"] == "audience" and state.data["draft"]["category"] == "weather"


async def test_a_report_goes_back_a_step_and_a_draft_of_the_older_states_is_continued(
        make_app, sqlite_url):
    from tests.report_helpers import english_resident

    app, chat = await make_app(sqlite_url)
    await english_resident(chat, "ann")
    await chat.say("ann", "/report")
    await chat.say("ann", "street light broken")
    assert "Send up to 3 photos" in chat.last_text("ann")
    await chat.say("ann", "back")  # the sentence was category and description at once
    assert "What kind of problem" in chat.last_text("ann")
    async with app.sessions() as s:
        identity = (await s.scalars(select(Identity).where(
            Identity.platform_user_id == "ann"))).one()
        state = await dialog.load(s, identity.id)
    assert state.data["step"] == "category" and state.data["draft"]["desc"] == ""
    # A draft written by the version with a state per step and flat fields, mid-way.
    async with app.sessions.begin() as s:
        await dialog.save(s, identity.id, "report.where",
                          {"cat": "lighting", "desc": "Lamp out by gate 2", "photos": [],
                           "photos_done": True})
    await chat.say("ann", "/back")  # at the step it was left at: nothing before it yet
    said = chat.texts_to("ann")[-2:]
    assert "first step" in said[0] and "Where is it?" in said[1]
    await chat.share_location("ann", 30.6330, 104.0400)
    assert "Please check your report" in chat.last_text("ann")
    assert "Lamp out by gate 2" in chat.last_text("ann")
    await chat.press("ann", "File the report")
    assert "Z-" in chat.last_text("ann")


async def test_an_activity_goes_back_from_its_shifts_to_the_description(make_app, sqlite_url):
    app, chat = await _author(make_app, sqlite_url)
    await chat.say("author", "/newactivity")
    await chat.say("author", "Clean-up of the pond")
    await chat.press("author", "Environment")
    await chat.press("author", "Victoria Garden")
    await chat.say("author", "Bring gloves.")
    await chat.say("author", "/back")
    state = await _state(app)
    assert state.name == "vol.draft" and state.data["step"] == "description"
    assert state.data["draft"]["description"] == ""
    await chat.say("author", "Bring gloves and boots.")
    assert state_step(await _state(app)) == "shifts"
    await chat.say("author", "/back")
    await chat.say("author", "/back")
    assert state_step(await _state(app)) == "place"
