"""The Open311 GeoReport v2 API end to end: a request filed by POST reaches the team's chat
like a chat report, is worked in chat, and its status (and the fix note) is what GET shows;
a resident following it in chat sees the same status. Scope and privacy are tested by
attack: keys of another scope, revoked and made-up keys, and a search through every answer
for the reporter's name and phone."""

from __future__ import annotations

import re
from datetime import timedelta

import aiohttp
import pytest
from sqlalchemy import select, update

from bot.config import Open311Settings
from services.report_cards import file_urgent_report
from storage import audit, open311
from storage import reports as rep
from storage.people import Resident, identity_for
from tests.open311_client import Open311Client, Open311ClientError
from tests.open311_support import make_key, web_app
from tests.report_helpers import drain, english_resident, file_report, grant

VICTORIA = (30.606, 104.04)  # Victoria Garden, the south zone: the south joint team


@pytest.fixture
async def served(tmp_path):
    """(app, chat, endpoint, http): the bot with its web application on a loopback port."""
    made = []

    async def build(url, **kw):
        app, chat, endpoint = await web_app(url, tmp_path, **kw)
        http = aiohttp.ClientSession()
        made.append((app, http))
        return app, chat, endpoint, http

    yield build
    for app, http in made:
        await http.close()
        await app.stop()


async def test_post_reaches_the_team_is_fixed_in_chat_and_get_shows_closed(served, db_url):
    app, chat, endpoint, http = await served(db_url)
    await english_resident(chat, "south", "Victoria Garden")
    await grant(app, "south", "team", "south-joint")
    await english_resident(chat, "eve", "Victoria Garden")
    token = await make_key(app, "station:sxs-station", "city work orders")
    client = Open311Client(endpoint, http, fmt="json", api_key=token,
                           jurisdiction_id="sxs-station")

    filed = await client.create(
        service_code="rubbish", lat=VICTORIA[0], long=VICTORIA[1],
        description="Bins overflowing by the east gate", first_name="Li", last_name="Hua",
        phone="13800001111", email="li.hua@example.org",
        media_url="https://example.org/photos/1.jpg", locale="en")
    assert client.last_status == 201
    ref = filed["service_request_id"]
    assert re.fullmatch(r"Z-\d{4}-\d{5}", ref)
    assert "South zone joint enforcement team" in filed["service_notice"]

    # The team's card, as for a chat report; the team sees the contact that came with it.
    await drain(app)
    card = next(t for t in chat.texts_to("south") if ref in t)
    assert "Bins overflowing by the east gate" in card
    assert "Li Hua (via Open311 · city work orders)" in card and "13800001111" in card

    # The same problem posted again nearby is merged into it: no second report, no card.
    cards_before = len(chat.texts_to("south"))
    again = await client.create(service_code="rubbish", lat=VICTORIA[0] + 0.0003,
                                long=VICTORIA[1], description="Rubbish everywhere", locale="en")
    assert again["service_request_id"] == ref and ref in again["service_notice"]
    await drain(app)
    assert len(chat.texts_to("south")) == cards_before

    # A resident reporting it in chat is offered to follow it instead, and does.
    await chat.say("eve", "/report")
    await chat.press("eve", "Rubbish and cleanliness")
    await chat.say("eve", "Full bins")
    await chat.press("eve", "No photos")
    await chat.share_location("eve", VICTORIA[0] + 0.0002, VICTORIA[1])
    assert "Is it one of these?" in chat.last_text("eve") and ref in chat.last_text("eve")
    await chat.press("eve", f"Yes, it is {ref}")
    assert f"You now follow {ref}" in chat.last_text("eve")

    seen = await client.request(ref)
    assert seen["status"] == "open" and seen["status_notes"] is None
    assert seen["agency_responsible"] == "南片区联合执法队"  # the default language
    assert seen["media_url"] == "https://example.org/photos/1.jpg"
    assert (seen["lat"], seen["long"]) == VICTORIA

    # Fixed in chat, with a note: GET shows it closed, with the note; extended, "fixed".
    await chat.press("south", "Fixed")
    await chat.say("south", "Bins emptied, thank you")
    await drain(app)
    for fmt in ("json", "xml"):
        client.fmt = fmt
        seen = await client.request(ref, locale="en")
        assert seen["status"] == "closed"
        assert seen["status_notes"] == "Bins emptied, thank you"
        assert seen["agency_responsible"] == "South zone joint enforcement team"
        assert seen["expected_datetime"] is None
        assert (await client.request(ref, extensions="true"))["status"] == "fixed"
        listed = await client.requests(status="closed")
        assert [r["service_request_id"] for r in listed] == [ref]
        assert await client.requests(status="open") == []
        assert "13800001111" not in client.last_text and "Hua" not in client.last_text
    # The follower in chat was told the same status, and /myreports says it.
    assert f"{ref} (Rubbish and cleanliness), is now: fixed" in chat.last_text("eve")
    await chat.say("eve", "/myreports")
    assert f"{ref} · Rubbish and cleanliness · fixed" in chat.last_text("eve")

    async with app.sessions() as s:
        posts = [e for e in await audit.recent(s) if e.action == "open311.post"]
    assert [(e.target, e.detail["merged"]) for e in reversed(posts)] == [(ref, False),
                                                                         (ref, True)]


