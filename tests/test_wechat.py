"""WeChat end to end: the real adapter's callback server, with WeChat's side played by the fake
(signed, and in safe mode AES-encrypted, callback XML) and its API answered by the fake server
on loopback, running the same handlers as every other platform, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from bot.app import build_app
from bot.messaging.model import Kind, Outbound, SendStatus
from bot.messaging.wechat import WeChatAdapter, amr_seconds, split_text
from storage import kv, notices, outbox, roles_service
from storage.outbox import OutboxMessage
from storage.people import Identity
from tests.conftest import DEMO, make_settings
from tests.fakes.wechat_server import TEMPLATE_IDS, FakeWeChat, amr_bytes
from tests.notice_support import add_resident, pump
from tests.report_helpers import jpeg_with_gps

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
ROOT = Path(__file__).resolve().parent.parent
ANN, BOB, CREW = ("o" + name.ljust(27, "0") for name in ("ann", "bob", "crew"))


def _adapter(fake: FakeWeChat, **kw) -> WeChatAdapter:
    return WeChatAdapter(fake.app_id, fake.app_secret, fake.token, aes_key=fake.aes_key,
                         api_base=fake.base_url, host="127.0.0.1", port=0,
                         templates=kw.pop("templates", TEMPLATE_IDS), **kw)


async def _start(url: str, tmp_path: Path, fake: FakeWeChat, *, deliver: bool = True, **kw):
    adapter = _adapter(fake, **kw)
    app = await build_app(make_settings(url, tmp_path, flood_burst=10_000),
                          {"wechat": adapter}, territory=DEMO)
    await app.start(deliver=deliver, schedule=False)
    fake.callback_url = f"http://127.0.0.1:{adapter.bound_port}/wechat"
    return app, adapter


@pytest.fixture
async def fake():
    async with FakeWeChat() as server:
        yield server


@pytest.fixture
async def safe_fake():
    async with FakeWeChat(aes_key=AES_KEY) as server:
        yield server


async def _quiet(fake: FakeWeChat, seconds: float = 0.6) -> None:
    """Wait until the bot has said nothing more for a while."""
    count = -1
    while count != len(fake.sent):
        count = len(fake.sent)
        await asyncio.sleep(seconds)


# -- the callback's rules ----------------------------------------------------------------------

async def test_url_check_echoes_echostr_and_a_wrong_signature_is_refused(fake):
    got: list = []
    adapter = _adapter(fake)

    async def collect(inbound):
        got.append(inbound)

    await adapter.start(collect)
    try:
        url = f"http://127.0.0.1:{adapter.bound_port}/wechat"
        async with aiohttp.ClientSession() as http:
            async with http.get(url, params={**fake.signed_query(), "echostr": "e-123"}) as r:
                assert (r.status, await r.text()) == (200, "e-123")
            async with http.get(url, params={**fake.signed_query(bad=True),
                                             "echostr": "e-123"}) as r:
                assert r.status == 403 and "e-123" not in await r.text()
            old = str(int(time.time()) - 2 * 3600)  # a signed request replayed hours later
            async with http.get(url, params={**fake.signed_query(timestamp=old),
                                             "echostr": "e-1"}) as r:
                assert r.status == 403
        fake.callback_url = url
        xml, _ = fake._xml(ANN, "text", {"Content": "你好"})
        assert (await fake.post_xml(xml, bad=True))[0] == 403
        assert (await fake.post_xml("<xml><oops", openid=ANN))[0] == 400
        assert await fake.post_xml(xml) == (200, "success")
        await asyncio.sleep(0.2)
        assert [(i.kind, i.text) for i in got] == [(Kind.TEXT, "你好")]
    finally:
        await adapter.stop()


async def test_one_followers_messages_are_handled_in_the_order_posted(fake):
    """A voice note is fetched (and measured) before it is handled; the text sent right after
    it waits for it, while another follower's message does not."""
    got: list = []
    adapter = _adapter(fake)

    async def collect(inbound):
        got.append((inbound.user_id, inbound.kind))

    await adapter.start(collect)
    try:
        fake.callback_url = f"http://127.0.0.1:{adapter.bound_port}/wechat"
        fake.media_delay = 0.5
        await fake.send_voice(ANN, amr_bytes(3))
        await fake.say(ANN, "这是语音的说明")
        await fake.say(BOB, "你好")
        for _ in range(100):
            if len(got) == 3:
                break
            await asyncio.sleep(0.05)
        assert got.index((ANN, Kind.VOICE)) < got.index((ANN, Kind.TEXT))
        assert got[0] == (BOB, Kind.TEXT)  # not held up by Ann's download
    finally:
        await adapter.stop()


