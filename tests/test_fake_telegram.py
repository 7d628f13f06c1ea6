"""The fake Telegram server, exercised through the real aiogram client stack."""

from __future__ import annotations

import asyncio
import io
import time

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.filters import CommandStart
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)

from tests.fakes.telegram_server import FakeTelegram, parse_html

USER = 4242


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (320, 200), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def _keyboard(*pairs: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=t, callback_data=d)] for t, d in pairs]
    )


@pytest.fixture
async def fake():
    server = FakeTelegram()
    await server.start()
    yield server
    await server.stop()
    assert server.internal_errors == []


@pytest.fixture
async def bot(fake: FakeTelegram):
    session = AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url))
    client = Bot(fake.token, session=session)
    yield client
    await client.session.close()


async def test_get_me(fake: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == 123456
    assert me.is_bot
    assert me.username == "resident_test_bot"
    assert fake.calls["getMe"] == 1


async def test_send_message_with_keyboard_then_edit(fake: FakeTelegram, bot: Bot) -> None:
    msg = await bot.send_message(
        USER, "Pick one", reply_markup=_keyboard(("Yes", "v:1"), ("No", "v:0"))
    )
    assert msg.text == "Pick one"
    assert msg.chat.id == USER and msg.chat.type == "private"
    assert msg.from_user is not None and msg.from_user.is_bot
    assert msg.reply_markup is not None

    entry = fake.sent[-1]
    assert entry["method"] == "sendMessage" and entry["chat_id"] == USER
    assert entry["message_id"] == msg.message_id
    # aiogram sends reply_markup as a JSON string inside multipart form-data; the fake parses it.
    assert entry["reply_markup"] == {
        "inline_keyboard": [
            [{"text": "Yes", "callback_data": "v:1"}],
            [{"text": "No", "callback_data": "v:0"}],
        ]
    }
    assert fake.buttons(entry) == [("Yes", "v:1"), ("No", "v:0")]
    assert fake.buttons(msg) == fake.buttons(entry)
    assert fake.messages_to(USER) == [entry]

    edited = await bot.edit_message_text(
        "Picked", chat_id=USER, message_id=msg.message_id, reply_markup=_keyboard(("Undo", "u"))
    )
    assert isinstance(edited, Message)
    assert edited.text == "Picked" and edited.edit_date is not None
    assert fake.buttons(fake.sent[-1]) == [("Undo", "u")]

    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            "Picked", chat_id=USER, message_id=msg.message_id, reply_markup=_keyboard(("Undo", "u"))
        )
    # Editing without reply_markup drops the keyboard, as Telegram does.
    plain = await bot.edit_message_text("Picked", chat_id=USER, message_id=msg.message_id)
    assert plain.reply_markup is None
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=USER, message_id=9999)

    markup_only = await bot.edit_message_reply_markup(
        chat_id=USER, message_id=msg.message_id, reply_markup=_keyboard(("Again", "a"))
    )
    assert isinstance(markup_only, Message) and markup_only.text == "Picked"
    assert await bot.delete_message(USER, msg.message_id)
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(USER, msg.message_id)


async def test_validation_errors(fake: FakeTelegram, bot: Bot) -> None:
    # aiogram drops empty strings from the form, so the fake sees no text at all.
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(USER, "")
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(USER, "x" * 4097)
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(USER, "hi", reply_markup=_keyboard(("Long", "d" * 65)))
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(USER, "1 < 2", parse_mode="HTML")
    assert fake.sent == []
    assert fake.calls["sendMessage"] == 4

    ok = await bot.send_message(USER, "x" * 4096)
    assert len(ok.text or "") == 4096


async def test_html_parse_mode(fake: FakeTelegram) -> None:
    session = AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url))
    bot = Bot(fake.token, session=session, default=DefaultBotProperties(parse_mode="HTML"))
    try:
        msg = await bot.send_message(USER, "<b>Hi</b> &lt;3 <a href='https://x.org'>link</a>")
    finally:
        await bot.session.close()
    assert msg.text == "Hi <3 link"
    assert [(e.type, e.offset, e.length) for e in msg.entities or []] == [
        ("bold", 0, 2),
        ("text_link", 6, 4),
    ]
    assert fake.sent[-1]["text"] == "<b>Hi</b> &lt;3 <a href='https://x.org'>link</a>"

    with pytest.raises(Exception, match='Unsupported start tag "div"'):
        parse_html("<div>x</div>")
    with pytest.raises(Exception, match="Can't find end tag"):
        parse_html("<b>x")
    assert parse_html("a & b > c") == ("a & b > c", [])


async def test_callback_query_roundtrip(fake: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(USER, "old", reply_markup=_keyboard(("Old", "old")))
    sent = await bot.send_message(USER, "Choose", reply_markup=_keyboard(("A", "pick:a")))
    await bot.send_message(USER, "no keyboard")

    update = fake.push_callback(USER, "pick:a")
    assert update["callback_query"]["message"]["message_id"] == sent.message_id

    updates = await bot.get_updates()
    assert [u.update_id for u in updates] == [update["update_id"]]
    query = updates[0].callback_query
    assert query is not None and query.data == "pick:a"
    assert query.message is not None and query.message.message_id == sent.message_id

    assert await bot.answer_callback_query(query.id, text="Done")
    assert fake.sent[-1]["method"] == "answerCallbackQuery"
    assert fake.sent[-1]["chat_id"] == USER
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query.id)


