"""Teams and staff work reports: reassigning, duplicates, closing, /queue, /stats with its CSV,
escalation of overdue reports, and the urgent filing other features call."""

from __future__ import annotations

import asyncio
import csv
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from bot.scheduler import run_jobs_once
from services.report_cards import file_urgent_report
from storage import audit, outbox
from storage import reports as rep
from storage.base import utcnow
from storage.people import identity_for
from tests.report_helpers import drain as _drain
from tests.report_helpers import english_resident, file_report, grant


async def test_reassign_duplicate_close_queue(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    for user, team in (("south", "south-joint"), ("central", "central-joint")):
        await english_resident(chat, user, "Victoria Garden")
        await grant(app, user, "team", team)
    await english_resident(chat, "ann")
    await english_resident(chat, "eve", "Victoria Garden")

    # Rubbish in Victoria Garden: the south joint team.
    ref1 = await file_report(chat, "ann", "Rubbish and cleanliness", "Bins full", 30.606, 104.04)
    ref2 = await file_report(chat, "eve", "Rubbish and cleanliness", "Bins overflowing", 30.6061,
                       104.0401)
    await _drain(app)
    assert any(ref1 in t for t in chat.texts_to("south"))
    assert not any(ref1 in t for t in chat.texts_to("central"))

    await chat.say("south", "/queue")
    queue = chat.last_text("south")
    assert queue.index(ref1) < queue.index(ref2)  # oldest first
    assert queue.count("just filed") == 2 and " 0 h old" not in queue
    async with app.sessions() as s, s.begin():
        await s.execute(update(rep.Report).where(rep.Report.reference == ref1).values(
            created_at=utcnow() - timedelta(minutes=42, seconds=5)))
    await chat.say("south", "/queue")
    assert "42 min old" in chat.last_text("south")
    await chat.say("central", "/queue")
    assert chat.last_text("central") == "Your team has no open reports."
    await chat.say("ann", "/queue")
    assert "not allowed" in chat.last_text("ann")

    # The second one is a duplicate of the first: its reporter now follows the first.
    await chat.press("south", ref2)  # the card, from the queue
    await chat.press("south", "Duplicate of")
    await chat.say("south", "Z-1999-00001")
    assert "There is no other report" in chat.last_text("south")
    await chat.say("south", ref1.lower())
    assert f"Report {ref2} is now: closed (duplicate)" in chat.last_text("south")
    await _drain(app)
    assert f"Duplicate of {ref1}" in chat.last_text("eve")

    # Not ours: handed to the central team, who get the card.
    await chat.press("south", ref1)
    await chat.press("south", "Not ours")
    await chat.press("south", "Central zone joint enforcement team")
    assert f"Report {ref1} was handed to" in chat.last_text("south")
    await _drain(app)
    assert any("Handed to your team" in t and ref1 in t for t in chat.texts_to("central"))
    # The old team's buttons no longer work on it.
    await chat.press("south", "Acknowledge")
    assert "belongs to another team" in chat.last_text("south")

    await chat.press("central", "In progress")
    await _drain(app)
    assert chat.last_text("eve") == (
        f"A report you follow, {ref1} (Rubbish and cleanliness), is now: in progress.")
    await chat.press("central", "Close")
    await chat.press("central", "unable to fix")
    await _drain(app)
    assert chat.last_text("ann").endswith("is now: closed (unable to fix).")
    # Followers never learn who reported.
    assert not any("Reporter" in t for t in chat.texts_to("eve"))

    async with app.sessions() as s:
        first = await rep.by_reference(s, ref1)
        second = await rep.by_reference(s, ref2)
        actions = [e.action for e in await audit.recent(s)]
    assert (first.status, first.close_reason) == ("closed", "unable")
    assert (second.close_reason, second.duplicate_of) == ("duplicate", first.id)
    assert {"report.duplicate", "report.reassign", "report.progress", "report.close"} <= set(
        actions)


async def test_stats_and_csv(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    await english_resident(chat, "boss", "Victoria Garden")
    await grant(app, "boss", "staff", "sxs-station")
    await grant(app, "crew", "team", "lighting-roads")
    await english_resident(chat, "ann")
    ref = await file_report(chat, "ann", "Street lighting", "Lamp out", 30.633, 104.04)
    await file_report(chat, "ann", "Noise", "Drilling at night", 30.619, 104.044)
    await _drain(app)
    await chat.press("crew", "受理")
    app.services.clock.advance(timedelta(hours=5))
    await chat.press("crew", "已解决")
    await chat.press("crew", "不填说明，直接标记已解决")
    await _drain(app)
    await chat.press("ann", "Yes, it is fixed")
    await chat.press("ann", "5")

    await chat.say("boss", "/stats x")
    assert "Usage: /stats" in chat.last_text("boss")
    await chat.say("boss", "/stats 7")
    table = [s.out for s in chat.sent if s.chat_id == "boss"][-2].text
    assert "Reports received in the last 7 days: 2" in table
    assert "North zone: 1 · 0.0h · 5.0h · 100% · 0% · 5.00" in table
    assert "Central zone: 1 · - · - · 0% · 0% · -" in table
    assert "South zone: 0" in table
    assert "Street lighting and roads crew: 1 · 0.0h · 5.0h · 100% · 0% · 5.00" in table
    doc = chat.last("boss")
    assert doc.document and doc.document_name.endswith("-7d.csv")
    body = await asyncio.to_thread(Path(doc.document).read_text, encoding="utf-8-sig")
    rows = list(csv.reader(body.splitlines()))
    assert rows[0][:3] == ["kind", "name", "received"]
    assert ["zone", "North zone", "1", "0.0h", "5.0h", "100%", "0%", "5.00"] in rows
    assert ["team", "Central zone joint enforcement team", "1", "-", "-", "0%", "0%", "-"] in rows
    await chat.say("ann", "/stats")
    assert "not allowed" in chat.last_text("ann")
    assert ref


async def test_overdue_escalates_once_and_urgent_filing(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    await english_resident(chat, "boss", "Victoria Garden")
    await grant(app, "boss", "staff", "sxs-station")
    await english_resident(chat, "ann")
    ref = await file_report(chat, "ann", "Noise", "Drilling at night", 30.619, 104.044)
    await _drain(app)
    mark = len(chat.sent)
    await run_jobs_once(app.sessions, app.services, None, app.jobs)
    await _drain(app)
    assert not any("Overdue" in s.out.text for s in chat.sent[mark:])
    app.services.clock.advance(timedelta(days=12))
    await run_jobs_once(app.sessions, app.services, None, app.jobs)
    await run_jobs_once(app.sessions, app.services, None, app.jobs)
    await _drain(app)
    overdue = [s.out.text for s in chat.sent[mark:] if s.chat_id == "boss" and "Overdue" in s.out.text]
    assert len(overdue) == 1 and ref in overdue[0] and "Reporter:" in overdue[0]
    # Station staff cover the estate, so they may act on it.
    await chat.press("boss", "Acknowledge")
    assert f"Report {ref} is now: acknowledged" in chat.last_text("boss")

    # Another feature files an urgent report for a resident at home.
    async with app.sessions() as s, s.begin():
        ident = await identity_for(s, "memory", "ann")
        from storage.people import Resident

        ann = await s.get(Resident, ident.resident_id)
        report = await file_urgent_report(s, app.services, ann, category="safety",
                                          description="I need help")
        urgent_ref = report.reference
        assert report.urgent and report.team_id is not None and report.estate_id == ann.estate_id
        queued = await outbox.figures(s, f"report:{report.id}")
    assert queued["pending"] >= 1
    await _drain(app)
    cards = [s.out.text for s in chat.sent if urgent_ref in s.out.text]
    assert cards and "URGENT" in cards[0]


async def test_two_members_press_fixed_at_once(make_app, db_url):
    app, chat = await make_app(db_url)
    for user in ("crew1", "crew2"):
        await english_resident(chat, user, "Victoria Garden")
        await grant(app, user, "team", "lighting-roads")
    await english_resident(chat, "ann")
    ref = await file_report(chat, "ann", "Street lighting", "Lamp out", 30.633, 104.04)
    await _drain(app)
    for user in ("crew1", "crew2"):
        await chat.press(user, "Fixed")
    await asyncio.gather(chat.press("crew1", "Mark fixed without a note"),
                         chat.press("crew2", "Mark fixed without a note"))
    answers = sorted(chat.last_text(u) for u in ("crew1", "crew2"))
    assert answers == [f"Report {ref} has moved on (now: fixed); nothing was changed.",
                       f"Report {ref} is now: fixed. The reporter has been told."]
    async with app.sessions() as s:
        report = await rep.by_reference(s, ref)
        events = await rep.events_of(s, report.id)
    assert [e.to_status for e in events if e.kind == "status"] == ["new", "fixed"]
    await _drain(app)
    assert sum("is now: fixed" in t for t in chat.texts_to("ann")) == 1


async def test_the_card_offers_only_the_steps_its_status_can_take(make_app, sqlite_url):
    """Acknowledged, the card no longer offers "Acknowledge"; in progress, neither that nor
    "In progress" (a press of either only said the report had moved on)."""
    app, chat = await make_app(sqlite_url)
    await english_resident(chat, "south", "Victoria Garden")
    await grant(app, "south", "team", "south-joint")
    await english_resident(chat, "ann")
    ref = await file_report(chat, "ann", "Rubbish and cleanliness", "Bins full", 30.606, 104.04)
    await chat.say("south", "/queue")
    await chat.press("south", ref)

    def labels() -> list[str]:
        return [b.label for row in chat.last("south").buttons for b in row]

    assert {"Acknowledge", "In progress", "Fixed"} <= set(labels())
    await chat.press("south", "Acknowledge")
    assert "Acknowledge" not in labels() and {"In progress", "Fixed"} <= set(labels())
    await chat.press("south", "In progress")
    assert "Acknowledge" not in labels() and "In progress" not in labels()
    assert {"Fixed", "Not ours", "Close"} <= set(labels())