async def test_safe_mode_is_decrypted_and_a_wrong_msg_signature_refused(safe_fake, tmp_path):
    fake = safe_fake
    app, _ = await _start(f"sqlite+aiosqlite:///{tmp_path}/bot.sqlite3", tmp_path, fake)
    try:
        xml, _ = fake._xml(ANN, "text", {"Content": "/start"})
        query, body = fake.envelope(xml)
        assert query["encrypt_type"] == "aes" and "/start" not in body  # sealed on the wire
        assert (await fake.post_xml(xml, encrypt=True, bad=True))[0] == 403
        assert await fake.follow(ANN) == (200, "success")
        greeting = await fake.wait_for_text(ANN, "请选择语言")
        assert greeting["text"].endswith("[1] 中文\n[2] English")
        assert await fake.say(ANN, "2") == (200, "success")
        await fake.wait_for_text(ANN, "Language set to English")
    finally:
        await app.stop()


async def test_a_retried_callback_is_handled_once(db_url, tmp_path, fake):
    app, adapter = await _start(db_url, tmp_path, fake)
    try:
        await fake.follow(ANN)
        await fake.wait_for_text(ANN, "请选择语言")
        await _quiet(fake)
        mark = len(fake.sent)
        # No answer within 5 s and WeChat posts the same message again, three times in all;
        # here all three arrive at once.
        answers = await asyncio.gather(*(fake.post_xml(
            fake._xml(ANN, "text", {"Content": "/profile"}, msg_id=424242)[0], openid=ANN)
            for _ in range(3)))
        assert answers == [(200, "success")] * 3
        await fake.wait_for_text(ANN, "我的资料", since=mark)
        await _quiet(fake)
        assert sum("我的资料" in t for t in fake.texts_to(ANN, mark)) == 1
        # And the same message posted again later (WeChat's second retry) changes nothing.
        await fake.say(ANN, "/profile", msg_id=424242, times=2)
        await _quiet(fake)
        assert sum("我的资料" in t for t in fake.texts_to(ANN, mark)) == 1
    finally:
        await app.stop()


async def test_callbacks_are_answered_at_once_while_handling_is_slow(tmp_path, fake):
    """The answer never waits for the handler: 50 followers at once, each answered well
    inside WeChat's 5 seconds although their greetings are still being sent."""
    app, _ = await _start(f"sqlite+aiosqlite:///{tmp_path}/bot.sqlite3", tmp_path, fake)
    try:
        users = [f"oload{n:023d}" for n in range(50)]
        answers = await asyncio.gather(*(fake.follow(u) for u in users))
        assert all(a == (200, "success") for a in answers)
        assert max(fake.callback_times) < 2.0
        for u in users:
            await fake.wait_for_text(u, "请选择语言", timeout=30)
    finally:
        await app.stop()


# -- a resident's whole story --------------------------------------------------------------------

