"""Official CAP 1.2 alerts: parsing, matching to estates, once per identifier, updates and
cancellations, from a folder and from a feed on loopback."""

from __future__ import annotations

import asyncio
import logging
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from sqlalchemy import select

from bot.config import CapSettings
from handlers.alerts import cap_tick
from services import cap
from storage import territory
from storage.alerts import AlertCap
from storage.notices import Notice
from storage.subscriptions import SubscriptionOptOut
from tests.notice_support import add_resident, pump

DATA = Path(__file__).parent / "data" / "cap"


def _doc(name: str) -> cap.CapAlert:
    return cap.parse_document((DATA / name).read_bytes())


def test_parse_fields():
    alert = _doc("01-south-rainstorm.xml")
    assert alert.identifier == "51010041600000_20260723063000"
    assert alert.sender == "cdqx@cma.gov.cn"
    assert (alert.status, alert.msg_type, alert.scope) == ("Actual", "Alert", "Public")
    assert alert.sent.utcoffset() == timedelta(hours=8)
    assert alert.severity == "Severe"
    assert alert.info_for("zh-Hans").headline == "成都市气象台发布暴雨橙色预警"
    assert alert.info_for("en").event == "Rainstorm"
    assert alert.info_for("en").instruction.startswith("Avoid low roads")
    update = _doc("03-south-rainstorm-update.xml")
    assert update.references == [("cdqx@cma.gov.cn", "51010041600000_20260723063000")]
    cancel = _doc("04-south-rainstorm-cancel.xml")
    assert cancel.msg_type == "Cancel" and cancel.infos == [] and len(cancel.references) == 2
    # Only an English block: Chinese readers get it too rather than nothing.
    gas = _doc("02-victoria-gas.xml")
    assert gas.info_for("zh-Hans").language == "zh-CN"


def test_bad_documents_are_refused():
    with pytest.raises(cap.CapError, match="malformed"):
        _doc("08-malformed.xml")
    with pytest.raises(cap.CapError, match="DTD"):
        _doc("09-entity-bomb.xml")
    with pytest.raises(cap.CapError, match="over the limit"):
        cap.parse_document(b"<a>" + b" " * 2_000_000 + b"</a>")
    with pytest.raises(cap.CapError, match="not a CAP"):
        cap.parse_document(b"<alert><identifier>x</identifier></alert>")  # no namespace
    raw = (DATA / "01-south-rainstorm.xml").read_bytes()
    with pytest.raises(cap.CapError, match="area"):
        cap.parse_document(raw.replace(b"30.598,104.028 30.598,104.062", b"30.598;104.028", 1))
    with pytest.raises(cap.CapError, match="required"):
        cap.parse_document(raw.replace(b"<status>Actual</status>", b""))


async def test_areas_match_estates(make_app, sqlite_url):
    app, _ = await make_app(sqlite_url)
    async with app.sessions() as s:
        estates = await territory.estates(s)
    code = {e.id: e.code for e in estates}
    where = cap.Territory(estates)

    def matched(name: str) -> set[str]:
        return {code[i] for i in where.estates_in(_doc(name).area)}

    assert matched("01-south-rainstorm.xml") == {"victoria", "rongcheng-houjie"}
    assert matched("02-victoria-gas.xml") == {"victoria"}  # a 300 m circle
    assert matched("03-south-rainstorm-update.xml") == {"victoria", "rongcheng-houjie",
                                                        "shenxianshu-dayuan"}
    assert matched("06-beijing-outside.xml") == set()
    assert matched("07-expired.xml") == set(code.values())  # 20 km around the district


