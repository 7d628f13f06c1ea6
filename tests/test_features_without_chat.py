"""Every feature's rules driven without a chat (architecture issue 13): each test calls only
services/ and storage/ functions, on SQLite and on PostgreSQL. No adapter, no handler, no
Context: residents get their home and their verification through storage.verification as staff
would give them, roles through storage.roles_service, and every outcome asserted is one a
resident or a member of staff would notice.

Volunteering is covered the same way by tests/test_volunteering_storage.py, guides by
tests/test_guides.py."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from services import notice_audience, report_filing
from services.geo import TerritoryIndex
from services.report_catalog import Catalog, WorkCalendar
from storage import notices, outbox, polls, proposals, roles_service, surveys, verification
from storage import reports as rep
from storage.access import scope_of
from storage.audience import Audience, Kind, Recipient, count
from storage.db import create_engine, session_factory
from storage.migrate import upgrade_async
from storage.people import Resident, get_or_create_identity, identity_for, mark_unreachable
from storage.subscriptions import set_category
from storage.territory import Team, building, estate_by_code
from storage.territory_loader import load_territory
from tests.conftest import DEMO, make_settings

# Friday 4 December 2026, 10:00 in Chengdu: a report's working days run over the weekend.
NOW = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)


@dataclass
class World:
    sessions: object
    geo: TerritoryIndex
    ids: dict  # residents by name; places by code


async def _resident(s, user: str, estate: str | None, number: str | None = None,
                    unit: str | None = None, *, lang: str | None = "en",
                    verify: bool = True, staff_id: int | None = None) -> Resident:
    """A resident with a home, verified as staff approve a request (storage.verification)."""
    _, resident, _ = await get_or_create_identity(s, "memory", user, user, user)
    resident.language = lang
    if estate is not None:
        e = await estate_by_code(s, estate)
        b = await building(s, e.id, number) if number else None
        await verification.set_home(s, resident, e.id, b.id if b else None, unit)
        await s.flush()
        if verify:
            assert await verification.request_verification(s, resident)
            await s.flush()
            (req, _), = [row for row in await verification.pending(s, {e.id})
                         if row[1].id == resident.id]
            assert (await verification.decide(s, req.id, True, staff_id or resident.id)
                    ).status == "approved"
    await s.flush()
    return resident


@pytest.fixture
async def world(db_url):
    """The demo territory and its people:
    ann and amy share a flat (victoria 1-101), ed lives in victoria 1-102, bo in victoria 2-201
    (not verified, no language chosen), fu in victoria 3 (verified, no flat: no household),
    cy in rongcheng-houjie 1-101 (the same committee as victoria), di in zhonghai-mingcheng
    (another committee). `chair` sits on the victoria committee, `staff` works at the station."""
    await upgrade_async(db_url)
    engine = create_engine(db_url)
    sessions = session_factory(engine)
    async with sessions() as s, s.begin():
        await load_territory(s, json.loads(DEMO.read_text(encoding="utf-8")))
    async with sessions() as s, s.begin():
        staff = await _resident(s, "staff", None)
        homes = {"ann": ("victoria", "1", "101", "en"), "amy": ("victoria", "1", "101", "en"),
                 "ed": ("victoria", "1", "102", "zh-Hans"),
                 "bo": ("victoria", "2", "201", None), "fu": ("victoria", "3", None, "en"),
                 "cy": ("rongcheng-houjie", "1", "101", "en"),
                 "di": ("zhonghai-mingcheng", "1", "101", "en"),
                 "chair": ("victoria", "2", "202", "en")}
        ids = {"staff": staff.id}
        for user, (estate, number, unit, lang) in homes.items():
            r = await _resident(s, user, estate, number, unit, lang=lang, verify=user != "bo",
                                staff_id=staff.id)
            ids[user] = r.id
        await roles_service.change_role(s, "memory:chair", "committee", "victoria",
                                        actor_id=staff.id, grant=True, create_missing=False)
        await roles_service.change_role(s, "memory:staff", "staff", "sxs-station",
                                        actor_id=None, grant=True, create_missing=False)
        for code in ("victoria", "rongcheng-houjie", "zhonghai-mingcheng"):
            estate = await estate_by_code(s, code)
            ids[code] = estate.id
            ids[f"{code}:committee"] = estate.committee_id
        ids["teams"] = {t.code: t.id for t in (await s.scalars(select(Team))).all()}
        geo = await TerritoryIndex.build(s)
    yield World(sessions, geo, ids)
    await engine.dispose()


async def _get(s, rid: int) -> Resident:
    return await s.get(Resident, rid, populate_existing=True)


# -- reports -------------------------------------------------------------------------------

async def test_reports_file_route_dedupe_and_move_through_staff_transitions(world, tmp_path,
                                                                             db_url):
    w, p = world, world.ids
    # What services.report_filing reads from the app's services: nothing chat-bound.
    services = SimpleNamespace(catalog=Catalog.load(), calendar=WorkCalendar.load("Asia/Shanghai"),
                               geo=w.geo, clock=lambda: NOW,
                               settings=make_settings(db_url, tmp_path))
    async with w.sessions() as s, s.begin():
        lamp = await report_filing.file(s, services, p["di"], category="lighting",
                                        description="The lamp by gate 2 is dark",
                                        latitude=30.633, longitude=104.04, exact_point=True)
        bins = await report_filing.file(s, services, p["cy"], category="rubbish",
                                        description="Bins overflowing",
                                        latitude=30.619, longitude=104.044, exact_point=True)
        # No point: routed by the reporter's estate (victoria lies in the south zone).
        hall = await report_filing.file(s, services, p["ann"], category="rubbish",
                                        description="Rubbish in the stairwell",
                                        estate_id=p["victoria"])
        odd = await report_filing.file(s, services, p["ann"], category="no-such-thing",
                                       description="Something else", estate_id=p["victoria"])
    teams = p["teams"]
    assert [r.reference for r in (lamp, bins, hall, odd)] == [
        "Z-2026-00001", "Z-2026-00002", "Z-2026-00003", "Z-2026-00004"]
    # Lighting goes to the specialist crew; rubbish to the zone's joint team.
    assert lamp.team_id == teams["lighting-roads"]
    assert bins.team_id == teams["central-joint"] and bins.estate_id is not None
    assert (hall.team_id, hall.estate_id) == (teams["south-joint"], p["victoria"])
    assert odd.category == "other"
    # Lighting: acknowledged within 1 working day, fixed within 3; the weekend does not count.
    assert lamp.ack_due_at == datetime(2026, 12, 7, 2, 0, tzinfo=UTC)  # Monday
    assert lamp.fix_due_at == datetime(2026, 12, 9, 2, 0, tzinfo=UTC)  # Wednesday
    assert bins.fix_due_at == datetime(2026, 12, 8, 2, 0, tzinfo=UTC)  # rubbish: 2 days

    async with w.sessions() as s:
        # The same problem a few metres away is offered to follow; another kind or far is not.
        near = await report_filing.same_nearby(s, services, "lighting", 30.6331, 104.0401)
        assert [r.reference for r, _ in near] == [lamp.reference] and near[0][1] < 20
        assert await report_filing.same_nearby(s, services, "roads", 30.6331, 104.0401) == []
        assert await report_filing.same_nearby(s, services, "lighting", 30.6370, 104.04) == []

    staff, t = p["staff"], NOW + timedelta(hours=3)
    async with w.sessions() as s, s.begin():
        # The staff card's buttons: acknowledge, then fixed with a note.
        assert await rep.transition(s, lamp.id, rep.Status.ACKNOWLEDGED, actor_id=staff,
                                    now=t) == "new"
        # A second press of an old card: the report moved on, nothing changes.
        assert await rep.transition(s, lamp.id, rep.Status.ACKNOWLEDGED, actor_id=staff,
                                    now=t) is None
        assert await rep.transition(s, lamp.id, rep.Status.FIXED, actor_id=staff,
                                    now=t + timedelta(hours=5), note="Bulb replaced") \
            == "acknowledged"
        # A fixed report is no longer open: it cannot be closed; its reporter confirms and rates.
        assert await rep.transition(s, lamp.id, rep.Status.CLOSED, actor_id=staff, now=t,
                                    reason=rep.CloseReason.UNABLE) is None
        assert not await rep.confirm_fixed(s, lamp.id, p["ann"], t)  # not the reporter
        assert await rep.confirm_fixed(s, lamp.id, p["di"], t)
        assert await rep.rate(s, lamp.id, p["di"], 5, t)
        # An open report is closed (not ours) after acknowledging it.
        assert await rep.transition(s, bins.id, rep.Status.ACKNOWLEDGED, actor_id=staff,
                                    now=t) == "new"
        assert await rep.transition(s, bins.id, rep.Status.CLOSED, actor_id=staff, now=t,
                                    reason=rep.CloseReason.NOT_RESPONSIBLE) == "acknowledged"
        assert await rep.transition(s, bins.id, rep.Status.FIXED, actor_id=staff,
                                    now=t) is None
    async with w.sessions() as s:
        lamp_now, bins_now = await rep.get(s, lamp.id, fresh=True), await rep.get(s, bins.id)
        assert (lamp_now.status, lamp_now.rating) == ("fixed", 5)
        assert lamp_now.acknowledged_at is not None and lamp_now.fixed_at is not None
        assert (bins_now.status, bins_now.close_reason) == ("closed", "not_responsible")
        history = [(e.from_status, e.to_status, e.note)
                   for e in await rep.events_of(s, lamp.id) if e.kind == "status"]
        assert history == [(None, "new", None), ("new", "acknowledged", None),
                           ("acknowledged", "fixed", "Bulb replaced")]
        assert [e.to_status for e in await rep.events_of(s, bins.id)] == [
            "new", "acknowledged", "closed"]
        # Neither is open any more: the same problem is filed anew, not followed.
        assert await report_filing.same_nearby(s, services, "lighting", 30.633, 104.04) == []
        rows, total = await rep.queue(s, NOW, team_ids={teams["south-joint"]})
        assert [r.reference for r in rows] == ["Z-2026-00003", "Z-2026-00004"] and total == 2


# -- notices -------------------------------------------------------------------------------

def _queue_texts(notice: notices.Notice, page: list[Recipient]) -> list[dict]:
    """One outbox row a recipient with the notice's text in their language (the chat's
    wording around it is handlers/notice_jobs.render_for's part)."""
    return [dict(identity_id=r.identity_id, payload={"text": notices.text_for(notice, r.language)},
                 priority=int(outbox.Priority.BULK), group_key=notice.group,
                 dedupe_key=notices.recipient_key(notice.id, r.identity_id)) for r in page]


