"""A new resident meets the bot through the in-memory adapter."""

from __future__ import annotations

from bot.messaging.memory import MemoryAdapter
from storage.people import Resident


async def test_new_resident_sets_language_and_home_by_typed_name(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    await chat.say("ann", "/start")
    assert "请选择语言" in chat.last_text("ann")
    await chat.press("ann", "English")
    assert "Language set to English" in chat.texts_to("ann")[-2]
    assert "Which estate" in chat.last_text("ann")

    await chat.say("ann", "Zhonghai Mingchen")  # a typo
    assert chat.last_text("ann") == "Do you live in Zhonghai Mingcheng?"
    await chat.press("ann", "Yes")
    assert "building number" in chat.last_text("ann")
    await chat.press("ann", "3")
    await chat.say("ann", "2-301")
    texts = "\n".join(chat.texts_to("ann")[-3:])
    assert "Your home is saved: Zhonghai Mingcheng." in texts
    assert "/profile" in texts  # the help that follows

    await chat.say("ann", "/profile")
    profile = chat.last_text("ann")
    assert "Estate: Zhonghai Mingcheng" in profile and "Unit: 2-301" in profile
    assert "Building: 3" in profile

    async with app.sessions() as session:
        resident = await session.get(Resident, 1)
        assert resident.language == "en" and resident.household_id is not None


async def test_loose_chinese_names_find_the_estate(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    for user, typed in [("a", "中海名城"), ("b", "zhonghai"), ("c", "中海明城"),
                        ("d", "Zhonghai Mingcheng")]:
        await chat.say(user, "/start")
        await chat.press(user, "中文")
        await chat.say(user, typed)
        assert chat.last_text(user) == "您住在“中海名城”吗？", (typed, chat.last_text(user))


async def test_location_finds_estate_and_outside_is_refused(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    await chat.say("z", "/start")
    await chat.press("z", "中文")
    await chat.share_location("z", 39.9, 116.3)  # Beijing: not in the demo sub-district
    assert "不在本街道范围内" in chat.last_text("z")
    await chat.share_location("z", 30.619, 104.044)
    assert chat.last_text("z") == "您住在“神仙树大院”吗？"


async def test_cancel_leaves_any_conversation_and_first_contact_greets(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    await chat.say("n", "hello")  # first words, not /start
    assert "请选择语言" in chat.last_text("n")
    await chat.press("n", "English")
    await chat.say("n", "/cancel")
    assert chat.last_text("n") == "Cancelled."
    await chat.say("n", "/cancel")
    assert chat.last_text("n") == "There is nothing to cancel."


async def test_half_finished_conversation_survives_a_restart(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    await chat.say("r", "/start")
    await chat.press("r", "English")
    await app.stop()

    # A new process on the same database, with a new adapter: the state comes back.
    app2, chat2 = await make_app(sqlite_url, MemoryAdapter(), territory=False)
    await chat2.say("r", "victoria")
    assert chat2.last_text("r") == "Do you live in Victoria Garden?"


async def test_language_is_remembered_and_profile_can_change_it(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    await chat.say("l", "/start")
    await chat.press("l", "English")
    await chat.say("l", "/cancel")
    await chat.say("l", "/profile")
    await chat.press("l", "Change language")
    await chat.press("l", "中文")
    assert "语言已设为中文。" in chat.texts_to("l")[-2:]
    await chat.say("l", "/nonsense")
    assert "没有 /nonsense 这个命令" in chat.last_text("l")


async def test_skip_typed_is_the_skip_button_and_help_midway_keeps_the_step(make_app, sqlite_url):
    """Residents type a button's label: "skip" (any case) or "跳过" at the unit step saves no
    unit (it saved a unit called "SKIP"), and at the building step the estate alone. /help
    half-way says the question above is still open, and the answer after it still counts."""
    app, chat = await make_app(sqlite_url)
    await chat.say("ann", "/start")
    await chat.press("ann", "English")
    await chat.press("ann", "Zhonghai Mingcheng")
    await chat.press("ann", "3")
    await chat.say("ann", "/help")
    assert "answer the question above" in chat.last_text("ann")
    assert "You have not told me your home yet" not in chat.last_text("ann")
    await chat.say("ann", "skip")
    assert "Your home is saved: Zhonghai Mingcheng." in "\n".join(chat.texts_to("ann")[-3:])
    await chat.say("ann", "/profile")
    assert "Building: 3" in chat.last_text("ann") and "Unit: -" in chat.last_text("ann")

    await chat.say("bo", "/start")
    await chat.press("bo", "中文")
    await chat.press("bo", "中海名城")
    await chat.say("bo", "跳过")
    assert "已记下您的住址：中海名城。" in "\n".join(chat.texts_to("bo")[-3:])
    await chat.say("bo", "/profile")
    assert "楼栋：-" in chat.last_text("bo")

    await chat.say("cy", "/help")  # no home and none being given: how to give one
    assert chat.last_text("cy").startswith("您还没有选择住址。请发送 /start")