async def test_resident_follows_onboards_and_reports_with_location_photo_and_voice(
        db_url, tmp_path, fake):
    app, _ = await _start(db_url, tmp_path, fake)
    try:
        async with app.sessions() as s, s.begin():
            await roles_service.change_role(s, f"wechat:{CREW}", "team", "lighting-roads",
                                            actor_id=None, grant=True, create_missing=True)
        fake.follower(CREW)
        await fake.follow(ANN)
        greeting = await fake.wait_for_text(ANN, "请选择语言")
        assert "[1] 中文" in greeting["text"] and "[2] English" in greeting["text"]
        mark = len(fake.sent)
        await fake.say(ANN, "1")
        await fake.wait_for_text(ANN, "语言已设为中文", since=mark)
        await fake.wait_for_text(ANN, "您住在哪个小区", since=mark)
        # A location message, in WeChat's GCJ-02 datum, finds the estate.
        mark = len(fake.sent)
        await fake.send_location(ANN, 30.633, 104.040, label="成都市武侯区中海名城")
        confirm = await fake.wait_for_text(ANN, "您住在“中海名城”吗？", since=mark)
        assert "[1] 是" in confirm["text"]
        mark = len(fake.sent)
        await fake.say(ANN, "1")
        await fake.wait_for_text(ANN, "请选择或输入楼栋号", since=mark)
        await fake.say(ANN, "3")
        await fake.wait_for_text(ANN, "请输入单元和门牌号", since=mark)
        await fake.say(ANN, "2-301")
        await fake.wait_for_text(ANN, "已记下您的住址：中海名城", since=mark)
        await _quiet(fake)

        # The menu's 报事 button; the category is answered with its number.
        mark = len(fake.sent)
        await fake.click(ANN, "report")
        ask = await fake.wait_for_text(ANN, "是什么问题", since=mark)
        assert "[1] 路灯照明" in ask["text"]
        await fake.say(ANN, "1")
        await fake.wait_for_text(ANN, "类别：路灯照明", since=mark)
        await fake.send_voice(ANN, amr_bytes(4))
        await fake.wait_for_text(ANN, "语音已保存（4秒）", since=mark)
        await fake.wait_for_text(ANN, "最多可发送3张问题照片", since=mark)
        await _quiet(fake)
        mark = len(fake.sent)
        await fake.send_image(ANN, jpeg_with_gps())
        saved = await fake.wait_for_text(ANN, "已保存第1张照片", since=mark)
        assert "[1] 照片已传完" in saved["text"]
        await fake.say(ANN, "1")
        where = await fake.wait_for_text(ANN, "问题在哪里", since=mark)
        # WeChat has no "share location" key: the way there is the chat's ＋ menu.
        assert "“＋”里的“位置”" in where["text"] and "下方按钮" not in where["text"]
        await _quiet(fake)
        mark = len(fake.sent)
        await fake.send_location(ANN, 30.6330, 104.0400)
        summary = await fake.wait_for_text(ANN, "请核对您的报告", since=mark)
        assert "（语音，4秒）" in summary["text"] and "照片：1张" in summary["text"]
        assert "(30.63300, 104.04000)" in summary["text"]  # back in WGS-84, to the metre
        assert "[1] ✅ 提交报告" in summary["text"]
        await _quiet(fake)
        mark = len(fake.sent)
        await fake.say(ANN, "1")
        filed = await fake.wait_for_text(ANN, "已提交", since=mark)
        ref = re.search(r"Z-\d{4}-\d{5}", filed["text"]).group(0)

        # The crew's card on WeChat: its text with numbered actions, the photo, the voice note
        # (an AMR file recorded on WeChat goes back as a voice message).
        card = await fake.wait_for_text(CREW, ref, timeout=15)
        assert "[1] 受理" in card["text"]
        await fake.wait_for(lambda e: e["touser"] == CREW and e["msgtype"] == "image",
                            timeout=15)
        await fake.wait_for(lambda e: e["touser"] == CREW and e["msgtype"] == "voice",
                            timeout=15)
        # kept as the AMR it is, so what plays it later knows its format
        assert [p.read_bytes()[:5] for p in tmp_path.rglob("*.amr")] == [b"#!AMR"]
        await _quiet(fake)
        mark = len(fake.sent)
        await fake.say(CREW, "1")
        await fake.wait_for_text(CREW, "已受理", since=mark)
        status = await fake.wait_for_text(ANN, ref, since=mark, timeout=15)
        assert "已受理" in status["text"] and status["kind"] == "custom"
        # Ann falls silent for days; the crew goes on from the answer's own numbered actions,
        # and the next status change reaches her by the report template, its fields filled.
        fake.out_of_window(ANN)
        acted = await fake.wait_for_text(CREW, "已受理", since=mark)
        assert "[1] 处理中" in acted["text"] and "受理\n" not in acted["text"]  # no 2nd ack
        mark = len(fake.sent)
        await fake.say(CREW, "1")
        moved = await fake.wait_for(lambda e: e["touser"] == ANN, since=mark, timeout=15)
        assert moved["kind"] == "template" and moved["template_id"] == "TPL_REPORT"
        assert moved["data"]["character_string1"]["value"] == ref
        assert moved["data"]["thing3"]["value"] == "处理中"
        assert re.fullmatch(r"\d{4}年\d{1,2}月\d{1,2}日 \d{2}:\d{2}",
                            moved["data"]["time4"]["value"])
        for _ in range(100):  # until the result is written back
            async with app.sessions() as s:
                refs = [r for r in await s.scalars(
                    select(OutboxMessage.message_ref)
                    .join(Identity, Identity.id == OutboxMessage.identity_id)
                    .where(Identity.platform_user_id == ANN,
                           OutboxMessage.message_ref.is_not(None))
                    .order_by(OutboxMessage.id))]
            if f"tpl:{moved['msgid']}" in refs:
                break
            await asyncio.sleep(0.05)
        assert refs[-1] == f"tpl:{moved['msgid']}" and "cs" in refs[:-1]  # which way each went
        photo = next(e for e in fake.sent if e["touser"] == CREW and e["msgtype"] == "image")
        sent_jpeg = fake.media[photo["media_id"]][0]
        assert sent_jpeg.startswith(b"\xff\xd8") and b"PhoneMaker" not in sent_jpeg  # no EXIF
        assert fake.tokens_issued == 1  # one token, shared through the database
        assert [c for c, _ in fake.refused] == [45015]  # the status change, then by template
    finally:
        await app.stop()