async def _queue(session, notice: notices.Notice, page: list[Recipient]) -> int:
    return await outbox.enqueue_many(session, _queue_texts(notice, page))


async def _fan_out(sessions, now: datetime, batch: int = 2) -> int:
    """Start what is due and walk every claimed fan-out to its end; messages queued."""
    queued = 0
    while True:
        async with sessions() as s, s.begin():
            await notices.start_due(s, now)
            claim = await notices.claim_fanout(s, now)
        if claim is None:
            return queued
        notice_id, token = claim
        async with sessions() as s:
            # The lease is held: a second worker gets nothing to walk.
            assert await notices.claim_fanout(s, now) is None
        more = True
        while more:
            async with sessions() as s, s.begin():
                step = await notices.fanout_batch(s, notice_id, token, _queue, now, batch)
                assert step is not None
                more, n = step
                queued += n


async def test_notices_reach_the_committee_once_each_in_their_language(world):
    w, p = world, world.ids
    committee = p["victoria:committee"]
    async with w.sessions() as s, s.begin():
        await set_category(s, p["ed"], "event", False)  # ed switched events off
        amy_gone = await identity_for(s, "memory", "amy")
        await mark_unreachable(s, amy_gone.id)  # amy blocked the bot
        scope = await scope_of(s, p["chair"])
        # The chair may address their committee, not another one.
        resolved = await notice_audience.resolve(s, w.geo, scope, Kind.COMMITTEE, committee)
        assert sorted(resolved.estate_ids) == sorted([p["victoria"], p["rongcheng-houjie"]])
        with pytest.raises(notices.NoticeError) as refused:
            await notice_audience.resolve(s, w.geo, scope, Kind.COMMITTEE,
                                          p["zhonghai-mingcheng:committee"])
        assert refused.value.code == "out_of_scope"
        with pytest.raises(notices.NoticeError):
            await notices.create_notice(s, category="event", audience_kind="committee",
                                        audience_ids=[committee], estate_ids=None,
                                        building_ids=None, texts={"en": "  "})
        notice = await notices.create_notice(
            s, category="event", audience_kind=resolved.kind, audience_ids=[committee],
            estate_ids=resolved.estate_ids, building_ids=resolved.building_ids,
            texts={"en": "Water off on Tuesday", "zh-Hans": "周二停水"},
            created_by=p["chair"], scheduled_at=NOW - timedelta(minutes=1))
        later = await notices.create_notice(
            s, category="event", audience_kind=resolved.kind, audience_ids=[committee],
            estate_ids=resolved.estate_ids, building_ids=resolved.building_ids,
            texts={"en": "Lantern evening"}, created_by=p["chair"],
            scheduled_at=NOW + timedelta(days=1))
        # The preview: ann, bo, fu, chair (victoria), cy (rongcheng); not ed (events off),
        # not amy (unreachable), not di (another committee).
        assert await notices.count_reachable(s, notice) == 5
    expected = {}
    async with w.sessions() as s:
        for user, text in (("ann", "Water off on Tuesday"), ("bo", "周二停水"),
                           ("fu", "Water off on Tuesday"), ("chair", "Water off on Tuesday"),
                           ("cy", "Water off on Tuesday")):
            expected[(await identity_for(s, "memory", user)).id] = text  # bo: no language
    async with w.sessions() as s, s.begin():
        assert await notices.cancel_notice(s, later.id)  # cancelled while still scheduled
        assert not await notices.cancel_notice(s, later.id)
        assert not await notices.update_scheduled(s, later.id, texts={"en": "changed"})

    assert await _fan_out(w.sessions, NOW) == 5
    assert await _fan_out(w.sessions, NOW + timedelta(days=2)) == 0  # the cancelled one
    async with w.sessions() as s:
        rows = (await s.execute(select(outbox.OutboxMessage.identity_id,
                                       outbox.OutboxMessage.payload)
                                .where(outbox.OutboxMessage.group_key == notice.group))).all()
        assert sorted(i for i, _ in rows) == sorted(expected)  # one row each, nobody twice
        assert {i: payload["text"] for i, payload in rows} == expected
        assert await s.scalar(select(func.count()).select_from(outbox.OutboxMessage)
                              .where(outbox.OutboxMessage.group_key == later.group)) == 0
        sent, cancelled = await notices.get(s, notice.id), await notices.get(s, later.id)
        await s.refresh(sent)
        await s.refresh(cancelled)
        assert (sent.status, sent.recipients) == ("sent", 5)
        assert cancelled.status == "cancelled"
        assert (await outbox.figures(s, notice.group))["pending"] == 5
    # Once fanned out, the notice still stops what waits in the outbox.
    async with w.sessions() as s, s.begin():
        assert await notices.cancel_notice(s, notice.id)
    async with w.sessions() as s:
        assert (await outbox.figures(s, notice.group))["cancelled"] == 5