async def test_send_photo_get_file_and_download(fake: FakeTelegram, bot: Bot) -> None:
    data = _png()
    msg = await bot.send_photo(USER, BufferedInputFile(data, "map.png"), caption="Map")
    assert msg.caption == "Map"
    assert msg.photo and (msg.photo[-1].width, msg.photo[-1].height) == (320, 200)
    assert fake.sent[-1]["text"] == "Map"

    file = await bot.get_file(msg.photo[-1].file_id)
    assert file.file_size == len(data)
    downloaded = await bot.download_file(file.file_path or "")
    assert downloaded is not None and downloaded.read() == data

    again = await bot.send_photo(USER, msg.photo[-1].file_id)
    assert again.photo and again.photo[-1].file_id == msg.photo[-1].file_id
    with pytest.raises(TelegramBadRequest, match="wrong file identifier"):
        await bot.send_photo(USER, "no-such-file")

    doc = await bot.send_document(USER, BufferedInputFile(b"a,b\n1,2\n", "report.csv"))
    assert doc.document is not None and doc.document.file_name == "report.csv"


async def test_pushed_media_can_be_downloaded(fake: FakeTelegram, bot: Bot) -> None:
    data = _png()
    fake.push_photo(USER, data, caption="pothole")
    fake.push_voice(USER, b"OggS-voice", duration=3)
    fake.push_document(USER, b"%PDF-1.4", file_name="a.pdf", mime_type="application/pdf")
    fake.push_location(USER, 31.23, 121.47)

    photo_msg, voice_msg, doc_msg, loc_msg = [u.message for u in await bot.get_updates()]
    assert photo_msg and photo_msg.photo and photo_msg.caption == "pothole"
    assert len(photo_msg.photo) == 2 and photo_msg.photo[0].width <= 90
    assert (await bot.download(photo_msg.photo[-1])).read() == data
    assert voice_msg and voice_msg.voice and voice_msg.voice.duration == 3
    assert (await bot.download(voice_msg.voice)).read() == b"OggS-voice"
    assert doc_msg and doc_msg.document and doc_msg.document.mime_type == "application/pdf"
    assert loc_msg and loc_msg.location and loc_msg.location.latitude == pytest.approx(31.23)


async def test_get_updates_offset_semantics(fake: FakeTelegram, bot: Bot) -> None:
    ids = [fake.push_message(USER, f"m{i}")["update_id"] for i in range(3)]
    assert [u.update_id for u in await bot.get_updates()] == ids
    # Unconfirmed updates are delivered again.
    assert [u.update_id for u in await bot.get_updates(limit=2)] == ids[:2]

    assert [u.update_id for u in await bot.get_updates(offset=ids[1])] == ids[1:]
    # ids[0] is gone for good, even without an offset.
    assert [u.update_id for u in await bot.get_updates()] == ids[1:]
    assert await bot.get_updates(offset=ids[2] + 1) == []

    command = fake.push_message(USER, "/start ref42")
    [u] = await bot.get_updates()
    assert u.update_id == command["update_id"]
    assert u.message and u.message.entities
    assert u.message.entities[0].type == "bot_command" and u.message.entities[0].length == 6


async def test_long_poll_returns_when_update_arrives(fake: FakeTelegram, bot: Bot) -> None:
    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == []
    assert time.monotonic() - started >= 0.9

    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await asyncio.sleep(0.2)
    assert not poll.done()
    fake.push_message(USER, "wake up")
    updates = await asyncio.wait_for(poll, 2)
    assert updates[0].message and updates[0].message.text == "wake up"


async def test_second_poller_conflicts_first(fake: FakeTelegram, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=10))
    await asyncio.sleep(0.2)
    second = asyncio.create_task(bot.get_updates(timeout=0))
    with pytest.raises(TelegramConflictError):
        await asyncio.wait_for(first, 2)
    assert await second == []


async def test_flood_next_raises_retry_after(fake: FakeTelegram, bot: Bot) -> None:
    fake.flood_next(2, retry_after=3)
    for _ in range(2):
        with pytest.raises(TelegramRetryAfter) as exc:
            await bot.send_message(USER, "hi")
        assert exc.value.retry_after == 3
    await bot.send_message(USER, "hi")
    assert fake.rate_limited_count == 2
    assert fake.calls["sendMessage"] == 3
    assert fake.sent_count == 1


async def test_global_rate_limit() -> None:
    async with FakeTelegram(global_rate=5) as fake:
        bot = fake.make_bot()
        try:
            for i in range(5):
                await bot.send_message(1000 + i, "ok")
            with pytest.raises(TelegramRetryAfter) as exc:
                await bot.send_message(2000, "too fast")
            assert exc.value.retry_after == 1
            assert fake.rate_limited_count == 1
            await asyncio.sleep(1.05)
            await bot.send_message(2000, "later")
        finally:
            await bot.session.close()
    assert fake.sent_count == 6