# -- pushes inside and outside the 48-hour window -------------------------------------------------

async def test_a_notice_goes_by_customer_service_inside_the_window_and_by_template_outside(
        db_url, tmp_path, fake):
    app, _ = await _start(db_url, tmp_path, fake, deliver=False)
    try:
        async with app.sessions() as s, s.begin():
            for user in (ANN, BOB):
                await add_resident(s, user, "zhonghai-mingcheng", "3", platform="wechat", lang="zh-Hans")
            await notices.system_notice(s, category="event", estate_ids=None,
                                        texts={"zh-Hans": "周六上午9点在中海名城广场义诊。"},
                                        dedupe_key="event-1")
        fake.follower(ANN)
        fake.out_of_window(BOB)  # silent for more than 48 hours
        await pump(app)
        to_ann = [e for e in fake.sent if e["touser"] == ANN]
        to_bob = [e for e in fake.sent if e["touser"] == BOB]
        assert [e["kind"] for e in to_ann] == ["custom"]
        assert "义诊" in to_ann[0]["text"]
        assert [e["kind"] for e in to_bob] == ["template"]
        # The notice template's fields: the category, the text, the time (WeChat's format).
        data = to_bob[0]["data"]
        assert to_bob[0]["template_id"] == "TPL_NOTICE"
        assert data["thing1"]["value"] == "活动"
        assert data["thing2"]["value"] == "周六上午9点在中海名城广场义诊。"
        assert re.fullmatch(r"\d{4}年\d{1,2}月\d{1,2}日 \d{2}:\d{2}", data["time3"]["value"])
        assert [c for c, body in fake.refused] == [45015]  # tried first, as WeChat requires
        async with app.sessions() as s:
            refs = dict((await s.execute(
                select(Identity.platform_user_id, OutboxMessage.message_ref)
                .join(Identity, Identity.id == OutboxMessage.identity_id)
                .where(OutboxMessage.status == "sent"))).all())
        assert refs[ANN] == "cs"
        assert refs[BOB] == f"tpl:{to_bob[0]['msgid']}"  # the outbox says which way it went
    finally:
        await app.stop()


async def test_an_invalid_token_is_refreshed_once_and_shared_by_workers(db_url, tmp_path, fake):
    app, adapter = await _start(db_url, tmp_path, fake)
    try:
        await fake.follow(ANN)
        await fake.wait_for_text(ANN, "请选择语言")
        assert fake.tokens_issued == 1
        fake.revoke_tokens()  # e.g. the secret was reset, or another tool fetched a token
        mark = len(fake.sent)
        await fake.say(ANN, "2")
        await fake.wait_for_text(ANN, "Language set to English", since=mark)
        assert fake.tokens_issued == 2 and fake.token_refusals == 1
        async with app.sessions() as s:
            held = json.loads(await kv.get(s, f"wechat_token:{fake.app_id}"))
        assert held["token"] in fake.tokens and held["expires_at"] > time.time() + 7000
        # Another worker on the same database takes the token from there.
        other = _adapter(fake)
        other.attach(sessions=app.sessions)
        async with aiohttp.ClientSession() as http:
            other._http = http
            result = await other.send(ANN, Outbound(text="来自另一个进程"))
        assert result.status == SendStatus.SENT and fake.tokens_issued == 2
    finally:
        await app.stop()


async def test_unfollowing_makes_a_resident_unreachable(db_url, tmp_path, fake):
    app, _ = await _start(db_url, tmp_path, fake, deliver=False)
    try:
        async with app.sessions() as s, s.begin():
            for user in (ANN, BOB):
                await add_resident(s, user, "zhonghai-mingcheng", "3", platform="wechat", lang="zh-Hans")
        fake.follower(ANN)
        fake.follower(BOB)
        await fake.unfollow(ANN)  # the unsubscribe event
        fake.follower(BOB).subscribed = False  # unfollowed while the callback was down
        for _ in range(50):
            async with app.sessions() as s:
                ann = await s.scalar(select(Identity).where(Identity.platform_user_id == ANN))
            if ann.unreachable_at is not None:
                break
            await asyncio.sleep(0.05)
        assert ann.unreachable_at is not None
        async with app.sessions() as s, s.begin():
            await notices.system_notice(s, category="event", estate_ids=None,
                                        texts={"zh-Hans": "停水通知"}, dedupe_key="water-1")
        await pump(app)
        assert [e for e in fake.sent if e["touser"] in (ANN, BOB)] == []
        async with app.sessions() as s:
            bob = await s.scalar(select(Identity).where(Identity.platform_user_id == BOB))
        assert bob.unreachable_at is not None  # 43004 from WeChat
        assert 43004 in [c for c, _ in fake.refused]
        # Following again is a new start: reachable, and greeted.
        await fake.follow(ANN)
        await fake.wait_for_text(ANN, "请选择语言")
        async with app.sessions() as s:
            ann = await s.scalar(select(Identity).where(Identity.platform_user_id == ANN))
        assert ann.unreachable_at is None
    finally:
        await app.stop()


