"""Telegram, through aiogram 3. The only module that knows Telegram exists."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

from aiogram import Bot
from aiogram import Dispatcher as AiogramDispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import AnswerCallbackQuery, EditMessageText, SendMessage
from aiogram.methods.base import Response, TelegramMethod
from aiogram.types import (
    CallbackQuery,
    FSInputFile,
    InlineKeyboardMarkup,
    Message,
    ReplyKeyboardMarkup,
    Update,
)
from aiohttp import ClientError, ClientTimeout
from pydantic import BaseModel

from bot.i18n import Texts, normalize_language
from bot.messaging.model import (
    STORED,
    Capabilities,
    Inbound,
    InboundHandler,
    Kind,
    Limits,
    MediaRef,
    Outbound,
    SendResult,
    SendStatus,
    parse_command,
)

log = logging.getLogger(__name__)

CAPTION_LIMIT = 1024
PAID_RATE = 1000.0
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
WEBHOOK_MAX_BYTES = 1_000_000  # a Telegram update is a few kilobytes; anything bigger is not one


def message_to_inbound(message: Message, update_id: int | None) -> Inbound:
    user = message.from_user
    base: dict[str, Any] = dict(
        platform="telegram",
        user_id=str(user.id if user else message.chat.id),
        chat_id=str(message.chat.id),
        update_id=None if update_id is None else str(update_id),
        language_hint=user.language_code if user else None,
        display_name=user.full_name if user else None,
        at=message.date,
        message_ref=str(message.message_id),
    )
    if message.location:
        return Inbound(kind=Kind.LOCATION, latitude=message.location.latitude,
                       longitude=message.location.longitude, **base)
    if message.photo:
        best = message.photo[-1]
        return Inbound(kind=Kind.PHOTO, text=message.caption, media=MediaRef(
            platform_id=best.file_id, size=best.file_size, width=best.width,
            height=best.height, mime_type="image/jpeg"), **base)
    if message.voice:
        v = message.voice
        return Inbound(kind=Kind.VOICE, media=MediaRef(
            platform_id=v.file_id, size=v.file_size, mime_type=v.mime_type,
            duration=v.duration), **base)
    if message.document:
        d = message.document
        return Inbound(kind=Kind.DOCUMENT, text=message.caption, media=MediaRef(
            platform_id=d.file_id, size=d.file_size, mime_type=d.mime_type,
            file_name=d.file_name), **base)
    if message.contact:
        return Inbound(kind=Kind.CONTACT, phone=message.contact.phone_number, **base)
    cmd = parse_command(message.text)
    if cmd:
        return Inbound(kind=Kind.COMMAND, text=message.text, command=cmd[0], args=cmd[1], **base)
    # Stickers, polls, games...: an empty text, which the bot answers as unreadable.
    return Inbound(kind=Kind.TEXT, text=message.text or "", **base)


def callback_to_inbound(query: CallbackQuery, update_id: int | None) -> Inbound:
    chat_id = query.message.chat.id if query.message else query.from_user.id
    return Inbound(
        platform="telegram", kind=Kind.BUTTON, user_id=str(query.from_user.id),
        chat_id=str(chat_id), update_id=None if update_id is None else str(update_id),
        language_hint=query.from_user.language_code, display_name=query.from_user.full_name,
        payload=query.data, callback_id=query.id,
        message_ref=str(query.message.message_id) if query.message else None,
    )


def _keyboard(out: Outbound) -> dict[str, Any] | None:
    """The reply_markup of `out` as the Bot API's JSON."""
    if out.buttons:
        return {"inline_keyboard": [[{"text": b.label, "callback_data": b.payload} for b in row]
                                    for row in out.buttons]}
    keys: list[dict[str, Any]] = []
    if out.request_location:
        keys.append({"text": out.request_location, "request_location": True})
    if out.request_contact:
        keys.append({"text": out.request_contact, "request_contact": True})
    if keys:
        return {"keyboard": [keys], "resize_keyboard": True, "one_time_keyboard": True}
    return None


def _markup(out: Outbound) -> InlineKeyboardMarkup | ReplyKeyboardMarkup | None:
    """The same as aiogram's model, for the methods sent through aiogram."""
    keyboard = _keyboard(out)
    if keyboard is None:
        return None
    if "inline_keyboard" in keyboard:
        return InlineKeyboardMarkup.model_validate(keyboard)
    return ReplyKeyboardMarkup.model_validate(keyboard)