# -- polls ---------------------------------------------------------------------------------

def _draft(p: dict, *, audience: Audience, per_household: bool = False,
           anonymous: bool = False, quorum: int | None = None) -> polls.PollDraft:
    return polls.PollDraft(
        question="Which colour for the railings?", options=["Blue", "Green", "Grey"],
        multiple=False, audience=audience, per_household=per_household, anonymous=anonymous,
        live_results=True, closes_at=NOW + timedelta(days=3), quorum=quorum,
        committee_id=p["victoria:committee"])


async def test_polls_vote_once_change_per_household_and_close(world):
    w, p = world, world.ids
    key = secrets.token_bytes(32)
    async with w.sessions() as s, s.begin():
        with pytest.raises(ValueError):
            await polls.create(s, polls.PollDraft(
                question="?", options=["only one"], multiple=False, audience=Audience(),
                per_household=False, anonymous=False, live_results=False,
                closes_at=NOW + timedelta(days=1), quorum=None, committee_id=None), p["chair"])
        named = await polls.create(s, _draft(
            p, audience=Audience(Kind.ESTATE, p["victoria"], True), quorum=3), p["chair"])
        households = await polls.create(s, _draft(
            p, audience=Audience(Kind.COMMITTEE, p["victoria:committee"], True),
            per_household=True, anonymous=True), p["chair"])
    V = polls.Outcome
    async with w.sessions() as s, s.begin():
        poll = await polls.get_poll(s, named.id)
        # Who may not vote, and why.
        assert await polls.may_vote(s, poll, await _get(s, p["bo"]), NOW) == V.NOT_VERIFIED
        assert await polls.may_vote(s, poll, await _get(s, p["cy"]), NOW) == V.NOT_IN_AREA
        assert await polls.may_vote(s, poll, await _get(s, p["staff"]), NOW) == V.NOT_REGISTERED
        assert await polls.may_vote(s, poll, await _get(s, p["ann"]), NOW) is None
        assert await polls.cast(s, poll.id, await _get(s, p["bo"]), [0], NOW,
                                ballot_key=None) == V.NOT_VERIFIED
        ann, amy = await _get(s, p["ann"]), await _get(s, p["amy"])
        assert await polls.cast(s, poll.id, ann, [0, 1], NOW, ballot_key=None) == V.BAD_CHOICE
        assert await polls.cast(s, poll.id, ann, [3], NOW, ballot_key=None) == V.BAD_CHOICE
        assert await polls.cast(s, poll.id, ann, [0], NOW, ballot_key=None) == V.CAST
        # A named vote is changed, not added; the same choice again changes nothing.
        assert await polls.cast(s, poll.id, ann, [2], NOW, ballot_key=None) == V.CHANGED
        assert await polls.cast(s, poll.id, ann, [2], NOW, ballot_key=None) == V.UNCHANGED
        assert await polls.my_choices(s, poll, ann) == [2]
        # One vote a resident here: amy, in ann's flat, votes for herself.
        assert await polls.cast(s, poll.id, amy, [1], NOW, ballot_key=None) == V.CAST
        live = await polls.results(s, poll)
        assert [o.votes for o in live.options] == [0, 1, 1] and live.voters == 2
        assert not live.quorum_met  # 2 of the 3 needed

        # One vote a household: ann votes for the flat, amy is told it has voted.
        hpoll = await polls.get_poll(s, households.id)
        assert await polls.cast(s, hpoll.id, ann, [0], NOW, ballot_key=key) == V.CAST
        assert await polls.cast(s, hpoll.id, amy, [1], NOW, ballot_key=key) == V.HOUSEHOLD
        assert await polls.has_voted(s, hpoll, amy)  # her household has
        assert await polls.cast(s, hpoll.id, ann, [1], NOW, ballot_key=key) == V.HOUSEHOLD
        fu = await _get(s, p["fu"])  # verified, but no flat: no household to vote for
        assert await polls.may_vote(s, hpoll, fu, NOW) == V.NO_HOUSEHOLD
        assert await polls.cast(s, hpoll.id, await _get(s, p["cy"]), [1], NOW,
                                ballot_key=key) == V.CAST
        assert await polls.my_choices(s, hpoll, ann) is None  # a secret ballot stays secret
        # Anonymous ballots are counted in groups, at the latest when the poll closes.
        assert [o.votes for o in (await polls.results(s, hpoll)).options] == [0, 0, 0]

    later = NOW + timedelta(hours=1)
    async with w.sessions() as s, s.begin():
        assert await polls.close(s, named.id, later, ballot_key=None)
        assert not await polls.close(s, named.id, later, ballot_key=None)  # closes once
        assert await polls.close(s, households.id, later, ballot_key=key)
    async with w.sessions() as s, s.begin():
        poll, hpoll = await polls.get_poll(s, named.id), await polls.get_poll(s, households.id)
        assert await polls.cast(s, poll.id, await _get(s, p["ed"]), [0], later,
                                ballot_key=None) == V.CLOSED
        assert await polls.cast(s, poll.id, await _get(s, p["ann"]), [0], later,
                                ballot_key=None) == V.CLOSED  # no change after close
        res = await polls.results(s, poll)
        # Verified residents of victoria: ann, amy, ed, fu, chair (bo is not verified).
        assert [(o.label, o.votes) for o in res.options] == [("Blue", 0), ("Green", 1),
                                                             ("Grey", 1)]
        assert (res.voters, res.eligible, str(res.turnout)) == (2, 5, "40.00")
        assert not res.quorum_met
        hres = await polls.results(s, hpoll)
        # Verified households of the committee: ann's and amy's flat, ed's, chair's, cy's.
        assert [o.votes for o in hres.options] == [1, 1, 0]
        assert (hres.voters, hres.counted, hres.eligible) == (2, 2, 4)
        assert await polls.recount(s, poll.id) == {1: 1, 2: 1}
        assert await count(s, poll.audience) == 5