async def test_refused_by_customer_service_a_push_goes_by_its_kinds_template_or_waits(
        db_url, tmp_path, fake):
    """45047 (too many messages without an answer) and 45015 (out of the window): a push of a
    kind with a template goes as that template; one without is marked unreachable for now,
    with the reason, and only that message: the resident stays reachable and the next push
    is still tried."""
    app, _ = await _start(db_url, tmp_path, fake, deliver=False,
                          templates={"notice": "TPL_NOTICE"})
    try:
        async with app.sessions() as s, s.begin():
            ann = await add_resident(s, ANN, "zhonghai-mingcheng", "3", platform="wechat",
                                     lang="zh-Hans")
            bob = await add_resident(s, BOB, "zhonghai-mingcheng", "3", platform="wechat",
                                     lang="zh-Hans")
            rows = {}
            for who, name, out in [
                    (ann, "ann_status", Outbound(text="您的报事 R-1 已处理", push="report_status",
                                                 facts={"ref": "R-1", "status": "已处理"})),
                    (ann, "ann_notice", Outbound(text="停水通知", push="notice", facts={
                        "title": "停水", "text": "明天停水", "time": "2026-12-03T09:00+08:00"})),
                    (bob, "bob_notice", Outbound(text="停电通知", push="notice", facts={
                        "title": "停电", "text": "明天停电", "time": "2026-12-03T09:00+08:00"}))]:
                rows[name] = (await outbox.enqueue(s, who.id, out.to_json())).id
        fake.follower(ANN)
        fake.cs_quota = 0  # Ann was sent too many without answering: 45047
        fake.out_of_window(BOB)  # Bob has been silent for days: 45015
        await pump(app)
        async with app.sessions() as s:
            got = {r.id: r for r in await s.scalars(select(OutboxMessage))}
            idents = {i.platform_user_id: i for i in await s.scalars(select(Identity))}
        status = got[rows["ann_status"]]
        assert status.status == "unreachable"
        assert "45047" in status.error and "no WeChat template for report_status" in status.error
        for name in ("ann_notice", "bob_notice"):  # tried and sent, by template
            assert got[rows[name]].status == "sent" and got[rows[name]].message_ref.startswith(
                "tpl:")
        assert idents[ANN].unreachable_at is None and idents[BOB].unreachable_at is None
        assert sorted(c for c, _ in fake.refused) == [45015, 45047, 45047]
        assert sorted((e["touser"], e["kind"], e["template_id"]) for e in fake.sent) == [
            (ANN, "template", "TPL_NOTICE"), (BOB, "template", "TPL_NOTICE")]
    finally:
        await app.stop()


async def test_every_api_call_counts_against_the_send_budget(tmp_path):
    """A push refused by customer-service message and sent as a template is two calls: the
    budget counts calls, so the fake never sees more in a second than the budget allows
    (counting one a send, 30 such pushes at 10 a second would be 20 calls a second)."""
    async with FakeWeChat(rate=10) as fake:
        app, adapter = await _start(f"sqlite+aiosqlite:///{tmp_path}/bot.sqlite3", tmp_path,
                                    fake, deliver=False, per_second=10)
        try:
            users = [f"obudget{n:020d}" for n in range(30)]
            async with app.sessions() as s, s.begin():
                for user in users:
                    await add_resident(s, user, "zhonghai-mingcheng", "3", platform="wechat",
                                       lang="zh-Hans")
                    fake.out_of_window(user)
                await notices.system_notice(s, category="event", estate_ids=None,
                                            texts={"zh-Hans": "周日上午停水"},
                                            dedupe_key="water")
            began = time.monotonic()
            await pump(app)
            took = time.monotonic() - began
            assert sorted(e["touser"] for e in fake.sent if e["kind"] == "template") == sorted(
                users)
            assert [c for c, _ in fake.refused].count(45015) == len(users)
            assert fake.calls == 2 * len(users)
            assert fake.busiest_second() <= 10, fake.busiest_second()
            assert -1 not in [c for c, _ in fake.refused]  # the fake's own limit never hit
            assert took >= 5.0  # 60 calls at 10 a second
        finally:
            await app.stop()


