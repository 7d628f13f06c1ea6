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
    assert "Proposer and supporters are told" in chat.last_text("chair")
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