async def test_scope_and_privacy_by_attack(served, sqlite_url):
    app, chat, endpoint, http = await served(sqlite_url)
    await english_resident(chat, "south", "Victoria Garden")
    await grant(app, "south", "team", "south-joint")
    await english_resident(chat, "ann", "Victoria Garden")
    async with app.sessions() as s, s.begin():
        ann = (await identity_for(s, "memory", "ann")).resident_id
        await s.execute(update(Resident).where(Resident.id == ann).values(
            display_name="Ann Zhang", phone="13912345678"))
    station = await make_key(app, "station:sxs-station")
    south = await make_key(app, "team:south-joint")
    central = await make_key(app, "team:central-joint")
    revoked = await make_key(app, "team:south-joint", "old kiosk")
    async with app.sessions() as s, s.begin():
        old = next(k for k, _ in await open311.keys(s) if k.label == "old kiosk")
        assert await open311.revoke_key(s, old.id, old.created_at + timedelta(days=1))

    # A safety report (a private category) and an ordinary one, filed in chat by Ann.
    hazard = await file_report(chat, "ann", "Safety hazard", "Loose wire at my door, unit 3-301",
                               *VICTORIA)
    lamp = await file_report(chat, "ann", "Street lighting", "Lamp out", 30.6065, 104.0405)
    # One the bot filed for her ("I need help" on an emergency notice), in an open category,
    # with a control character no XML may hold.
    async with app.sessions() as s, s.begin():
        person = await s.get(Resident, ann)
        helped = (await file_urgent_report(s, app.services, person, category="other",
                                           description="Help\x0b at 3-301",
                                           reason={"code": "emergency_help", "id": 1,
                                                   "unit": "3-301"})).reference

    # Posting: a key of another scope, a revoked key, a made-up key, no key: all refused.
    form = {"service_code": "rubbish", "lat": VICTORIA[0], "long": VICTORIA[1],
            "description": "Bins", "locale": "en"}
    for key, status, words in ((central, 403, "outside what this api_key may file for"),
                               (revoked, 403, "not valid"), ("o311_madeup", 403, "not valid"),
                               (None, 403, "api_key is required")):
        client = Open311Client(endpoint, http, api_key=key)
        with pytest.raises(Open311ClientError) as refused:
            await client.create(**form)
        assert refused.value.status == status
        assert words in refused.value.errors[0]["description"]
        assert refused.value.errors[0]["code"] == str(status)  # XML: strings
    async with app.sessions() as s:
        assert await s.scalar(select(rep.Report.id).where(rep.Report.category == "rubbish")) \
            is None
        refusals = [e for e in await audit.recent(s) if e.action == "open311.post_refused"]
    assert len(refusals) == 4 and {e.detail["status"] for e in refusals} == {403}
    # The team's own key may post in its zone.
    assert (await Open311Client(endpoint, http, api_key=south).create(**form))[
        "service_request_id"]

    # Reading: nobody outside sees the safety report's place or words; the covering keys do.
    def find(found, ref):
        return next(r for r in found if r["service_request_id"] == ref)

    for fmt in ("json", "xml"):
        for key in (None, central):
            client = Open311Client(endpoint, http, fmt=fmt, api_key=key)
            shown = find(await client.requests(api_key=key, locale="en"), hazard)
            assert shown["lat"] is None and shown["long"] is None
            assert shown["description"] is None
            assert shown["address"] == "South zone"  # the zone, not the estate
            assert shown["status"] == "open" and shown["service_code"] == "safety"
            text = client.last_text
            assert "3-301" not in text and "Loose wire" not in text
            ordinary = find(await client.requests(api_key=key), lamp)
            assert ordinary["description"] == "Lamp out" and ordinary["lat"] is not None
            generated = find(await client.requests(api_key=key), helped)
            assert generated["description"] is None and generated["lat"] is None
        for key in (station, south):
            client = Open311Client(endpoint, http, fmt=fmt)
            shown = find(await client.requests(api_key=key), hazard)
            assert shown["description"] == "Loose wire at my door, unit 3-301"
            assert shown["lat"] is not None
            expected = "Help\x0b at 3-301" if fmt == "json" else "Help at 3-301"
            assert find(await client.requests(api_key=key), helped)["description"] == expected
        # Whatever is asked, no answer names the reporter or their phone.
        client = Open311Client(endpoint, http, fmt=fmt)
        for call in (client.requests(), client.requests(api_key=station),
                     client.request(hazard, api_key=south), client.request(lamp)):
            await call
            assert "13912345678" not in client.last_text and "Ann Zhang" not in client.last_text
        # A made-up or revoked key does not read as "no key": it is refused.
        for key in ("o311_madeup", revoked):
            with pytest.raises(Open311ClientError) as refused:
                await client.requests(api_key=key)
            assert refused.value.status == 403


