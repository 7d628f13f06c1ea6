"""End to end through aiogram and the fake Bot API server: polling and webhook."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
from pathlib import Path

import aiohttp
from sqlalchemy import text as sql

from bot.app import build_app
from bot.config import BotSettings, DatabaseSettings, Settings
from bot.messaging.telegram import TelegramAdapter
from tests.fakes.telegram_server import FakeTelegram

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "content" / "territory" / "demo.json"


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        database=DatabaseSettings(DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/bot.sqlite3"),
        bot=BotSettings(media_dir=tmp_path / "media", flood_burst=10_000),
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _start(tmp_path: Path, fake: FakeTelegram, **adapter_kw):
    adapter = TelegramAdapter(fake.token, api_base=fake.base_url, polling_timeout=1,
                              **adapter_kw)
    app = await build_app(_settings(tmp_path), {"telegram": adapter}, territory=DEMO)
    await app.start()
    return app


def _button(fake: FakeTelegram, entry: dict, label: str) -> str:
    for text, data in fake.buttons(entry):
        if text == label:
            return data
    raise AssertionError(f"no button {label!r} in {fake.buttons(entry)}")


async def test_english_resident_onboards_through_polling(tmp_path):
    fake = FakeTelegram()
    await fake.start()
    app = None
    try:
        app = await _start(tmp_path, fake)
        uid = 1001
        fake.push_message(uid, "/start", language_code="en")
        greeting = await fake.wait_for_text(uid, "Please choose a language")
        labels = [t for t, _ in fake.buttons(greeting)]
        assert labels == ["中文", "English"]

        mark = len(fake.sent)
        fake.push_callback(uid, _button(fake, greeting, "English"), language_code="en",
                           message_id=greeting["message_id"])
        await fake.wait_for_text(uid, "Language set to English", since=mark)
        await fake.wait_for_text(uid, "Which estate do you live in?", since=mark)

        mark = len(fake.sent)
        fake.push_message(uid, "zhonghai mingchen", language_code="en")  # a typo
        confirm = await fake.wait_for_text(uid, "Do you live in Zhonghai Mingcheng?", since=mark)

        mark = len(fake.sent)
        fake.push_callback(uid, _button(fake, confirm, "Yes"), language_code="en",
                           message_id=confirm["message_id"])
        building = await fake.wait_for_text(uid, "pick or type your building number",
                                             since=mark)

        mark = len(fake.sent)
        fake.push_callback(uid, _button(fake, building, "3"), language_code="en",
                           message_id=building["message_id"])
        await fake.wait_for_text(uid, "Type your unit and door number", since=mark)

        mark = len(fake.sent)
        fake.push_message(uid, "2-301", language_code="en")
        await fake.wait_for_text(uid, "Your home is saved: Zhonghai Mingcheng.", since=mark)
        await fake.wait_for_text(uid, "What you can do:", since=mark)

        mark = len(fake.sent)
        fake.push_message(uid, "/profile", language_code="en")
        profile = await fake.wait_for_text(uid, "My profile", since=mark)
        assert "Estate: Zhonghai Mingcheng" in profile["text"]
        assert "Building: 3" in profile["text"]
        assert "Unit: 2-301" in profile["text"]
        assert not fake.internal_errors
    finally:
        if app is not None:
            await app.stop()
        await fake.stop()


async def test_chinese_resident_shares_location(tmp_path):
    fake = FakeTelegram()
    await fake.start()
    app = None
    try:
        app = await _start(tmp_path, fake)
        uid = 2002
        fake.push_message(uid, "/start", language_code="zh-hans")
        greeting = await fake.wait_for_text(uid, "请选择语言")

        mark = len(fake.sent)
        fake.push_callback(uid, _button(fake, greeting, "中文"),
                           message_id=greeting["message_id"])
        await fake.wait_for_text(uid, "语言已设为中文", since=mark)
        await fake.wait_for_text(uid, "您住在哪个小区", since=mark)

        mark = len(fake.sent)
        fake.push_location(uid, 30.633, 104.040)
        confirm = await fake.wait_for_text(uid, "中海名城", since=mark)
        assert confirm["text"] == "您住在“中海名城”吗？"
        assert [t for t, _ in fake.buttons(confirm)] == ["是", "不是"]
    finally:
        if app is not None:
            await app.stop()
        await fake.stop()


async def test_forged_button_and_duplicate_update(tmp_path):
    fake = FakeTelegram()
    await fake.start()
    app = None
    try:
        app = await _start(tmp_path, fake)
        uid = 3003
        fake.push_message(uid, "/start")
        greeting = await fake.wait_for_text(uid, "请选择语言")

        mark = len(fake.sent)
        fake.push_callback(uid, "estate:1~AAAAAAAA", message_id=greeting["message_id"])
        await fake.wait_for(
            lambda e: e["chat_id"] == uid and (
                "按钮已失效" in (e["text"] or "") or "no longer valid" in (e["text"] or "")),
            since=mark,
        )
        # The callback query itself is answered (the spinner stops).
        await fake.wait_for(
            lambda e: e["method"] == "answerCallbackQuery" and e["chat_id"] == uid, since=mark)

        mark = len(fake.sent)
        update = {
            "update_id": 777_000,
            "message": {
                "message_id": 9_000,
                "from": {"id": uid, "is_bot": False, "first_name": "Resident",
                         "language_code": "zh-hans"},
                "chat": {"id": uid, "type": "private", "first_name": "Resident"},
                "date": 1_700_000_000,
                "text": "/help",
                "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
            },
        }
        fake.push_raw_update(json.loads(json.dumps(update)))
        fake.push_raw_update(json.loads(json.dumps(update)))
        await fake.wait_for_text(uid, "/start", since=mark)
        # Give a second (wrong) reply time to arrive: /help again as a marker, then count.
        fake.push_message(uid, "/cancel")
        await fake.wait_for_text(uid, "当前没有进行中的操作", since=mark)
        help_replies = [e for e in fake.sent[mark:]
                        if e["chat_id"] == uid and "/start" in (e["text"] or "")]
        assert len(help_replies) == 1, fake.dump_sent()
    finally:
        if app is not None:
            await app.stop()
        await fake.stop()


async def test_webhook_checks_the_secret(tmp_path):
    fake = FakeTelegram()
    await fake.start()
    app = None
    port = _free_port()
    url = f"http://127.0.0.1:{port}/tg/hook"
    try:
        app = await _start(tmp_path, fake, webhook_url=url, webhook_secret="s3cret",
                           webhook_host="127.0.0.1", webhook_port=port)
        assert fake.webhook is not None and fake.webhook["url"] == url
        assert fake.webhook.get("secret_token") == "s3cret"
        uid = 4004
        update = {
            "update_id": 555_000,
            "message": {
                "message_id": 1,
                "from": {"id": uid, "is_bot": False, "first_name": "Web",
                         "language_code": "en"},
                "chat": {"id": uid, "type": "private", "first_name": "Web"},
                "date": 1_700_000_000,
                "text": "/start",
                "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
            },
        }
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json=update,
                                 headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"}) as r:
                assert r.status == 401
            async with http.post(url, json=update) as r:
                assert r.status == 401
            assert fake.sent_count == 0
            # Answered only once the update is stored (handled, its reply queued): a worker
            # dying before that leaves Telegram to send it again. Another process holds the
            # database's write lock meanwhile, so the update cannot be stored yet.
            other = sqlite3.connect(tmp_path / "bot.sqlite3", isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            posting = asyncio.create_task(http.post(
                url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret"}))
            await asyncio.sleep(1.0)
            assert not posting.done()
            other.execute("COMMIT")
            other.close()
            async with await asyncio.wait_for(posting, 30) as r:
                assert r.status == 200
            async with app.sessions() as s:
                seen = await s.scalar(sql(
                    "SELECT count(*) FROM processed_updates WHERE update_id = '555000'"))
            assert seen == 1
        await fake.wait_for_text(uid, "Please choose a language")
    finally:
        if app is not None:
            await app.stop()
        await fake.stop()


async def test_a_voice_note_kept_as_amr_goes_to_telegram_as_a_file(tmp_path):
    """A voice note recorded on WeChat is kept as the AMR it is; Telegram plays OGG/Opus, MP3
    and M4A as voice only, so to a Telegram crew it goes as a file, and an OGG one as voice."""
    from bot.messaging.model import Outbound, SendStatus

    fake = FakeTelegram()
    await fake.start()
    adapter = TelegramAdapter(fake.token, api_base=fake.base_url, polling_timeout=1)
    amr = tmp_path / "ab" / "note.amr"
    amr.parent.mkdir()
    amr.write_bytes(b"#!AMR\n" + bytes(64))
    ogg = tmp_path / "ab" / "note.ogg"
    ogg.write_bytes(b"OggS\x00voice-bytes")
    try:
        chat = 4242
        first = await adapter.send(str(chat), Outbound(text="Z-2026-00001", voice=str(amr)))
        second = await adapter.send(str(chat), Outbound(voice=str(ogg)))
        assert first.status == second.status == SendStatus.SENT
        methods = [e["method"] for e in fake.sent if e["chat_id"] == chat]
        assert methods == ["sendDocument", "sendVoice"]
    finally:
        await adapter.bot.session.close()
        await fake.stop()


async def test_text_messages_carry_their_keyboards_and_errors_map_as_aiogram_raises_them():
    """A text message goes to the Bot API as plain JSON, not through aiogram's models: its
    buttons and keyboards still arrive as Telegram has them, and each error of the fake means
    what it did through aiogram (429 a wait, 403 unreachable, a bad request a failure)."""
    from bot.messaging.model import Button, Outbound, SendStatus

    fake = FakeTelegram()
    await fake.start()
    adapter = TelegramAdapter(fake.token, api_base=fake.base_url)
    try:
        sent = await adapter.send("501", Outbound(text="选一个", buttons=[
            [Button("是", "v:1"), Button("否", "v:0")]]))
        assert sent.status == SendStatus.SENT and sent.message_ref
        [entry] = fake.messages_to(501)
        assert entry["text"] == "选一个"
        assert fake.buttons(entry) == [("是", "v:1"), ("否", "v:0")]
        assert int(sent.message_ref) == entry["message_id"]

        await adapter.send("502", Outbound(text="Where?", request_location="Share location",
                                           request_contact="Share phone"))
        [asked] = fake.messages_to(502)
        assert asked["reply_markup"] == {"keyboard": [[
            {"text": "Share location", "request_location": True},
            {"text": "Share phone", "request_contact": True}]],
            "resize_keyboard": True, "one_time_keyboard": True}

        fake.flood_next(1, retry_after=7)
        flooded = await adapter.send("501", Outbound(text="again"))
        assert flooded.flood and flooded.retry_after == 7

        fake.blocked.add(503)
        blocked = await adapter.send("503", Outbound(text="hello"))
        assert blocked.status == SendStatus.UNREACHABLE and "blocked" in (blocked.error or "")

        too_long = await adapter.send("501", Outbound(text="x" * 5000))
        assert too_long.status == SendStatus.FAILED and too_long.error
    finally:
        await adapter.stop()
        await fake.stop()


async def test_a_press_is_answered_and_its_message_edited_as_plain_json():
    """A ballot's tick: the press answered with its note and the message edited with its new
    keyboard, both as plain JSON; an edit that changes nothing counts as sent, and a press too
    old to answer still gets its edit."""
    from bot.messaging.model import Button, Outbound, SendStatus

    fake = FakeTelegram()
    await fake.start()
    adapter = TelegramAdapter(fake.token, api_base=fake.base_url)
    try:
        first = await adapter.send("501", Outbound(text="选一个", buttons=[
            [Button("是", "v:1"), Button("否", "v:0")]]))
        query = fake.push_callback(501, "v:1")["callback_query"]["id"]
        ticked = Outbound(text="选一个", buttons=[[Button("✅ 是", "v:1"), Button("否", "v:0")]],
                          edit_of=first.message_ref, answer_callback=query, notice="已记下")
        done = await adapter.send("501", ticked)
        assert done.status == SendStatus.SENT and done.message_ref == first.message_ref
        [answered] = [e for e in fake.sent if e["method"] == "answerCallbackQuery"]
        assert answered["text"] == "已记下"
        [edited] = [e for e in fake.messages_to(501, include_edits=True)
                    if e["method"] == "editMessageText"]
        assert fake.buttons(edited) == [("✅ 是", "v:1"), ("否", "v:0")]

        again = await adapter.send("501", ticked)  # the same query, answered already: too old
        assert again.status == SendStatus.SENT  # and the edit changed nothing: still sent
        cleared = await adapter.send("501", Outbound(text="投票已结束", edit_of=first.message_ref))
        assert cleared.status == SendStatus.SENT
        last = fake.messages_to(501, include_edits=True)[-1]
        assert last["text"] == "投票已结束" and fake.buttons(last) == []
    finally:
        await adapter.stop()
        await fake.stop()
