"""storage/audience.py driven directly, without a chat: one audience model resolved to
recipients by one query, and the audiences notices, polls, surveys and volunteering build from
what they store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from storage import notices, polls, surveys, verification
from storage import volunteer_teams as vteams
from storage import volunteering as vol
from storage.audience import Audience, Each, Kind, count, recipients, refusal
from storage.db import create_engine, session_factory
from storage.migrate import upgrade_async
from storage.people import Identity, Resident, get_or_create_identity
from storage.subscriptions import SubscriptionOptOut
from storage.territory import building, estate_by_code
from storage.territory_loader import load_territory
from tests.conftest import DEMO


async def _db(url):
    await upgrade_async(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    async with sessions() as s, s.begin():
        await load_territory(s, json.loads(DEMO.read_text(encoding="utf-8")))
    return engine, sessions


async def _people(s) -> dict:
    """Residents across the victoria committee (estates victoria and rongcheng-houjie), one
    elsewhere, one without a home; `ann` has a second, unreachable and a third identity."""
    victoria = await estate_by_code(s, "victoria")
    rongcheng = await estate_by_code(s, "rongcheng-houjie")
    zhonghai = await estate_by_code(s, "zhonghai-mingcheng")
    homes = {"ann": (victoria, "1", True, "en"), "bo": (victoria, "2", False, None),
             "cy": (rongcheng, "1", True, "en"), "di": (zhonghai, "1", True, "en"),
             "ed": (victoria, "1", True, "zh-Hans"), "fu": (None, None, True, None)}
    ids: dict = {}
    for user, (estate, number, verified, lang) in homes.items():
        ident, resident, _ = await get_or_create_identity(s, "memory", user, user, user)
        if estate is not None:
            b = await building(s, estate.id, number)
            await verification.set_home(s, resident, estate.id, b.id, "101")
        resident.verified, resident.language = verified, lang
        ids[user] = resident.id
        ids[f"{user}@"] = ident.id
    ann = ids["ann"]
    gone, _, _ = await get_or_create_identity(s, "other", "ann2", "ann2", "ann")
    gone.resident_id, gone.unreachable_at = ann, datetime.now(UTC)
    third, _, _ = await get_or_create_identity(s, "wechat", "ann3", "ann3", "ann")
    third.resident_id = ann
    await s.flush()
    ids["ann@3"] = third.id
    # ed switched events off
    s.add(SubscriptionOptOut(resident_id=ids["ed"], category="event"))
    await s.flush()
    ids.update(victoria=victoria.id, rongcheng=rongcheng.id,
               committee=victoria.committee_id,
               building=(await building(s, victoria.id, "1")).id)
    return ids


@pytest.fixture
async def world(db_url):
    """A database with the demo territory and `_people` in it: (sessions, their ids)."""
    engine, sessions = await _db(db_url)
    async with sessions() as s, s.begin():
        p = await _people(s)
    yield sessions, p
    await engine.dispose()


async def _residents(s, audience: Audience) -> list[int]:
    page = await recipients(s, audience, each=Each.FIRST_IDENTITY)
    return [r.resident_id for r in page.recipients]


async def test_an_audience_by_area_people_and_choices(world):
    sessions, p = world
    async with sessions() as s:
        everyone = [p[u] for u in ("ann", "bo", "cy", "di", "ed")]  # fu has no home
        assert await _residents(s, Audience()) == everyone
        assert await _residents(s, Audience(Kind.COMMITTEE, p["committee"])) == [
            p["ann"], p["bo"], p["cy"], p["ed"]]
        assert await _residents(s, Audience("estate", p["victoria"])) == [
            p["ann"], p["bo"], p["ed"]]
        assert await _residents(s, Audience("building", p["building"], True)) == [
            p["ann"], p["ed"]]
        assert await _residents(s, Audience("estate", p["victoria"], True)) == [
            p["ann"], p["ed"]]  # bo is not verified
        # Fixed places narrow the area; a category leaves out who switched it off.
        places = Audience(estate_ids=(p["victoria"], p["rongcheng"]), category="event")
        assert await _residents(s, places) == [p["ann"], p["bo"], p["cy"]]
        among = Audience(among=select(Identity.resident_id).where(
            Identity.platform == "wechat"))
        assert await _residents(s, among) == [p["ann"]]
        assert await count(s, Audience(Kind.COMMITTEE, p["committee"])) == 4
        assert await count(s, Audience(Kind.COMMITTEE, p["committee"]),
                           besides=p["ann"]) == 3
        # ann's unreachable identity is not counted; her two others are.
        assert await count(s, Audience("estate", p["victoria"]), each=Each.IDENTITY) == 4
        # refusal: why one resident is outside
        area = Audience("estate", p["victoria"], True)
        for user, why in (("ann", None), ("bo", "not_verified"),
                          ("cy", "not_in_area"), ("fu", "not_registered")):
            resident = await s.get(Resident, p[user])
            assert await refusal(s, area, resident) == why


async def test_one_query_pages_by_identity_or_by_resident(world):
    sessions, p = world
    victoria = Audience("estate", p["victoria"])
    async with sessions() as s:
        # By identity: every reachable identity, with quiet hours, one page at a time.
        seen, after = [], 0
        while True:
            page = await recipients(s, victoria, after=after, limit=2)
            seen += [(r.resident_id, r.identity_id, r.language) for r in page.recipients]
            if page.looked_at < 2:
                break
            after = page.last
        assert seen == [(p["ann"], p["ann@"], "en"), (p["bo"], p["bo@"], None),
                        (p["ed"], p["ed@"], "zh-Hans"), (p["ann"], p["ann@3"], "en")]
        # By resident: each resident's identities together; the cursor is a resident.
        page = await recipients(s, victoria, each=Each.RESIDENT, limit=1)
        assert [r.identity_id for r in page.recipients] == [p["ann@"], p["ann@3"]]
        assert page.last == p["ann"]
        page = await recipients(s, victoria, each=Each.RESIDENT, after=p["ann"], limit=5)
        assert [r.identity_id for r in page.recipients] == [p["bo@"], p["ed@"]]
        assert (await recipients(s, victoria, each=Each.RESIDENT, after=p["ed"])).last \
            is None
        # One identity a resident: the first.
        page = await recipients(s, victoria, each=Each.FIRST_IDENTITY)
        assert [r.identity_id for r in page.recipients] == [p["ann@"], p["bo@"], p["ed@"]]


async def test_features_build_their_audience_from_what_they_store(world):
    sessions, p = world
    async with sessions() as s, s.begin():
        now = datetime.now(UTC)
        # A notice: its resolved places; volunteers only; its category unless urgent.
        event = await notices.create_notice(
            s, category="event", audience_kind="committee", audience_ids=[p["committee"]],
            estate_ids=[p["victoria"], p["rongcheng"]], building_ids=None,
            texts={"en": "x"})
        alarm = await notices.create_notice(
            s, category="emergency", audience_kind="subdistrict", audience_ids=[],
            estate_ids=None, building_ids=None, texts={"en": "x"})
        assert notices.audience_of(event) == Audience(
            estate_ids=(p["victoria"], p["rongcheng"]), category="event")
        assert await _residents(s, notices.audience_of(event)) == [
            p["ann"], p["bo"], p["cy"]]
        assert await _residents(s, notices.audience_of(alarm)) == [
            p["ann"], p["bo"], p["cy"], p["di"], p["ed"]]
        assert await notices.count_reachable(s, alarm) == 6  # identities
        start = now + timedelta(days=2)
        activity = await vol.create_activity(
            s, title="Lanterns", category="culture", description="", audience="committee",
            organiser_id=p["ann"], estate_id=p["victoria"],
            shifts=[vol.ShiftSpec(start, start + timedelta(hours=2), 3)])
        assert vol.audience_of(activity) == Audience(Kind.COMMITTEE, p["committee"])
        assert await vol.publish(s, activity.id)
        shift = (await vol.shifts_of(s, activity.id))[0]
        assert (await vol.sign_up(s, shift.id, p["cy"], now)).outcome == "confirmed"
        assert await vteams.create_team(s, "Green", None, p["di"])  # di leads (a member)
        volunteers = await notices.create_notice(
            s, category="event", audience_kind="volunteers", audience_ids=[],
            estate_ids=None, building_ids=None, texts={"en": "x"})
        # signed up for a shift (cy) or in a volunteer team (di)
        assert await _residents(s, notices.audience_of(volunteers)) == [p["cy"], p["di"]]
        assert await vol.audience_size(s, activity) == 3  # the committee, not ann
        activity.audience, activity.estate_id = "estate", p["victoria"]
        assert vol.audience_of(activity) == Audience(Kind.ESTATE, p["victoria"])
        activity.audience = "everyone"
        assert vol.audience_of(activity) == Audience()
        # Polls and surveys keep their area in three columns.
        poll = await polls.create(s, polls.PollDraft(
            question="Repaint?", options=["a", "b"], multiple=False,
            audience=Audience("estate", p["victoria"], True), per_household=False,
            anonymous=False, live_results=False, closes_at=now + timedelta(hours=1),
            quorum=None, committee_id=p["committee"]), p["ann"])
        survey = await surveys.create(
            s, title="t", questions=[surveys.QuestionDraft("text", "q", [])],
            audience=Audience("committee", p["committee"], False),
            closes_at=now + timedelta(days=1), committee_id=p["committee"],
            author_id=p["ann"])
    async with sessions() as s:
        poll = await polls.get_poll(s, poll.id)
        survey = await surveys.get_survey(s, survey.id)
        assert poll.audience == Audience("estate", p["victoria"], True)
        assert survey.audience == Audience(Kind.COMMITTEE, p["committee"])
        assert await count(s, poll.audience) == 2
