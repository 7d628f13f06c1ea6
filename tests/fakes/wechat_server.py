"""A fake WeChat Official Account API server, and WeChat's side of the callbacks.

The API half answers what the adapter calls, with WeChat's documented JSON and error codes
(https://developers.weixin.qq.com/doc/offiaccount/):

* ``GET /cgi-bin/token``: access tokens with an expiry (``token_ttl``); ``revoke_tokens()``
  makes the tokens out there invalid (40001), as a token fetched elsewhere or a secret reset
  does; an expired one answers 42001.
* ``POST /cgi-bin/message/custom/send``: customer-service messages, recorded in ``sent``;
  43004 for a follower who unfollowed, 45015 for one silent for more than 48 hours
  (``out_of_window``), 45047 when ``cs_quota`` messages went to one follower since they last
  wrote, 45009 when the ``daily_quota`` is used up, -1 "system busy" above ``rate`` calls a second
  (customer-service, template and upload calls counted together).
* ``POST /cgi-bin/message/template/send``: template messages (known ``templates`` only, 40037
  otherwise), recorded in ``sent`` with kind ``template``; a template given with its field keys
  has each value checked by its type as WeChat does (thing at most 20 characters on one line,
  character_string 32 letters, digits and symbols, phrase 5 Chinese characters, time and date
  as WeChat writes them; 47003 otherwise, and for a field missing). 43004 for a follower who
  unfollowed; a silent one still gets it (templates are what reach them).
* Every call with an access token is counted, with its time: ``busiest_second()`` is the most
  calls the server saw in any one second (the send budget must hold here).
* ``POST /cgi-bin/media/upload`` and ``GET /cgi-bin/media/get``: temporary media by MediaId.
* ``POST /cgi-bin/menu/create``: the custom menu, kept in ``menu``.

The callback half plays WeChat posting to the bot: ``say``, ``send_location``, ``send_image``,
``send_voice``, ``follow``, ``unfollow`` and ``click`` build the message XML (xmltodict, as
wechatpy reads it), sign the query with the token and, in safe mode, encrypt the body with
wechatpy's WeChatCrypto, then POST it to ``callback_url`` exactly as WeChat does; each opens
the follower's 48-hour window, as their action does at WeChat.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import xmltodict
from aiohttp import web
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner

from bot.messaging.gcj02 import wgs84_to_gcj02

WINDOW = 48 * 3600.0
# The account's templates, one per kind of push, with the fields the adapter's defaults fill
# (bot/messaging/wechat_settings.py); TEMPLATE_IDS is what the adapter is given.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "TPL_NOTICE": ("thing1", "thing2", "time3"),
    "TPL_REPORT": ("character_string1", "thing2", "thing3", "time4"),
    "TPL_REMINDER": ("thing1", "time2"),
    "TPL_POLL": ("thing1", "time2"),
}
TEMPLATE_IDS = {"notice": "TPL_NOTICE", "report_status": "TPL_REPORT",
                "reminder": "TPL_REMINDER", "poll": "TPL_POLL"}
ACCOUNT = "gh_fake0account"


def signature(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return signer.signature


def amr_bytes(seconds: float) -> bytes:
    """An AMR-NB file of this length: the header, then 12.2 kbit/s frames of 20 ms."""
    frames = int(seconds * 50)
    return b"#!AMR\n" + (b"\x3c" + b"\x00" * 31) * frames


_TIME = re.compile(r"^\d{4}年\d{1,2}月\d{1,2}日( \d{1,2}:\d{2}(:\d{2})?)?$|^\d{1,2}:\d{2}$")
_DATE = re.compile(r"^\d{4}年\d{1,2}月\d{1,2}日$|^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}$")


def _valid(key: str, value: str) -> bool:
    """A template field's value as WeChat's rule for its type (the key's prefix) takes it."""
    kind = re.sub(r"\d+$", "", key)
    if not value or "\n" in value:
        return False
    if kind == "thing":
        return len(value) <= 20
    if kind == "character_string":
        return len(value) <= 32 and value.isascii() and " " not in value
    if kind == "phrase":
        return len(value) <= 5 and all("\u4e00" <= c <= "\u9fff" for c in value)
    if kind == "time":
        return bool(_TIME.match(value))
    if kind == "date":
        return bool(_DATE.match(value))
    if kind == "number":
        return len(value) <= 32 and value.replace(".", "", 1).isdigit()
    return len(value) <= 20


@dataclass
class Follower:
    openid: str
    subscribed: bool = True
    last_active: float = field(default_factory=time.time)
    since_active: int = 0  # customer-service messages since they last did something


class FakeWeChat:
    def __init__(self, *, app_id: str = "wxfake00000000001", app_secret: str = "s3cret",
                 token: str = "callback-token", aes_key: str | None = None,
                 token_ttl: float = 7200.0,
                 templates: tuple[str, ...] | dict[str, tuple[str, ...]] = TEMPLATES,
                 rate: float | None = None, cs_quota: int | None = None,
                 daily_quota: int | None = None, auto_follow: bool = False) -> None:
        self.app_id, self.app_secret, self.token = app_id, app_secret, token
        self.aes_key = aes_key
        self.crypto = WeChatCrypto(token, aes_key, app_id) if aes_key else None
        self.token_ttl = token_ttl
        # Template id -> its field keys (None: any fields, unchecked).
        self.templates: dict[str, tuple[str, ...] | None] = (
            dict(templates) if isinstance(templates, dict) else dict.fromkeys(templates))
        self.rate = rate
        self.cs_quota = cs_quota
        self.daily_quota = daily_quota
        # Everyone is a follower who just wrote (residents the tests put in the database
        # directly, who never posted a callback), instead of 40003 for an unknown openid.
        self.auto_follow = auto_follow
        self.followers: dict[str, Follower] = {}
        self.tokens: dict[str, float] = {}  # token -> expiry
        self.tokens_issued = 0
        self.token_refusals = 0
        self.sent: list[dict[str, Any]] = []
        self.refused: list[tuple[int, dict[str, Any]]] = []
        self.media: dict[str, tuple[bytes, str]] = {}
        self.media_delay = 0.0  # seconds media/get takes (a slow download)
        self.menu: list[dict[str, Any]] | None = None
        self.calls = 0
        self.call_times: list[float] = []  # monotonic arrival of every call with a token
        self.callback_url: str | None = None
        self.callback_times: list[float] = []
        self._stamps: deque[float] = deque()
        self._ids = itertools.count(10_000_000_001)
        self._media_ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self.port: int | None = None

    # -- life ---------------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(client_max_size=30 * 1024 * 1024)
        app.router.add_get("/cgi-bin/token", self._token)
        app.router.add_post("/cgi-bin/message/custom/send", self._custom)
        app.router.add_post("/cgi-bin/message/template/send", self._template)
        app.router.add_post("/cgi-bin/media/upload", self._upload)
        app.router.add_get("/cgi-bin/media/get", self._media_get)
        app.router.add_post("/cgi-bin/menu/create", self._menu)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._http = aiohttp.ClientSession()

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeWeChat:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- the test's levers --------------------------------------------------------------------
    def follower(self, openid: str) -> Follower:
        if openid not in self.followers:
            self.followers[openid] = Follower(openid)
        return self.followers[openid]

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    def out_of_window(self, openid: str) -> None:
        self.follower(openid).last_active = time.time() - WINDOW - 60

    def add_media(self, data: bytes, content_type: str = "image/jpeg") -> str:
        media_id = f"MEDIA{next(self._media_ids):06d}" + secrets.token_hex(8)
        self.media[media_id] = (data, content_type)
        return media_id

    # -- API --------------------------------------------------------------------------------
    @staticmethod
    def _error(code: int, message: str) -> web.Response:
        return web.json_response({"errcode": code, "errmsg": message})

    def busiest_second(self) -> int:
        """The most calls that arrived within any one second."""
        times, most, first = self.call_times, 0, 0
        for last, at in enumerate(times):
            while at - times[first] >= 1.0:
                first += 1
            most = max(most, last - first + 1)
        return most

    def _check_token(self, request: web.Request) -> web.Response | None:
        self.calls += 1
        self.call_times.append(time.monotonic())
        token = request.query.get("access_token")
        if not token:
            return self._error(41001, "access_token missing")
        expiry = self.tokens.get(token)
        if expiry is None:
            self.token_refusals += 1
            return self._error(40001, "invalid credential, access_token is invalid or not latest")
        if expiry < time.time():
            self.token_refusals += 1
            return self._error(42001, "access_token expired")
        return None

    async def _token(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("grant_type") != "client_credential":
            return self._error(40002, "invalid grant_type")
        if q.get("appid") != self.app_id:
            return self._error(40013, "invalid appid")
        if q.get("secret") != self.app_secret:
            return self._error(40125, "invalid appsecret")
        token = "ACCESS_" + secrets.token_hex(16)
        self.tokens[token] = time.time() + self.token_ttl
        self.tokens_issued += 1
        return web.json_response({"access_token": token, "expires_in": int(self.token_ttl)})

    def _user(self, openid: str) -> Follower | None:
        if self.auto_follow and openid and openid not in self.followers:
            return self.follower(openid)
        return self.followers.get(openid)

    def _over_rate(self) -> bool:
        if self.rate is None:
            return False
        now = time.monotonic()
        while self._stamps and self._stamps[0] <= now - 1.0:
            self._stamps.popleft()
        if len(self._stamps) >= self.rate:
            return True
        self._stamps.append(now)
        return False

    def _record(self, entry: dict[str, Any]) -> None:
        entry["at"] = time.time()
        self.sent.append(entry)
        self._changed.set()

    def _refuse(self, code: int, message: str, body: dict[str, Any]) -> web.Response:
        self.refused.append((code, body))
        self._changed.set()
        return self._error(code, message)

    async def _custom(self, request: web.Request) -> web.Response:
        refused = self._check_token(request)
        if refused is not None:
            return refused
        body = await request.json()
        if self._over_rate():
            return self._refuse(-1, "system error", body)
        if self.daily_quota is not None and self.daily_quota <= 0:
            return self._refuse(45009, "reach max api daily quota limit", body)
        user = self._user(body.get("touser", ""))
        if user is None:
            return self._refuse(40003, "invalid openid", body)
        if not user.subscribed:
            return self._refuse(43004, "require subscribe", body)
        if time.time() - user.last_active > WINDOW:
            return self._refuse(45015, "response out of time limit or subscription is "
                                       "canceled", body)
        if self.cs_quota is not None and user.since_active >= self.cs_quota:
            return self._refuse(45047, "out of response count limit", body)
        kind = body.get("msgtype")
        if kind not in ("text", "image", "voice"):
            return self._refuse(40008, "invalid message type", body)
        content = body.get(kind) or {}
        if kind == "text" and not content.get("content"):
            return self._refuse(44003, "empty news data", body)
        if kind == "text" and len(content["content"].encode()) > 2048:
            return self._refuse(45002, "content size out of limit", body)
        if kind in ("image", "voice") and content.get("media_id") not in self.media:
            return self._refuse(40007, "invalid media_id", body)
        if self.daily_quota is not None:
            self.daily_quota -= 1
        user.since_active += 1
        self._record({"kind": "custom", "touser": user.openid, "msgtype": kind,
                      "text": content.get("content", ""), "media_id": content.get("media_id")})
        return self._error(0, "ok")

    async def _template(self, request: web.Request) -> web.Response:
        refused = self._check_token(request)
        if refused is not None:
            return refused
        body = await request.json()
        if self._over_rate():
            return self._refuse(-1, "system error", body)
        if body.get("template_id") not in self.templates:
            return self._refuse(40037, "invalid template_id", body)
        data = body.get("data") or {}
        for key in self.templates[body["template_id"]] or ():
            value = (data.get(key) or {}).get("value")
            if not isinstance(value, str) or not _valid(key, value):
                return self._refuse(47003, f"argument invalid! data.{key}.value invalid", body)
        user = self._user(body.get("touser", ""))
        if user is None:
            return self._refuse(40003, "invalid openid", body)
        if not user.subscribed:
            return self._refuse(43004, "require subscribe", body)
        msgid = next(self._ids)
        self._record({"kind": "template", "touser": user.openid, "msgid": msgid,
                      "template_id": body["template_id"], "data": data, "url": body.get("url"),
                      "text": " ".join(str(v.get("value", "")) for v in data.values())})
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": msgid})

    async def _upload(self, request: web.Request) -> web.Response:
        refused = self._check_token(request)
        if refused is not None:
            return refused
        kind = request.query.get("type")
        if self._over_rate():
            return self._refuse(-1, "system error", {"upload": kind})
        if kind not in ("image", "voice", "video", "thumb"):
            return self._error(40004, "invalid media type")
        form = await request.post()
        media = form.get("media")
        if not isinstance(media, web.FileField):
            return self._error(41005, "media data missing")
        data = media.file.read()
        media_id = self.add_media(data, media.content_type or "application/octet-stream")
        return web.json_response({"type": kind, "media_id": media_id,
                                  "created_at": int(time.time())})

    async def _media_get(self, request: web.Request) -> web.Response:
        refused = self._check_token(request)
        if refused is not None:
            return refused
        if self.media_delay:
            await asyncio.sleep(self.media_delay)
        found = self.media.get(request.query.get("media_id", ""))
        if found is None:
            return self._error(40007, "invalid media_id")
        data, content_type = found
        return web.Response(body=data, content_type=content_type, headers={
            "Content-disposition": 'attachment; filename="media"'})

    async def _menu(self, request: web.Request) -> web.Response:
        refused = self._check_token(request)
        if refused is not None:
            return refused
        body = await request.json()
        buttons = body.get("button")
        # WeChat's rules: 1-3 top-level buttons, each a CLICK button or 1-5 sub-buttons.
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            return self._error(40016, "invalid button size")
        for button in buttons:
            subs = button.get("sub_button")
            if subs is not None and not (isinstance(subs, list) and 1 <= len(subs) <= 5):
                return self._error(40017, "invalid sub button size")
            for b in subs or [button]:
                if not b.get("name") or b.get("type") != "click" or not b.get("key"):
                    return self._error(40018, "invalid button")
        self.menu = buttons
        return self._error(0, "ok")

    # -- waiting for the bot ------------------------------------------------------------------
    async def wait_for(self, pred: Callable[[dict[str, Any]], bool], *, since: int = 0,
                       timeout: float = 10.0,  # noqa: ASYNC109 - part of the test API
                       ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for entry in self.sent[since:]:
                if pred(entry):
                    return entry
            left = deadline - time.monotonic()
            if left <= 0:
                seen = [(e["touser"], e["kind"], e["text"][:80]) for e in self.sent[since:]]
                raise AssertionError(f"nothing matched within {timeout}s; sent: {seen}; "
                                     f"refused: {[c for c, _ in self.refused]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
            except TimeoutError:
                pass

    async def wait_for_text(self, openid: str, fragment: str, *, since: int = 0,
                            timeout: float = 10.0,  # noqa: ASYNC109 - part of the test API
                            ) -> dict[str, Any]:
        return await self.wait_for(
            lambda e: e["touser"] == openid and fragment in e["text"], since=since,
            timeout=timeout)

    def texts_to(self, openid: str, since: int = 0) -> list[str]:
        return [e["text"] for e in self.sent[since:] if e["touser"] == openid]

    # -- callbacks, as WeChat posts them --------------------------------------------------------
    def _xml(self, openid: str, msgtype: str, fields: dict[str, Any], *,
             msg_id: int | None = None, at: int | None = None) -> tuple[str, int | None]:
        msg: dict[str, Any] = {"ToUserName": ACCOUNT, "FromUserName": openid,
                               "CreateTime": str(at or int(time.time())), "MsgType": msgtype}
        msg.update(fields)
        if msgtype != "event":
            msg_id = msg_id or next(self._ids)
            msg["MsgId"] = str(msg_id)
        return xmltodict.unparse({"xml": msg}, full_document=False), msg_id

    def signed_query(self, *, timestamp: str | None = None, nonce: str | None = None,
                     bad: bool = False) -> dict[str, str]:
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or secrets.token_hex(5)
        sig = signature(self.token, timestamp, nonce)
        if bad:
            sig = signature("not-the-token", timestamp, nonce)
        return {"signature": sig, "timestamp": timestamp, "nonce": nonce}

    def envelope(self, xml: str, *, encrypt: bool | None = None, bad: bool = False,
                 openid: str | None = None) -> tuple[dict[str, str], str]:
        """The query and body WeChat posts for this message XML: signed, and in safe mode the
        body encrypted (wechatpy's WeChatCrypto) with msg_signature in the query."""
        query = self.signed_query(bad=bad)
        if openid:
            query["openid"] = openid
        if encrypt if encrypt is not None else self.crypto is not None:
            assert self.crypto is not None, "safe mode needs an aes_key"
            sealed = xmltodict.parse(self.crypto.encrypt_message(
                xml, query["nonce"], query["timestamp"]))["xml"]
            query["encrypt_type"] = "aes"
            query["msg_signature"] = sealed["MsgSignature"] if not bad else "0" * 40
            xml = xmltodict.unparse({"xml": {"ToUserName": ACCOUNT,
                                             "Encrypt": sealed["Encrypt"]}},
                                    full_document=False)
        return query, xml

    async def post_xml(self, xml: str, *, openid: str | None = None,
                       encrypt: bool | None = None, bad: bool = False) -> tuple[int, str]:
        assert self._http is not None and self.callback_url, "start() and set callback_url"
        query, body = self.envelope(xml, encrypt=encrypt, bad=bad, openid=openid)
        began = time.monotonic()
        async with self._http.post(self.callback_url, params=query, data=body.encode(),
                                   headers={"Content-Type": "text/xml"}) as resp:
            text = await resp.text()
        self.callback_times.append(time.monotonic() - began)
        return resp.status, text

    async def _act(self, openid: str, msgtype: str, fields: dict[str, Any], *,
                   msg_id: int | None = None, times: int = 1, **kw) -> tuple[int, str]:
        user = self.follower(openid)
        user.last_active = time.time()
        user.since_active = 0
        xml, _ = self._xml(openid, msgtype, fields, msg_id=msg_id, at=kw.pop("at", None))
        answer = (0, "")
        for _ in range(times):  # WeChat's retries post the very same message again
            answer = await self.post_xml(xml, openid=openid, **kw)
        return answer

    async def say(self, openid: str, text: str, **kw) -> tuple[int, str]:
        return await self._act(openid, "text", {"Content": text}, **kw)

    async def send_location(self, openid: str, latitude: float, longitude: float,
                            label: str = "", **kw) -> tuple[int, str]:
        """A location message: WeChat reports GCJ-02 coordinates, so a WGS-84 point is
        shifted as a Chinese phone's map would shift it."""
        lat, lon = wgs84_to_gcj02(latitude, longitude)
        return await self._act(openid, "location", {
            "Location_X": f"{lat:.6f}", "Location_Y": f"{lon:.6f}", "Scale": "15",
            "Label": label}, **kw)

    async def send_image(self, openid: str, data: bytes, **kw) -> tuple[int, str]:
        media_id = self.add_media(data, "image/jpeg")
        return await self._act(openid, "image", {
            "PicUrl": f"{self.base_url}/pic/{media_id}", "MediaId": media_id}, **kw)

    async def send_voice(self, openid: str, data: bytes, fmt: str = "amr",
                         **kw) -> tuple[int, str]:
        media_id = self.add_media(data, "audio/amr")
        return await self._act(openid, "voice", {"MediaId": media_id, "Format": fmt}, **kw)

    async def follow(self, openid: str, **kw) -> tuple[int, str]:
        self.follower(openid).subscribed = True
        return await self._act(openid, "event", {"Event": "subscribe", "EventKey": ""}, **kw)

    async def unfollow(self, openid: str, **kw) -> tuple[int, str]:
        self.follower(openid).subscribed = False
        xml, _ = self._xml(openid, "event", {"Event": "unsubscribe", "EventKey": ""})
        return await self.post_xml(xml, openid=openid, **kw)

    async def click(self, openid: str, key: str, **kw) -> tuple[int, str]:
        return await self._act(openid, "event", {"Event": "CLICK", "EventKey": key}, **kw)

    async def location_event(self, openid: str, latitude: float, longitude: float,
                             **kw) -> tuple[int, str]:
        xml, _ = self._xml(openid, "event", {"Event": "LOCATION", "Latitude": str(latitude),
                                             "Longitude": str(longitude),
                                             "Precision": "30.0"})
        return await self.post_xml(xml, openid=openid, **kw)