async def _residents(app):
    async with app.sessions() as s, s.begin():
        await add_resident(s, "vic", "victoria")
        await add_resident(s, "viczh", "victoria", lang="zh-Hans")
        quiet = await add_resident(s, "vicquiet", "victoria")
        await add_resident(s, "rong", "rongcheng-houjie")
        await add_resident(s, "sxs", "shenxianshu-dayuan")
        await add_resident(s, "zh", "zhonghai-mingcheng")
        # Severe alerts ignore subscriptions: even someone who turned weather off gets them.
        s.add(SubscriptionOptOut(resident_id=quiet.resident_id, category="weather"))
        s.add(SubscriptionOptOut(resident_id=quiet.resident_id, category="convenience"))


async def test_folder_alert_update_cancel_once_each(make_app, db_url, tmp_path, caplog):
    app, chat = await make_app(db_url)
    await _residents(app)
    folder = tmp_path / "cap"
    folder.mkdir()
    app.services.settings.cap = CapSettings(folder=folder)
    for name in ("01-south-rainstorm.xml", "02-victoria-gas.xml", "05-drill-test.xml",
                 "06-beijing-outside.xml", "07-expired.xml", "08-malformed.xml",
                 "09-entity-bomb.xml"):
        shutil.copy(DATA / name, folder / name)
    with caplog.at_level(logging.WARNING):
        counts = await cap.poll(app.sessions, app.services, None)
    assert counts == {"pushed": 2, "ignored": 1, "outside": 1, "expired": 1}
    assert "08-malformed.xml skipped" in caplog.text and "09-entity-bomb.xml skipped" in caplog.text
    await pump(app)
    assert await cap.poll(app.sessions, app.services, None) == {}  # once per identifier
    await pump(app)

    [storm, gas] = chat.texts_to("vic")
    assert "Orange rainstorm warning" in storm and "Avoid low roads" in storm
    assert "Issued by: Chengdu Meteorological Observatory" in storm
    assert "Gas cut around Victoria Garden" in gas
    [storm_zh, gas_zh] = chat.texts_to("viczh")
    assert "暴雨橙色预警" in storm_zh and "防御指南" in storm_zh and "燃气" in gas_zh
    assert chat.texts_to("vicquiet") == [storm]  # urgent got through; the Moderate one did not
    assert chat.texts_to("rong") == [storm]
    assert chat.texts_to("sxs") == [] and chat.texts_to("zh") == []
    async with app.sessions() as s:
        storm_notice = await s.scalar(select(Notice).where(Notice.dedupe_key.like("cap:%"))
                                      .order_by(Notice.id))
        assert storm_notice.urgent and storm_notice.category == "emergency"

    shutil.copy(DATA / "03-south-rainstorm-update.xml", folder)
    assert await cap.poll(app.sessions, app.services, None) == {"pushed": 1}
    await pump(app)
    for user in ("vic", "rong", "sxs", "vicquiet"):
        update = chat.last_text(user)
        assert "Alert update: Rainstorm" in update and "Orange rainstorm warning" in update
    assert chat.texts_to("zh") == []

    shutil.copy(DATA / "04-south-rainstorm-cancel.xml", folder)
    assert await cap.poll(app.sessions, app.services, None) == {"pushed": 1}
    await pump(app)
    for user in ("vic", "rong", "sxs", "vicquiet"):
        assert "Alert cancelled" in chat.last_text(user)
    assert '"Orange rainstorm warning extended to the centre" has been lifted' in \
        chat.last_text("vic")
    assert "“暴雨橙色预警范围扩大至中部”已解除" in chat.last_text("viczh")
    assert [len(chat.texts_to(u)) for u in ("vic", "viczh", "vicquiet", "rong", "sxs", "zh")] \
        == [4, 4, 3, 3, 2, 0]
    async with app.sessions() as s:
        rows = {r.identifier: r for r in (await s.scalars(select(AlertCap))).all()}
    assert rows["GX-DRILL-2026-07"].outcome == "ignored"
    assert len(rows["51010041600000_20260723180000"].refers_to) == 2


