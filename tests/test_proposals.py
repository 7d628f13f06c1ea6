"""The council's agenda: a proposal gathers support, reaches the threshold, is decided and carried
out; proposer and supporters are told at every step; support is one per resident."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from bot.delivery import Deliverer
from storage import audit, proposals, territory
from storage.people import Identity
from tests.deliberation_helpers import grant, make_resident


async def _drain(app) -> None:
    deliverer = Deliverer(app.engine, app.sessions, app.adapters)
    while await deliverer.drain_once():
        pass


async def test_proposal_to_agenda_decision_and_done(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    app.services.settings.polls.proposal_thresholds = {"victoria": 2}
    for name in ("pat", "sam", "kim", "lee"):
        await make_resident(app.sessions, "memory", name)
    await make_resident(app.sessions, "memory", "newbie", verified=False)
    await make_resident(app.sessions, "memory", "far", estate="zhonghai-mingcheng")
    await make_resident(app.sessions, "memory", "chair", building="2")
    await grant(app.sessions, "memory:chair", "committee", "victoria")

    await chat.say("newbie", "/propose")
    # /propose speaks of proposals, not of polls.
    assert chat.last_text("newbie") == ("Only verified residents can make or support "
                                        "proposals. Send /verify to ask for verification.")
    await chat.say("pat", "/propose")
    await chat.say("pat", "Hi")
    assert "3 to 120" in chat.last_text("pat")
    await chat.say("pat", "Lights on the footpath")
    await chat.say("pat", "Too short")
    await chat.say("pat", "Short")
    assert "10 to 2000" in chat.last_text("pat")
    await chat.say("pat", "The path behind building 4 is dark at night; please add lights.")
    assert "Proposal #1 is submitted" in chat.last_text("pat")
    assert "2 supporters" in chat.last_text("pat")

    await chat.say("pat", "/proposals")
    assert chat.find_button("pat", "Support #1") is None  # not for one's own proposal
    await chat.say("far", "/proposals")
    assert "no proposals" in chat.last_text("far")
    await chat.say("sam", "/proposals")
    assert "gathering support (0/2 supporters)" in chat.last_text("sam")
    await chat.press("sam", "Support #1")
    assert "(1/2)" in chat.last_text("sam")
    await chat.press("sam", "Support #1")
    assert "already support" in chat.last_text("sam")
    await chat.say("kim", "/proposals")
    await chat.press("kim", "Support #1")
    assert "now on the council's agenda" in chat.last_text("kim")
    await chat.say("lee", "/proposals")
    assert "on the council's agenda (2/2 supporters)" in chat.last_text("lee")
    assert chat.find_button("lee", "Support #1") is None
    async with app.sessions() as s:
        lee = await s.scalar(select(Identity.id).where(Identity.platform_user_id == "lee"))
    await chat.press("lee", app.services.signer.sign(lee, "psu", 1), raw=True)
    assert "no longer gathers support" in chat.last_text("lee")
    await _drain(app)
    for who in ("pat", "sam", "kim"):
        assert "is on the council's agenda" in chat.last_text(who), who

    await chat.say("pat", "/agenda")
    assert "not allowed" in chat.last_text("pat")
    await chat.say("chair", "/agenda")
    await chat.press("chair", "Adopt")
    await chat.say("chair", "Approved at the November meeting; budget from the estate fund.")
    assert "Proposer and supporters are told" in chat.texts_to("chair")[-2]
    assert chat.find_button("chair", "Recruit volunteers for this")  # issue 18, offered at once
    await _drain(app)
    assert "adopted proposal #1" in chat.last_text("sam")
    assert "November meeting" in chat.last_text("pat")
    await chat.say("chair", "/agenda")
    await chat.press("chair", "Record what was done")
    await chat.say("chair", "Six lamps installed on 2 December.")
    await _drain(app)
    assert "has been carried out: Six lamps" in chat.last_text("kim")
    await chat.say("lee", "/proposals")
    listing = chat.last_text("lee")
    assert "carried out" in listing and "Done: Six lamps" in listing
    async with app.sessions() as s:
        actions = {e.action for e in await audit.recent(s, 50)}
    assert {"proposal.submit", "proposal.agenda", "proposal.decide",
            "proposal.implemented"} <= actions


async def test_support_is_one_per_resident_under_concurrency(db_url, make_app):
    app, _ = await make_app(db_url)
    ids = [await make_resident(app.sessions, "memory", f"n{i}") for i in range(30)]
    async with app.sessions() as s, s.begin():
        committee = (await territory.estate_by_code(s, "victoria")).committee_id
        p = await proposals.submit(s, committee_id=committee, author_id=ids[0], title="Shade",
                                   body="Plant trees by the playground.", threshold=10)
        pid = p.id

    async def tap(resident_id: int):
        async with app.sessions() as s, s.begin():
            row = await s.get(proposals.Proposal, pid)
            return await proposals.support(s, row, resident_id, app.services.clock())

    outcomes = await asyncio.gather(*(tap(r) for r in ids[1:] + ids[1:6]))
    async with app.sessions() as s:
        row = await s.get(proposals.Proposal, pid)
        supports = (await s.scalars(select(proposals.ProposalSupport).where(
            proposals.ProposalSupport.proposal_id == pid))).all()
    reached = [o for o in outcomes if o == proposals.Support.REACHED]
    assert len(reached) == 1
    assert row.status == "agenda"
    assert row.supporters == len(supports)
    assert row.supporters >= 10


async def test_adopted_proposal_becomes_an_activity_supporters_first_hours_shown(
        make_app, db_url):
    """Issue 18: adopt → "Recruit volunteers for this" → a draft with the proposal's title, area
    and description → publish: supporters invited before the announcement → the proposal's page
    follows the activity (planned → in progress → done) with sign-ups and hours given."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from bot.scheduler import run_jobs_once
    from storage import outbox
    from storage import volunteering as vol

    app, chat = await make_app(db_url)
    app.services.settings.polls.proposal_thresholds = {"victoria": 2}
    for name in ("pat", "sam", "kim", "lee"):
        await make_resident(app.sessions, "memory", name)
    await make_resident(app.sessions, "memory", "chair", building="2")
    await grant(app.sessions, "memory:chair", "committee", "victoria")
    await chat.say("pat", "/propose")
    await chat.say("pat", "Lights on the footpath")
    await chat.say("pat", "The path behind building 4 is dark at night; please add lights.")
    for who in ("sam", "kim"):
        await chat.say(who, "/proposals")
        await chat.press(who, "Support #1")
    await chat.say("chair", "/agenda")
    await chat.press("chair", "Adopt")
    await chat.say("chair", "Adopted; volunteers will install solar lamps.")
    assert "Recruit volunteers to carry it out?" in chat.last_text("chair")

    # A forged press for a proposal that is not adopted, then the real one.
    async with app.sessions() as s, s.begin():
        other = await proposals.submit(s, committee_id=(await territory.committee_of_estate(
            s, (await territory.estate_by_code(s, "victoria")).id)).id, author_id=1,
            title="Another", body="Not decided yet at all.", threshold=2)
        chair = await s.scalar(select(Identity.id).where(Identity.platform_user_id == "chair"))
    await chat.press("chair", app.services.signer.sign(chair, "vfp", other.id), raw=True)
    assert chat.last_text("chair") == (f"Proposal #{other.id} is not adopted (or is already "
                                       "recorded as carried out): there is nothing to recruit "
                                       "volunteers for.")
    await chat.say("chair", "/agenda")
    await chat.press("chair", "Recruit volunteers for this")
    assert "taken from the proposal: Lights on the footpath" in chat.texts_to("chair")[-2]
    await chat.press("chair", "Environment")
    # The place lies within the proposal's committee: other estates are not offered.
    assert chat.find_button("chair", "Zhonghai Mingcheng") is None
    await chat.press("chair", "Victoria Garden")
    assert "DATE START-END PLACES" in chat.last_text("chair")  # the description is the proposal's
    tz = ZoneInfo(app.services.settings.bot.timezone)
    start = (app.services.clock().astimezone(tz) + timedelta(days=3)).replace(
        hour=9, minute=0, second=0, microsecond=0)
    await chat.say("chair", f"{start:%Y-%m-%d} 09:00-11:00 5")
    await chat.press("chair", "Done")
    await chat.press("chair", "Residents of this estate")
    assert "carries out proposal #1" in chat.texts_to("chair")[-2]
    preview = chat.last_text("chair")
    assert "Lights on the footpath" in preview and "dark at night" in preview
    await _drain(app)  # the news of the adoption is out: what follows is the activity's
    await chat.press("chair", "Publish and announce")
    assert "3 supporters of proposal #1 are being invited first" in chat.texts_to("chair")[-2]

    # Supporters (and the proposer) are queued with the publication, ahead of the announcement.
    async with app.sessions() as s:
        invites = [m for m in (await s.scalars(select(outbox.OutboxMessage).order_by(
            outbox.OutboxMessage.id))).all() if "is being carried out" in str(m.payload)]
    assert len(invites) == 3
    deliverer = Deliverer(app.engine, app.sessions, app.adapters)
    await run_jobs_once(app.sessions, app.services, deliverer, app.jobs)
    async with app.sessions() as s:
        rows = [m for m in (await s.scalars(select(outbox.OutboxMessage).where(
            outbox.OutboxMessage.status == "pending"))).all()]
    queue = sorted(rows, key=lambda m: (m.priority, m.next_attempt_at, m.id))  # claim order
    kinds = ["invite" if "is being carried out" in str(m.payload) else "announce"
             for m in queue]
    assert kinds == ["invite"] * 3 + ["announce"], kinds
    await _drain(app)
    order = [(m.chat_id, m.out.text) for m in chat.sent
             if "is being carried out" in m.out.text or "New volunteer activity" in m.out.text]
    first_announcement = next(i for i, (_, t) in enumerate(order) if "New volunteer" in t)
    assert {c for c, _ in order[:first_announcement]} == {"pat", "sam", "kim"}
    assert [c for c, t in order if "New volunteer" in t and c in ("pat", "sam", "kim")] == []
    assert "New volunteer activity: Lights on the footpath" in chat.last_text("lee")
    assert "Proposal #1 you supported" in chat.last_text("sam")

    for who in ("sam", "kim"):
        await chat.press(who, "See the shifts")
        await chat.press(who, "Sign up")
        assert "You are signed up" in chat.last_text(who)

    async def page() -> str:
        await chat.say("lee", "/proposals")
        await chat.press("lee", "Read #1")
        return chat.last_text("lee")

    text = await page()
    assert "Execution: planned" in text and "Signed up: 2; waiting: 0" in text
    assert "Hours given" not in text
    app.services.clock.advance(start - app.services.clock() + timedelta(minutes=5))
    assert "Execution: in progress" in await page()
    await chat.say("chair", "/roster")
    await chat.press("chair", "Lights on the footpath")
    await chat.press("chair", "Attended: sam")
    await chat.press("chair", "Attended: kim")
    app.services.clock.advance(timedelta(hours=3))
    text = await page()
    assert "Execution: done" in text and "Hours given: 4" in text, text
    # The proposal no longer offers recruiting: it has its activity.
    await chat.say("chair", "/agenda")
    labels = [b.label for row in chat.last("chair").buttons for b in row]
    assert labels == ["Record what was done"], labels
    await chat.press("chair", app.services.signer.sign(chair, "vfp", 1), raw=True)
    assert "already has a published volunteer activity" in chat.last_text("chair")
    # The council's own record wins.
    await chat.press("chair", "Record what was done")
    await chat.say("chair", "Six lamps installed by volunteers.")
    assert "Execution: done" in await page()
    async with app.sessions() as s:
        activity = await vol.activity_for_proposal(s, 1)
        actions = {e.action for e in await audit.recent(s, 100)}
    assert activity is not None and activity.proposal_id == 1
    assert "volunteering.proposal_invites" in actions
