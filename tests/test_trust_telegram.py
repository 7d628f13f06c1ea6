"""Issue 11 through the fake Bot API: a webhook nobody can forge, and group chats that never
become conversations."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import aiohttp

from bot.app import build_app
from bot.config import BotSettings, DatabaseSettings, Settings
from bot.messaging.telegram import TelegramAdapter
from storage import outbox, roles_service
from storage.people import identity_for
from tests.fakes.telegram_server import FakeTelegram

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "content" / "territory" / "demo.json"
ADMIN = 5005


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _start(tmp_path: Path, fake: FakeTelegram, **adapter_kw):
    adapter = TelegramAdapter(fake.token, api_base=fake.base_url, polling_timeout=1,
                              **adapter_kw)
    settings = Settings(
        database=DatabaseSettings(DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/bot.sqlite3"),
        bot=BotSettings(media_dir=tmp_path / "media", flood_burst=10_000),
    )
    app = await build_app(settings, {"telegram": adapter}, territory=DEMO)
    async with app.sessions() as s, s.begin():
        await roles_service.change_role(s, f"telegram:{ADMIN}", "admin", None, actor_id=None,
                                        grant=True, create_missing=True)
    await app.start()
    return app


def _update(update_id: int, uid: int, text: str) -> dict:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id, "date": 1_700_000_000, "text": text,
            "from": {"id": uid, "is_bot": False, "first_name": "Admin", "language_code": "en"},
            "chat": {"id": uid, "type": "private", "first_name": "Admin"},
            "entities": [{"type": "bot_command", "offset": 0, "length": len(text)}],
        },
    }


async def test_webhook_without_a_configured_secret_refuses_forged_updates(tmp_path):
    fake = FakeTelegram()
    await fake.start()
    app = None
    port = _free_port()
    url = f"http://127.0.0.1:{port}/tg/hook"
    try:
        # BOT_WEBHOOK_URL set, BOT_WEBHOOK_SECRET not: a secret is generated and registered.
        app = await _start(tmp_path, fake, webhook_url=url, webhook_host="127.0.0.1",
                           webhook_port=port)
        secret = fake.webhook.get("secret_token")
        assert secret and len(secret) >= 32
        forged = _update(600_001, ADMIN, "/roles")
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json=forged) as r:
                assert r.status == 401
            async with http.post(url, json=forged,
                                 headers={"X-Telegram-Bot-Api-Secret-Token": ""}) as r:
                assert r.status == 401
            assert fake.sent_count == 0  # /roles never ran

            ok = {"X-Telegram-Bot-Api-Secret-Token": secret}
            for body in [b"not json", b"{", b"[" * 100_000 + b"]" * 100_000,
                         b'{"a":' * 50_000 + b"1" + b"}" * 50_000, b"[1, 2]", b'"text"',
                         b'{"update_id": "x"}', b'{"update_id": 1, "message": {"chat": 5}}',
                         "\udcff".encode("utf-8", "surrogatepass")]:
                async with http.post(url, data=body, headers=ok) as r:
                    text = await r.text()
                    assert r.status == 400, (body[:40], r.status, text[:200])
                    assert "Traceback" not in text
            assert fake.sent_count == 0

            async with http.post(url, json=forged, headers=ok) as r:
                assert r.status == 200
        reply = await fake.wait_for_text(ADMIN, "telegram:")  # /roles lists the admin
        assert reply["chat_id"] == ADMIN
        assert not fake.internal_errors
    finally:
        if app is not None:
            await app.stop()
        await fake.stop()


async def test_group_messages_never_move_where_pushes_go(tmp_path):
    fake = FakeTelegram()
    await fake.start()
    app = None
    try:
        app = await _start(tmp_path, fake)
        uid, group = 6006, -100_777
        fake.push_message(uid, "/start", language_code="en")
        await fake.wait_for_text(uid, "Please choose a language")

        mark = len(fake.sent)
        group_chat = {"id": group, "type": "supergroup", "title": "Estate chat"}
        fake.push_message(uid, "/help", language_code="en", chat=group_chat)
        fake.push_message(uid, "hello everyone", language_code="en", chat=group_chat)
        hint = await fake.wait_for_text(group, "only work in private chats", since=mark)
        async with app.sessions() as s:
            identity = await identity_for(s, "telegram", str(uid))
        assert identity.chat_id == str(uid)

        # The next push (a report card, say) still goes to the private chat.
        async with app.sessions() as s, s.begin():
            await outbox.enqueue(s, identity.id, {"text": "Card: reporter Ann, 138 0000 0000"})
        app.deliverer.wake()
        card = await fake.wait_for_text(uid, "Card: reporter Ann", since=mark)
        assert card["chat_id"] == uid
        to_group = [e for e in fake.sent[mark:] if e["chat_id"] == group]
        assert to_group == [hint], fake.dump_sent()  # one hint for the command, nothing else
        assert not fake.internal_errors
    finally:
        if app is not None:
            await app.stop()
        await fake.stop()


async def test_location_without_usable_coordinates_is_refused_on_telegram(tmp_path):
    fake = FakeTelegram()
    await fake.start()
    app = None
    try:
        app = await _start(tmp_path, fake)
        uid = 7007
        fake.push_message(uid, "/start", language_code="en")
        greeting = await fake.wait_for_text(uid, "Please choose a language")
        english = next(d for t, d in fake.buttons(greeting) if t == "English")
        mark = len(fake.sent)
        fake.push_callback(uid, english, language_code="en", message_id=greeting["message_id"])
        await fake.wait_for_text(uid, "Which estate do you live in?", since=mark)
        mark = len(fake.sent)
        fake.push_raw_update(json.loads(json.dumps({
            "update_id": 990_001,
            "message": {"message_id": 990_001, "date": 1_700_000_000,
                        "from": {"id": uid, "is_bot": False, "first_name": "R",
                                 "language_code": "en"},
                        "chat": {"id": uid, "type": "private", "first_name": "R"},
                        "location": {"latitude": 999.0, "longitude": 104.04}},
        })))
        await fake.wait_for_text(uid, "something I cannot read", since=mark)
        assert not fake.internal_errors
    finally:
        if app is not None:
            await app.stop()
        await fake.stop()


def test_a_webhook_secret_telegram_would_refuse_stops_the_start():
    import pytest

    for bad in ("has space", "ü" * 3, "x" * 257):
        with pytest.raises(ValueError, match="BOT_WEBHOOK_SECRET"):
            TelegramAdapter("1:a", webhook_url="https://example.org/hook", webhook_secret=bad)


async def test_an_oversized_webhook_body_is_refused(tmp_path):
    fake = FakeTelegram()
    await fake.start()
    app = None
    port = _free_port()
    url = f"http://127.0.0.1:{port}/tg/hook"
    try:
        app = await _start(tmp_path, fake, webhook_url=url, webhook_secret="s3cret",
                           webhook_host="127.0.0.1", webhook_port=port)
        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=b" " * 2_000_000,
                                 headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret"}) as r:
                assert r.status == 413
        assert fake.sent_count == 0
    finally:
        if app is not None:
            await app.stop()
        await fake.stop()