async def test_two_workers_poll_at_once(make_app, db_url, tmp_path):
    app, chat = await make_app(db_url)
    await _residents(app)
    folder = tmp_path / "cap"
    folder.mkdir()
    shutil.copy(DATA / "01-south-rainstorm.xml", folder)
    app.services.settings.cap = CapSettings(folder=folder)
    results = await asyncio.gather(*(cap.poll(app.sessions, app.services, None)
                                     for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, dict) for r in results), results
    assert sum(r.get("pushed", 0) for r in results) == 1
    await pump(app)
    assert len(chat.texts_to("vic")) == 1 and len(chat.texts_to("rong")) == 1


class _Feed:
    """CAP documents and feeds served on loopback."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: list[str] = []

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/{name}", self._serve)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

    async def _serve(self, request):
        name = request.match_info["name"]
        self.hits.append(name)
        if name not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[name], content_type="application/xml")


def _atom(entries: str) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <id>urn:cdqx:alerts</id><title>成都市预警信息</title><updated>2026-07-23T11:30:00+08:00</updated>
  {entries}
</feed>""".encode()


async def test_atom_and_rss_feeds(make_app, sqlite_url, caplog):
    app, chat = await make_app(sqlite_url)
    await _residents(app)
    feed = _Feed()
    base = await feed.start()
    try:
        for name in ("01-south-rainstorm.xml", "02-victoria-gas.xml", "08-malformed.xml"):
            feed.files[name] = (DATA / name).read_bytes()
        drill = (DATA / "05-drill-test.xml").read_text().split("?>", 1)[1]
        feed.files["atom"] = _atom(f"""
  <entry><id>a1</id><title>暴雨</title><updated>2026-07-23T06:30:00+08:00</updated>
    <link rel="alternate" type="text/html" href="https://example.invalid/page"/>
    <link rel="alternate" type="application/cap+xml" href="01-south-rainstorm.xml"/></entry>
  <entry><id>a2</id><title>燃气</title><updated>2026-07-23T09:15:00+08:00</updated>
    <link href="{base}/02-victoria-gas.xml"/></entry>
  <entry><id>a3</id><title>坏</title><updated>2026-07-23T09:15:00+08:00</updated>
    <link href="08-malformed.xml"/></entry>
  <entry><id>a4</id><title>missing</title><updated>2026-07-23T09:15:00+08:00</updated>
    <link href="gone.xml"/></entry>
  <entry><id>a5</id><title>演练</title><updated>2026-07-23T10:00:00+08:00</updated>
    <content type="application/cap+xml">{drill}</content></entry>""")
        app.services.settings.cap = CapSettings(feed_url=f"{base}/atom", poll_seconds=300)
        with caplog.at_level(logging.WARNING):
            await cap_tick(app.sessions, app.services, None)
        assert "08-malformed.xml skipped" in caplog.text and "gone.xml skipped" in caplog.text
        await pump(app)
        assert len(chat.texts_to("vic")) == 2 and len(chat.texts_to("rong")) == 1
        # The next tick within the poll interval does not read the feed again.
        hits = len(feed.hits)
        await cap_tick(app.sessions, app.services, None)
        assert len(feed.hits) == hits
        app.services.clock.advance(timedelta(seconds=301))
        await cap_tick(app.sessions, app.services, None)
        assert len(feed.hits) > hits
        await pump(app)
        assert len(chat.texts_to("vic")) == 2  # read again, pushed once

        update = (DATA / "03-south-rainstorm-update.xml").read_text().split("?>", 1)[1]
        feed.files["rss"] = f"""<?xml version="1.0"?><rss version="2.0"><channel>
  <title>alerts</title><item><title>update</title><description>{update}</description></item>
  <item><title>cancel</title><link>{base}/cancel.xml</link></item></channel></rss>""".encode()
        feed.files["cancel.xml"] = (DATA / "04-south-rainstorm-cancel.xml").read_bytes()
        app.services.settings.cap = CapSettings(feed_url=f"{base}/rss")
        app.services.clock.advance(timedelta(seconds=301))
        await cap_tick(app.sessions, app.services, None)
        await pump(app)
        assert "Alert update" in chat.texts_to("sxs")[0]
        assert "Alert cancelled" in chat.last_text("sxs")

        # A feed that is down or not XML is logged; the job carries on.
        app.services.settings.cap = CapSettings(feed_url=f"{base}/nothing")
        app.services.clock.advance(timedelta(seconds=301))
        with caplog.at_level(logging.WARNING):
            await cap_tick(app.sessions, app.services, None)
        assert "HTTP 404" in caplog.text
    finally:
        await feed.runner.cleanup()