async def test_per_chat_rate_limit() -> None:
    async with FakeTelegram(per_chat_rate=1, record_sent=False) as fake:
        bot = fake.make_bot()
        try:
            await bot.send_message(1, "first")
            with pytest.raises(TelegramRetryAfter):
                await bot.send_message(1, "second")
            await bot.send_message(2, "other chat")
        finally:
            await bot.session.close()
    assert fake.sent == []
    assert fake.sent_count == 2
    assert fake.sent_count_by_chat == {1: 1, 2: 1}


async def test_blocked_chat_and_bad_token(fake: FakeTelegram, bot: Bot) -> None:
    fake.blocked.add(USER)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(USER, "hello?")
    await bot.send_message(USER + 1, "fine")

    wrong = Bot("999:WRONG", session=AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url)))
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await wrong.get_me()
    finally:
        await wrong.session.close()


async def test_json_and_unknown_method_over_plain_http(fake: FakeTelegram) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{fake.base_url}/bot{fake.token}"
        async with http.post(f"{url}/sendMessage", json={"chat_id": 7, "text": "json"}) as r:
            body = await r.json()
        assert r.status == 200 and body["result"]["text"] == "json"
        async with http.post(f"{url}/sendMessage", data={"chat_id": "7", "text": "form"}) as r:
            assert (await r.json())["result"]["chat"]["id"] == 7
        async with http.get(f"{url}/getMe") as r:
            assert (await r.json())["result"]["username"] == "resident_test_bot"
        async with http.post(f"{url}/sendRocket") as r:
            assert r.status == 404
            assert await r.json() == {
                "ok": False,
                "error_code": 404,
                "description": "Not Found: method not found",
            }
    assert fake.calls["sendRocket"] == 1


async def test_dispatcher_polling_end_to_end(fake: FakeTelegram, bot: Bot) -> None:
    router = Router()

    @router.message(CommandStart())
    async def start(message: Message) -> None:
        await message.answer("Welcome!", reply_markup=_keyboard(("Report", "menu:report")))

    @router.message(F.text)
    async def echo(message: Message) -> None:
        await message.answer(f"echo: {message.text}")

    @router.callback_query(F.data == "menu:report")
    async def report(query: CallbackQuery) -> None:
        await query.answer()
        assert isinstance(query.message, Message)
        await query.message.edit_text("Send a photo of the problem")

    dp = Dispatcher()
    dp.include_router(router)
    polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False, polling_timeout=5))
    try:
        fake.push_message(USER, "/start")
        welcome = await fake.wait_for_text(USER, "Welcome!")
        assert fake.buttons(welcome) == [("Report", "menu:report")]

        fake.push_message(USER, "hello")
        await fake.wait_for_text(USER, "echo: hello")

        fake.push_callback(USER, "menu:report")
        edit = await fake.wait_for(lambda e: e["method"] == "editMessageText")
        assert edit["message_id"] == welcome["message_id"]
        assert any(e["method"] == "answerCallbackQuery" for e in fake.sent)
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 5)


async def test_allowed_updates_filters_unhandled_types(fake: FakeTelegram, bot: Bot) -> None:
    router = Router()

    @router.message()
    async def echo(message: Message) -> None:
        await message.answer("got it")

    dp = Dispatcher()
    dp.include_router(router)
    polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False, polling_timeout=5))
    try:
        fake.push_message(USER, "hi")
        reply = await fake.wait_for_text(USER, "got it")
        # aiogram polls with allowed_updates=["message"], so Telegram drops callback queries.
        await bot.send_message(USER, "kb", reply_markup=_keyboard(("x", "x")))
        fake.push_callback(USER, "x")
        assert fake.dropped_updates["callback_query"] == 1
        assert fake.messages_to(USER)[0] is reply
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 5)


async def test_wait_for_timeout_dumps_recent_calls(fake: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(USER, "something else")
    with pytest.raises(AssertionError, match="something else"):
        await fake.wait_for_text(USER, "never", timeout=0.2)


async def test_commands_and_webhook_housekeeping(fake: FakeTelegram, bot: Bot) -> None:
    commands = [
        BotCommand(command="start", description="Start"),
        BotCommand(command="report", description="Report a problem"),
    ]
    assert await bot.set_my_commands(commands)
    assert [c.command for c in await bot.get_my_commands()] == ["start", "report"]
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Start", description="x")])

    assert await bot.set_webhook("https://example.org/hook")
    assert (await bot.get_webhook_info()).url == "https://example.org/hook"
    with pytest.raises(TelegramConflictError):
        await bot.get_updates()

    fake.push_message(USER, "queued while offline")
    assert (await bot.get_webhook_info()).pending_update_count == 1
    assert await bot.delete_webhook(drop_pending_updates=True)
    assert await bot.get_updates() == []

    ids = [fake.push_message(USER, str(i))["update_id"] for i in range(4)]
    assert [u.update_id for u in await bot.get_updates(offset=-1)] == ids[-1:]
    assert [u.update_id for u in await bot.get_updates()] == ids[-1:]
