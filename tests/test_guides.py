"""Service guides: content checks, browsing, free-text questions, and the ask-staff loop."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.app import shipped_guides
from bot.delivery import Deliverer
from bot.messaging.model import Kind
from services.guides import TOPICS, GuideError, load_guides
from storage import audit, roles_service
from storage.guides import GuideQuestion
from tests.notice_support import add_resident

GUIDES = Path(__file__).resolve().parent.parent / "content" / "guides"


def test_guides_complete_in_both_languages():
    guides = load_guides()
    assert len(guides) >= 8
    assert {g.topic for g in guides} == set(TOPICS)
    ids = {g.id for g in guides}
    assert {"residence-permit", "hukou-transfer", "elderly-allowance", "disability-certificate",
            "marriage-registration", "medical-insurance", "temporary-residence",
            "birth-registration", "minimum-living-allowance"} <= ids
    marriage = next(g for g in guides if g.id == "marriage-registration")
    assert "民政局" in marriage.field("zh-Hans", "office")
    assert "civil affairs bureau" in marriage.field("en", "office")


def test_loader_refuses_a_guide_missing_a_language(tmp_path):
    data = (GUIDES / "residence-permit.toml").read_text()
    (tmp_path / "a.toml").write_text(data.split("[en]")[0])
    with pytest.raises(GuideError, match=r"no \[en\] section"):
        load_guides(tmp_path)
    (tmp_path / "a.toml").write_text(data.replace('hours = "Monday', 'hourz = "Monday'))
    with pytest.raises(GuideError, match="hours is missing"):
        load_guides(tmp_path)
    (tmp_path / "a.toml").write_text(data.replace('topic = "residence"', 'topic = "fun"'))
    with pytest.raises(GuideError, match="topic"):
        load_guides(tmp_path)
    (tmp_path / "a.toml").write_text(data)
    (tmp_path / "b.toml").write_text(data.replace('id = "residence-permit"', 'id = "other"'))
    with pytest.raises(GuideError, match="repeated number"):
        load_guides(tmp_path)
    (tmp_path / "b.toml").unlink()
    (tmp_path / "a.toml").write_text(data + "\n[broken")
    with pytest.raises(GuideError):
        load_guides(tmp_path)
    tomllib.loads(data)  # the real one is fine


@pytest.mark.parametrize(("question", "expected"), [
    ("怎么办居住证", {"residence-permit"}),
    ("how do I register my residence", {"residence-permit", "temporary-residence"}),
    ("残疾证怎么办", {"disability-certificate"}),
    ("我想领结婚证", {"marriage-registration"}),
    ("I want to get married", {"marriage-registration"}),
    ("我爸爸80岁了有补贴吗", {"elderly-allowance"}),
    ("交医保在哪里交", {"medical-insurance"}),
    ("怎么迁户口", {"hukou-transfer"}),
    ("生二胎要登记吗", {"birth-registration"}),
    ("how to apply for dibao", {"minimum-living-allowance"}),
    ("residense permit", {"residence-permit"}),  # a typo
])
def test_questions_find_their_guides(question, expected):
    assert {m.guide.id for m in shipped_guides().search(question, cutoff=70)} == expected


@pytest.mark.parametrize("text", ["楼道灯坏了", "今天天气怎么样", "hello", "the lift is broken",
                                  "我要投诉噪音", "办证", "谢谢", "ok"])
def test_other_messages_match_no_guide(text):
    assert shipped_guides().search(text, cutoff=55) == []


async def _home(app, *users, lang="en"):
    async with app.sessions() as s, s.begin():
        for user in users:
            await add_resident(s, user, "victoria", lang=lang)


async def test_browse_by_topic_and_free_text(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    await _home(app, "res")
    await chat.say("res", "/guide")
    assert "Service guides" in chat.last_text("res")
    await chat.press("res", "Marriage and children")
    assert chat.last_text("res").startswith("Marriage and children: choose a guide")
    await chat.press("res", "Marriage registration")
    detail = chat.last_text("res")
    assert "Where: Marriages are not registered by the sub-district" in detail
    assert "What to bring:\n• Both partners' resident ID cards" in detail
    assert "Steps:\n1. Book a time" in detail
    await chat.press("res", "« Back to topics")
    assert "Service guides" in chat.last_text("res")

    await chat.say("res", "怎么办居住证")
    assert "may help" in chat.last_text("res")
    await chat.press("res", "Getting a residence permit")
    assert "Your resident ID card (original)" in chat.last_text("res")
    # Anything else matches no guide: it may still be a question, so staff are offered.
    await chat.say("res", "the lift in building 3 is broken")
    assert "didn't understand" in chat.last_text("res") and "/report" in chat.last_text("res")
    assert [b.label for row in chat.last("res").buttons for b in row] == ["💬 Ask staff"]
    # Chatter is not offered to staff.
    for text in ("ok", "thanks", "谢谢", "?", "12"):
        await chat.say("res", text)
        assert chat.last_text("res") == "Sorry, I didn't understand. Send /help to see what you can do."
        assert not chat.last("res").buttons
    # A forged or stale guide number.
    await chat.press("res", app.services.signer.sign(
        (await _identity(app, "res")), "gshow", 99), raw=True)
    assert "no longer exists" in chat.last_text("res")
    # Genuinely signed, but not the shape the action declares (a guide number that is no
    # number, one field too many): refused before the handler runs.
    for args in (("seven",), (3, 4)):
        await chat.press("res", app.services.signer.sign(
            (await _identity(app, "res")), "gshow", *args), raw=True)
        assert chat.last_text("res") == "This button is no longer valid. Please start again."


async def _drain(app) -> None:
    deliverer = Deliverer(app.engine, app.sessions, app.adapters)
    while await deliverer.drain_once():
        pass


async def _identity(app, user):
    from storage.people import identity_for

    async with app.sessions() as s:
        return (await identity_for(s, "memory", user)).id


async def test_free_text_never_interrupts_a_conversation(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    await chat.say("new", "/start")
    await chat.press("new", "English")
    assert "Which estate" in chat.last_text("new")
    await chat.say("new", "怎么办居住证")  # taken as an estate name, not a guide question
    assert "may help" not in chat.last_text("new")


async def test_chinese_guide_text(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    await _home(app, "zh", lang="zh-Hans")
    await chat.say("zh", "/guide 低保怎么申请")
    assert "相关的办事指南" in chat.last_text("zh")
    await chat.press("zh", "申请最低生活保障（低保）")
    text = chat.last_text("zh")
    assert "办理地点：街道便民服务中心社会救助窗口" in text and "1. 家庭人均月收入" in text


async def test_ask_staff_answer_comes_back_once(make_app, db_url):
    app, chat = await make_app(db_url)
    await _home(app, "res")
    async with app.sessions() as s, s.begin():
        for user in ("staff1", "staff2"):
            await roles_service.change_role(s, f"memory:{user}", "staff", "sxs-station",
                                            actor_id=None, grant=True, create_missing=True)
        await roles_service.change_role(s, "memory:cm", "committee", "victoria",
                                        actor_id=None, grant=True, create_missing=True)
    deliverer = Deliverer(app.engine, app.sessions, app.adapters)

    await chat.say("res", "/guide can I keep a dog in my flat")
    assert 'I found no guide about "can I keep a dog in my flat"' in chat.last_text("res")
    await chat.press("res", "Ask staff")
    assert "sent to community staff" in chat.last_text("res")
    await chat.press("res", "Ask staff")  # a double tap
    assert "no question to send" in chat.last_text("res")
    await deliverer.drain_once()
    for user in ("staff1", "staff2"):
        assert chat.texts_to(user) == ["❓ 居民提问（维多利亚）：\ncan I keep a dog in my flat"]
    assert chat.texts_to("cm") == []  # committee members are not the station's staff

    await chat.say("staff1", "/questions")  # the same question, for staff who missed it
    assert chat.last_text("staff1") == "❓ 居民提问（维多利亚）：\ncan I keep a dog in my flat"
    await chat.say("res", "/questions")
    assert "not allowed" in chat.last_text("res")
    await chat.press("staff1", "回复")
    assert "请输入给居民的回复" in chat.last_text("staff1")
    await chat.send_media("staff1", Kind.PHOTO, b"\xff\xd8\xff")
    assert chat.last_text("staff1") == "请用文字输入回复。"
    await chat.press("staff2", "回复")
    await chat.say("staff1", "Small dogs are allowed if registered at the police station.")
    assert chat.last_text("staff1") == "✅ 回复已发送给居民。"
    await chat.say("staff2", "Yes you can.")  # staff2 was typing too: refused, clearly
    assert "已经有工作人员回复过了" in chat.last_text("staff2")
    await chat.press("staff2", "回复")
    assert "已经有工作人员回复过了" in chat.last_text("staff2")
    await chat.say("staff2", "/questions")
    assert chat.last_text("staff2") == "目前没有等待回复的问题。"
    await deliverer.drain_once()
    replies = [t for t in chat.texts_to("res") if "staff answered" in t]
    assert replies == ['💬 Community staff answered your question:\n"can I keep a dog in my '
                       'flat"\n\nSmall dogs are allowed if registered at the police station.']
    # A resident cannot use the staff's Answer button, even with a payload signed for them.
    async with app.sessions() as s:
        qid = await s.scalar(select(GuideQuestion.id))
    await chat.press("res", app.services.signer.sign(await _identity(app, "res"), "gans", qid),
                     raw=True)
    assert "not allowed" in chat.last_text("res")
    async with app.sessions() as s:
        entries = [e for e in await audit.recent(s) if e.action == "guide.answer"]
        row = await s.get(GuideQuestion, qid)
    assert len(entries) == 1 and entries[0].target == f"question:{qid}"
    assert row.status == "answered" and row.answer.startswith("Small dogs")


async def test_concurrent_answers_only_one_wins(make_app, db_url):
    app, chat = await make_app(db_url)
    await _home(app, "res")
    async with app.sessions() as s, s.begin():
        for user in ("a", "b", "c"):
            await roles_service.change_role(s, f"memory:{user}", "staff", "sxs-station",
                                            actor_id=None, grant=True, create_missing=True)
    await chat.say("res", "/guide where do I park my bike")
    await chat.press("res", "Ask staff")
    await Deliverer(app.engine, app.sessions, app.adapters).drain_once()
    for user in ("a", "b", "c"):
        await chat.press(user, "回复")
    await asyncio.gather(*(chat.say(u, f"answer from {u}") for u in ("a", "b", "c")))
    results = [chat.last_text(u) for u in ("a", "b", "c")]
    assert results.count("✅ 回复已发送给居民。") == 1
    await Deliverer(app.engine, app.sessions, app.adapters).drain_once()
    assert len([t for t in chat.texts_to("res") if "staff answered" in t]) == 1


async def test_question_bad_input_limits_and_no_staff(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    await _home(app, "res")
    await chat.say("res", "/guide")
    await chat.press("res", "Ask staff")
    assert "Type your question" in chat.last_text("res")
    await chat.send_media("res", Kind.PHOTO, b"\xff\xd8\xff")
    assert chat.last_text("res") == "Please type your question as text."
    await chat.say("res", "?")
    assert "too short" in chat.last_text("res")
    await chat.say("res", "x" * 501)
    assert "at most 500" in chat.last_text("res")
    await chat.say("res", "/guide " + "居住证" * 200)
    assert "at most 500" in chat.last_text("res")
    await chat.press("res", app.services.signer.sign(await _identity(app, "res"), "gtop", 7),
                     raw=True)
    assert "no longer valid" in chat.last_text("res")
    await chat.say("res", "/guide")
    await chat.press("res", "Ask staff")
    await chat.say("res", "who collects bulky rubbish?")
    assert "No staff member can answer" in chat.last_text("res")  # nobody has the role yet
    async with app.sessions() as s, s.begin():
        await roles_service.change_role(s, "memory:boss", "admin", None, actor_id=None,
                                        grant=True, create_missing=True)
    for n in range(3):
        await chat.say("res", f"/guide unusual question number {n}")
        await chat.press("res", "Ask staff")
        assert "sent to community staff" in chat.last_text("res")
    await chat.say("res", "/guide one question too many")
    await chat.press("res", "Ask staff")
    assert "already have 3 questions" in chat.last_text("res")
    await _drain(app)
    assert len(chat.texts_to("boss")) == 3  # admins answer for everyone


@pytest.mark.parametrize(("lang", "question", "offer", "ask", "sent", "answered"), [
    ("zh-Hans", "小区里可以养鸡吗", "没听懂您的意思，也没有找到相关的办事指南", "💬 向工作人员提问",
     "问题已发给社区工作人员", "社区工作人员回复了您的问题"),
    ("en", "can I keep chickens in the courtyard", "no service guide matches", "💬 Ask staff",
     "sent to community staff", "Community staff answered your question"),
])
async def test_free_text_matching_no_guide_is_offered_to_staff(make_app, db_url, lang, question,
                                                              offer, ask, sent, answered):
    app, chat = await make_app(db_url)
    await _home(app, "res", lang=lang)
    async with app.sessions() as s, s.begin():
        await roles_service.change_role(s, "memory:staff1", "staff", "sxs-station",
                                        actor_id=None, grant=True, create_missing=True)
    await chat.say("res", question)  # no /guide: just typed
    assert offer in chat.last_text("res")
    await chat.say("res", "/profile")  # the offer survives other chatting: it is stored
    await chat.press("res", ask)
    assert sent in chat.last_text("res")
    await _drain(app)
    assert chat.texts_to("staff1") == [f"❓ 居民提问（维多利亚）：\n{question}"]
    await chat.press("staff1", "回复")
    await chat.say("staff1", "请到居委会咨询。")
    await _drain(app)
    assert any(answered in t and question in t and "请到居委会咨询。" in t
               for t in chat.texts_to("res"))


def test_guide_texts_address_residents_as_nin():
    """Every Chinese text of the guides says 您, as the rest of the bot does."""
    root = GUIDES.parent
    for path in [root / "texts" / "zh-Hans" / "guides.toml", *sorted(GUIDES.glob("*.toml"))]:
        text = path.read_text(encoding="utf-8")
        assert "你" not in text.replace("你好", ""), path.name