# -- surveys -------------------------------------------------------------------------------

async def test_surveys_answer_each_kind_refuse_bad_answers_close_and_count(world):
    w, p = world, world.ids
    async with w.sessions() as s, s.begin():
        with pytest.raises(ValueError):
            await surveys.create(s, title="Empty", questions=[], audience=Audience(),
                                 closes_at=NOW + timedelta(days=1), committee_id=None,
                                 author_id=p["chair"])
        survey = await surveys.create(
            s, title="The courtyard", questions=[
                surveys.QuestionDraft("single", "When do you use it?", ["Mornings", "Evenings"]),
                surveys.QuestionDraft("multiple", "What should it have?",
                                      ["Benches", "Shade", "Play area"]),
                surveys.QuestionDraft("scale", "How clean is it?", []),
                surveys.QuestionDraft("text", "Anything else?", [])],
            audience=Audience(Kind.COMMITTEE, p["victoria:committee"], True),
            closes_at=NOW + timedelta(days=7), committee_id=p["victoria:committee"],
            author_id=p["chair"])
    async with w.sessions() as s, s.begin():
        survey = await surveys.get_survey(s, survey.id)
        assert await surveys.may_answer(s, survey, await _get(s, p["bo"]), NOW) == "not_verified"
        assert await surveys.may_answer(s, survey, await _get(s, p["di"]), NOW) == "not_in_area"
        assert await surveys.may_answer(s, survey, await _get(s, p["ann"]), NOW) is None
        assert await surveys.may_answer(s, survey, await _get(s, p["cy"]), NOW) is None
        single, multiple, scale, text = await surveys.questions_of(s, survey.id)
        # Answers a question cannot take.
        bad = [(single, [0, 1], None), (single, [], None), (single, [2], None),
               (single, [0], "and a note"), (multiple, [0, 0], None), (multiple, [3], None),
               (scale, [5], None), (scale, [0, 1], None), (text, [], ""),
               (text, [], "x" * (surveys.MAX_TEXT_ANSWER + 1)), (text, [0], "hi")]
        for question, choices, typed in bad:
            assert not surveys.valid_answer(question, choices, typed), (question.kind, choices)
        assert surveys.valid_answer(text, [], "x" * surveys.MAX_TEXT_ANSWER)

        response = await surveys.response_for(s, survey.id, p["ann"], create=True)
        again = await surveys.response_for(s, survey.id, p["ann"], create=True)
        assert again.id == response.id  # one response a resident
        assert not await surveys.answer(s, response, single, [0, 1], None, NOW)  # invalid
        for question, choices, typed in ((single, [1], None), (multiple, [2, 0], None),
                                         (scale, [3], None), (text, [], "More bins, please")):
            assert await surveys.next_question(s, response) == question  # resumes in order
            assert await surveys.answer(s, response, question, choices, typed, NOW)
        assert not await surveys.answer(s, response, single, [0], None, NOW)  # a double tap
        assert await surveys.next_question(s, response) is None
        # cy stops after two questions and may resume later.
        cy = await surveys.response_for(s, survey.id, p["cy"], create=True)
        assert await surveys.answer(s, cy, single, [1], None, NOW)
        assert await surveys.answer(s, cy, multiple, [2], None, NOW)
        assert await surveys.next_question(s, cy) == scale
        assert await surveys.respondents(s, survey.id) == (2, 1)
    async with w.sessions() as s, s.begin():
        assert await surveys.close_now(s, survey.id, NOW + timedelta(hours=1))
        assert not await surveys.close_now(s, survey.id, NOW + timedelta(hours=1))
        assert await surveys.close_due(s, NOW + timedelta(days=8)) == []  # closed already
    async with w.sessions() as s:
        survey = await surveys.get_survey(s, survey.id)
        assert survey.status == "closed"
        assert await surveys.may_answer(s, survey, await _get(s, p["ed"]), NOW) == "closed"
        got = {r.question.kind: r for r in await surveys.results(s, survey)}
        assert (got["single"].answered, got["single"].counts) == (2, [0, 2])
        assert [str(x) for x in got["single"].percents] == ["0.00", "100.00"]
        assert got["multiple"].counts == [1, 0, 2]
        assert (got["scale"].answered, got["scale"].counts) == (1, [0, 0, 0, 1, 0])  # a 4
        assert got["text"].texts == ["More bins, please"]


