"""A fake Telegram Bot API server for tests and benchmarks.

It speaks the HTTP protocol documented at https://core.telegram.org/bots/api closely
enough for the real aiogram 3 client stack (``AiohttpSession``, ``Dispatcher.start_polling``)
to run end to end against it::

    async with FakeTelegram() as fake:
        bot = fake.make_bot()            # or Bot(token, session=AiohttpSession(api=...))
        fake.push_message(42, "/start")
        ...
        reply = await fake.wait_for_text(42, "Welcome")

Behaviour worth knowing when writing tests:

* Updates are queued until confirmed with ``getUpdates(offset=...)``, like Telegram.
* ``allowed_updates`` is honoured: aiogram sends only the update types that have handlers,
  so pushing e.g. a callback_query to a bot without callback handlers drops it (counted in
  ``dropped_updates``), exactly as Telegram would.
* A second concurrent ``getUpdates`` terminates the first with 409 Conflict.
* ``parse_mode="HTML"`` text is parsed the way Telegram does: malformed or unsupported markup
  (e.g. an unescaped ``<`` from user input) answers 400 "can't parse entities", and the returned
  Message carries the visible text plus entities. Markdown modes are passed through unchecked.
* ``editMessageText`` without ``reply_markup`` removes the inline keyboard (Telegram does too).
* push_* must be called from the event loop thread that runs the server (or before start()).
"""

from __future__ import annotations

import asyncio
import html
import io
import itertools
import json
import logging
import math
import mimetypes
import random
import re
import secrets
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

__all__ = ["FakeTelegram", "StoredFile", "TelegramError", "parse_html"]

log = logging.getLogger(__name__)

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64
MAX_DOWNLOAD = 20 * 1024 * 1024  # getFile refuses larger files for bots
MAX_UPLOAD = 50 * 1024 * 1024

# Parameters arrive as strings in form bodies; these tell how to decode them.
_INT_FIELDS = {
    "offset",
    "limit",
    "timeout",
    "message_id",
    "from_chat_id",
    "reply_to_message_id",
    "message_thread_id",
    "duration",
    "width",
    "height",
    "cache_time",
    "user_id",
    "live_period",
    "heading",
    "proximity_alert_radius",
    "max_connections",
}
_FLOAT_FIELDS = {"latitude", "longitude", "horizontal_accuracy"}
_BOOL_FIELDS = {
    "disable_notification",
    "protect_content",
    "show_alert",
    "drop_pending_updates",
    "disable_web_page_preview",
    "allow_sending_without_reply",
    "has_spoiler",
    "supports_streaming",
    "disable_content_type_detection",
    "show_caption_above_media",
    "allow_paid_broadcast",
}
_JSON_FIELDS = {
    "reply_markup",
    "allowed_updates",
    "entities",
    "caption_entities",
    "commands",
    "scope",
    "link_preview_options",
    "reply_parameters",
    "media",
    "menu_button",
    "message_ids",
}

# Update types delivered when allowed_updates is unset or empty.
_OPT_IN_UPDATES = {"chat_member", "message_reaction", "message_reaction_count"}

_FORBIDDEN = "Forbidden: bot was blocked by the user"
# 400 descriptions below omit the "Bad Request: " prefix that _bad() adds.
_NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
_BAD_FILE = "wrong file identifier/HTTP URL specified"
_CALLBACK_EXPIRED = "query is too old and response timeout expired or query ID is invalid"
_BOT_COMMAND_RE = re.compile(r"[a-z0-9_]{1,32}")