async def test_filters_paging_locale_and_errors(served, sqlite_url):
    app, chat, endpoint, http = await served(sqlite_url)
    await english_resident(chat, "ann", "Victoria Garden")
    refs = [await file_report(chat, "ann", "Street lighting", f"Lamp {i}", 30.606 + i * 0.01,
                              104.04) for i in range(3)]
    refs.append(await file_report(chat, "ann", "Noise", "Drilling at night", *VICTORIA))
    async with app.sessions() as s, s.begin():
        for i, ref in enumerate(refs):  # filed 40, 30, 20 and 10 days ago
            await s.execute(update(rep.Report).where(rep.Report.reference == ref).values(
                created_at=rep.utcnow() - timedelta(days=40 - 10 * i)))
        await s.execute(update(rep.Report).where(rep.Report.reference == refs[0]).values(
            status="closed", close_reason="unable"))
    client = Open311Client(endpoint, http, fmt="json")

    def ids(found):
        return [r["service_request_id"] for r in found]

    assert ids(await client.requests()) == refs[::-1]  # newest first
    assert ids(await client.requests(service_request_id=f"{refs[1]},{refs[3].lower()}")) == [
        refs[3], refs[1]]
    assert ids(await client.requests(service_code="noise")) == [refs[3]]
    assert ids(await client.requests(service_code="noise,lighting", status="open")) == [
        refs[3], refs[2], refs[1]]
    closed = await client.requests(status="closed", locale="en")
    assert ids(closed) == [refs[0]] and closed[0]["status_notes"] == "unable to fix"
    assert (await client.requests(status="closed", extensions="true"))[0]["status"] == \
        "no_further_action"
    now = rep.utcnow()
    window = {"start_date": (now - timedelta(days=35)).isoformat(),
              "end_date": (now - timedelta(days=15)).isoformat()}
    assert ids(await client.requests(**window)) == [refs[2], refs[1]]
    assert ids(await client.requests(**window, status="open", jurisdiction_id="sxs-station")) \
        == [refs[2], refs[1]]
    pages = [ids(await client.requests(page=p, page_size=3)) for p in (1, 2, 3)]
    assert pages == [refs[:0:-1], [refs[0]], []]

    # Names in the requested language; Chinese by default.
    zh = {s["service_code"]: s for s in await client.services()}
    en = {s["service_code"]: s for s in await client.services(locale="en")}
    assert zh["lighting"]["service_name"] == "路灯照明"
    assert en["lighting"]["service_name"] == "Street lighting"
    assert "street light" in en["lighting"]["keywords"] and "路灯" in zh["lighting"]["keywords"]
    assert (await client.service_definition("noise")) == {"service_code": "noise",
                                                          "attributes": []}

    # Errors: the status the specification gives, and a list of errors saying what is wrong.
    for call, status, words in (
            (client.requests(status="pending", locale="en"), 400, "neither open nor closed"),
            (client.requests(start_date="yesterday", locale="en"), 400, "not a date"),
            (client.requests(start_date=now.isoformat(), end_date=(now - timedelta(days=1))
                             .isoformat(), locale="en"), 400, "before start_date"),
            (client.requests(start_date=(now - timedelta(days=200)).isoformat(),
                             end_date=now.isoformat(), locale="en"), 400, "90 days"),
            (client.requests(page=0, locale="en"), 400, "page must be"),
            (client.requests(service_code="potholes", locale="en"), 400, "not one of ours"),
            (client.requests(jurisdiction_id="elsewhere", locale="en"), 404, "jurisdiction"),
            (client.request("Z-1999-00001", locale="en"), 404, "no service request"),
            (client.service_definition("potholes", locale="en"), 404, "no service_code"),
            (client.services(locale="zh-Hans", jurisdiction_id="nowhere"), 404, "辖区"),
    ):
        with pytest.raises(Open311ClientError) as refused:
            await call
        assert refused.value.status == status, words
        assert len(refused.value.errors) == 1 and refused.value.errors[0]["code"] == status
        assert words in refused.value.errors[0]["description"]
    for path, status in (("/nothing.json", 404), ("/services.html", 400),
                         ("/requests/Z-1999-00001.json", 404)):
        async with http.get(endpoint + path) as resp:
            assert resp.status == status
            errors = await resp.json() if path.endswith(".json") else None
            if errors is not None:
                assert errors[0]["code"] == status
            else:
                assert "<errors><error><code>400</code>" in await resp.text()