# -- proposals -----------------------------------------------------------------------------

async def test_proposals_support_once_reach_the_agenda_decided_and_done(world):
    w, p = world, world.ids
    committee, chair = p["victoria:committee"], p["chair"]
    S = proposals.Support
    async with w.sessions() as s, s.begin():
        lights = await proposals.submit(
            s, committee_id=committee, author_id=p["ann"], title="Lights on the footpath",
            body="The path behind building 4 is dark at night.", threshold=2)
        bench = await proposals.submit(
            s, committee_id=committee, author_id=p["cy"], title="A bench by the gate",
            body="Older neighbours need somewhere to rest.", threshold=5)
        # An open proposal cannot be decided yet, nor recorded as done.
        assert not await proposals.decide(s, bench.id, "adopted", "yes", chair, NOW)
        assert not await proposals.implemented(s, bench.id, "done", chair, NOW)
        assert await proposals.support(s, lights, p["ann"], NOW) == S.OWN
        assert await proposals.support(s, lights, p["amy"], NOW) == S.COUNTED
        assert await proposals.support(s, lights, p["amy"], NOW) == S.ALREADY  # once each
        assert lights.supporters == 1
        assert await proposals.support(s, lights, p["ed"], NOW) == S.REACHED
        assert (lights.status, lights.supporters, lights.agenda_at) == ("agenda", 2, NOW)
        assert await proposals.support(s, lights, p["cy"], NOW) == S.NOT_OPEN  # no more
        assert await proposals.supporters_of(s, lights.id) == sorted([p["amy"], p["ed"]])
        assert not await proposals.has_supported(s, lights.id, p["cy"])
    later = NOW + timedelta(days=10)
    async with w.sessions() as s, s.begin():
        with pytest.raises(ValueError):
            await proposals.decide(s, lights.id, "maybe", "?", chair, later)
        assert not await proposals.implemented(s, lights.id, "done", chair, later)  # undecided
        assert await proposals.decide(s, lights.id, "adopted", "Estate fund pays", chair, later)
        assert not await proposals.decide(s, lights.id, "rejected", "no", chair, later)  # once
        assert await proposals.implemented(s, lights.id, "Six lamps installed", chair,
                                           later + timedelta(days=30))
        assert not await proposals.implemented(s, lights.id, "again", chair, later)
    async with w.sessions() as s:
        done = await s.get(proposals.Proposal, lights.id, populate_existing=True)
        assert (done.status, done.decision_note, done.implementation_note) == (
            "done", "Estate fund pays", "Six lamps installed")
        assert (done.decided_by, done.implemented_by) == (chair, chair)
        listed = await proposals.of_committee(s, {committee}, statuses=("open",))
        assert [r.id for r in listed] == [bench.id]
        assert await proposals.of_committee(s, {p["zhonghai-mingcheng:committee"]}) == []