# -- WeChat's other answers, straight from the adapter --------------------------------------------

async def test_error_codes_become_send_results(fake):
    adapter = _adapter(fake)
    async with aiohttp.ClientSession() as http:
        adapter._http = http
        fake.follower(ANN)
        assert (await adapter.send(ANN, Outbound(text="hi"))).message_ref == "cs"
        fake.cs_quota = 1  # 45047: too many messages without an answer from them
        quota = await adapter.send(ANN, Outbound(text="again"))  # a message of no push kind
        assert quota.status == SendStatus.UNREACHABLE and quota.for_now
        assert "45047" in quota.error and "no WeChat template" in quota.error
        notice = await adapter.send(ANN, Outbound(text="停水通知：明天停水", push="notice", facts={
            "title": "停水", "text": "明天停水", "time": "2026-12-03T09:30+08:00"}))
        assert notice.status == SendStatus.SENT and notice.message_ref.startswith("tpl:")
        assert fake.sent[-1]["data"] == {"thing1": {"value": "停水"},
                                         "thing2": {"value": "明天停水"},
                                         "time3": {"value": "2026年12月3日 09:30"}}
        fake.cs_quota = None
        fake.rate = 0  # -1 "system busy": the whole sender slows down
        busy = await adapter.send(ANN, Outbound(text="busy"))
        assert busy.status == SendStatus.RETRY and busy.flood
        fake.rate = None
        fake.daily_quota = 0  # 45009: the day's quota is spent
        spent = await adapter.send(ANN, Outbound(text="quota"))
        assert spent.status == SendStatus.RETRY and spent.flood and spent.retry_after >= 600
        fake.daily_quota = None
        # A notice's photo that is another platform's file id: the text still goes.
        other = await adapter.send(ANN, Outbound(text="停电通知", photo="AgACAgIAAxkBAAIBtelegram"))
        assert other.status == SendStatus.SENT
        assert fake.sent[-1]["text"] == "停电通知" and fake.refused[-1][0] == 40007
        unknown = await adapter.send("o-not-a-follower", Outbound(text="x"))
        assert unknown.status == SendStatus.UNREACHABLE
        fake.out_of_window(ANN)  # 45015: a kind without a template cannot reach them now
        no_template = _adapter(fake, templates={"notice": "TPL_NOTICE"})
        no_template._http = http
        status = Outbound(text="R-7 已处理", push="report_status", facts={"ref": "R-7"})
        gone = await no_template.send(ANN, status)
        assert gone.status == SendStatus.UNREACHABLE and gone.for_now
        assert "45015" in gone.error and "report_status" in gone.error
        # With one, each fact is cut and written as its field's type takes it: thing 20
        # characters, character_string ASCII without spaces, time as WeChat writes it.
        status.facts = {"ref": "R-7 / 2026", "category": "长" * 30, "status": "已处理",
                        "time": "2026-12-03T14:05:00+08:00"}
        long = await adapter.send(ANN, status)
        assert long.status == SendStatus.SENT and long.message_ref.startswith("tpl:")
        assert fake.sent[-1]["template_id"] == "TPL_REPORT"
        assert fake.sent[-1]["data"] == {
            "character_string1": {"value": "R-7/2026"}, "thing2": {"value": "长" * 19 + "…"},
            "thing3": {"value": "已处理"}, "time4": {"value": "2026年12月3日 14:05"}}
        fake.follower(ANN).subscribed = False  # 43004 on the template too: unreachable
        unfollowed = await adapter.send(ANN, status)
        assert unfollowed.status == SendStatus.UNREACHABLE and not unfollowed.for_now
        fake.follower(ANN).subscribed = True
        # A token refused again after the refresh: fetched once more, not in a loop; the
        # message waits and is tried again later.
        fake.follower(ANN).last_active = time.time()
        issued, refusals = fake.tokens_issued, fake.token_refusals
        fake.token_ttl = -1  # every token WeChat gives is already expired (42001)
        fresh = _adapter(fake)
        fresh._http = http
        twice = await fresh.send(ANN, Outbound(text="x"))
        assert twice.status == SendStatus.RETRY and not twice.flood and "42001" in twice.error
        assert fake.tokens_issued - issued == 2 and fake.token_refusals - refusals == 2
        fake.token_ttl = 7200.0
        # No token at all (a wrong secret, an IP not on the whitelist): nothing is lost, the
        # whole sender waits and tries again.
        locked_out = _adapter(fake)
        locked_out._secret = "wrong"
        locked_out._http = http
        refused = await locked_out.send(ANN, Outbound(text="x"))
        assert refused.status == SendStatus.RETRY and refused.flood and "40125" in refused.error