class TelegramError(Exception):
    """Raised inside handlers; turned into an ``{"ok": false, ...}`` answer."""

    def __init__(self, code: int, description: str, *, retry_after: int | None = None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.code,
            "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def _bad(description: str) -> TelegramError:
    return TelegramError(400, f"Bad Request: {description}")


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes
    mime_type: str | None = None
    file_name: str | None = None

    @property
    def file_size(self) -> int:
        return len(self.data)


@dataclass
class _Upload:
    filename: str | None
    content_type: str | None
    data: bytes


class _Window:
    """Sliding-window limiter: at most ``capacity`` calls per ``span`` seconds."""

    __slots__ = ("capacity", "span", "stamps")

    def __init__(self, rate: float):
        # Rates below 1/s become "one call per 1/rate seconds".
        self.span = max(1.0, 1.0 / rate)
        self.capacity = max(1, int(rate * self.span + 1e-9))
        self.stamps: deque[float] = deque()

    def wait_time(self, now: float) -> float:
        stamps = self.stamps
        while stamps and stamps[0] <= now - self.span:
            stamps.popleft()
        if len(stamps) < self.capacity:
            return 0.0
        return stamps[0] + self.span - now

    def idle(self, now: float) -> bool:
        return not self.stamps or self.stamps[-1] <= now - self.span


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _command_entities(text: str) -> list[dict[str, Any]]:
    if not text.startswith("/"):
        return []
    command = text.split(maxsplit=1)[0]
    return [{"type": "bot_command", "offset": 0, "length": _utf16_len(command)}]


# --- HTML parse mode, following the rules of Telegram's (tdlib's) parser ------------------

_HTML_ENTITY_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "a": "text_link",
    "tg-emoji": "custom_emoji",
}
_HTML_SPECIAL = re.compile(r"[<&]")
_HTML_CHAR_REF = re.compile(r"&(?:#(\d{1,7})|#[xX]([0-9a-fA-F]{1,6})|(lt|gt|amp|quot));")
_HTML_ATTR = re.compile(r"""([a-zA-Z_-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")
_NAMED_REFS = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def parse_html(source: str) -> tuple[str, list[dict[str, Any]]]:
    """Return (visible text, entities) or raise 400 "can't parse entities" like Telegram."""
    if "<" not in source and "&" not in source:
        return source, []

    def fail(reason: str) -> TelegramError:
        return _bad(f"can't parse entities: {reason}")

    def byte_offset(index: int) -> int:
        return len(source[:index].encode("utf-8"))

    out: list[str] = []
    pos16 = 0
    stack: list[tuple[str, int, dict[str, str]]] = []  # (tag, utf16 start, attrs)
    entities: list[dict[str, Any]] = []
    i, n = 0, len(source)

    def emit(chunk: str) -> None:
        nonlocal pos16
        out.append(chunk)
        pos16 += _utf16_len(chunk)

    while i < n:
        m = _HTML_SPECIAL.search(source, i)
        if m is None:
            emit(source[i:])
            break
        if m.start() > i:
            emit(source[i : m.start()])
        i = m.start()
        if source[i] == "&":
            ref = _HTML_CHAR_REF.match(source, i)
            if ref is None:  # Telegram keeps an unknown '&' literally
                emit("&")
                i += 1
            else:
                dec, hexa, named = ref.groups()
                emit(_NAMED_REFS[named] if named else chr(int(dec or hexa, 10 if dec else 16)))
                i = ref.end()
            continue

        begin = i
        if source.startswith("</", i):
            end = source.find(">", i)
            if end == -1:
                raise fail(f"Unclosed end tag at byte offset {byte_offset(begin)}")
            name = source[i + 2 : end].strip().lower()
            if not stack:
                raise fail(f"Unexpected end tag at byte offset {byte_offset(begin)}")
            tag, start, attrs = stack.pop()
            if name != tag:
                raise fail(
                    f"Unmatched end tag at byte offset {byte_offset(begin)}, "
                    f'expected "</{tag}>", found "</{name}>"'
                )
            i = end + 1
            length = pos16 - start
            if length <= 0:
                continue
            if tag == "code" and stack and stack[-1][0] == "pre":
                # <pre><code class="language-x"> becomes a single pre entity with a language.
                lang = attrs.get("class", "")
                if lang.startswith("language-"):
                    stack[-1][2]["__language"] = lang.removeprefix("language-")
                continue
            entity: dict[str, Any] = {
                "type": _HTML_ENTITY_TYPES[tag],
                "offset": start,
                "length": length,
            }
            if tag == "a":
                entity["url"] = attrs.get("href", "")
            elif tag == "tg-emoji":
                entity["custom_emoji_id"] = attrs.get("emoji-id", "")
            elif tag == "pre" and "__language" in attrs:
                entity["language"] = attrs["__language"]
            elif tag == "blockquote" and "expandable" in attrs:
                entity["type"] = "expandable_blockquote"
            entities.append(entity)
            continue

        j = i + 1
        while j < n and not source[j].isspace() and source[j] != ">":
            j += 1
        if j >= n:
            raise fail(f"Unclosed start tag at byte offset {byte_offset(begin)}")
        name = source[i + 1 : j].lower()
        if name not in _HTML_ENTITY_TYPES:
            raise fail(f'Unsupported start tag "{name}" at byte offset {byte_offset(begin)}')
        end = source.find(">", j)
        if end == -1:
            raise fail(f"Unclosed start tag at byte offset {byte_offset(begin)}")
        attrs = {
            a.group(1).lower(): html.unescape(a.group(2) or a.group(3) or a.group(4) or "")
            for a in _HTML_ATTR.finditer(source, j, end)
        }
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise fail(
                f'Tag "span" must have class "tg-spoiler" at byte offset {byte_offset(begin)}'
            )
        stack.append((name, pos16, attrs))
        i = end + 1

    if stack:
        raise fail(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _image_size(data: bytes) -> tuple[int, int] | None:
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:  # not an image, or Pillow missing
        return None


def _thumbnail(data: bytes, box: int = 90) -> tuple[bytes, int, int] | None:
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("RGB")
            img.thumbnail((box, box))
            buf = io.BytesIO()
            img.save(buf, "JPEG")
            return buf.getvalue(), img.width, img.height
    except Exception:
        return None


Handler = Callable[[dict[str, Any], dict[str, _Upload]], Awaitable[Any]]


class FakeTelegram:
    """In-process fake of api.telegram.org; see the module docstring."""

    def __init__(
        self,
        token: str = "123456:TEST",
        *,
        global_rate: float | None = None,
        per_chat_rate: float | None = None,
        bot_username: str = "resident_test_bot",
        bot_first_name: str = "Resident Test Bot",
        record_sent: bool = True,
        message_store_limit: int | None = None,
        validate_html: bool = True,
        deliver_webhook: bool = False,
    ) -> None:
        self.token = token
        # With a webhook set, POST the updates to it as Telegram does (see _webhook_loop);
        # otherwise a test posts them itself.
        self.deliver_webhook = deliver_webhook
        self.webhook_posts = 0  # POSTs made to the webhook, answered or not
        self.webhook_failures = 0  # of them, not answered 2xx in time
        self._webhook_task: asyncio.Task | None = None
        left = token.partition(":")[0]
        self.bot_id = int(left) if left.isdigit() else 123456
        self.bot_user = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }
        self.global_rate = global_rate
        self.per_chat_rate = per_chat_rate
        self.record_sent = record_sent
        self.validate_html = validate_html
        # Full message objects are kept for edits/callbacks; cap them when not recording.
        if message_store_limit is None and not record_sent:
            message_store_limit = 10_000
        self.message_store_limit = message_store_limit

        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._closing = False

        # observation
        self.sent: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()
        self.sent_count = 0
        self.sent_count_by_chat: Counter[int] = Counter()
        self.rate_limited_count = 0
        self.limit_refusals = 0  # 429s from the configured rates (not injected faults)
        self.refusal_log: list[tuple[float, int | None, str]] = []  # (when, chat, which limit)
        self.accepted_at: list[tuple[float, int | None]] = []  # (monotonic, chat) per send
        self.dropped_updates: Counter[str] = Counter()
        self.internal_errors: list[Exception] = []
        self._sent_event = asyncio.Event()

        # faults
        self.blocked: set[int] = set()
        self._flood_remaining = 0
        self._flood_retry_after = 1
        self._chat_floods: dict[int, tuple[int, int]] = {}  # chat -> (429s left, retry_after)
        self._flood_share = 0.0
        self._flood_share_after = 1
        self._random = random.Random(0)
        self._global_window = _Window(global_rate) if global_rate else None
        self._chat_windows: dict[int, _Window] = {}
        self._last_sweep = time.monotonic()

        # updates
        self._updates: deque[dict[str, Any]] = deque()
        self._confirmed_offset = 0
        self._next_update_id = 100_000
        self._updates_event = asyncio.Event()
        self._poll_generation = 0
        self._allowed_updates: set[str] | None = None
        self.webhook: dict[str, Any] | None = None

        # chats, messages, files
        self._users: dict[int, dict[str, Any]] = {}
        self._last_message_id: dict[int, int] = {}
        self._messages: OrderedDict[tuple[int, int], dict[str, Any]] = OrderedDict()
        self._evicted = False
        self._deleted: set[tuple[int, int]] = set()
        self._callbacks: dict[str, int] = {}  # open callback query id -> chat id
        self._callback_ids = itertools.count(1)
        self.files: dict[str, StoredFile] = {}
        self._files_by_path: dict[str, StoredFile] = {}
        self._file_seq = itertools.count(1)
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}

        self._methods: dict[str, tuple[str, Handler]] = {}
        for name, handler in {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "sendMessage": self._send_message,
            "sendPhoto": self._send_photo,
            "sendDocument": self._send_document,
            "sendVoice": self._send_voice,
            "sendLocation": self._send_location,
            "sendChatAction": self._ok,
            "editMessageText": self._edit_message_text,
            "editMessageCaption": self._edit_message_caption,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "getFile": self._get_file,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "close": self._ok,
            "logOut": self._ok,
        }.items():
            self.add_method(name, handler)

    # ------------------------------------------------------------------ lifecycle

    def add_method(self, name: str, handler: Handler) -> None:
        """Register (or override) an API method; handler(params, uploads) returns the result."""
        self._methods[name.lower()] = (name, handler)

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_UPLOAD + 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        # handler_cancellation: a long poll whose client went away (stop_polling) ends at once.
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        self._closing = False

    async def stop(self) -> None:
        self._closing = True
        self._notify_updates()  # release pending long polls
        if self._webhook_task is not None:
            await asyncio.gather(self._webhook_task, return_exceptions=True)
            self._webhook_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def make_bot(self, **kwargs: Any) -> Any:
        """An aiogram Bot talking to this server (close it with ``await bot.session.close()``)."""
        from aiogram import Bot
        from aiogram.client.session.aiohttp import AiohttpSession
        from aiogram.client.telegram import TelegramAPIServer

        if not self.base_url:
            raise RuntimeError("FakeTelegram.start() has not been awaited")
        session = AiohttpSession(api=TelegramAPIServer.from_base(self.base_url))
        return Bot(self.token, session=session, **kwargs)

    # ------------------------------------------------------------------ driving the bot

    def push_message(
        self,
        user_id: int,
        text: str | None = None,
        *,
        first_name: str = "Resident",
        language_code: str = "zh-hans",
        update_id: int | None = None,
        username: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Queue a message update from a user. ``extra`` is merged into the Message (e.g.
        location=..., contact=...; chat=... overrides the private chat;
        reply_to_message_id=N attaches the stored message N)."""
        user = self._remember_user(user_id, first_name, username, language_code)
        chat = extra.pop("chat", None) or self._private_chat(user_id)
        chat_id = chat["id"]
        message: dict[str, Any] = {
            "message_id": self._next_message_id(chat_id),
            "from": user,
            "chat": chat,
            "date": int(time.time()),
        }
        reply_to = extra.pop("reply_to_message_id", None)
        if reply_to is not None:
            original = self._messages.get((chat_id, reply_to))
            if original is not None:
                message["reply_to_message"] = {
                    k: v for k, v in original.items() if k != "reply_to_message"
                }
        if text is not None:
            message["text"] = text
            if entities := _command_entities(text):
                message["entities"] = entities
        message.update(extra)
        self._store_message(message)
        return self._enqueue({"message": message}, update_id)

    def push_location(
        self, user_id: int, latitude: float, longitude: float, **kw: Any
    ) -> dict[str, Any]:
        return self.push_message(
            user_id, location={"latitude": latitude, "longitude": longitude}, **kw
        )

    def push_photo(
        self, user_id: int, data: bytes, *, caption: str | None = None, **kw: Any
    ) -> dict[str, Any]:
        sizes = self._photo_sizes(self.store_file(data, kind="photos", mime_type="image/jpeg"))
        if caption is not None:
            kw["caption"] = caption
        return self.push_message(user_id, photo=sizes, **kw)

    def push_voice(
        self,
        user_id: int,
        data: bytes,
        *,
        duration: int,
        mime_type: str = "audio/ogg",
        **kw: Any,
    ) -> dict[str, Any]:
        f = self.store_file(data, kind="voice", mime_type=mime_type)
        voice = {
            "file_id": f.file_id,
            "file_unique_id": f.file_unique_id,
            "duration": duration,
            "mime_type": mime_type,
            "file_size": f.file_size,
        }
        return self.push_message(user_id, voice=voice, **kw)

    def push_document(
        self,
        user_id: int,
        data: bytes,
        *,
        file_name: str,
        mime_type: str,
        caption: str | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        f = self.store_file(data, kind="documents", mime_type=mime_type, file_name=file_name)
        if caption is not None:
            kw["caption"] = caption
        return self.push_message(user_id, document=self._document_obj(f), **kw)

    def push_callback(
        self,
        user_id: int,
        data: str,
        *,
        message_id: int | None = None,
        first_name: str = "Resident",
        language_code: str = "zh-hans",
        username: str | None = None,
        update_id: int | None = None,
        chat_id: int | None = None,
    ) -> dict[str, Any]:
        """Press an inline button: a callback_query on a message the bot sent to the chat
        (default: the latest bot message carrying an inline keyboard)."""
        chat_id = user_id if chat_id is None else chat_id
        user = self._remember_user(user_id, first_name, username, language_code)
        if message_id is None:
            message = self._latest_keyboard_message(chat_id)
            if message is None:
                raise LookupError(f"no message with an inline keyboard was sent to chat {chat_id}")
        else:
            message = self._messages.get((chat_id, message_id))
            if message is None:
                if not self._message_exists(chat_id, message_id):
                    raise LookupError(f"message {message_id} does not exist in chat {chat_id}")
                message = {  # evicted from the store: rebuild a minimal one
                    "message_id": message_id,
                    "from": self.bot_user,
                    "chat": self._chat_obj(chat_id),
                    "date": int(time.time()),
                }
        query_id = f"{self.bot_id}{next(self._callback_ids):08d}"
        self._callbacks[query_id] = chat_id
        query = {
            "id": query_id,
            "from": user,
            "message": message,
            "chat_instance": f"-{abs(chat_id) * 7919 + 17}",
            "data": data,
        }
        return self._enqueue({"callback_query": query}, update_id)

    def push_raw_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update as given (an update_id is added only if missing)."""
        query = update.get("callback_query")
        if isinstance(query, dict) and "id" in query:
            chat = (query.get("message") or {}).get("chat") or {}
            self._callbacks[str(query["id"])] = chat.get("id", query.get("from", {}).get("id"))
        body = {k: v for k, v in update.items() if k != "update_id"}
        return self._enqueue(body, update.get("update_id"), as_is=update)

    def store_file(
        self,
        data: bytes,
        *,
        kind: str = "documents",
        mime_type: str | None = None,
        file_name: str | None = None,
    ) -> StoredFile:
        """Keep bytes under a new file_id so getFile + download serve them."""
        seq = next(self._file_seq)
        ext = ""
        if file_name and "." in file_name:
            ext = "." + file_name.rsplit(".", 1)[1]
        elif mime_type:
            ext = {"audio/ogg": ".oga", "image/jpeg": ".jpg"}.get(mime_type) or (
                mimetypes.guess_extension(mime_type) or ""
            )
        f = StoredFile(
            file_id=f"AgAC{seq:06d}{secrets.token_urlsafe(12)}",
            file_unique_id=f"AQAD{seq:06d}",
            file_path=f"{kind}/file_{seq}{ext}",
            data=bytes(data),
            mime_type=mime_type,
            file_name=file_name,
        )
        self.files[f.file_id] = f
        self._files_by_path[f.file_path] = f
        return f

    # ------------------------------------------------------------------ observing

    def messages_to(self, chat_id: int, *, include_edits: bool = False) -> list[dict[str, Any]]:
        """Recorded send* calls (optionally edit* too) to a chat, oldest first."""
        return [
            e
            for e in self.sent
            if e["chat_id"] == chat_id
            and (
                self._is_message_method(e["method"])
                or (include_edits and e["method"].startswith("edit"))
            )
        ]

    async def wait_for(
        self,
        predicate: Callable[[dict[str, Any]], Any],
        timeout: float = 5.0,  # noqa: ASYNC109 - part of the public test API
        *,
        since: int = 0,
    ) -> dict[str, Any]:
        """First entry of ``sent[since:]`` satisfying predicate, waiting for new ones."""
        if not self.record_sent:
            raise RuntimeError("wait_for needs record_sent=True")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        index = since
        while True:
            while index < len(self.sent):
                entry = self.sent[index]
                index += 1
                if predicate(entry):
                    return entry
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"no sent call matched within {timeout}s; recent calls:\n{self.dump_sent()}"
                )
            event = self._sent_event
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                pass

    async def wait_for_text(
        self,
        chat_id: int,
        contains: str,
        timeout: float = 5.0,  # noqa: ASYNC109 - part of the public test API
        *,
        since: int = 0,
    ) -> dict[str, Any]:
        """A send*/edit* to chat_id whose text (or caption) contains ``contains``."""
        return await self.wait_for(
            lambda e: e["chat_id"] == chat_id and contains in (e["text"] or ""),
            timeout,
            since=since,
        )

    def buttons(self, message: Any) -> list[tuple[str, str]]:
        """(text, callback_data) of every inline button, row by row (url buttons give the url).
        Accepts a ``sent`` entry, a Message dict or an aiogram Message."""
        if not isinstance(message, dict):
            message = message.model_dump(exclude_none=True)
        markup = message.get("reply_markup") or {}
        return [
            (b.get("text", ""), b.get("callback_data") or b.get("url") or "")
            for row in markup.get("inline_keyboard", [])
            for b in row
        ]

    def dump_sent(self, last: int = 15) -> str:
        lines = []
        for e in self.sent[-last:]:
            text = (e["text"] or "").replace("\n", "\\n")
            if len(text) > 160:
                text = text[:160] + "..."
            line = f"  {e['method']} chat={e['chat_id']} msg={e['message_id']} text={text!r}"
            if e["reply_markup"]:
                line += f" buttons={self.buttons(e)}"
            lines.append(line)
        return "\n".join(lines) or "  (nothing sent)"

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        return [u for u in self._updates if u["update_id"] >= self._confirmed_offset]

    # ------------------------------------------------------------------ faults

    def flood_next(self, n: int, retry_after: int = 1) -> None:
        """The next n sending calls answer 429 regardless of the configured rates."""
        self._flood_remaining = n
        self._flood_retry_after = retry_after

    def busiest_second(self) -> int:
        """The most sends accepted in any sliding second (the limit a bot must keep)."""
        stamps = [t for t, _ in self.accepted_at]
        best, lo = 0, 0
        for hi, t in enumerate(stamps):
            while stamps[lo] <= t - 1.0:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    def flood_share(self, share: float, retry_after: int = 1, seed: int = 0) -> None:
        """From now on this share of sending calls, drawn at random, answers 429 (a busy chat,
        as Telegram says it: nothing tells it from the bot's own limit)."""
        self._flood_share = share
        self._flood_share_after = retry_after
        self._random = random.Random(seed)

    def flood_chat(self, chat_id: int, n: int = 1, retry_after: int = 1) -> None:
        """The next n sending calls to this chat answer 429 (Telegram's per-chat limit, as
        when the same chat is busy elsewhere)."""
        self._chat_floods[chat_id] = (n, retry_after)

    # ------------------------------------------------------------------ HTTP layer

    async def _handle_api(self, request: web.Request) -> web.Response:
        raw_method = request.match_info["method"]
        name, handler = self._methods.get(raw_method.lower(), (raw_method, None))
        self.calls[name] += 1
        try:
            if request.match_info["token"] != self.token:
                raise TelegramError(401, "Unauthorized")
            if handler is None:
                raise TelegramError(404, "Not Found: method not found")
            params, uploads = await self._read_params(request)
            result = await handler(params, uploads)
        except TelegramError as e:
            if e.code == 429:
                self.rate_limited_count += 1
            return web.json_response(e.body(), status=e.code)
        except Exception as e:
            # A bug in the fake itself: answer like a Telegram 500 and keep it for assertions.
            log.exception("FakeTelegram failed on %s", name)
            self.internal_errors.append(e)
            error = TelegramError(500, f"Internal Server Error: {type(e).__name__}: {e}")
            return web.json_response(error.body(), status=500)
        return web.json_response({"ok": True, "result": result})

    async def _handle_file(self, request: web.Request) -> web.Response:
        f = self._files_by_path.get(request.match_info["path"])
        if request.match_info["token"] != self.token or f is None:
            return web.json_response(
                {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
            )
        return web.Response(body=f.data, content_type=f.mime_type or "application/octet-stream")

    async def _read_params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, _Upload]]:
        params: dict[str, Any] = dict(request.query)
        uploads: dict[str, _Upload] = {}
        if request.method == "POST" and request.body_exists:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    raise _bad("can't parse JSON") from None
                if not isinstance(body, dict):
                    raise _bad("JSON object expected")
                params.update(body)
            else:
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        uploads[key] = _Upload(
                            value.filename, value.content_type, value.file.read()
                        )
                    else:
                        params[key] = value
        return {k: self._coerce(k, v) for k, v in params.items()}, uploads

    @staticmethod
    def _coerce(key: str, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            if key in _JSON_FIELDS:
                return json.loads(value)
            if key in _INT_FIELDS:
                return int(value)
            if key in _FLOAT_FIELDS:
                return float(value)
        except ValueError:
            if key == "reply_markup":
                raise _bad("can't parse reply keyboard markup JSON object") from None
            raise _bad(f'can\'t parse field "{key}"') from None
        if key in _BOOL_FIELDS:
            return value.lower() in ("true", "1")
        if key == "chat_id":
            try:
                return int(value)
            except ValueError:
                return value
        return value

    # ------------------------------------------------------------------ updates

    def _enqueue(
        self, body: dict[str, Any], update_id: int | None, *, as_is: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if update_id is None:
            update_id = self._next_update_id
        self._next_update_id = max(self._next_update_id, update_id + 1)
        update = as_is if as_is is not None else {"update_id": update_id, **body}
        update.setdefault("update_id", update_id)
        kind = next(iter(body), "")
        allowed = self._allowed_updates
        if (allowed is None and kind in _OPT_IN_UPDATES) or (
            allowed is not None and kind not in allowed
        ):
            self.dropped_updates[kind] += 1
            return update
        self._updates.append(update)
        self._notify_updates()
        return update

    # ------------------------------------------------------------------ webhook delivery

    WEBHOOK_TIMEOUT = 10.0  # seconds Telegram waits for the bot's answer (it waits longer)
    WEBHOOK_RETRY = 0.5  # seconds before an unanswered update is posted again

    async def _webhook_loop(self) -> None:
        """Updates POSTed to the webhook with its secret: up to max_connections at once, one
        chat's in order (the next only once the bot answered the last 2xx). An update not
        answered 2xx in time (the bot down, killed, slow) is posted again, maybe to another
        worker: as Telegram, the fake never drops an update the bot did not accept."""
        import aiohttp

        inflight: dict[Any, asyncio.Task] = {}
        retry_at: dict[int, float] = {}
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as http:
            while self.webhook is not None and not self._closing:
                limit = int(self.webhook.get("max_connections") or 40)
                now = loop.time()
                seen: set[Any] = set()
                for update in list(self._updates):
                    key = _update_chat(update)
                    if key in seen:
                        continue  # a later update of a chat waits for its earlier ones
                    seen.add(key)
                    if key in inflight or len(inflight) >= limit:
                        continue
                    if retry_at.get(update["update_id"], 0.0) > now:
                        continue
                    inflight[key] = asyncio.create_task(
                        self._post_update(http, update, retry_at))
                    inflight[key].add_done_callback(
                        lambda _t, key=key: inflight.pop(key, None) and self._notify_updates())
                event = self._updates_event
                try:
                    await asyncio.wait_for(event.wait(), 0.1)
                except TimeoutError:
                    pass
            for task in inflight.values():
                task.cancel()

    async def _post_update(self, http: Any, update: dict[str, Any],
                           retry_at: dict[int, float]) -> None:
        import aiohttp

        hook = self.webhook or {}
        headers = {}
        if hook.get("secret_token"):
            headers["X-Telegram-Bot-Api-Secret-Token"] = str(hook["secret_token"])
        self.webhook_posts += 1
        try:
            async with http.post(str(hook.get("url")), json=update, headers=headers,
                                 timeout=aiohttp.ClientTimeout(total=self.WEBHOOK_TIMEOUT)) as r:
                ok = 200 <= r.status < 300
        except (aiohttp.ClientError, TimeoutError, OSError):
            ok = False
        if ok:
            try:
                self._updates.remove(update)
            except ValueError:
                pass
            retry_at.pop(update["update_id"], None)
        else:
            self.webhook_failures += 1
            retry_at[update["update_id"]] = asyncio.get_running_loop().time() + self.WEBHOOK_RETRY

    def _notify_updates(self) -> None:
        event, self._updates_event = self._updates_event, asyncio.Event()
        event.set()

    def _confirm(self, offset: int) -> None:
        queue = self._updates
        if offset < 0:
            while len(queue) > -offset:
                queue.popleft()
            self._confirmed_offset = queue[0]["update_id"] if queue else self._next_update_id
            return
        self._confirmed_offset = max(self._confirmed_offset, offset)
        while queue and queue[0]["update_id"] < self._confirmed_offset:
            queue.popleft()

    def _collect(self, limit: int) -> list[dict[str, Any]]:
        batch = []
        for update in self._updates:
            if update["update_id"] >= self._confirmed_offset:
                batch.append(update)
                if len(batch) >= limit:
                    break
        return batch

    async def _get_updates(self, p: dict[str, Any], _: dict[str, _Upload]) -> list[dict[str, Any]]:
        if self.webhook is not None:
            raise TelegramError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        if "allowed_updates" in p and p["allowed_updates"] is not None:
            wanted = set(p["allowed_updates"])
            self._allowed_updates = wanted or None
        if p.get("offset"):
            self._confirm(int(p["offset"]))
        limit = min(max(int(p.get("limit") or 100), 1), 100)
        timeout = max(float(p.get("timeout") or 0), 0.0)

        self._poll_generation += 1
        generation = self._poll_generation
        self._notify_updates()  # wakes an older poll so it can answer 409

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if generation != self._poll_generation:
                raise TelegramError(
                    409,
                    "Conflict: terminated by other getUpdates request; "
                    "make sure that only one bot instance is running",
                )
            batch = self._collect(limit)
            remaining = deadline - loop.time()
            if batch or self._closing or remaining <= 0:
                return batch
            event = self._updates_event
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                pass

    async def _set_webhook(self, p: dict[str, Any], _: dict[str, _Upload]) -> bool:
        url = p.get("url") or ""
        if not url:
            return await self._delete_webhook(p, _)
        self.webhook = {k: v for k, v in p.items() if k != "certificate"}
        if p.get("drop_pending_updates"):
            self._confirm(self._next_update_id)
        if self.deliver_webhook and (self._webhook_task is None or self._webhook_task.done()):
            self._webhook_task = asyncio.create_task(self._webhook_loop())
        return True

    async def _delete_webhook(self, p: dict[str, Any], _: dict[str, _Upload]) -> bool:
        self.webhook = None
        if p.get("drop_pending_updates"):
            self._confirm(self._next_update_id)
        return True

    async def _get_webhook_info(self, p: dict[str, Any], _: dict[str, _Upload]) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": (self.webhook or {}).get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self.pending_updates),
        }
        if self.webhook and self.webhook.get("allowed_updates") is not None:
            info["allowed_updates"] = self.webhook["allowed_updates"]
        return info

    # ------------------------------------------------------------------ simple methods

    async def _ok(self, p: dict[str, Any], _: dict[str, _Upload]) -> bool:
        return True

    async def _get_me(self, p: dict[str, Any], _: dict[str, _Upload]) -> dict[str, Any]:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    @staticmethod
    def _commands_key(p: dict[str, Any]) -> tuple[str, str]:
        scope = p.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), p.get("language_code") or ""

    async def _set_my_commands(self, p: dict[str, Any], _: dict[str, _Upload]) -> bool:
        commands = p.get("commands")
        if not isinstance(commands, list):
            raise _bad('parameter "commands" is required')
        for c in commands:
            if not isinstance(c, dict) or not _BOT_COMMAND_RE.fullmatch(str(c.get("command", ""))):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(str(c.get("description", ""))) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands[self._commands_key(p)] = commands
        self._record("setMyCommands", None, p)
        return True

    async def _get_my_commands(self, p: dict[str, Any], _: dict[str, _Upload]) -> list[Any]:
        return self.commands.get(self._commands_key(p), [])

    async def _delete_my_commands(self, p: dict[str, Any], _: dict[str, _Upload]) -> bool:
        self.commands.pop(self._commands_key(p), None)
        self._record("deleteMyCommands", None, p)
        return True

    async def _answer_callback_query(self, p: dict[str, Any], _: dict[str, _Upload]) -> bool:
        query_id = str(p.get("callback_query_id") or "")
        if query_id not in self._callbacks:
            raise _bad(_CALLBACK_EXPIRED)
        if len(p.get("text") or "") > 200:
            raise _bad("MESSAGE_TOO_LONG")
        chat_id = self._callbacks.pop(query_id)
        self._record("answerCallbackQuery", chat_id, p, text=p.get("text"))
        return True

    async def _get_file(self, p: dict[str, Any], _: dict[str, _Upload]) -> dict[str, Any]:
        f = self.files.get(str(p.get("file_id") or ""))
        if f is None:
            raise _bad("invalid file_id")
        if f.file_size > MAX_DOWNLOAD:
            raise _bad("file is too big")
        return {
            "file_id": f.file_id,
            "file_unique_id": f.file_unique_id,
            "file_size": f.file_size,
            "file_path": f.file_path,
        }

    # ------------------------------------------------------------------ sending

    async def _send_message(self, p: dict[str, Any], _: dict[str, _Upload]) -> dict[str, Any]:
        chat_id = self._chat_id(p)
        text, entities = self._render(p.get("text"), p.get("parse_mode"), p.get("entities"))
        if not text.strip():
            raise _bad("message text is empty")
        if len(text) > MAX_TEXT:
            raise _bad("message is too long")
        markup = self._markup(p)
        self._gate(chat_id)
        content: dict[str, Any] = {"text": text}
        if entities:
            content["entities"] = entities
        message = self._bot_message(chat_id, p, markup, content)
        self._record("sendMessage", chat_id, p, message=message, text=p.get("text"), markup=markup)
        return message

    async def _send_photo(self, p: dict[str, Any], uploads: dict[str, _Upload]) -> dict[str, Any]:
        chat_id = self._chat_id(p)
        content = self._caption(p)
        markup = self._markup(p)
        f = self._input_file(p, uploads, "photo", kind="photos")
        self._gate(chat_id)
        content["photo"] = self._photo_sizes(f)
        message = self._bot_message(chat_id, p, markup, content)
        self._record("sendPhoto", chat_id, p, message=message, text=p.get("caption"), markup=markup)
        return message

    async def _send_document(
        self, p: dict[str, Any], uploads: dict[str, _Upload]
    ) -> dict[str, Any]:
        chat_id = self._chat_id(p)
        content = self._caption(p)
        markup = self._markup(p)
        f = self._input_file(p, uploads, "document", kind="documents")
        self._gate(chat_id)
        content["document"] = self._document_obj(f)
        message = self._bot_message(chat_id, p, markup, content)
        self._record(
            "sendDocument", chat_id, p, message=message, text=p.get("caption"), markup=markup
        )
        return message

    async def _send_voice(self, p: dict[str, Any], uploads: dict[str, _Upload]) -> dict[str, Any]:
        chat_id = self._chat_id(p)
        content = self._caption(p)
        markup = self._markup(p)
        f = self._input_file(p, uploads, "voice", kind="voice", default_mime="audio/ogg")
        self._gate(chat_id)
        content["voice"] = {
            "file_id": f.file_id,
            "file_unique_id": f.file_unique_id,
            "duration": int(p.get("duration") or 0),
            "mime_type": f.mime_type or "audio/ogg",
            "file_size": f.file_size,
        }
        message = self._bot_message(chat_id, p, markup, content)
        self._record("sendVoice", chat_id, p, message=message, text=p.get("caption"), markup=markup)
        return message

    async def _send_location(self, p: dict[str, Any], _: dict[str, _Upload]) -> dict[str, Any]:
        chat_id = self._chat_id(p)
        lat, lon = p.get("latitude"), p.get("longitude")
        if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise _bad("wrong latitude/longitude specified")
        markup = self._markup(p)
        self._gate(chat_id)
        content = {"location": {"latitude": float(lat), "longitude": float(lon)}}
        message = self._bot_message(chat_id, p, markup, content)
        self._record("sendLocation", chat_id, p, message=message, markup=markup)
        return message

    # ------------------------------------------------------------------ editing

    def _editable(self, p: dict[str, Any]) -> tuple[int, int, dict[str, Any] | None]:
        chat_id = self._chat_id(p)
        message_id = p.get("message_id")
        if message_id is None:
            raise _bad("message identifier is not specified")
        stored = self._messages.get((chat_id, message_id))
        if stored is None and not self._message_exists(chat_id, message_id):
            raise _bad("message to edit not found")
        if stored is not None and stored.get("from", {}).get("id") != self.bot_id:
            raise _bad("message can't be edited")
        return chat_id, message_id, stored

    async def _edit_inline(self, method: str, p: dict[str, Any]) -> bool:
        # Inline-mode messages are not tracked; accept the edit.
        self._gate(None)
        self._record(
            method, None, p, text=p.get("text") or p.get("caption"), markup=self._markup(p)
        )
        return True

    async def _edit_message_text(self, p: dict[str, Any], _: dict[str, _Upload]) -> Any:
        text, entities = self._render(p.get("text"), p.get("parse_mode"), p.get("entities"))
        if not text.strip():
            raise _bad("message text is empty")
        if len(text) > MAX_TEXT:
            raise _bad("message is too long")
        if p.get("inline_message_id"):
            return await self._edit_inline("editMessageText", p)
        markup = self._markup(p)
        chat_id, message_id, stored = self._editable(p)
        if stored is not None:
            if "text" not in stored:
                raise _bad("there is no text in the message to edit")
            if (
                stored["text"] == text
                and stored.get("entities", []) == entities
                and stored.get("reply_markup") == self._inline_only(markup)
            ):
                raise _bad(_NOT_MODIFIED)
        self._gate(chat_id)
        message = self._apply_edit(
            chat_id, message_id, stored, markup, text=text, entities=entities
        )
        self._record(
            "editMessageText", chat_id, p, message=message, text=p.get("text"), markup=markup
        )
        return message

    async def _edit_message_caption(self, p: dict[str, Any], _: dict[str, _Upload]) -> Any:
        content = self._caption(p)
        if p.get("inline_message_id"):
            return await self._edit_inline("editMessageCaption", p)
        markup = self._markup(p)
        chat_id, message_id, stored = self._editable(p)
        if stored is not None:
            if "text" in stored or "location" in stored:
                raise _bad("there is no caption in the message to edit")
            if (
                stored.get("caption") == content.get("caption")
                and stored.get("caption_entities") == content.get("caption_entities")
                and stored.get("reply_markup") == self._inline_only(markup)
            ):
                raise _bad(_NOT_MODIFIED)
        self._gate(chat_id)
        message = self._apply_edit(
            chat_id,
            message_id,
            stored,
            markup,
            caption=content.get("caption"),
            caption_entities=content.get("caption_entities"),
        )
        self._record(
            "editMessageCaption", chat_id, p, message=message, text=p.get("caption"), markup=markup
        )
        return message

    async def _edit_message_reply_markup(self, p: dict[str, Any], _: dict[str, _Upload]) -> Any:
        if p.get("inline_message_id"):
            return await self._edit_inline("editMessageReplyMarkup", p)
        markup = self._markup(p)
        chat_id, message_id, stored = self._editable(p)
        if stored is not None and stored.get("reply_markup") == self._inline_only(markup):
            raise _bad(_NOT_MODIFIED)
        self._gate(chat_id)
        message = self._apply_edit(chat_id, message_id, stored, markup)
        self._record("editMessageReplyMarkup", chat_id, p, message=message, markup=markup)
        return message

    def _apply_edit(
        self,
        chat_id: int,
        message_id: int,
        stored: dict[str, Any] | None,
        markup: dict[str, Any] | None,
        **fields: Any,
    ) -> dict[str, Any]:
        # A new dict, so updates already handed out keep the message as it was.
        message = (
            dict(stored)
            if stored is not None
            else {
                "message_id": message_id,
                "from": self.bot_user,
                "chat": self._chat_obj(chat_id),
                "date": int(time.time()),
            }
        )
        for key, value in fields.items():
            if value:
                message[key] = value
            elif key != "text":
                message.pop(key, None)
        message["edit_date"] = int(time.time())
        inline = self._inline_only(markup)
        if inline:
            message["reply_markup"] = inline
        else:
            message.pop("reply_markup", None)
        self._store_message(message)
        return message

    async def _delete_message(self, p: dict[str, Any], _: dict[str, _Upload]) -> bool:
        chat_id = self._chat_id(p)
        message_id = p.get("message_id")
        if message_id is None or not self._message_exists(chat_id, message_id):
            raise _bad("message to delete not found")
        self._messages.pop((chat_id, message_id), None)
        self._deleted.add((chat_id, message_id))
        self._record("deleteMessage", chat_id, p, message_id=message_id)
        return True

    # ------------------------------------------------------------------ helpers

    def _chat_id(self, p: dict[str, Any]) -> int:
        chat_id = p.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _bad("chat_id is empty")
        if isinstance(chat_id, int):
            return chat_id
        try:
            return int(chat_id)
        except (TypeError, ValueError):
            raise _bad("chat not found") from None

    def _render(self, raw: Any, parse_mode: Any, entities: Any) -> tuple[str, list[dict[str, Any]]]:
        text = "" if raw is None else str(raw)
        if parse_mode and str(parse_mode).lower() == "html" and self.validate_html:
            return parse_html(text)
        if parse_mode:  # Markdown modes are passed through without entities
            return text, []
        return text, list(entities or [])

    def _caption(self, p: dict[str, Any]) -> dict[str, Any]:
        caption, entities = self._render(
            p.get("caption"), p.get("parse_mode"), p.get("caption_entities")
        )
        if len(caption) > MAX_CAPTION:
            raise _bad("message caption is too long")
        content: dict[str, Any] = {}
        if caption:
            content["caption"] = caption
        if entities:
            content["caption_entities"] = entities
        return content

    def _markup(self, p: dict[str, Any]) -> dict[str, Any] | None:
        markup = p.get("reply_markup")
        if markup is None or markup == "":
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise _bad(
                    'field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays'
                )
            actions = {
                "callback_data",
                "url",
                "web_app",
                "login_url",
                "switch_inline_query",
                "switch_inline_query_current_chat",
                "switch_inline_query_chosen_chat",
                "copy_text",
                "callback_game",
                "pay",
            }
            for row in rows:
                for button in row:
                    if not isinstance(button, dict) or not button.get("text"):
                        raise _bad("can't parse inline keyboard button: Text is empty")
                    data = button.get("callback_data")
                    if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA:
                        raise _bad("BUTTON_DATA_INVALID")
                    if not actions & button.keys():
                        raise _bad(
                            "can't parse inline keyboard button: "
                            "Text buttons are unallowed in the inline keyboard"
                        )
        return markup

    @staticmethod
    def _inline_only(markup: dict[str, Any] | None) -> dict[str, Any] | None:
        # Only inline keyboards are echoed back inside Message objects.
        if markup and markup.get("inline_keyboard"):
            return {"inline_keyboard": markup["inline_keyboard"]}
        return None

    def _gate(self, chat_id: int | None) -> None:
        """Faults and rate limits applied to every sending call, in Telegram's order."""
        if self._flood_remaining > 0:
            self._flood_remaining -= 1
            n = self._flood_retry_after
            raise TelegramError(429, f"Too Many Requests: retry after {n}", retry_after=n)
        if self._flood_share and self._random.random() < self._flood_share:
            n = self._flood_share_after
            raise TelegramError(429, f"Too Many Requests: retry after {n}", retry_after=n)
        if chat_id is not None and chat_id in self._chat_floods:
            left, n = self._chat_floods[chat_id]
            if left <= 1:
                del self._chat_floods[chat_id]
            else:
                self._chat_floods[chat_id] = (left - 1, n)
            raise TelegramError(429, f"Too Many Requests: retry after {n}", retry_after=n)
        now = time.monotonic()
        wait = 0.0
        if self._global_window is not None:
            wait = self._global_window.wait_time(now)
        chat_window = None
        if self.per_chat_rate and chat_id is not None:
            chat_window = self._chat_windows.get(chat_id)
            if chat_window is None:
                chat_window = self._chat_windows[chat_id] = _Window(self.per_chat_rate)
            wait = max(wait, chat_window.wait_time(now))
            if now - self._last_sweep > 5.0:  # forget idle chats so memory stays flat
                self._last_sweep = now
                for cid in [c for c, w in self._chat_windows.items() if w.idle(now)]:
                    if cid != chat_id:
                        del self._chat_windows[cid]
        if wait > 0:
            n = max(1, math.ceil(wait))
            self.limit_refusals += 1
            over_chat = chat_window is not None and chat_window.wait_time(now) > 0
            self.refusal_log.append((now, chat_id, "chat" if over_chat else "global"))
            raise TelegramError(429, f"Too Many Requests: retry after {n}", retry_after=n)
        self.accepted_at.append((now, chat_id))
        if self._global_window is not None:
            self._global_window.stamps.append(now)
        if chat_window is not None:
            chat_window.stamps.append(now)
        if chat_id is not None and chat_id in self.blocked:
            raise TelegramError(403, _FORBIDDEN)

    def _input_file(
        self,
        p: dict[str, Any],
        uploads: dict[str, _Upload],
        field: str,
        *,
        kind: str,
        default_mime: str | None = None,
    ) -> StoredFile:
        value = p.get(field)
        upload = None
        if isinstance(value, str) and value.startswith("attach://"):
            upload = uploads.get(value.removeprefix("attach://"))
            if upload is None:
                raise _bad(_BAD_FILE)
        elif field in uploads:
            upload = uploads[field]
        elif isinstance(value, str) and value:
            if value in self.files:
                return self.files[value]
            if value.startswith(("http://", "https://")):
                name = value.rsplit("/", 1)[-1] or field
                return self.store_file(
                    b"",
                    kind=kind,
                    file_name=name,
                    mime_type=mimetypes.guess_type(name)[0] or default_mime,
                )
            raise _bad(_BAD_FILE)
        else:
            raise _bad(f"there is no {field} in the request")
        if not upload.data:
            raise _bad("file must be non-empty")
        name = upload.filename
        mime = (mimetypes.guess_type(name)[0] if name else None) or default_mime
        if mime is None and upload.content_type not in (None, "application/octet-stream"):
            mime = upload.content_type
        return self.store_file(upload.data, kind=kind, mime_type=mime, file_name=name)

    def _photo_sizes(self, f: StoredFile) -> list[dict[str, Any]]:
        width, height = _image_size(f.data) or (800, 600)
        sizes = []
        thumb = _thumbnail(f.data) if max(width, height) > 90 else None
        if thumb is not None:
            data, tw, th = thumb
            t = self.store_file(data, kind="photos", mime_type="image/jpeg")
            sizes.append(
                {
                    "file_id": t.file_id,
                    "file_unique_id": t.file_unique_id,
                    "file_size": t.file_size,
                    "width": tw,
                    "height": th,
                }
            )
        sizes.append(
            {
                "file_id": f.file_id,
                "file_unique_id": f.file_unique_id,
                "file_size": f.file_size,
                "width": width,
                "height": height,
            }
        )
        return sizes

    @staticmethod
    def _document_obj(f: StoredFile) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "file_id": f.file_id,
            "file_unique_id": f.file_unique_id,
            "file_size": f.file_size,
        }
        if f.file_name:
            doc["file_name"] = f.file_name
        if f.mime_type:
            doc["mime_type"] = f.mime_type
        return doc

    def _remember_user(
        self, user_id: int, first_name: str, username: str | None, language_code: str | None
    ) -> dict[str, Any]:
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        if language_code:
            user["language_code"] = language_code
        self._users[user_id] = user
        return user

    def _private_chat(self, user_id: int) -> dict[str, Any]:
        user = self._users.get(user_id, {})
        chat: dict[str, Any] = {
            "id": user_id,
            "type": "private",
            "first_name": user.get("first_name", "Resident"),
        }
        if user.get("username"):
            chat["username"] = user["username"]
        return chat

    def _chat_obj(self, chat_id: int) -> dict[str, Any]:
        if chat_id > 0:
            return self._private_chat(chat_id)
        kind = "supergroup" if str(chat_id).startswith("-100") else "group"
        return {"id": chat_id, "type": kind, "title": f"Group {chat_id}"}

    def _next_message_id(self, chat_id: int) -> int:
        # Private chats share one message-id sequence for both directions, like Telegram.
        message_id = self._last_message_id.get(chat_id, 0) + 1
        self._last_message_id[chat_id] = message_id
        return message_id

    def _message_exists(self, chat_id: int, message_id: int) -> bool:
        key = (chat_id, message_id)
        if key in self._messages:
            return True
        return (
            self._evicted
            and key not in self._deleted
            and 1 <= message_id <= self._last_message_id.get(chat_id, 0)
        )

    def _store_message(self, message: dict[str, Any]) -> None:
        key = (message["chat"]["id"], message["message_id"])
        self._messages[key] = message
        limit = self.message_store_limit
        if limit is not None and len(self._messages) > limit:
            self._messages.popitem(last=False)
            self._evicted = True

    def _latest_keyboard_message(self, chat_id: int) -> dict[str, Any] | None:
        best = None
        for (cid, _mid), message in reversed(self._messages.items()):
            if (
                cid == chat_id
                and message.get("from", {}).get("id") == self.bot_id
                and message.get("reply_markup")
                and (best is None or message["message_id"] > best["message_id"])
            ):
                best = message
        return best

    def _bot_message(
        self,
        chat_id: int,
        p: dict[str, Any],
        markup: dict[str, Any] | None,
        content: dict[str, Any],
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": self._next_message_id(chat_id),
            "from": self.bot_user,
            "chat": self._chat_obj(chat_id),
            "date": int(time.time()),
        }
        reply_to = p.get("reply_to_message_id") or (p.get("reply_parameters") or {}).get(
            "message_id"
        )
        if reply_to is not None:
            original = self._messages.get((chat_id, int(reply_to)))
            if original is not None:
                message["reply_to_message"] = {
                    k: v for k, v in original.items() if k != "reply_to_message"
                }
        message.update(content)
        if inline := self._inline_only(markup):
            message["reply_markup"] = inline
        self._store_message(message)
        return message

    @staticmethod
    def _is_message_method(method: str) -> bool:
        return (method.startswith("send") and method != "sendChatAction") or method in (
            "copyMessage",
            "forwardMessage",
        )

    def _record(
        self,
        method: str,
        chat_id: int | None,
        params: dict[str, Any],
        *,
        message: dict[str, Any] | None = None,
        text: str | None = None,
        markup: dict[str, Any] | None = None,
        message_id: int | None = None,
    ) -> None:
        if self._is_message_method(method) or method.startswith("edit"):
            self.sent_count += 1
            if chat_id is not None:
                self.sent_count_by_chat[chat_id] += 1
        if not self.record_sent:
            return
        if message is not None:
            message_id = message["message_id"]
        self.sent.append(
            {
                "method": method,
                "chat_id": chat_id,
                "text": text,
                "reply_markup": markup,
                "message_id": message_id,
                "params": params,
                "message": message,
                "t": time.monotonic(),
            }
        )
        event, self._sent_event = self._sent_event, asyncio.Event()
        event.set()


def _update_chat(update: dict[str, Any]) -> Any:
    """The chat an update belongs to (its messages are delivered in order)."""
    for kind in ("message", "edited_message", "callback_query"):
        body = update.get(kind)
        if isinstance(body, dict):
            chat = (body.get("message") or {}).get("chat") if kind == "callback_query" \
                else body.get("chat")
            if isinstance(chat, dict):
                return chat.get("id")
            sender = body.get("from")
            if isinstance(sender, dict):
                return sender.get("id")
    return ("update", update.get("update_id"))
