"""Issue 11 in chat (memory adapter), on SQLite and PostgreSQL: long names, NUL bytes and
coordinate-less locations never break a person's updates; signing keys rotate with a grace
period; votes and staff actions carry an age limit."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import select

from bot.app import build_app
from bot.config import BotSettings, DatabaseSettings, Settings
from bot.messaging.memory import MemoryAdapter
from bot.messaging.model import Inbound, Kind
from bot.signing import Signer
from storage import reports as rep
from storage import roles_service, territory, volunteer_teams
from storage import volunteering as vol
from storage.people import Resident, identity_for
from tests.report_helpers import drain, english_resident, file_report, grant

LONG_NAME = "王" * 64 + " " + "L" * 64  # 129 characters: Telegram's longest full name


async def _ready(chat, user: str) -> None:
    await chat.say(user, "/start")
    await chat.press(user, "English")
    await chat.say(user, "/cancel")


async def test_a_129_character_name_does_not_lock_its_owner_out(make_app, db_url):
    app, chat = await make_app(db_url)
    await chat.say("long", "/start", display_name=LONG_NAME)
    assert "choose a language" in chat.last_text("long")
    await chat.press("long", "English", display_name=LONG_NAME)
    await chat.say("long", "/help", display_name=LONG_NAME)
    assert "What you can do:" in chat.last_text("long")
    async with app.sessions() as s:
        ident = await identity_for(s, "memory", "long")
        resident = await s.get(Resident, ident.resident_id)
    assert len(resident.display_name) == 120 and resident.display_name.endswith("…")
    assert resident.display_name.startswith("王" * 64)
    assert not any("went wrong" in t for t in chat.texts_to("long"))


async def test_nul_bytes_in_commands_and_text_are_stripped(make_app, db_url):
    app, chat = await make_app(db_url)
    await _ready(chat, "boss")
    await grant(app, "boss", "staff", "sxs-station")
    await chat.say("boss", "/newteam Green\x00 Hands")
    assert "went wrong" not in chat.last_text("boss")
    async with app.sessions() as s:
        names = [t.name for t, _ in await volunteer_teams.teams(s)]
    assert "Green Hands" in names
    # Free text inside a conversation and in the name too.
    await chat.say("nul", "/start", display_name="A\x00B")
    await chat.press("nul", "English")
    await chat.press("nul", "Zhonghai Mingcheng")
    await chat.press("nul", "3")
    await chat.say("nul", "2-\x00301")
    assert any("Your home is saved" in t for t in chat.texts_to("nul")[-4:])
    async with app.sessions() as s:
        ident = await identity_for(s, "memory", "nul")
        resident = await s.get(Resident, ident.resident_id)
    assert (resident.display_name, resident.unit) == ("AB", "2-301")


async def test_overlong_strings_are_bounded_before_their_column(make_app, db_url):
    """Whatever handler forgot a length check, the row still fits (PostgreSQL would refuse)."""
    app, chat = await make_app(db_url)
    async with app.sessions() as s, s.begin():
        ident = await identity_for(s, "memory", "x")
        assert ident is None
    await _ready(chat, "x")
    async with app.sessions() as s, s.begin():
        ident = await identity_for(s, "memory", "x")
        resident = await s.get(Resident, ident.resident_id)
        resident.unit = "9" * 50 + "\x00"
        resident.display_name = "n" * 500
    async with app.sessions() as s:
        row = await s.scalar(select(Resident).where(Resident.id == resident.id))
    assert row.unit == "9" * 19 + "…" and len(row.display_name) == 120


async def test_a_location_without_coordinates_is_refused(make_app, db_url):
    app, chat = await make_app(db_url)
    await chat.say("u", "/start")
    await chat.press("u", "English")
    for lat, lon in [(None, None), (math.nan, 104.04), (30.6, math.inf), (91.0, 104.0),
                     (30.6, -181.0)]:
        await chat.deliver(Inbound(platform="memory", user_id="u", chat_id="u",
                                   kind=Kind.LOCATION, latitude=lat, longitude=lon,
                                   language_hint="en"))
        assert "something I cannot read" in chat.last_text("u")
    await chat.share_location("u", 30.633, 104.040)  # a real one still works
    assert "Zhonghai Mingcheng" in chat.last_text("u")


# -- signing: rotation and age limits --------------------------------------------------------

async def test_rotated_key_is_accepted_for_the_grace_period_only(make_app, db_url):
    old_app, old_chat = await make_app(db_url, secret=SecretStr("old-key-" + "a" * 32))
    await old_chat.say("u", "/start")
    english = old_chat.find_button("u", "English")
    await old_app.stop()

    app, chat = await make_app(db_url, secret=SecretStr("new-key-" + "b" * 32),
                               secret_previous=SecretStr("old-key-" + "a" * 32),
                               secret_grace_hours=24)
    await chat.press("u", english, raw=True)
    assert "Language set to English" in chat.texts_to("u")[0]
    chat.clear()
    app.services.clock.advance(timedelta(hours=25))
    await chat.press("u", english, raw=True)
    assert chat.last_text("u") == "This button is no longer valid. Please start again."
    # Buttons signed with the new key keep working.
    await chat.say("u", "/profile")
    await chat.press("u", "Change language")
    assert chat.find_button("u", "中文")


async def test_a_key_not_named_as_previous_is_refused(make_app, sqlite_url):
    old_app, old_chat = await make_app(sqlite_url, secret=SecretStr("k1" * 20))
    await old_chat.say("u", "/start")
    english = old_chat.find_button("u", "English")
    await old_app.stop()
    app, chat = await make_app(sqlite_url, secret=SecretStr("k2" * 20))
    await chat.press("u", english, raw=True)
    assert chat.last_text("u") == "这个按钮已失效，请重新开始操作。"


async def test_staff_buttons_on_an_old_report_card_expire(make_app, db_url):
    app, chat = await make_app(db_url, fresh_staff_hours=48)
    await english_resident(chat, "crew", "Victoria Garden")
    await grant(app, "crew", "team", "lighting-roads")
    await english_resident(chat, "ann")
    ref = await file_report(chat, "ann", "Street lighting", "Lamp out", 30.633, 104.04)
    await drain(app)
    assert any(ref in t for t in chat.texts_to("crew"))
    ack = chat.find_button("crew", "Acknowledge")
    app.services.clock.advance(timedelta(hours=49))
    await chat.press("crew", ack, raw=True)
    expired = chat.last(chat_user := "crew")
    assert expired.text.startswith("This button has expired")
    assert expired.notice == "This button has expired."
    # A fresh card (from /queue) works.
    await chat.say(chat_user, "/queue")
    await chat.press(chat_user, ref)
    await chat.press(chat_user, "Acknowledge")
    assert f"Report {ref} is now: acknowledged" in chat.last_text(chat_user)


async def test_vote_and_staff_payloads_fit_and_carry_their_age():
    now = [datetime(2026, 12, 1, tzinfo=UTC)]
    signer = Signer(b"k" * 32, fresh={"pv": timedelta(hours=1)}, clock=lambda: now[0])
    payload = signer.sign(2**40, "pv", 2**31, 11)
    assert len(payload.encode()) <= 64
    assert signer.verify(2**40, payload) == ("pv", [str(2**31), "11"])
    now[0] += timedelta(minutes=61)
    assert signer.verify(2**40, payload) == ("~expired", ["pv"])
    # The time is inside the signature: changing it breaks the payload.
    body, _, sig = payload.rpartition("~")
    core, _, stamp = body.partition("~")
    assert signer.verify(2**40, f"{core}~zzzzzz~{sig}") is None
    # A vote payload without a time (signed before votes had to be fresh) is expired.
    plain = Signer(b"k" * 32, clock=lambda: now[0]).sign(2**40, "pv", 1, 0)
    assert signer.verify(2**40, plain) == ("~expired", ["pv"])


# -- a revoked organiser ------------------------------------------------------------------------

async def test_a_revoked_organiser_loses_control_of_their_activities(make_app, db_url):
    from tests.test_volunteering_chat import _publish, _setup, _sign_up

    app, chat, _ = await _setup(make_app, db_url)
    await _publish(app, chat, "org", announce=False)
    await _sign_up(chat, "r1")
    await chat.say("org", "/roster")
    await chat.press("org", "Park clean-up")
    assert "Export CSV" in [b.label for row in chat.last("org").buttons for b in row]
    buttons = {b.label: b.payload for row in chat.last("org").buttons for b in row}
    pick = chat.find_button("org", "Park clean-up")

    async with app.sessions() as s, s.begin():
        await roles_service.change_role(s, "memory:org", "committee", "zhonghai",
                                        actor_id=None, grant=False, create_missing=False)
    await chat.say("org", "/roster")
    assert chat.last_text("org") == "You have no upcoming shifts to manage."
    for payload in (pick, buttons["Export CSV"], buttons["Change places"],
                    buttons["Cancel this shift"]):
        await chat.press("org", payload, raw=True)
        assert chat.last_text("org") == "You are not allowed to do that.", payload
        assert not chat.last("org").document
    attend = next(p for label, p in buttons.items() if label.startswith("Attended:"))
    await chat.press("org", attend, raw=True)
    assert chat.last_text("org") == "You are not allowed to do that."
    async with app.sessions() as s:
        shifts = list((await s.scalars(select(vol.Shift))).all())
    assert all(sh.status == "open" for sh in shifts)

    # Granted again, they manage it again: rights follow the roles held now.
    async with app.sessions() as s, s.begin():
        await roles_service.change_role(s, "memory:org", "committee", "zhonghai",
                                        actor_id=None, grant=True, create_missing=False)
    await chat.press("org", buttons["Export CSV"], raw=True)
    assert chat.last("org").document


# -- scope of /stats, "reassign" and "duplicate of" -------------------------------------------

DEMO = Path(__file__).resolve().parent.parent / "content" / "territory" / "demo.json"


def _two_station_territory(tmp_path: Path) -> Path:
    """The demo territory with the Victoria committee (both estates in the south zone) moved
    to a second station."""
    data = json.loads(DEMO.read_text(encoding="utf-8"))
    station = data["stations"][0]
    victoria = next(c for c in station["committees"] if c["code"] == "victoria")
    station["committees"].remove(victoria)
    data["stations"].append({"code": "west-station", "name_zh": "西工作站",
                             "name_en": "West Station", "committees": [victoria]})
    path = tmp_path / "two-stations.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


async def _two_stations(tmp_path, url):
    path = await asyncio.to_thread(_two_station_territory, tmp_path)
    adapter = MemoryAdapter()
    settings = Settings(database=DatabaseSettings(DATABASE_URL=url),
                        bot=BotSettings(media_dir=tmp_path / "media", flood_burst=10_000))
    app = await build_app(settings, {adapter.platform: adapter}, territory=path)
    await app.start(deliver=False, schedule=False)
    return app, adapter


async def test_station_staff_and_teams_see_only_their_scope(tmp_path, db_url):
    app, chat = await _two_stations(tmp_path, db_url)
    try:
        await english_resident(chat, "boss")  # staff of the first station only
        await grant(app, "boss", "staff", "sxs-station")
        await english_resident(chat, "west", "Victoria Garden")
        await grant(app, "west", "team", "south-joint")
        await english_resident(chat, "ann")
        await english_resident(chat, "eve", "Victoria Garden")
        mine = await file_report(chat, "ann", "Noise", "Broken", 30.619, 104.044)  # central, first station
        theirs = await file_report(chat, "eve", "Rubbish and cleanliness", "Broken", 30.606, 104.04)
        await drain(app)

        await chat.say("boss", "/stats 7")
        table = [s.out for s in chat.sent if s.chat_id == "boss"][-2].text
        assert "Reports received in the last 7 days: 1" in table
        assert "Central zone: 1" in table and "North zone: 0" in table
        assert "South zone" not in table
        assert "South zone joint enforcement team" not in table
        assert "Central zone joint enforcement team: 1" in table
        csv_text = await asyncio.to_thread(Path(chat.last("boss").document).read_text,
                                           encoding="utf-8-sig")
        assert "South zone" not in csv_text

        # The west team's member: "not ours" offers only the teams around their station.
        await chat.say("west", "/queue")
        await chat.press("west", theirs)
        await chat.press("west", "Not ours")
        labels = [b.label for row in chat.last("west").buttons for b in row]
        assert "Central zone joint enforcement team" not in labels
        assert "North zone joint enforcement team" not in labels
        assert "Street lighting and roads crew" in labels  # works the whole sub-district
        # A forged hand-over to a team beyond their reach is refused.
        async with app.sessions() as s:
            report = await rep.by_reference(s, theirs)
            central = await s.scalar(select(territory.Team).where(
                territory.Team.code == "central-joint"))
        west_id = (await identity_for_app(app, "west"))
        await chat.press("west", app.services.signer.sign(west_id, "rto", report.id,
                                                          central.id), raw=True)
        assert chat.last_text("west") == "This button is no longer valid. Please start again."
        async with app.sessions() as s:
            assert (await rep.by_reference(s, theirs)).team_id == report.team_id

        # "Duplicate of" a reference outside their reach reads as no such report.
        await chat.say("west", "/queue")
        await chat.press("west", theirs)
        await chat.press("west", "Duplicate of")
        await chat.say("west", mine)
        unknown = chat.last_text("west")
        await chat.say("west", "Z-1999-00001")
        assert chat.last_text("west").replace("Z-1999-00001", mine) == unknown
        assert unknown.startswith("There is no other report")

        # An admin sees every zone.
        await english_resident(chat, "root")
        await grant(app, "root", "admin", None)
        await chat.say("root", "/stats 7")
        table = [s.out for s in chat.sent if s.chat_id == "root"][-2].text
        assert "Reports received in the last 7 days: 2" in table and "South zone: 1" in table
    finally:
        await app.stop()


async def identity_for_app(app, user: str) -> int:
    async with app.sessions() as s:
        return (await identity_for(s, "memory", user)).id


async def test_a_vote_button_from_an_old_invitation_expires(make_app, db_url):
    from bot.delivery import Deliverer
    from bot.scheduler import run_jobs_once
    from tests.deliberation_helpers import make_resident
    from tests.test_polls import _publish, _setup

    app, chat = await _setup(make_app, db_url, fresh_vote_hours=24)
    await make_resident(app.sessions, "memory", "ann", unit="ann-1")
    await _publish(chat, "author", anonymous=False, closes="7d")
    deliverer = Deliverer(app.engine, app.sessions, app.adapters)
    await run_jobs_once(app.sessions, app.services, None, app.jobs)
    while await deliverer.drain_once():
        pass
    old_vote = chat.find_button("ann", "2. By the pond")
    assert old_vote
    app.services.clock.advance(timedelta(hours=25))
    await chat.press("ann", old_vote, raw=True)
    assert chat.last_text("ann").startswith("This button has expired")
    # A ballot opened now works.
    await chat.say("ann", "/polls")
    await chat.press("ann", "#")
    await chat.press("ann", "2. By the pond")
    assert any("You voted in poll" in t for t in chat.texts_to("ann")[-3:])