def test_template_settings_name_a_template_per_kind_and_check_its_fields():
    from pydantic import ValidationError

    from bot.messaging.wechat_settings import WeChatSettings

    s = WeChatSettings(notice_template_id="T1", poll_template_id="T2",
                       poll_template_fields="thing3=title, date4=deadline")
    assert s.templates() == {
        "notice": ("T1", (("thing1", "title"), ("thing2", "text"), ("time3", "time"))),
        "poll": ("T2", (("thing3", "title"), ("date4", "deadline")))}
    for bad in ("thing1=status", "title", "colour1=title", ""):  # no such fact, key, type
        with pytest.raises(ValidationError):
            WeChatSettings(poll_template_fields=bad)


def test_long_texts_are_cut_within_wechats_limit_and_voice_is_measured():
    pieces = split_text("第一行\n" + "长" * 1500 + "\n尾")
    assert all(len(p.encode()) <= 2000 for p in pieces)
    assert "".join(pieces).replace("\n", "") == "第一行" + "长" * 1500 + "尾"
    assert amr_seconds(amr_bytes(4)) == 4
    assert amr_seconds(b"OggS\x00") is None


async def test_location_reports_are_ignored_and_unreadable_messages_answered(tmp_path, fake):
    app, _ = await _start(f"sqlite+aiosqlite:///{tmp_path}/bot.sqlite3", tmp_path, fake)
    try:
        await fake.follow(ANN)
        await fake.wait_for_text(ANN, "请选择语言")
        await _quiet(fake)
        mark = len(fake.sent)
        assert (await fake.location_event(ANN, 30.63, 104.04)) == (200, "success")
        await _quiet(fake)
        assert fake.texts_to(ANN, mark) == []
        await fake._act(ANN, "shortvideo", {"MediaId": "v1", "ThumbMediaId": "t1"})
        await fake.wait_for_text(ANN, "", since=mark)
        assert len(fake.texts_to(ANN, mark)) == 1
    finally:
        await app.stop()


async def test_the_custom_menu_is_created(fake):
    adapter = _adapter(fake)
    async with aiohttp.ClientSession() as http:
        adapter._http = http
        await adapter.create_menu()
    names = [b["name"] for b in fake.menu]
    assert names == ["报事", "通知", "参与"]
    assert [(b["name"], b["key"]) for b in fake.menu[2]["sub_button"]] == [
        ("志愿", "volunteer"), ("议事", "polls")]


async def test_python_m_bot_wechat_menu(fake, tmp_path):
    import os
    import sys

    env = {**os.environ, "WECHAT_APP_ID": fake.app_id, "WECHAT_APP_SECRET": fake.app_secret,
           "WECHAT_TOKEN": fake.token, "WECHAT_API_BASE": fake.base_url,
           "PYTHONPATH": str(ROOT)}

    async def run(**changes: str | None) -> tuple[int, str, str]:
        here = {k: v for k, v in {**env, **changes}.items() if v is not None}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "wechat", "menu", cwd=tmp_path, env=here,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        return proc.returncode, out.decode(), err.decode()

    code, out, _ = await run()
    assert code == 0 and "menu created: 报事 | 通知 | 参与 (志愿, 议事)" in out
    assert [b["name"] for b in fake.menu] == ["报事", "通知", "参与"]
    code, _, err = await run(WECHAT_APP_SECRET="wrong")
    assert code == 2 and "40125" in err
    code, _, err = await run(WECHAT_TOKEN=None)
    assert code == 2 and "WECHAT_TOKEN" in err


def test_a_bad_aes_key_is_refused_with_a_clear_message(monkeypatch):
    from pydantic import ValidationError

    from bot.messaging.wechat_settings import WeChatSettings

    monkeypatch.setenv("WECHAT_AES_KEY", "too-short")
    with pytest.raises(ValidationError, match="43-character EncodingAESKey"):
        WeChatSettings()
    monkeypatch.setenv("WECHAT_AES_KEY", AES_KEY)
    monkeypatch.setenv("WECHAT_APP_ID", "wx1")
    monkeypatch.setenv("WECHAT_APP_SECRET", "s")
    assert not WeChatSettings().configured  # no token yet
    monkeypatch.setenv("WECHAT_TOKEN", "t")
    assert WeChatSettings().configured


# -- a poll, written and answered on WeChat ---------------------------------------------------------

def _number(entry: dict, label: str) -> str:
    """The number a label is shown under in a WeChat message (`[2] label`)."""
    found = re.search(rf"^\[(\d+)\] {re.escape(label)}$", entry["text"], re.MULTILINE)
    assert found, f"no {label!r} in {entry['text']!r}"
    return found.group(1)


