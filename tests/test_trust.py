"""Issue 11 in chat (memory adapter), on SQLite and PostgreSQL: long names, NUL bytes and
coordinate-less locations never break a person's updates; signing keys rotate with a grace
period; votes and staff actions carry an age limit."""

from __future__ import annotations

import math
import re
from datetime import timedelta

from pydantic import SecretStr
from sqlalchemy import select

from bot.messaging.model import Inbound, Kind
from bot.signing import Signer
from storage import volunteer_teams
from storage import volunteering as vol
from storage.people import Resident, identity_for
from tests.report_helpers import drain, english_resident, grant

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


async def _file(chat, user: str) -> str:
    await chat.say(user, "/report")
    await chat.press(user, "Street lighting")
    await chat.say(user, "Lamp out")
    await chat.press(user, "No photos")
    await chat.share_location(user, 30.633, 104.04)
    if "Is it one of these?" in chat.last_text(user):
        await chat.press(user, "No, it is a different problem")
    await chat.press(user, "File the report")
    return re.search(r"Z-\d{4}-\d{5}", chat.last_text(user)).group(0)


async def test_staff_buttons_on_an_old_report_card_expire(make_app, db_url):
    app, chat = await make_app(db_url, fresh_staff_hours=48)
    await english_resident(chat, "crew", "Victoria Garden")
    await grant(app, "crew", "team", "lighting-roads")
    await english_resident(chat, "ann")
    ref = await _file(chat, "ann")
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
    now = [__import__("datetime").datetime(2026, 12, 1, tzinfo=__import__("datetime").UTC)]
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
    from storage import roles_service
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