async def test_post_errors_body_size_and_rate_limit(served, sqlite_url):
    app, chat, endpoint, http = await served(sqlite_url, open311_settings=Open311Settings(
        max_body_bytes=2048, burst=3, rate_per_minute=6))
    token = await make_key(app, "station:sxs-station")
    client = Open311Client(endpoint, http, fmt="json", api_key=token)
    good = {"service_code": "rubbish", "description": "Bins", "locale": "en"}
    for fields, words in (
            ({**good, "service_code": "potholes"}, "no service_code"),
            ({**good, "description": ""}, "description is required"),
            (good, "Say where"),
            ({**good, "lat": "30.6"}, "both lat and long"),
            ({**good, "lat": "nan", "long": "104"}, "lat is not a valid number"),
            ({**good, "lat": "10", "long": "10"}, "outside the sub-district"),
            ({**good, "address_string": "Atlantis"}, "does not name one of our estates"),
            ({**good, "address_string": "Victoria Garden", "media_url": "file:///etc/passwd"},
             "media_url"),
    ):
        with pytest.raises(Open311ClientError) as refused:
            await client.create(**fields)
        assert refused.value.status in (400, 404)
        assert words in refused.value.errors[0]["description"], fields
        client.api_key = await make_key(app, "station:sxs-station")  # a fresh rate budget
    # An address string names an estate: filed at its centre.
    filed = await client.create(**good, address_string="Victoria Garden")
    async with app.sessions() as s:
        report = await rep.by_reference(s, filed["service_request_id"])
        assert report.exact_point is False and report.estate_id is not None
    # A body over the limit is refused unread.
    async with http.post(f"{endpoint}/requests.json?locale=en",
                         data={**good, "api_key": token, "description": "x" * 4000}) as resp:
        assert resp.status == 413
        assert "at most 2048 bytes" in (await resp.json())[0]["description"]
    # Three at once, then one every ten seconds: the fourth is told to wait, per key.
    reader = await make_key(app, "team:south-joint")
    answers = []
    for _ in range(4):
        async with http.get(f"{endpoint}/requests.json", params={"api_key": reader}) as resp:
            answers.append((resp.status, resp.headers.get("Retry-After")))
    assert [a[0] for a in answers] == [200, 200, 200, 429] and int(answers[3][1]) >= 1
    other = await make_key(app, "team:north-joint")
    async with http.get(f"{endpoint}/requests.json", params={"api_key": other}) as resp:
        assert resp.status == 200