async def test_restricted_scope_ignored_and_downgrade_reaches_all_who_were_told(
        make_app, sqlite_url, tmp_path):
    app, chat = await make_app(sqlite_url)
    await _residents(app)
    folder = tmp_path / "cap"
    folder.mkdir()
    app.services.settings.cap = CapSettings(folder=folder)
    alert = (DATA / "01-south-rainstorm.xml").read_text()
    (folder / "restricted.xml").write_text(
        alert.replace("<scope>Public</scope>", "<scope>Restricted</scope>")
        .replace("_20260723063000", "_R"))
    shutil.copy(DATA / "01-south-rainstorm.xml", folder)
    assert await cap.poll(app.sessions, app.services, None) == {"pushed": 1, "ignored": 1}
    await pump(app)
    assert len(chat.texts_to("vicquiet")) == 1
    # The update lowers the severity to Moderate: still to everyone the Severe alert reached,
    # including the resident who switched weather notices off, but without emergency buttons.
    update = (DATA / "03-south-rainstorm-update.xml").read_text().replace(
        "<severity>Severe</severity>", "<severity>Moderate</severity>")
    (folder / "update.xml").write_text(update)
    assert await cap.poll(app.sessions, app.services, None) == {"pushed": 1}
    await pump(app)
    assert "Alert update" in chat.last_text("vicquiet")
    async with app.sessions() as s:
        notice = await s.scalar(select(Notice).order_by(Notice.id.desc()))
    assert notice.urgent and notice.category == "weather"
    assert not chat.last("vic").buttons


