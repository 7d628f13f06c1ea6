"""Issue 11, cases 1 and 4, through the chat: a household is a unit staff approved, not one a
resident types; moving ends verification and withdraws requests; approval checks the estate."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from bot.app import load_territory_file
from storage import polls, territory
from storage import verification as ver
from storage.people import Identity, Resident, normalize_unit
from storage.verification import set_home
from tests.conftest import DEMO
from tests.deliberation_helpers import grant, make_resident
from tests.test_polls import _publish


async def _home(chat, user: str, unit: str, *, estate="Victoria Garden", building="2",
                first: bool = True) -> None:
    """Set a home the way a resident does: /start (or /profile → Change home), then buttons."""
    if first:
        await chat.say(user, "/start")
        await chat.press(user, "English")
    else:
        await chat.say(user, "/profile")
        await chat.press(user, "Change home")
    await chat.press(user, estate)
    await chat.press(user, building)
    await chat.say(user, unit)
    assert any("Your home is saved" in t for t in chat.texts_to(user)[-4:]), \
        chat.texts_to(user)[-4:]


async def _rid(app, user: str) -> int:
    async with app.sessions() as s:
        return await s.scalar(select(Identity.resident_id).where(
            Identity.platform_user_id == user))


async def _resident(app, user: str) -> Resident:
    async with app.sessions() as s:
        return await s.get(Resident, await _rid(app, user))


async def _approve_button(app, chat, staff: str, user: str, label: str = "Approve") -> str:
    """The Approve button of the /pending item naming this resident."""
    name = f"#{await _rid(app, user)}"
    for sent in reversed(chat.sent):
        if sent.chat_id == staff and sent.out.text.startswith(f"{name},"):
            return next(b.payload for row in sent.out.buttons for b in row if b.label == label)
    raise AssertionError(f"no pending item for {name}: {chat.texts_to(staff)[-3:]}")


async def _verify(app, chat, staff: str, user: str) -> None:
    await chat.say(user, "/verify")
    assert "Your request is in" in chat.last_text(user)
    await chat.say(staff, "/pending")
    await chat.press(staff, await _approve_button(app, chat, staff, user), raw=True)
    assert chat.last_text(staff) == "Approved."


async def _vote(chat, user: str, option: str = "1. By the gate") -> str:
    await chat.say(user, "/polls")
    await chat.press(user, "#")
    if "Poll #" in chat.last_text(user):
        await chat.press(user, option)
    return chat.last_text(user)


async def _committee(app, who: str, code: str, estate: str = "victoria") -> None:
    await make_resident(app.sessions, "memory", who, estate=estate, lang="en")
    await grant(app.sessions, f"memory:{who}", "committee", code)


@pytest.mark.parametrize("typed", ["2-301", "2－301", "２-３０１", "2单元301", "2 单元 301室",
                                   "2—301", "2_301", " 2/301 "])
def test_one_spelling_per_unit(typed):
    assert normalize_unit(typed) == "2-301"


async def test_changing_unit_cannot_stuff_a_household_poll(make_app, db_url):
    app, chat = await make_app(db_url)
    await _committee(app, "author", "victoria")
    await _home(chat, "mia", "2-301")
    await _verify(app, chat, "author", "mia")
    await _home(chat, "ned", "2-302")  # the real household of 2-302
    await _verify(app, chat, "author", "ned")
    verified_only = await _publish(chat, "author", household=True, anonymous=True)
    assert "recorded anonymously" in await _vote(chat, "mia")

    # Mia "moves" within her building, unit after unit: each move ends her verification.
    for unit in ("2-302", "2-303", "2-304"):
        await _home(chat, "mia", unit, first=False)
        if unit == "2-302":
            assert any("verification has ended" in t for t in chat.texts_to("mia")[-5:])
        assert "verified residents only" in await _vote(chat, "mia")
    await chat.say("mia", "/profile")
    assert "Unit: 2-304" in chat.last_text("mia") and "Verified: not yet" in chat.last_text("mia")

    # An estate invite code makes her verified again, but it approves no unit: still no vote.
    await chat.say("author", "/invite")
    await chat.press("author", "Victoria Garden")
    code = chat.last_text("author").split("/join ")[-1].rstrip(".")
    async with app.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(ver.Invite)
                              .where(ver.Invite.code == code)) == 1, chat.last_text("author")
    await chat.say("mia", f"/join {code}")
    assert "verified" in chat.last_text("mia").lower()
    assert "one vote per household" in await _vote(chat, "mia")

    # The real household of 2-302 still votes.
    assert "recorded anonymously" in await _vote(chat, "ned")
    async with app.sessions() as s:
        voters = (await s.scalars(select(polls.PollParticipation.voter_key).where(
            polls.PollParticipation.poll_id == verified_only))).all()
    assert len(voters) == 2

    # "Anyone registered" per household: a typed unit still mints no household.
    open_poll = await _publish(chat, "author", question="Paint the fence green?",
                               verified=False, household=True, anonymous=True)
    await _home(chat, "mia", "2-305", first=False)
    await chat.say("mia", "/polls")
    await chat.press("mia", "Paint the fence")
    assert "one vote per household" in chat.last_text("mia")
    async with app.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(polls.PollParticipation).where(
            polls.PollParticipation.poll_id == open_poll)) == 0


async def test_one_flat_typed_four_ways_is_one_household(make_app, db_url):
    app, chat = await make_app(db_url)
    await _committee(app, "author", "victoria")
    spellings = {"wu": "2-301", "xu": "2－301", "yu": "２-３０１", "zu": "2单元301"}
    for user, unit in spellings.items():
        await _home(chat, user, unit)
        await _verify(app, chat, "author", user)
    homes = [(r.unit, r.household_id) for r in [await _resident(app, u) for u in spellings]]
    assert {u for u, _ in homes} == {"2-301"} and len({h for _, h in homes}) == 1
    await _publish(chat, "author", household=True, anonymous=True)
    outcomes = [await _vote(chat, user) for user in spellings]
    assert "recorded anonymously" in outcomes[0]
    assert all("Your household has already voted" in o for o in outcomes[1:]), outcomes


async def test_moving_withdraws_the_request_and_the_old_estate_cannot_approve(make_app, db_url):
    app, chat = await make_app(db_url)
    await _committee(app, "vic", "victoria")
    await _committee(app, "zho", "zhonghai", estate="zhonghai-mingcheng")
    await _home(chat, "ren", "3-101")
    await chat.say("ren", "/verify")
    await chat.say("vic", "/pending")
    approve = await _approve_button(app, chat, "vic", "ren")
    await _home(chat, "ren", "5-502", estate="Zhonghai Mingcheng", building="3", first=False)
    # Victoria's member presses the Approve button they were shown before the move.
    await chat.press("vic", approve, raw=True)
    assert "withdrawn" in chat.last_text("vic")
    assert not (await _resident(app, "ren")).verified
    async with app.sessions() as s:
        statuses = (await s.scalars(select(ver.VerificationRequest.status))).all()
    assert statuses == ["withdrawn"]
    await chat.say("vic", "/pending")
    assert chat.last_text("vic") == "Nobody is waiting for approval."
    await chat.say("zho", "/pending")
    assert "ren," not in chat.last_text("zho")
    # Asking again reaches the new estate's committee, which may approve.
    await _verify(app, chat, "zho", "ren")
    ren = await _resident(app, "ren")
    assert ren.verified and ren.verified_household_id == ren.household_id


async def test_approval_checks_the_estate_again(make_app, db_url):
    """Even a move that bypassed set_home (an import, a console edit) is caught at approval."""
    app, chat = await make_app(db_url)
    await _committee(app, "vic", "victoria")
    await _home(chat, "ren", "3-101")
    await chat.say("ren", "/verify")
    await chat.say("vic", "/pending")
    approve = await _approve_button(app, chat, "vic", "ren")
    rid = await _rid(app, "ren")
    async with app.sessions() as s, s.begin():
        ren = await s.get(Resident, rid)
        elsewhere = await territory.estate_by_code(s, "zhonghai-mingcheng")
        ren.estate_id = elsewhere.id  # another estate, written directly
    await chat.press("vic", approve, raw=True)
    assert "withdrawn" in chat.last_text("vic")
    assert not (await _resident(app, "ren")).verified


async def test_units_come_from_the_territory_list_where_it_has_one(make_app, db_url, tmp_path):
    app, chat = await make_app(db_url)
    data = json.loads(DEMO.read_text(encoding="utf-8"))
    victoria = next(e for st in data["stations"] for c in st["committees"]
                    for e in c["estates"] if e["code"] == "victoria")
    victoria["buildings"] = [b if str(b) != "2" else {"number": "2", "units": [
        "2-301", "2－302", "2单元303室"]} for b in victoria["buildings"]]
    listed = tmp_path / "territory.json"
    listed.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    await load_territory_file(app.sessions, listed)  # reloading the territory adds the units

    await chat.say("lu", "/start")
    await chat.press("lu", "English")
    await chat.press("lu", "Victoria Garden")
    await chat.press("lu", "2")
    assert "Pick your unit" in chat.last_text("lu")
    assert [b.label for row in chat.last("lu").buttons for b in row][:3] == [
        "2-301", "2-302", "2-303"]
    await chat.say("lu", "2-309")  # not a unit of building 2
    assert "2-309 is not a unit of this building" in chat.last_text("lu")
    await chat.say("lu", "２单元３０２")
    assert (await _resident(app, "lu")).unit == "2-302"
    await _home(chat, "lu", "2-302", first=False)  # typing still works for listed units
    await chat.say("lu", "/profile")
    await chat.press("lu", "Change home")
    await chat.press("lu", "Victoria Garden")
    await chat.press("lu", "2")
    await chat.press("lu", "2-303")
    assert (await _resident(app, "lu")).unit == "2-303"
    async with app.sessions() as s, s.begin():
        with pytest.raises(ValueError):  # the rule holds in storage, not only in the chat
            await set_home(s, await s.get(Resident, await _rid(app, "lu")),
                           victoria_id := (await territory.estate_by_code(s, "victoria")).id,
                           (await territory.building(s, victoria_id, "2")).id, "2-999")