def test_key_commands(tmp_path, monkeypatch, capsys):
    """create shows the key once; the database keeps only its hash; list never shows it;
    revoke ends it; a scope that does not exist is refused."""
    import asyncio

    from bot.cli import main
    from storage.db import create_engine, session_factory

    url = f"sqlite+aiosqlite:///{tmp_path}/bot.sqlite3"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("BOT_MEDIA_DIR", str(tmp_path / "media"))
    assert main(["open311", "key", "create", "--scope", "station:sxs-station",
                 "--label", "city work orders"]) == 0
    out = capsys.readouterr().out
    token = out.strip().splitlines()[-1]
    assert token.startswith("o311_") and len(token) > 40
    assert main(["open311", "key", "create", "--scope", "team:nowhere", "--label", "x"]) == 2
    assert "no team with code 'nowhere'" in capsys.readouterr().out
    assert main(["open311", "key", "list"]) == 0
    listed = capsys.readouterr().out
    assert "#1" in listed and "station:sxs-station" in listed and "active" in listed
    assert token not in listed

    async def stored():
        engine = create_engine(url)
        try:
            async with session_factory(engine)() as s:
                key = await open311.key_for(s, token)
                rows = (await s.scalars(select(open311.ApiKey))).all()
                return key, [(r.key_hash, r.hint) for r in rows]
        finally:
            await engine.dispose()

    key, rows = asyncio.run(stored())
    assert key is not None and rows == [(open311.hash_key(token), token[:10])]
    assert main(["open311", "key", "revoke", "1"]) == 0
    assert main(["open311", "key", "revoke", "1"]) == 2
    capsys.readouterr()
    assert main(["open311", "key", "list"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert asyncio.run(stored())[0] is None


async def test_python_m_bot_run_serves_the_api_beside_the_chat(tmp_path):
    """The operator's story: a platform configured and BOT_WEB_URL set, `python -m bot run`
    serves the chat and the API on BOT_WEB_PORT; SIGTERM ends both cleanly."""
    import asyncio
    import os
    import signal
    import socket
    import sys

    from tests.conftest import ROOT
    from tests.fakes.wechat_server import FakeWeChat

    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    async with FakeWeChat() as fake:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("TELEGRAM_", "WECHAT_", "BOT_", "OPEN311_"))}
        env.update({"WECHAT_APP_ID": fake.app_id, "WECHAT_APP_SECRET": fake.app_secret,
                    "WECHAT_TOKEN": fake.token, "WECHAT_API_BASE": fake.base_url,
                    "WECHAT_CALLBACK_HOST": "127.0.0.1", "WECHAT_CALLBACK_PORT": str(ports[0]),
                    "BOT_WEB_URL": "https://bot.example.org/", "BOT_WEB_HOST": "127.0.0.1",
                    "BOT_WEB_PORT": str(ports[1]),
                    "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/bot.sqlite3",
                    "BOT_MEDIA_DIR": str(tmp_path / "media"), "PYTHONPATH": str(ROOT)})
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            url = f"http://127.0.0.1:{ports[1]}/open311/v2/discovery.json"
            for _ in range(300):
                try:
                    async with aiohttp.ClientSession() as http, http.get(url) as resp:
                        discovery = await resp.json()
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("the web application never answered")
            assert discovery["endpoints"][0]["url"] == "https://bot.example.org/open311/v2"
            async with aiohttp.ClientSession() as http, http.get(
                    f"http://127.0.0.1:{ports[1]}/open311/v2/services.json") as resp:
                assert {s["service_code"] for s in await resp.json()} >= {"rubbish", "safety"}
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert f"web application on 127.0.0.1:{ports[1]}" in err.decode()