def _is_path(ref: str) -> bool:
    return "/" in ref or ref.startswith(".")


class _Uploads:
    """Files uploaded once, sent again by Telegram's file id: a poll's chart or a notice's
    photo going to 10,000 residents is one upload. Keyed by path, size and mtime, so a file
    rewritten in place is uploaded anew."""

    def __init__(self, limit: int = 1000) -> None:
        self._ids: OrderedDict[tuple, str] = OrderedDict()
        self._limit = limit

    @staticmethod
    def _key(path: str, name: str | None) -> tuple | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return path, name, st.st_size, st.st_mtime_ns

    def file(self, ref: str, name: str | None = None):
        if not _is_path(ref):
            return ref  # a Telegram file id already
        key = self._key(ref, name)
        known = self._ids.get(key) if key else None
        return known or FSInputFile(ref, filename=name)

    def learn(self, ref: str | None, name: str | None, file_id: str | None) -> None:
        if not ref or not file_id or not _is_path(ref):
            return
        key = self._key(ref, name)
        if key is not None:
            self._ids[key] = file_id
            self._ids.move_to_end(key)
            while len(self._ids) > self._limit:
                self._ids.popitem(last=False)


_VOICE_SUFFIXES = (".ogg", ".oga", ".opus", ".mp3", ".m4a")


def _plays_as_voice(ref: str) -> bool:
    """sendVoice takes OGG/Opus, MP3 and M4A; a stored file in another format (or any
    Telegram file id) is judged by its name."""
    return not _is_path(ref) or ref.lower().endswith(_VOICE_SUFFIXES)


class _Session(AiohttpSession):
    """aiogram's session, keeping each method's response model alive.

    aiogram parses every answer as `Response[<the method's result type>]`; pydantic keeps such
    a parametrised model only in a weak-valued cache, so once collected it is built again,
    schema and all, for a later call: a fifth of the CPU of a broadcast at 1,000/s went there
    (py-spy of bench/broadcast.py). One strong reference per method type keeps it built."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._responses: dict[type, Any] = {}

    def check_response(self, bot: Any, method: Any, status_code: int, content: str) -> Any:
        kind = type(method)
        if kind not in self._responses:
            self._responses[kind] = Response[method.__returning__]
        return super().check_response(bot, method, status_code, content)

    async def make_request(self, bot: Any, method: Any,
                           timeout: int | None = None) -> Any:  # noqa: ASYNC109 (aiogram's)
        """A method without a file goes as a JSON body (the Bot API takes application/json for
        every method but uploads): aiogram's form, urlencoded by aiohttp, quotes each byte of
        a text in Python, about 90 us for the 1,200 characters of /help against 5 us as JSON,
        on every message of every broadcast. Uploads still go as aiogram's multipart form."""
        files: dict[str, Any] = {}
        payload: dict[str, Any] = {}
        for key, value in method.model_dump(warnings=False).items():
            value = self.prepare_value(value, bot=bot, files=files, _dumps_json=False)
            if value:  # what aiogram's form leaves out too: unset, empty, false
                payload[key] = value
        if files:
            return await super().make_request(bot, method, timeout)
        status, content = await self._exchange(bot, method.__api_method__, payload,
                                               lambda: method, timeout)
        return self.check_response(bot=bot, method=method, status_code=status,
                                   content=content).result

    async def call_plain(self, bot: Any, api_method: str, payload: dict[str, Any],
                         method: Callable[[], TelegramMethod]) -> Any:
        """`api_method` with a JSON `payload`, its result as the Bot API's JSON when it
        succeeds (a message's object, or `true`). aiogram would build its method model, dump
        it, and validate the answer into a full Message: 250 us of CPU per text message more
        than this, measured side by side against the suite's fake, where a reply needs only
        the message id. An error still goes through aiogram's check_response, with `method()`
        built then, so it raises the exception aiogram raises (TelegramRetryAfter,
        TelegramForbiddenError, ...)."""
        status, content = await self._exchange(bot, api_method, payload, method, None)
        if status == 200:
            try:
                answer = json.loads(content)
            except ValueError:
                answer = None
            if isinstance(answer, dict) and answer.get("ok") is True and "result" in answer:
                return answer["result"]
        result = self.check_response(bot=bot, method=method(), status_code=status,
                                     content=content).result
        return result.model_dump() if isinstance(result, BaseModel) else result

    async def _exchange(self, bot: Any, api_method: str, payload: dict[str, Any],
                        method: Callable[[], TelegramMethod],
                        timeout: int | None) -> tuple[int, str]:  # noqa: ASYNC109
        session = await self.create_session()
        url = self.api.api_url(token=bot.token, method=api_method)
        try:
            async with session.post(url, data=self.json_dumps(payload),
                                    headers={"Content-Type": "application/json"},
                                    timeout=ClientTimeout(
                                        total=self.timeout if timeout is None else timeout),
                                    ) as resp:
                return resp.status, await resp.text()
        except TimeoutError as exc:
            raise TelegramNetworkError(method=method(), message="Request timeout error") from exc
        except ClientError as exc:
            raise TelegramNetworkError(
                method=method(), message=f"{type(exc).__name__}: {exc}") from exc


