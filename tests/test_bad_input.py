"""Duplicates, forgeries and odd messages: a clear answer or silence, never a crash."""

from __future__ import annotations

from bot.messaging.model import Inbound, Kind


async def _ready(make_app, url, **bot):
    app, chat = await make_app(url, **bot)
    await chat.say("u", "/start")
    await chat.press("u", "English")
    await chat.say("u", "/cancel")
    return app, chat


async def test_duplicate_update_is_handled_once(make_app, sqlite_url):
    app, chat = await _ready(make_app, sqlite_url)
    inbound = Inbound(platform="memory", user_id="u", chat_id="u", kind=Kind.COMMAND,
                      command="help", text="/help", update_id="dup-1")
    before = len(chat.texts_to("u"))
    await chat.deliver(inbound)
    await chat.deliver(inbound)
    assert len(chat.texts_to("u")) == before + 1


async def test_forged_and_foreign_button_payloads_are_refused(make_app, sqlite_url):
    app, chat = await _ready(make_app, sqlite_url)
    await chat.say("v", "/start")
    payload_for_v = chat.find_button("v", "English")
    for forged in ["lang:en", "lang:en~AAAAAAAA", payload_for_v, "x" * 200, ""]:
        await chat.press("u", forged, raw=True)
        assert chat.last_text("u") == "This button is no longer valid. Please start again."


async def test_unknown_command(make_app, sqlite_url):
    app, chat = await _ready(make_app, sqlite_url)
    await chat.say("u", "/frobnicate now")
    assert chat.last_text("u").startswith("There is no /frobnicate command.")


async def test_empty_zero_width_long_and_emoji_messages(make_app, sqlite_url):
    app, chat = await _ready(make_app, sqlite_url)
    for text in ["", "   ", "\u200b\u200c\ufeff"]:
        await chat.say("u", text)
        assert "empty message" in chat.last_text("u")
    await chat.say("u", "长" * 5000)
    assert "too long" in chat.last_text("u")
    await chat.say("u", "😀🎉🏠")
    assert "didn't understand" in chat.last_text("u")
    # Inside a conversation the same inputs are answered by that step.
    await chat.say("u", "/profile")
    await chat.press("u", "Change home")
    await chat.say("u", "😀🎉🏠")
    assert "could not find an estate" in chat.last_text("u")


async def test_a_flooding_resident_is_slowed_down_once(make_app, sqlite_url):
    app, chat = await _ready(make_app, sqlite_url, flood_burst=8, flood_rate=2.0)
    before = len(chat.texts_to("u"))
    for _ in range(30):
        await chat.say("u", "/help")
    answers = chat.texts_to("u")[before:]
    slow = [t for t in answers if "太快" in t]  # the guard runs before the profile loads
    assert len(slow) == 1
    assert len(answers) < 15  # burst of 8, plus what refilled meanwhile, plus the warning
    # Others are not affected.
    await chat.say("w", "/start")
    assert "请选择语言" in chat.last_text("w")


async def test_a_conversation_left_for_the_draft_ttl_is_dropped_with_a_word(make_app, sqlite_url):
    from datetime import timedelta

    app, chat = await _ready(make_app, sqlite_url, draft_ttl_hours=72)
    clock = app.services.clock
    await chat.say("u", "/profile")
    await chat.press("u", "Change home")
    # Within the limit, and written to every two days: the step still answers.
    for _ in range(3):
        clock.advance(timedelta(hours=48))
        await chat.say("u", "😀🎉🏠")
        assert "could not find an estate" in chat.last_text("u")
    clock.advance(timedelta(hours=73))
    before = len(chat.texts_to("u"))
    await chat.say("u", "😀🎉🏠")
    said = chat.texts_to("u")[before:]
    assert said[0] == ("What you left unfinished more than 72 hours ago has been dropped; "
                       "start again whenever you like.")
    # The message itself is answered as outside any conversation, not swallowed.
    assert "didn't understand" in said[1]
    await chat.say("u", "/cancel")
    assert chat.last_text("u") == "There is nothing to cancel."


async def test_a_slip_between_a_prompt_and_its_number_keeps_the_numbers(make_app, sqlite_url):
    """Without buttons (WeChat, the terminal) the number typed after an empty message, an
    unknown command or one not allowed still picks from the prompt before; each slip was
    answered, and the number then taken as text ("I can't tell what '1' is")."""
    from bot.messaging.memory import MemoryAdapter
    from bot.messaging.model import Capabilities

    app, chat = await make_app(sqlite_url, MemoryAdapter(
        capabilities=Capabilities(buttons=False)), deliver=True)
    await chat.say("u", "/start")
    await chat.say("u", "2")  # English
    await chat.say("u", "1")  # Zhonghai Mingcheng
    await chat.say("u", "skip")
    await chat.say("u", "/report")
    assert "What kind of problem is it?" in chat.last_text("u")
    for slip in ("   ", "/nonsense", "/grant", "\u200b"):
        await chat.say("u", slip)
        assert "What kind of problem is it?" not in chat.last_text("u")
    await chat.say("u", "1")
    assert "Category: Street lighting" in chat.last_text("u")