async def test_proposal_rules_who_may_propose_support_and_decide(world):
    """The rules the chat calls (services/proposals.py): neighbours of the committee's area,
    verified, support; the threshold comes from the settings; the council of that committee
    decides."""
    from bot.config import DeliberationSettings
    from services import proposals as rules
    from storage.access import scope_of

    w, p = world, world.ids
    settings = DeliberationSettings(proposal_threshold=2,
                                    proposal_thresholds={"zhonghai": 7})
    async with w.sessions() as s, s.begin():
        made = await rules.submit(s, settings, await _get(s, p["ann"]), title="Lights please",
                                  body="The path behind building 4 is dark at night.")
        assert made.refused is None and made.proposal.threshold == 2
        assert (await rules.submit(s, settings, await _get(s, p["bo"]), title="Bins",
                                   body="More bins by the gate, please.")).refused == "not_verified"
        assert (await rules.submit(s, settings, await _get(s, p["staff"]), title="Bins",
                                   body="More bins by the gate, please.")).refused == \
            "not_registered"
        assert (await rules.submit(s, settings, await _get(s, p["ann"]), title="Hi",
                                   body="More bins by the gate, please.")).refused == \
            "title_length"
        other = await rules.submit(s, settings, await _get(s, p["di"]), title="Trees",
                                   body="Plant trees along the north fence.")
        assert other.proposal.threshold == 7  # the committee's own threshold
        lights = made.proposal
        # Another committee's resident, and an unverified neighbour, may not support.
        assert await rules.support(s, settings, lights, await _get(s, p["di"]), NOW) == \
            "not_in_area"
        assert await rules.support(s, settings, lights, await _get(s, p["bo"]), NOW) == \
            "not_verified"
        assert await rules.support(s, settings, lights, await _get(s, p["cy"]), NOW) == \
            proposals.Support.COUNTED  # rongcheng-houjie is the same committee
        assert lights.supporters == 1
        chair = await scope_of(s, p["chair"])
        assert rules.council_may(chair, lights) and not rules.council_may(chair, other.proposal)
        assert not rules.council_may(await scope_of(s, p["ann"]), lights)


