"""WeChat Official Account (service account): the only module that knows WeChat exists.

Receiving: WeChat posts each message and event to our callback URL, signed with the token
(and, in safe mode, AES-encrypted). wechatpy checks the signature, decrypts and parses; the
request is answered `success` at once and the update handled afterwards, because WeChat gives
up after 5 seconds and posts the same callback again (three times in all). Retries are
dropped by dispatch's processed-updates table: messages carry a MsgId, events are keyed by
sender, time and event.

Sending: the customer-service message API (message/custom/send) reaches a resident who wrote,
followed or tapped the menu within the last 48 hours; outside that window WeChat answers
45015 (and 45047 when too many went without an answer from them): a push of a kind with a
template (WECHAT_<KIND>_TEMPLATE_ID) goes as that template message instead, its fields filled
with the push's facts, and the outbox's message_ref says which way each went (`cs`, or
`tpl:<msgid>`); a push without one is marked unreachable for now. WeChat has no buttons: they
are shown as numbered lines, and a number typed back is the press (storage.choices). Every API
call a send makes (an upload, the message, the template after a refusal, the call repeated
with a new token) is counted against the send budget (model.API_CALL).

API calls are made with aiohttp against WECHAT_API_BASE, on the process's shared HTTP session:
wechatpy's client is synchronous (requests), which would block the event loop on every send.
The access token is kept in the database (kv), shared by every worker, refreshed five minutes
before it expires and at once when WeChat calls it invalid (40001/42001: refreshed once and the
call retried).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp import web
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.utils import check_signature

from bot.messaging.gcj02 import gcj02_to_wgs84
from bot.messaging.model import (
    API_CALL,
    PUSH_FACTS,
    Capabilities,
    Inbound,
    InboundHandler,
    Kind,
    Limits,
    MediaRef,
    Outbound,
    PushKind,
    SendResult,
    SendStatus,
    parse_command,
)
from bot.messaging.wechat_settings import WeChatSettings, field_type, template_fields
from storage import kv, outbox, people
from storage.choices import numbers_shown
from storage.kv import KeyValue

log = logging.getLogger(__name__)

PLATFORM = "wechat"
CALLBACK_BACKLOG = 2048
WORKERS = 32  # callbacks handled at once (different followers)
STOP_SECONDS = 10.0
CALLBACK_MAX_BYTES = 256 * 1024  # a callback is a few hundred bytes; encrypted, a little more
TEXT_LIMIT_BYTES = 2000  # customer-service text: WeChat cuts off past 2,048 bytes
MEDIA_MAX_BYTES = 20 * 1024 * 1024
TOKEN_MARGIN = 300.0  # seconds before expiry the access token is refreshed
UPLOAD_TTL = 2.5 * 86400  # temporary media live 3 days at WeChat
CS_QUOTA_RETRY = 600.0  # 45047 after part of a message went: the rest tried again later
# The custom menu: WeChat allows three top-level buttons, so volunteering and deliberation
# share the third (参与, "take part"). Each key is the command the button runs.
MENU: tuple[tuple[str, Any], ...] = (
    ("报事", "report"), ("通知", "notices"),
    ("参与", (("志愿", "volunteer"), ("议事", "polls"))))

# WeChat's error codes (https://developers.weixin.qq.com/doc/offiaccount/Getting_Started/
# Global_Return_Code.html) the adapter acts on.
SYSTEM_BUSY = -1
INVALID_TOKEN = 40001  # also after another process fetched a newer one too often
INVALID_OPENID = 40003
INVALID_MEDIA = 40007
# Media WeChat does not take: bad type, bad file type, too large, unknown media id.
MEDIA_REFUSED = {40004, 40005, 40006, INVALID_MEDIA}
BAD_TOKEN_FORMAT = 40014
EXPIRED_TOKEN = 42001
UNSUBSCRIBED = 43004
DAILY_QUOTA = 45009
OUT_OF_WINDOW = 45015
CS_QUOTA = 45047
_TOKEN_ERRORS = {INVALID_TOKEN, BAD_TOKEN_FORMAT, EXPIRED_TOKEN}

# AMR-NB frame payload sizes by frame type (RFC 4867, section 5.3); each frame is 20 ms.
_AMR_NB = (12, 13, 15, 17, 19, 20, 26, 31, 5, 0, 0, 0, 0, 0, 0, 0)
AMR_MAGIC = b"#!AMR\n"


def amr_seconds(data: bytes) -> int | None:
    """Whole seconds of an AMR-NB file (WeChat's voice format), or None when it is not one."""
    if not data.startswith(AMR_MAGIC):
        return None
    i, frames = len(AMR_MAGIC), 0
    while i < len(data):
        i += 1 + _AMR_NB[(data[i] >> 3) & 0x0F]
        frames += 1
    return max(1, round(frames * 0.02)) if frames else 0


class WeChatError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


class TokenError(WeChatError):
    """No access token: a wrong secret, or this server's IP not on the account's whitelist
    (40164). Nothing can be sent until the operator fixes it; messages wait, none is lost."""


@dataclass
class _Token:
    value: str
    expires_at: float  # epoch seconds


class _Recent:
    """A few recently fetched media, so a voice note measured on arrival is not downloaded
    twice."""

    def __init__(self, max_bytes: int = 32 * 1024 * 1024) -> None:
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._max = max_bytes

    def put(self, key: str, data: bytes) -> None:
        if key in self._items or len(data) > self._max:
            return
        self._items[key] = data
        self._size += len(data)
        while self._size > self._max:
            _, old = self._items.popitem(last=False)
            self._size -= len(old)

    def get(self, key: str) -> bytes | None:
        return self._items.get(key)


def _is_path(ref: str) -> bool:
    return "/" in ref or ref.startswith(".")


def split_text(text: str, limit: int = TEXT_LIMIT_BYTES) -> list[str]:
    """Text in pieces of at most `limit` UTF-8 bytes, cut at line ends where there are any."""
    pieces: list[str] = []
    current, size = "", 0
    for line in text.splitlines(keepends=True):
        for char_run in _runs(line, limit):
            n = len(char_run.encode())
            if size + n > limit and current:
                pieces.append(current)
                current, size = "", 0
            current += char_run
            size += n
    if current:
        pieces.append(current)
    return [p.rstrip("\n") for p in pieces if p.strip()]


def _runs(line: str, limit: int) -> list[str]:
    """A line as runs of at most `limit` bytes (a line longer than a message is cut)."""
    runs, run, size = [], "", 0
    for char in line:
        n = len(char.encode())
        if size + n > limit:
            runs.append(run)
            run, size = "", 0
        run += char
        size += n
    if run:
        runs.append(run)
    return runs


# How long a template field's value may be, by the field's type (WeChat's template rules:
# thing 20 characters, character_string 32 letters, digits and symbols, phrase 5 Chinese
# characters, name 10 ...); time and date are written as WeChat reads them.
FIELD_CHARS = {"thing": 20, "short_thing": 5, "character_string": 32, "phrase": 5,
               "number": 32, "letter": 32, "name": 10, "phone_number": 17, "car_number": 8,
               "amount": 11, "const": 20}
MISSING = "-"  # WeChat refuses an empty field

Template = tuple[str, tuple[tuple[str, str], ...]]  # id, ((key, fact), ...)


def template_value(key: str, value: str | None) -> str:
    """A fact written into a template field of this key's type, within its limits."""
    kind = field_type(key) or "thing"
    value = " ".join((value or "").split())  # one line: fields take no line breaks
    if kind in ("time", "date"):
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            day = f"{at.year}年{at.month}月{at.day}日"
            return day if kind == "date" else f"{day} {at.hour:02d}:{at.minute:02d}"
    if kind == "character_string":
        value = "".join(c for c in value if c.isascii() and c.isprintable()).replace(" ", "")
    elif kind == "number":
        value = "".join(c for c in value if c.isdigit() or c == ".")
    limit = FIELD_CHARS.get(kind, 20)
    if len(value) > limit:
        value = value[: limit - 1] + "…" if kind in ("thing", "const") else value[:limit]
    return value or MISSING


def render_text(out: Outbound) -> str:
    """The message's text with its buttons as numbered lines, numbered as storage.choices
    numbers them (which is what a typed number looks up)."""
    lines = [f"[{n}] {label}" for n, label in numbers_shown(out)]
    if not lines:
        return out.text
    return f"{out.text}\n\n" + "\n".join(lines) if out.text else "\n".join(lines)


class WeChatAdapter:
    platform = PLATFORM
    # No buttons and no edits: the deliverer numbers choices, handlers send new messages.
    capabilities = Capabilities(buttons=False, edit=False)
    chats = None  # one official account: every follower

    reuse_port = False  # several workers share the callback's port (set by the platform table)

    def __init__(self, app_id: str, app_secret: str, token: str, *,
                 aes_key: str | None = None, api_base: str = "https://api.weixin.qq.com",
                 host: str = "0.0.0.0", port: int = 8082, path: str = "/wechat",
                 max_age: float = 3600.0,
                 templates: Mapping[str, str | Template] | None = None,
                 template_url: str | None = None, per_second: float = 20.0,
                 per_chat_per_second: float = 2.0, gcj02: bool = True,
                 platform: str = PLATFORM) -> None:
        # The name identities carry (`wechat:openid`); another only where the tests' helpers
        # place people under their own name (tests/test_handlers_on_wechat.py).
        self.platform = platform
        self.app_id = app_id
        self._secret = app_secret
        self._token_secret = token
        self.crypto = WeChatCrypto(token, aes_key, app_id) if aes_key else None
        self.api_base = api_base.rstrip("/")
        self.host, self.port, self.path = host, port, path
        self.max_age = max_age
        # The template of each kind of push that has one: an id (the kind's default fields),
        # or an id and its (key, fact) fields.
        self.templates: dict[PushKind, Template] = {}
        for kind, template in (templates or {}).items():
            kind = PushKind(kind)
            if isinstance(template, str):
                template = (template, template_fields(kind, _DEFAULT_FIELDS[kind]))
            self.templates[kind] = template
        self.template_url = template_url
        self.gcj02 = gcj02
        self.limits = Limits(per_second=per_second, per_chat_per_second=per_chat_per_second)
        self.bound_port: int | None = None
        self.sessions: Any = None  # async_sessionmaker, from attach(): the token is kept there
        self._http: aiohttp.ClientSession | None = None
        self._own_http = False
        self._runner: Any = None
        self._on_inbound: InboundHandler | None = None
        # Callbacks are handled by a fixed set of workers, each follower always by the same one:
        # one person's messages in the order WeChat posted them (a voice note fetched on arrival
        # is not overtaken by the text sent after it), and a burst of callbacks does not become
        # a burst of handlers crowding out the answers to the next callbacks.
        self._queues: list[asyncio.Queue] = []
        self._workers: list[asyncio.Task] = []
        self._cached: _Token | None = None
        self._token_lock = asyncio.Lock()
        self._uploads: OrderedDict[tuple, tuple[str, float]] = OrderedDict()
        self._recent = _Recent()
        self.tokens_fetched = 0
        self.handled = 0  # callbacks handed to dispatch (for benchmarks)

    @classmethod
    def from_settings(cls, s: Any) -> WeChatAdapter:
        return cls(
            s.app_id, s.app_secret.get_secret_value(), s.token.get_secret_value(),
            aes_key=s.aes_key.get_secret_value() if s.aes_key else None, api_base=s.api_base,
            host=s.callback_host, port=s.callback_port, path=s.callback_path,
            max_age=s.callback_max_age_seconds, templates=s.templates(),
            template_url=s.template_url, per_second=s.per_second,
            per_chat_per_second=s.per_chat_per_second, gcj02=s.location_gcj02)

    def attach(self, *, sessions: Any = None, http: aiohttp.ClientSession | None = None) -> None:
        """From the composition root: the database (the shared access token, unsubscribes) and
        the process's HTTP session."""
        self.sessions = sessions
        if http is not None:
            self._http = http

    # -- life ---------------------------------------------------------------------------------
    async def start(self, on_inbound: InboundHandler) -> None:
        self._on_inbound = on_inbound
        if self._http is None:
            self._http = aiohttp.ClientSession()
            self._own_http = True
        app = web.Application(client_max_size=CALLBACK_MAX_BYTES)
        app.router.add_get(self.path, self._on_get)
        app.router.add_post(self.path, self._on_post)
        runner = self._runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        # A deep accept queue: a burst of callbacks (a notice read by thousands, who then all
        # write) beyond the default 128 waiting connections would wait out a SYN retry (1 s).
        await web.TCPSite(runner, self.host, self.port, backlog=CALLBACK_BACKLOG,
                          reuse_port=self.reuse_port or None).start()
        self.bound_port = runner.addresses[0][1]
        self._queues = [asyncio.Queue() for _ in range(WORKERS)]
        self._workers = [asyncio.create_task(self._work(q), name=f"wechat-{n}")
                         for n, q in enumerate(self._queues)]

    async def _work(self, queue: asyncio.Queue) -> None:
        while True:
            message = await queue.get()
            try:
                await self._handle(message)
            finally:
                queue.task_done()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._queues:  # what was answered "success" is handled before the end
            try:
                await asyncio.wait_for(asyncio.gather(*(q.join() for q in self._queues)),
                                       STOP_SECONDS)
            except TimeoutError:
                log.warning("WeChat callbacks still unhandled at stop")
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._queues, self._workers = [], []
        if self._own_http and self._http is not None:
            await self._http.close()
            self._http = None
            self._own_http = False
        self._on_inbound = None

    # -- callbacks ----------------------------------------------------------------------------
    def _signed(self, query: Any) -> bool:
        try:
            check_signature(self._token_secret, query.get("signature", ""),
                            query.get("timestamp", ""), query.get("nonce", ""))
            stamp = int(query.get("timestamp", ""))
        except (InvalidSignatureException, ValueError):
            return False
        return abs(time.time() - stamp) <= self.max_age

    async def _on_get(self, request):
        """The admin console's URL check: echo `echostr` when the signature is right."""
        if not self._signed(request.query):
            return web.Response(status=403, text="bad signature")
        return web.Response(text=request.query.get("echostr", ""))

    async def _on_post(self, request):
        query = request.query
        if not self._signed(query):
            return web.Response(status=403, text="bad signature")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text="too large")
        try:
            if query.get("encrypt_type") == "aes":
                if self.crypto is None:
                    return web.Response(status=400, text="safe mode is not configured")
                body = self.crypto.decrypt_message(body, query.get("msg_signature", ""),
                                                   query.get("timestamp", ""),
                                                   query.get("nonce", ""))
            message = parse_message(body)
        except (InvalidSignatureException, InvalidAppIdException):
            return web.Response(status=403, text="bad signature")
        except Exception:  # not XML, not a WeChat message, undecryptable: nothing to handle
            log.info("unreadable WeChat callback refused")
            return web.Response(status=400, text="not a WeChat message")
        if message is None or not getattr(message, "source", None):
            return web.Response(status=400, text="not a WeChat message")
        if not self._queues:
            return web.Response(status=503, text="stopping")
        self._queues[zlib.crc32(message.source.encode()) % len(self._queues)].put_nowait(message)
        # Answered at once: anything but "success" or an empty body within 5 s makes WeChat
        # retry, and then tell the resident the account is out of order.
        return web.Response(text="success")

    async def _handle(self, message: Any) -> None:
        try:
            if getattr(message, "type", None) == "event" and message.event == "unsubscribe":
                await self._unsubscribed(message.source)
                return
            inbound = await self.to_inbound(message)
            if inbound is not None and self._on_inbound is not None:
                self.handled += 1
                await self._on_inbound(inbound)
        except Exception:
            log.exception("WeChat callback from %s failed", getattr(message, "source", "?"))

    async def to_inbound(self, msg: Any) -> Inbound | None:
        """A parsed callback as an update; None for what the bot does not answer (location
        reports, menu links, job-finished events, unsubscribes)."""
        base: dict[str, Any] = dict(platform=self.platform, user_id=msg.source, chat_id=msg.source,
                                    at=msg.create_time)
        kind = msg.type
        if kind == "event":
            event = msg.event
            base["update_id"] = f"ev:{msg.source}:{msg.time}:{event}"[:64]
            if event in ("subscribe", "subscribe_scan"):
                args = str(getattr(msg, "scene_id", "") or "")[:64]
                return Inbound(kind=Kind.COMMAND, text="/start", command="start", args=args,
                               **base)
            if event == "click":
                cmd = parse_command("/" + (msg.key or ""))
                if cmd is None:
                    return None
                return Inbound(kind=Kind.COMMAND, text="/" + msg.key, command=cmd[0],
                               args=cmd[1], **base)
            return None  # location reports, scans by followers, view, template job results
        base["update_id"] = f"wx:{msg.id}"
        if kind == "text":
            text = msg.content or ""
            cmd = parse_command(text)
            if cmd:
                return Inbound(kind=Kind.COMMAND, text=text, command=cmd[0], args=cmd[1], **base)
            return Inbound(kind=Kind.TEXT, text=text, **base)
        if kind == "location":
            try:
                lat, lon = float(msg.location_x), float(msg.location_y)
            except (TypeError, ValueError):
                return Inbound(kind=Kind.TEXT, text="", **base)
            if self.gcj02:
                lat, lon = gcj02_to_wgs84(lat, lon)
            return Inbound(kind=Kind.LOCATION, latitude=lat, longitude=lon, **base)
        if kind == "image":
            return Inbound(kind=Kind.PHOTO, media=MediaRef(
                platform_id=msg.media_id, mime_type="image/jpeg"), **base)
        if kind == "voice":
            return Inbound(kind=Kind.VOICE, media=await self._voice_ref(msg), **base)
        # Videos, links, mini-program cards: an empty text, answered as unreadable.
        return Inbound(kind=Kind.TEXT, text="", **base)

    async def _voice_ref(self, msg: Any) -> MediaRef:
        """WeChat says nothing of a voice note's length: it is fetched now and measured (and
        kept a while, so the handler's fetch does not download it again)."""
        fmt = (msg.format or "amr").lower()
        ref = MediaRef(platform_id=msg.media_id, mime_type=f"audio/{fmt}")
        try:
            data = await self.fetch_media(ref)
        except (WeChatError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.info("voice %s not fetched: %s", msg.media_id, exc)
            return ref
        return MediaRef(platform_id=msg.media_id, mime_type=f"audio/{fmt}", size=len(data),
                        duration=amr_seconds(data), file_name=f"{msg.media_id}.{fmt}")

    async def _unsubscribed(self, openid: str) -> None:
        """Unfollowing is WeChat's blocking: nothing more can reach them (43004), so what
        waits for them is stopped now rather than tried and refused."""
        if self.sessions is None:
            return
        async with self.sessions() as session, session.begin():
            identity = await people.identity_for(session, self.platform, openid)
            if identity is not None:
                # The identity, and every message still waiting for it (no single one failed).
                await outbox.mark_unreachable(session, identity.id, msg_id=0)

    # -- the access token -------------------------------------------------------------------
    @property
    def _kv_key(self) -> str:
        return f"wechat_token:{self.app_id}"[:60]

    async def _token(self, stale: str | None = None) -> str:
        """A valid access token; `stale`, one WeChat just refused, is never handed out again."""
        now = time.time()
        cached = self._cached
        if cached and cached.value != stale and cached.expires_at - TOKEN_MARGIN > now:
            return cached.value
        async with self._token_lock:
            cached = self._cached
            if cached and cached.value != stale and cached.expires_at - TOKEN_MARGIN > time.time():
                return cached.value
            if self.sessions is None:
                self._cached = await self._fetch_token()
            else:
                self._cached = await self._shared_token(stale)
            return self._cached.value

    async def _shared_token(self, stale: str | None) -> _Token:
        """The token in the database, or a new one written there. The row is locked while a
        token is fetched, so workers refresh one at a time and the others take the new one
        (each fetch at WeChat ends the previous token's life within five minutes)."""
        async with self.sessions() as session, session.begin():
            await kv.get_or_set(session, self._kv_key, lambda: "{}")
        async with self.sessions() as session, session.begin():
            row = await session.get(KeyValue, self._kv_key, with_for_update=True,
                                    populate_existing=True)
            held = json.loads(row.value) if row is not None and row.value else {}
            if (held.get("token") and held["token"] != stale
                    and float(held.get("expires_at", 0)) - TOKEN_MARGIN > time.time()):
                return _Token(held["token"], float(held["expires_at"]))
            token = await self._fetch_token()
            await kv.put(session, self._kv_key, json.dumps(
                {"token": token.value, "expires_at": token.expires_at}))
            return token

    async def _fetch_token(self) -> _Token:
        assert self._http is not None, "adapter not started"
        async with self._http.get(f"{self.api_base}/cgi-bin/token", params={
                "grant_type": "client_credential", "appid": self.app_id,
                "secret": self._secret}, timeout=aiohttp.ClientTimeout(total=15)) as resp:
            body = await resp.json(content_type=None)
        if not isinstance(body, dict) or "access_token" not in body:
            body = body if isinstance(body, dict) else {}
            log.error("WeChat gave no access token: %s %s", body.get("errcode"),
                      body.get("errmsg"))
            raise TokenError(int(body.get("errcode", -1)), str(body.get("errmsg", "no token")))
        self.tokens_fetched += 1
        return _Token(str(body["access_token"]),
                      time.time() + float(body.get("expires_in", 7200)))

    # -- API calls ----------------------------------------------------------------------------
    async def _api(self, method: str, path: str, *, params: dict[str, str] | None = None,
                   body: Any = None, form: Callable[[], aiohttp.FormData] | None = None,
                   raw: bool = False) -> Any:
        """One call with the access token; refused as invalid or expired, the token is
        refreshed once and the call made again. JSON answers with an errcode raise WeChatError;
        `raw`: the bytes of a non-JSON answer (a media file)."""
        assert self._http is not None, "adapter not started"
        stale = None
        for attempt in range(2):
            token = await self._token(stale)
            query = {"access_token": token, **(params or {})}
            meter = API_CALL.get()  # a send's calls, each counted against the budget
            async with meter() if meter is not None else nullcontext(), self._http.request(
                    method, f"{self.api_base}{path}", params=query,
                    json=body if form is None else None,
                    data=form() if form is not None else None,
                    timeout=aiohttp.ClientTimeout(total=30)) as resp:
                if resp.status >= 500:
                    raise aiohttp.ClientResponseError(resp.request_info, resp.history,
                                                      status=resp.status)
                kind = resp.content_type
                if raw and kind not in ("application/json", "text/plain"):
                    if resp.content_length and resp.content_length > MEDIA_MAX_BYTES:
                        raise ValueError("media larger than 20 MB")
                    return await resp.content.read(MEDIA_MAX_BYTES + 1)
                answer = await resp.json(content_type=None)
            code = int(answer.get("errcode", 0)) if isinstance(answer, dict) else -1
            if code in _TOKEN_ERRORS and attempt == 0:
                log.info("WeChat refused the access token (%s); refreshing it", code)
                stale = token
                continue
            if code != 0:
                raise WeChatError(code, str(answer.get("errmsg", "")))
            return answer
        raise AssertionError("unreachable")

    async def _post(self, path: str, body: dict) -> dict:
        return await self._api("POST", path, body=body)

    # -- sending ------------------------------------------------------------------------------
    async def send(self, chat_id: str, out: Outbound) -> SendResult:
        try:
            return await self._send(chat_id, out)
        except WeChatError as exc:
            return self._result(exc)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return SendResult(SendStatus.RETRY, error=str(exc)[:200] or type(exc).__name__)

    @staticmethod
    def _result(exc: WeChatError) -> SendResult:
        error = str(exc)[:200]
        if isinstance(exc, TokenError):  # the whole sender waits a minute, then tries again
            return SendResult(SendStatus.RETRY, retry_after=60, error=error, flood=True)
        if exc.code in (UNSUBSCRIBED, INVALID_OPENID):
            return SendResult(SendStatus.UNREACHABLE, error=error)
        if exc.code == CS_QUOTA:
            return SendResult(SendStatus.RETRY, retry_after=CS_QUOTA_RETRY, error=error)
        if exc.code == DAILY_QUOTA:
            return SendResult(SendStatus.RETRY, retry_after=3600, error=error, flood=True)
        if exc.code == SYSTEM_BUSY:
            return SendResult.flood_wait(1.0)
        if exc.code in _TOKEN_ERRORS:  # refused twice: retried later, with a new token
            return SendResult(SendStatus.RETRY, retry_after=5, error=error)
        return SendResult(SendStatus.FAILED, error=error)

    async def _send(self, chat_id: str, out: Outbound) -> SendResult:
        text = render_text(out)
        sent_any = False
        try:
            if out.photo:
                sent_any = await self._attachment(chat_id, "image", out.photo)
            if out.voice:
                sent_any = await self._attachment(chat_id, "voice", out.voice) or sent_any
            # Documents cannot be sent by customer-service message: their caption goes.
            for piece in split_text(text):
                await self._custom(chat_id, "text", {"content": piece})
                sent_any = True
        except WeChatError as exc:
            if exc.code in (OUT_OF_WINDOW, CS_QUOTA) and not sent_any:
                return await self._template(chat_id, out, exc)
            raise
        return SendResult.sent("cs" if sent_any else None)

    async def _attachment(self, chat_id: str, kind: str, ref: str) -> bool:
        """A photo or voice note by customer-service message; False when WeChat cannot take
        it: a file gone from disk, a voice note in a format WeChat does not play, or another
        platform's file id (a notice's photo sent by staff on Telegram). The text still goes."""
        try:
            media_id = await (self._media_id(ref, "image") if kind == "image"
                              else self._voice_media(ref))
            if media_id is None:
                return False
            await self._custom(chat_id, kind, {"media_id": media_id})
        except WeChatError as exc:
            if exc.code not in MEDIA_REFUSED:
                raise
            log.warning("%s %s not sent to WeChat: %s", kind, ref, exc)
            return False
        return True

    async def _custom(self, chat_id: str, msgtype: str, content: dict) -> None:
        await self._post("/cgi-bin/message/custom/send",
                         {"touser": chat_id, "msgtype": msgtype, msgtype: content})

    async def _template(self, chat_id: str, out: Outbound, why: WeChatError) -> SendResult:
        """Refused by customer-service message (45015 out of the window, 45047 too many
        without an answer): the template of the push's kind, its fields filled with the push's
        facts. Without one, the message cannot reach them now: unreachable for now, which
        marks this message only (they are reachable again once they write)."""
        kind = out.push
        template = self.templates.get(PushKind(kind)) if kind in PUSH_FACTS else None
        if template is None:
            what = f"for {kind} pushes" if kind else "for a message of no push kind"
            return SendResult(SendStatus.UNREACHABLE, for_now=True,
                              error=f"{why}; no WeChat template {what}"[:200])
        template_id, fields = template
        data = {key: {"value": template_value(key, out.facts.get(fact))}
                for key, fact in fields}
        body: dict[str, Any] = {"touser": chat_id, "template_id": template_id, "data": data}
        if self.template_url:
            body["url"] = self.template_url
        answer = await self._post("/cgi-bin/message/template/send", body)
        return SendResult.sent(f"tpl:{answer.get('msgid', '')}"[:64])

    async def _media_id(self, ref: str, kind: str) -> str:
        """A file on disk uploaded as temporary media (once per file and three days), or a
        WeChat media id already."""
        if not _is_path(ref):
            return ref
        try:
            st = await asyncio.to_thread(os.stat, ref)
        except OSError as exc:
            raise WeChatError(INVALID_MEDIA, f"no such file {ref}") from exc
        key = (ref, kind, st.st_size, st.st_mtime_ns)
        known = self._uploads.get(key)
        if known is not None and known[1] > time.time():
            return known[0]
        data = await asyncio.to_thread(_read, ref)
        name = os.path.basename(ref)

        def form() -> aiohttp.FormData:
            f = aiohttp.FormData()
            f.add_field("media", data, filename=name)
            return f

        answer = await self._api("POST", "/cgi-bin/media/upload", params={"type": kind},
                                 form=form)
        media_id = str(answer["media_id"])
        self._uploads[key] = (media_id, time.time() + UPLOAD_TTL)
        while len(self._uploads) > 1000:
            self._uploads.popitem(last=False)
        return media_id

    async def _voice_media(self, ref: str) -> str | None:
        """WeChat plays AMR and MP3 voice messages only; a voice note in another format (one
        recorded on Telegram, say) is left out and the text goes alone."""
        if not _is_path(ref):
            return ref
        try:
            head = await asyncio.to_thread(_head, ref)
        except OSError:
            return None
        if not (head.startswith(AMR_MAGIC) or head.startswith(b"ID3")
                or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2")):
            return None
        return await self._media_id(ref, "voice")

    async def fetch_media(self, ref: MediaRef) -> bytes:
        known = self._recent.get(ref.platform_id)
        if known is not None:
            return known
        data = await self._api("GET", "/cgi-bin/media/get", params={"media_id": ref.platform_id},
                               raw=True)
        if not isinstance(data, bytes):
            raise ValueError(f"media {ref.platform_id} is not a file")
        if len(data) > MEDIA_MAX_BYTES:
            raise ValueError(f"media {ref.platform_id} is larger than 20 MB")
        self._recent.put(ref.platform_id, data)
        return data

    # -- the custom menu ------------------------------------------------------------------------
    async def create_menu(self, entries: tuple[tuple[str, Any], ...] = MENU) -> None:
        """The account's custom menu: a CLICK button per command (its key the command run), or
        a group of them under one name."""
        def button(name: str, what: Any) -> dict[str, Any]:
            if isinstance(what, str):
                return {"type": "click", "name": name, "key": what}
            return {"name": name, "sub_button": [button(n, w) for n, w in what]}

        await self._post("/cgi-bin/menu/create",
                         {"button": [button(name, what) for name, what in entries]})


_DEFAULT_FIELDS = {kind: WeChatSettings.model_fields[f"{kind.value}_template_fields"].default
                   for kind in PushKind}


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _head(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(16)


async def run_with(adapter: WeChatAdapter, work: Callable[[], Awaitable[Any]]) -> Any:
    """Run `work` with the adapter's HTTP session open (the CLI's `wechat menu`), no callback
    server started."""
    own = adapter._http is None
    if own:
        adapter._http = aiohttp.ClientSession()
    try:
        return await work()
    finally:
        if own and adapter._http is not None:
            await adapter._http.close()
            adapter._http = None