async def test_a_poll_is_written_by_numbers_and_answered_with_2(db_url, tmp_path, fake):
    from bot.scheduler import run_jobs_once
    from tests.deliberation_helpers import grant, make_resident

    author, cy = "o" + "author".ljust(27, "0"), "o" + "cy".ljust(27, "0")
    app, _ = await _start(db_url, tmp_path, fake)
    try:
        s = app.sessions
        await make_resident(s, "wechat", author, building="6")
        await grant(s, f"wechat:{author}", "committee", "victoria")
        await make_resident(s, "wechat", ANN, unit="2-101")
        await make_resident(s, "wechat", cy, unit="3-202")
        fake.follower(ANN)
        fake.out_of_window(cy)  # silent for days: the invitation goes by template

        async def answer(text: str, expect: str) -> dict:
            mark = len(fake.sent)
            await fake.say(author, text)
            return await fake.wait_for_text(author, expect, since=mark)

        await answer("/newpoll", "Type the question")
        await answer("Repaint the playground?", "one per line")
        step = await answer("Yes, this spring\nYes, next year\nNo",
                            "choose one option or several")
        for label, expect in [("One option", "Choose the area"),
                              ("Victoria Garden", "Limit the poll to one building"),
                              ("Whole estate", "Only verified residents"),
                              ("Verified residents only", "One vote per resident"),
                              ("Per household", "Anonymous or named"),
                              ("Named", "Show results while"),
                              ("Only after close", "When does the poll close")]:
            await _quiet(fake, 0.3)
            step = await answer(_number(step, label), expect)
        await answer("2d", "Minimum turnout")
        preview = await answer("5", "Publish it?")
        await _quiet(fake, 0.3)
        await answer(_number(preview, "Publish"), "Poll #1 is published")

        await run_jobs_once(app.sessions, app.services, app.deliverer, app.jobs)
        ballot = await fake.wait_for_text(ANN, "Poll #1: Repaint the playground?")
        assert ballot["kind"] == "custom" and "[2] 2. Yes, next year" in ballot["text"]
        invitation = await fake.wait_for(lambda e: e["touser"] == cy)
        # The poll template: the question (a thing field: 20 characters) and the deadline.
        assert invitation["kind"] == "template" and invitation["template_id"] == "TPL_POLL"
        assert invitation["data"]["thing1"]["value"] == "Repaint the playgro…"
        assert re.fullmatch(r"\d{4}年\d{1,2}月\d{1,2}日 \d{2}:\d{2}",
                            invitation["data"]["time2"]["value"])
        await _quiet(fake, 0.3)
        mark = len(fake.sent)
        await fake.say(ANN, "2")
        await fake.wait_for_text(ANN, "You voted in poll #1: 2. Yes, next year", since=mark)
        # The template opened nothing, but the resident's answer does: "3" is the third option
        # of the invitation they were sent.
        await fake.say(cy, "3")
        voted = await fake.wait_for_text(cy, "You voted in poll #1: 3. No", since=mark)
        assert voted["kind"] == "custom"
    finally:
        await app.stop()


async def test_python_m_bot_run_serves_the_wechat_callback(fake, tmp_path):
    """The operator's story: WECHAT_* set, `python -m bot run` migrates, loads the demo
    territory and serves the callback; a follower is greeted; SIGTERM ends it cleanly."""
    import os
    import signal
    import socket
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WECHAT_"))}
    env.update({"WECHAT_APP_ID": fake.app_id, "WECHAT_APP_SECRET": fake.app_secret,
                "WECHAT_TOKEN": fake.token, "WECHAT_API_BASE": fake.base_url,
                "WECHAT_CALLBACK_HOST": "127.0.0.1", "WECHAT_CALLBACK_PORT": str(port),
                "WECHAT_NOTICE_TEMPLATE_ID": "TPL_NOTICE",
                "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/bot.sqlite3",
                "BOT_MEDIA_DIR": str(tmp_path / "media"), "PYTHONPATH": str(ROOT)})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        fake.callback_url = f"http://127.0.0.1:{port}/wechat"
        for _ in range(200):  # until the callback server answers the console's URL check
            try:
                async with aiohttp.ClientSession() as http, http.get(fake.callback_url, params={
                        **fake.signed_query(), "echostr": "ready"}) as r:
                    if await r.text() == "ready":
                        break
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the callback server never answered")
        await fake.follow(ANN)
        await fake.wait_for_text(ANN, "请选择语言", timeout=20)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "running on WeChat (callback on 127.0.0.1:" in err.decode()