class _Updates(AiogramDispatcher):
    """aiogram's polling (offsets, back-off after network errors, a task per update) with each
    update handed straight to the adapter: routing is the bot's own dispatcher's, and aiogram's
    observers, filters and middlewares did nothing for it but cost a sixth of the process's
    time per update (py-spy of bench/updates_per_second.py (c))."""

    def __init__(self) -> None:
        super().__init__(disable_fsm=True)  # conversations live in our database
        self.route: Callable[[Update], Awaitable[None]] | None = None

    async def feed_update(self, bot: Bot, update: Update, **kwargs: Any) -> Any:
        if self.route is not None:
            await self.route(update)
        return None


class TelegramAdapter:
    platform = "telegram"
    capabilities = Capabilities()
    chats = None  # one bot account: every chat

    def __init__(self, token: str, *, api_base: str | None = None, per_second: float = 30.0,
                 per_chat_per_second: float = 1.0, polling_timeout: int = 30,
                 webhook_url: str | None = None, webhook_secret: str | None = None,
                 webhook_host: str = "0.0.0.0", webhook_port: int = 8080,
                 reuse_port: bool = False, max_connections: int = 40,
                 paid_broadcast: bool = False) -> None:
        # One HTTP session for the bot's whole life; the base URL is configurable.
        session = (_Session(api=TelegramAPIServer.from_base(api_base)) if api_base
                   else _Session())
        self.session = session
        self.bot = Bot(token=token, session=session)
        # Paid broadcasts (Telegram Stars) lift the bot's limit to 1,000 messages a second;
        # every send must then ask for it with allow_paid_broadcast.
        self.paid_broadcast = paid_broadcast
        self.limits = Limits(per_second=max(per_second, PAID_RATE) if paid_broadcast
                             else per_second, per_chat_per_second=per_chat_per_second)
        self.polling_timeout = polling_timeout
        self.webhook_url = webhook_url
        # Webhook mode never runs open: without a configured secret one is generated for this
        # process and registered with setWebhook, so only Telegram knows it.
        self.webhook_secret = webhook_secret or (
            secrets.token_urlsafe(32) if webhook_url else None)
        if self.webhook_secret is not None and not _SECRET_TOKEN.fullmatch(self.webhook_secret):
            # Telegram would refuse it in setWebhook; say so before anything starts.
            raise ValueError("BOT_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ "
                             "and -")
        self._feeding: set[asyncio.Task] = set()
        self._texts: Texts | None = None
        self.webhook_host = webhook_host
        self.webhook_port = webhook_port
        self.reuse_port = reuse_port
        self.max_connections = max_connections
        self.dp = _Updates()
        self._task: asyncio.Task | None = None
        self._runner: Any = None  # aiohttp.web.AppRunner in webhook mode
        self.bound_port: int | None = None
        self.uploads = _Uploads()

    # -- receiving -------------------------------------------------------------------------
    def _wire(self, on_inbound: InboundHandler) -> None:
        async def route(update: Update) -> None:
            if update.message is not None:
                message = update.message
                if message.chat.type != "private":
                    await self._group_hint(message)
                    return
                await on_inbound(message_to_inbound(message, update.update_id))
            elif update.callback_query is not None:
                query = update.callback_query
                if query.message is not None and query.message.chat.type != "private":
                    await self._answer_quietly(query)
                    return
                await on_inbound(callback_to_inbound(query, update.update_id))
            # Nothing else is asked for (allowed_updates): an edit, a channel post, ... pass.

        self.dp.route = route

    # -- group chats -------------------------------------------------------------------------
    # Only private chats are conversations: a message in a group, supergroup or channel never
    # reaches dispatch, so it can neither start a conversation nor move where a person's pushes
    # go (report cards carry names and phone numbers). A command typed there gets one hint.
    def _hint(self, language_code: str | None) -> str:
        if self._texts is None:
            self._texts = Texts()
        return self._texts.get(normalize_language(language_code), "common.group_chat")

    async def _group_hint(self, message: Message) -> None:
        if not (message.text or "").startswith("/") or message.from_user is None:
            return
        try:
            await self.bot.send_message(message.chat.id, self._hint(
                message.from_user.language_code), reply_to_message_id=message.message_id)
        except Exception as exc:  # the group may forbid the bot to write: nothing to do
            log.info("group hint to %s not sent: %s", message.chat.id, exc)

    async def _answer_quietly(self, query: CallbackQuery) -> None:
        try:
            await self.bot.answer_callback_query(
                query.id, text=self._hint(query.from_user.language_code))
        except Exception as exc:
            log.info("callback %s in a group not answered: %s", query.id, exc)

    async def start(self, on_inbound: InboundHandler) -> None:
        self._wire(on_inbound)
        if self.webhook_url:
            await self._start_webhook()
        else:
            await self.bot.delete_webhook(drop_pending_updates=False)
            self._task = asyncio.create_task(self.dp.start_polling(
                self.bot, handle_signals=False, close_bot_session=False,
                polling_timeout=self.polling_timeout,
                allowed_updates=["message", "callback_query"],
            ), name="telegram-polling")

    async def _start_webhook(self) -> None:
        from aiohttp import web

        if not self.webhook_secret or not self.webhook_url:
            raise RuntimeError("webhook mode needs a URL and a secret")
        path = str(urlparse(self.webhook_url).path) or "/telegram/webhook"
        app = web.Application(client_max_size=WEBHOOK_MAX_BYTES)
        app.router.add_post(path, self._on_webhook)
        runner = self._runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, self.webhook_host, self.webhook_port,
                           reuse_port=self.reuse_port or None)
        await site.start()
        self.bound_port = runner.addresses[0][1]
        await self.bot.set_webhook(self.webhook_url, secret_token=self.webhook_secret,
                                   allowed_updates=["message", "callback_query"],
                                   max_connections=self.max_connections)

    async def _on_webhook(self, request):
        """One POST from Telegram: the secret header first, then a body that must be an Update.

        Anything else is answered 401 or 400 without a traceback, and never reaches dispatch."""
        from aiohttp import web
        from pydantic import ValidationError

        given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not secrets.compare_digest(given.encode(), self.webhook_secret.encode()):
            return web.Response(status=401, text="unauthorized")
        try:
            body = await request.read()
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            update = Update.model_validate(data, context={"bot": self.bot})
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text="too large")
        except (ValueError, RecursionError, TypeError, ValidationError):
            return web.Response(status=400, text="not a Telegram update")
        # Answered once the update's transaction has committed (its replies are queued, not
        # necessarily sent): a worker killed before that leaves Telegram without an answer,
        # and Telegram sends the update again, to whichever worker, where the processed-updates
        # table keeps it from counting twice. A duplicate, or an update dropped by the flood
        # guard, is answered when its handling ends.
        stored = asyncio.Event()
        task = asyncio.create_task(self._feed(update, stored))
        self._feeding.add(task)
        task.add_done_callback(self._feeding.discard)
        waiting = asyncio.ensure_future(stored.wait())
        try:
            await asyncio.wait({waiting, task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
        return web.json_response({})

    async def _feed(self, update: Update, stored: asyncio.Event | None = None) -> None:
        STORED.set(stored)
        try:
            await self.dp.feed_update(self.bot, update)
        except Exception:
            log.exception("webhook update %s failed", update.update_id)

    async def stop(self) -> None:
        if self._task is not None:
            try:
                await self.dp.stop_polling()
            except RuntimeError:
                pass  # polling had not started yet
            try:
                await asyncio.wait_for(self._task, 10)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            self._task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            if self._feeding:
                await asyncio.gather(*self._feeding, return_exceptions=True)
        await self.bot.session.close()

    # -- sending ---------------------------------------------------------------------------
    async def send(self, chat_id: str, out: Outbound) -> SendResult:
        try:
            return await self._send(chat_id, out)
        except TelegramRetryAfter as exc:
            return SendResult.flood_wait(exc.retry_after)
        except TelegramForbiddenError as exc:
            return SendResult(SendStatus.UNREACHABLE, error=exc.message)
        except TelegramBadRequest as exc:
            if "not modified" in exc.message:
                return SendResult.sent(out.edit_of)
            if "chat not found" in exc.message or "user is deactivated" in exc.message:
                return SendResult(SendStatus.UNREACHABLE, error=exc.message)
            return SendResult(SendStatus.FAILED, error=exc.message)
        except (TelegramNotFound, TelegramUnauthorizedError) as exc:
            return SendResult(SendStatus.FAILED, error=exc.message)
        except (TelegramNetworkError, TelegramServerError, TimeoutError, OSError) as exc:
            return SendResult(SendStatus.RETRY, error=str(exc)[:200])

    async def _send(self, chat_id: str, out: Outbound) -> SendResult:
        # A button press (a ballot's tick) is answered and its message edited as plain JSON
        # too, as text messages are (`call_plain`): two calls a press.
        if out.answer_callback:
            answer: dict[str, Any] = {"callback_query_id": out.answer_callback}
            if out.notice:
                answer["text"] = out.notice
            try:
                await self.session.call_plain(
                    self.bot, "answerCallbackQuery", answer, lambda: AnswerCallbackQuery(
                        callback_query_id=str(out.answer_callback), text=out.notice))
            except TelegramBadRequest:
                pass  # too old to answer; the message below still goes out
        paid: dict[str, Any] = {"allow_paid_broadcast": True} if self.paid_broadcast else {}
        if out.edit_of:
            edit: dict[str, Any] = {"chat_id": int(chat_id), "message_id": int(out.edit_of),
                                    "text": out.text}
            if out.buttons:  # inline keyboards only; none given removes the old one
                edit["reply_markup"] = _keyboard(out)
            edited = await self.session.call_plain(
                self.bot, "editMessageText", edit, lambda: EditMessageText(
                    text=out.text, chat_id=int(chat_id), message_id=int(str(out.edit_of)),
                    reply_markup=InlineKeyboardMarkup.model_validate(_keyboard(out))
                    if out.buttons else None))
            ref = edited.get("message_id") if isinstance(edited, dict) else None
            return SendResult.sent(out.edit_of if ref is None else str(ref))
        if out.photo:
            caption = out.text if len(out.text) <= CAPTION_LIMIT else None
            msg = await self.bot.send_photo(int(chat_id), self.uploads.file(out.photo),
                                            caption=caption,
                                            reply_markup=_markup(out) if caption else None, **paid)
            if msg.photo:
                self.uploads.learn(out.photo, None, msg.photo[-1].file_id)
            if caption is not None or not out.text:
                return SendResult.sent(str(msg.message_id))
        if out.document:
            msg = await self.bot.send_document(
                int(chat_id), self.uploads.file(out.document, out.document_name),
                caption=out.text[:CAPTION_LIMIT] or None, reply_markup=_markup(out), **paid)
            if msg.document:
                self.uploads.learn(out.document, out.document_name, msg.document.file_id)
            return SendResult.sent(str(msg.message_id))
        if out.voice and _plays_as_voice(out.voice):
            msg = await self.bot.send_voice(int(chat_id), self.uploads.file(out.voice),
                                            caption=out.text[:CAPTION_LIMIT] or None, **paid)
            return SendResult.sent(str(msg.message_id))
        if out.voice:
            # A voice note kept in a format Telegram does not play as one (WeChat's AMR):
            # sent as the file it is, which the client offers to open.
            msg = await self.bot.send_document(
                int(chat_id), self.uploads.file(out.voice),
                caption=out.text[:CAPTION_LIMIT] or None, **paid)
            return SendResult.sent(str(msg.message_id))
        if not out.text:
            return SendResult.sent(None)
        payload: dict[str, Any] = {"chat_id": int(chat_id), "text": out.text, **paid}
        keyboard = _keyboard(out)
        if keyboard is not None:
            payload["reply_markup"] = keyboard
        sent = await self.session.call_plain(
            self.bot, "sendMessage", payload,
            lambda: SendMessage(chat_id=int(chat_id), text=out.text, reply_markup=_markup(out)))
        ref = sent.get("message_id") if isinstance(sent, dict) else None
        return SendResult.sent(None if ref is None else str(ref))

    async def fetch_media(self, ref: MediaRef) -> bytes:
        file = await self.bot.get_file(ref.platform_id)
        if not file.file_path:  # Telegram gives no path for files over its 20 MB limit
            raise ValueError(f"file {ref.platform_id} cannot be downloaded")
        data = await self.bot.download_file(file.file_path)
        if data is None:
            raise ValueError(f"file {ref.platform_id} came back empty")
        return data.read()