async def test_a_survey_answer_is_taken_only_within_the_rules(world):
    """services/deliberation.py: the answer the chat (and any other caller) records is refused
    once the survey is closed, from outside its area, for another survey's question, and for
    a resident whose answers were recorded with help; who runs a survey is the committee's."""
    from services import deliberation, poll_rules

    w, p = world, world.ids
    async with w.sessions() as s, s.begin():
        survey = await surveys.create(
            s, title="Parking", questions=[
                surveys.QuestionDraft("single", "Do you own a car?", ["Yes", "No"]),
                surveys.QuestionDraft("text", "Where do you park?", [])],
            audience=Audience("committee", p["victoria:committee"], True),
            closes_at=NOW + timedelta(days=2), committee_id=p["victoria:committee"],
            author_id=p["chair"])
        other = await surveys.create(
            s, title="Other", questions=[surveys.QuestionDraft("text", "Anything?", [])],
            audience=Audience("committee", p["victoria:committee"], False),
            closes_at=NOW + timedelta(days=2), committee_id=p["victoria:committee"],
            author_id=p["staff"])
        q1, q2 = await surveys.questions_of(s, survey.id)
        (foreign,) = await surveys.questions_of(s, other.id)
        answer = deliberation.answer_survey
        ann, di = await _get(s, p["ann"]), await _get(s, p["di"])
        assert await answer(s, survey, di, q1.id, [0], None, NOW) == "not_in_area"
        assert await answer(s, survey, await _get(s, p["bo"]), q1.id, [0], None, NOW) == \
            "not_verified"
        assert await answer(s, survey, ann, foreign.id, [], "x", NOW) == "unknown"
        assert await answer(s, survey, ann, q1.id, [5], None, NOW) == "invalid"
        assert await answer(s, survey, ann, q1.id, [0], None, NOW) == "saved"
        assert await answer(s, survey, ann, q1.id, [1], None, NOW) == "already"
        # Recorded with help for ed: he disputes it, he does not go on with it.
        await surveys.response_for(s, survey.id, p["ed"], create=True, assisted_by=p["chair"])
        assert await answer(s, survey, await _get(s, p["ed"]), q1.id, [0], None, NOW) == \
            "assisted"
        later = NOW + timedelta(days=3)
        assert await answer(s, survey, ann, q2.id, [], "By the gate", later) == "closed"
        assert poll_rules.runs(await scope_of(s, p["chair"]), survey.committee_id)
        assert not poll_rules.runs(await scope_of(s, p["ann"]), survey.committee_id)
        assert not poll_rules.runs(await scope_of(s, p["chair"]), None)