HOSTILE = ["09-entity-bomb.xml", "10-utf16-entity.xml", "11-utf32-entity.xml",
           "12-external-entity.xml", "13-doctype-after-4k.xml"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_documents_refused_by_the_parser(name):
    """DTDs and entities are refused by the parser itself, in UTF-16/UTF-32 and after 4 KB."""
    with pytest.raises(cap.CapError, match="DTD|malformed"):
        _doc(name)


def test_utf16_entity_refused_as_dtd_not_parsed():
    raw = (DATA / "10-utf16-entity.xml").read_bytes()
    assert raw[:2] == b"\xff\xfe" and b"<!ENTITY" not in raw  # the old byte scan saw nothing
    with pytest.raises(cap.CapError, match="DTD"):
        cap.parse_document(raw)
    late = (DATA / "13-doctype-after-4k.xml").read_bytes()
    assert late.index(b"<!DOCTYPE") > 4096
    with pytest.raises(cap.CapError, match="DTD"):
        cap.parse_document(late)


def test_five_megabytes_and_wrong_namespace_refused():
    raw = (DATA / "01-south-rainstorm.xml").read_bytes()
    big = raw.replace(b"<scope>", b"<!--" + b"x" * 5_000_000 + b"--><scope>", 1)
    with pytest.raises(cap.CapError, match="over the limit"):
        cap.parse_document(big)
    with pytest.raises(cap.CapError, match="not a CAP"):
        _doc("14-wrong-namespace.xml")


async def test_hostile_corpus_reaches_no_resident(make_app, db_url, tmp_path, caplog):
    app, chat = await make_app(db_url)
    await _residents(app)
    folder = tmp_path / "cap"
    folder.mkdir()
    app.services.settings.cap = CapSettings(folder=folder)
    for name in HOSTILE + ["14-wrong-namespace.xml"]:
        shutil.copy(DATA / name, folder / name)
    raw = (DATA / "01-south-rainstorm.xml").read_bytes()
    (folder / "15-five-mb.xml").write_bytes(
        raw.replace(b"<scope>", b"<!--" + b"x" * 5_000_000 + b"--><scope>", 1))
    with caplog.at_level(logging.WARNING):
        counts = await cap.poll(app.sessions, app.services, None)
    assert counts == {}
    for name in HOSTILE + ["14-wrong-namespace.xml", "15-five-mb.xml"]:
        assert f"{name} skipped" in caplog.text
    await pump(app)
    for user in ("vic", "viczh", "vicquiet", "rong", "sxs", "zh"):
        assert chat.texts_to(user) == []
    async with app.sessions() as s:
        assert await s.scalar(select(Notice).where(Notice.dedupe_key.like("cap:%"))) is None


async def test_poll_seconds_sets_the_job_pace(make_app, sqlite_url, tmp_path):
    """CAP_POLL_SECONDS=30 ticks the job every 30 s (it was fixed at 60), and the feed is read
    again after 30 s; under the stated minimum of 10 s the setting is refused."""
    from pydantic import ValidationError

    from bot.scheduler import build_scheduler

    with pytest.raises(ValidationError, match="greater than or equal to 10"):
        CapSettings(poll_seconds=5)
    app, _ = await make_app(sqlite_url)
    folder = tmp_path / "cap"
    folder.mkdir()
    app.services.settings.cap = CapSettings(folder=folder, poll_seconds=30)
    job = build_scheduler(app.sessions, app.services, None, app.jobs).get_job("cap-poll")
    assert job.trigger.interval == timedelta(seconds=30)

    calls = []
    real = cap.poll

    async def counting(*args, **kw):
        calls.append(app.services.clock())
        return await real(*args, **kw)

    cap.poll = counting
    try:
        await cap_tick(app.sessions, app.services, None)
        app.services.clock.advance(timedelta(seconds=15))
        await cap_tick(app.sessions, app.services, None)  # too soon
        app.services.clock.advance(timedelta(seconds=15))
        await cap_tick(app.sessions, app.services, None)
    finally:
        cap.poll = real
    assert len(calls) == 2


async def test_cancel_of_the_original_reaches_estates_the_update_added(make_app, db_url,
                                                                        tmp_path):
    """Alert (south) → Update (adds Shenxianshu) → a Cancel naming only the original Alert:
    everyone told of any message of the chain is told it is over, Shenxianshu included."""
    app, chat = await make_app(db_url)
    await _residents(app)
    folder = tmp_path / "cap"
    folder.mkdir()
    app.services.settings.cap = CapSettings(folder=folder)
    for name in ("01-south-rainstorm.xml", "03-south-rainstorm-update.xml",
                 "15-south-rainstorm-cancel-original-only.xml"):
        shutil.copy(DATA / name, folder / name)
        assert await cap.poll(app.sessions, app.services, None) == {"pushed": 1}
        await pump(app)
    assert "Alert update" in chat.texts_to("sxs")[0]
    for user in ("vic", "viczh", "vicquiet", "rong", "sxs"):
        assert "Alert cancelled" in chat.last_text(user) or "已解除" in chat.last_text(user)
    assert len(chat.texts_to("sxs")) == 2 and chat.texts_to("zh") == []
    assert len(chat.texts_to("vic")) == 3  # alert, update, cancel: no doubles


async def test_untrusted_sender_is_logged_and_dropped(make_app, sqlite_url, tmp_path, caplog):
    """CAP_TRUSTED_SENDERS set: an alert from another sender reaches no one, and says why."""
    app, chat = await make_app(sqlite_url)
    await _residents(app)
    folder = tmp_path / "cap"
    folder.mkdir()
    raw = (DATA / "01-south-rainstorm.xml").read_bytes()
    (folder / "forged.xml").write_bytes(raw.replace(b"cdqx@cma.gov.cn", b"cma@forger.example")
                                        .replace(b"20260723063000", b"20260723063001"))
    shutil.copy(DATA / "02-victoria-gas.xml", folder)
    gas_sender = cap.parse_document((DATA / "02-victoria-gas.xml").read_bytes()).sender
    app.services.settings.cap = CapSettings(folder=folder, trusted_senders=[gas_sender])
    with caplog.at_level(logging.WARNING):
        counts = await cap.poll(app.sessions, app.services, None)
    assert counts == {"untrusted": 1, "pushed": 1}
    assert "sender 'cma@forger.example' is not in CAP_TRUSTED_SENDERS" in caplog.text
    await pump(app)
    assert [("Gas cut" in t) for t in chat.texts_to("vic")] == [True]
    assert chat.texts_to("rong") == []


def _key_and_cert(tmp_path, name: str):
    """A throw-away RSA key and self-signed certificate, made for this test only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    from datetime import UTC, datetime
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / f"{name}.pem").write_bytes(cert_pem)
    return key_pem, cert_pem, tmp_path / f"{name}.pem"


def _signed(raw: bytes, key_pem: bytes, cert_pem: bytes) -> bytes:
    from lxml import etree
    from signxml import XMLSigner

    root = etree.fromstring(raw)
    signed = XMLSigner().sign(root, key=key_pem, cert=cert_pem.decode())
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


async def test_signed_alerts_trusted_untrusted_and_unsigned(make_app, sqlite_url, tmp_path,
                                                            caplog):
    """CAP_TRUSTED_CERTS + CAP_REQUIRE_SIGNATURE: only an alert signed by a trusted key (and
    from a trusted sender) reaches residents; one signed by another key, a tampered one, an
    unsigned one and a trusted-key one from an untrusted sender are logged and dropped."""
    app, chat = await make_app(sqlite_url)
    await _residents(app)
    key, cert, cert_path = _key_and_cert(tmp_path, "cma-test-only")
    other_key, other_cert, _ = _key_and_cert(tmp_path, "forger-test-only")
    folder = tmp_path / "cap"
    folder.mkdir()
    storm = (DATA / "01-south-rainstorm.xml").read_bytes()

    def variant(n: int) -> bytes:
        return storm.replace(b"20260723063000", b"2026072306300%d" % n)

    (folder / "a-good.xml").write_bytes(_signed(variant(1), key, cert))
    (folder / "b-other-key.xml").write_bytes(_signed(variant(2), other_key, other_cert))
    tampered = _signed(variant(3), key, cert).replace(b"Avoid low roads", b"Go outside now")
    (folder / "c-tampered.xml").write_bytes(tampered)
    (folder / "d-unsigned.xml").write_bytes(variant(4))
    (folder / "e-wrong-sender.xml").write_bytes(
        _signed(variant(5).replace(b"cdqx@cma.gov.cn", b"someone@else.example"), key, cert))
    app.services.settings.cap = CapSettings(
        folder=folder, trusted_certs=[cert_path], require_signature=True,
        trusted_senders=["cdqx@cma.gov.cn"])
    with caplog.at_level(logging.WARNING):
        counts = await cap.poll(app.sessions, app.services, None)
    assert counts == {"pushed": 1, "unsigned": 1, "untrusted": 1}
    assert "b-other-key.xml skipped: XML signature does not verify" in caplog.text
    assert "c-tampered.xml skipped: XML signature does not verify" in caplog.text
    assert "CAP_REQUIRE_SIGNATURE" in caplog.text and "CAP_TRUSTED_SENDERS" in caplog.text
    await pump(app)
    [told] = chat.texts_to("vic")
    assert "Avoid low roads" in told and "Go outside" not in told
    async with app.sessions() as s:
        rows = (await s.scalars(select(AlertCap))).all()
    assert [r.identifier for r in rows] == ["51010041600000_20260723063001"]
