"""A survey answered by 196 residents whose answers are written here; the published table and the
CSV must show the percentages to two decimals, rounded half up."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from bot.delivery import Deliverer
from bot.scheduler import run_jobs_once
from storage import audit
from storage.people import Identity
from storage.surveys import Survey
from tests.deliberation_helpers import grant, make_resident

N = 196
# Question 1 (one choice): 37 / 80 / 79 of 196 -> 18.88 / 40.82 / 40.31.
Q1 = ["By the gate"] * 37 + ["By the pond"] * 80 + ["In the garden"] * 79
# Question 2 (scale): 10 / 25 / 50 / 60 / 51 of 196.
Q2 = ["1"] * 10 + ["2"] * 25 + ["3"] * 50 + ["4"] * 60 + ["5"] * 51
# Question 4 (several choices) is reached by only 32 residents; the rest stop after question 3.
Q4 = [["Lights"]] + [["Benches"]] * 5 + [["Trees"]] * 13 + [["Lights", "Trees"]] * 13
EXPECTED = {
    1: {"By the gate": ("37", "18.88"), "By the pond": ("80", "40.82"),
        "In the garden": ("79", "40.31")},
    2: {"1": ("10", "5.10"), "2": ("25", "12.76"), "3": ("50", "25.51"), "4": ("60", "30.61"),
        "5": ("51", "26.02")},
    # 5/32 = 15.625 -> 15.63 (half up; a float round() would give 15.62).
    4: {"Lights": ("14", "43.75"), "Benches": ("5", "15.63"), "Trees": ("26", "81.25")},
}


def _read(path: str) -> str:
    return Path(path).read_text(encoding="utf-8-sig")


async def _drain(app) -> None:
    deliverer = Deliverer(app.engine, app.sessions, app.adapters)
    while await deliverer.drain_once():
        pass


async def test_survey_of_196_residents(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    await make_resident(app.sessions, "memory", "author", building="6")
    await grant(app.sessions, "memory:author", "committee", "victoria")
    for i in range(N):
        await make_resident(app.sessions, "memory", f"r{i}", building=str(i % 5 + 1))
    a = "author"
    await chat.say(a, "/newsurvey")
    await chat.say(a, "Our courtyard")
    await chat.press(a, "One choice")
    await chat.say(a, "Where should the bench go?")
    await chat.say(a, "By the gate\nBy the pond\nIn the garden")
    await chat.press(a, "Scale 1 to 5")
    await chat.say(a, "How happy are you with the courtyard?")
    await chat.press(a, "Short free text")
    await chat.say(a, "What would you change?")
    await chat.press(a, "Several choices")
    await chat.say(a, "What should we add?")
    await chat.say(a, "Lights\nLights")
    assert "different choices" in chat.last_text(a)
    await chat.say(a, "Lights\nBenches\nTrees")
    await chat.press(a, "No more questions")
    await chat.press(a, "Victoria Garden")
    await chat.press(a, "Whole estate")
    await chat.press(a, "Verified residents only")
    await chat.say(a, "7d")
    assert "What should we add?" in chat.last_text(a)
    await chat.press(a, "Publish")
    assert "Survey #1 is published" in chat.last_text(a)

    await run_jobs_once(app.sessions, app.services, None, app.jobs)
    await _drain(app)
    assert "Survey #1: Our courtyard" in chat.last_text("r0")

    for i in range(N):
        user = f"r{i}"
        await chat.press(user, "Start")
        await chat.press(user, Q1[i])
        if i == 0:
            # Stop here and come back later: the survey resumes at question 2.
            await chat.say(user, "/surveys")
            await chat.press(user, "Answer #1")
            assert "Question 2 of 4" in chat.last_text(user)
        await chat.press(user, Q2[i])
        await chat.say(user, f"More shade, says resident {i}")
        assert "Question 4 of 4" in chat.last_text(user)
        if i < len(Q4):
            for choice in Q4[i]:
                await chat.press(user, f"☐ {choice}")
            await chat.press(user, "Submit")
            assert "Thank you" in chat.last_text(user)
    # A double tap on an answered question saves nothing twice.
    await chat.press("r1", "By the pond")
    assert "already answered" in chat.texts_to("r1")[-2]

    # Residents see results only after close; the committee any time, with the free text.
    await chat.say("r3", "/surveys")
    assert chat.find_button("r3", "Results #1") is None
    await make_resident(app.sessions, "memory", "silent", building="1")
    app.services.clock.advance(timedelta(days=8))
    await run_jobs_once(app.sessions, app.services, None, app.jobs)
    await run_jobs_once(app.sessions, app.services, None, app.jobs)  # closes once, pushes once
    await _drain(app)
    assert any("has closed" in t for t in chat.texts_to(a))
    # Everyone who answered hears the results, without the free text; others do not.
    pushed = [t for t in chat.texts_to("r5") if "Respondents: 196" in t]
    assert len(pushed) == 1 and "  By the gate | 37 | 18.88%" in pushed[0]
    assert not any("More shade, says resident" in t for t in chat.texts_to("r5"))
    assert not any("Respondents:" in t for t in chat.texts_to("silent"))
    chat.clear()
    await chat.say(a, "/surveys")
    await chat.press(a, "Results #1")
    sent = [s.out for s in chat.sent if s.chat_id == a]
    table = sent[1].text
    assert "Respondents: 196 (completed: 32)" in table
    for q, rows in EXPECTED.items():
        for label, (count, pct) in rows.items():
            assert f"  {label} | {count} | {pct}%" in table, (q, label, table)
    doc = next(o for o in sent if o.document)
    rows = list(csv.reader(io.StringIO(_read(doc.document))))
    got = {(int(r[0]), r[2]): (r[3], r[4]) for r in rows[1:] if r[2]}
    assert got == {(q, label): v for q, labels in EXPECTED.items() for label, v in labels.items()}
    free = "\n".join(o.text for o in sent if "for the committee only" in o.text or
                     o.text.startswith("- More shade"))
    assert "More shade, says resident 195" in free

    chat.clear()
    await chat.say("r3", "/surveys")
    await chat.press("r3", "Results #1")
    texts = chat.texts_to("r3")
    assert any("  By the gate | 37 | 18.88%" in t for t in texts)
    assert not any("More shade" in t for t in texts)  # free text: committee only
    async with app.sessions() as s:
        actions = [e.action for e in await audit.recent(s, 50)]
    assert actions.count("survey.close") == 1 and "survey.create" in actions


async def _identity_id(app, user: str) -> int:
    async with app.sessions() as s:
        return await s.scalar(select(Identity.id).where(Identity.platform_user_id == user))


async def test_committee_closes_a_survey_early(make_app, db_url):
    """Choices typed on one line with any separator; the committee closes the survey before its
    time, with the same notifications as a close by the clock; nobody else may close it."""
    app, chat = await make_app(db_url)
    a = "author"
    await make_resident(app.sessions, "memory", a, building="6")
    await grant(app.sessions, "memory:author", "committee", "victoria")
    for user in ("r1", "r2"):
        await make_resident(app.sessions, "memory", user)
    await make_resident(app.sessions, "memory", "other", estate="zhonghai-mingcheng")
    await grant(app.sessions, "memory:other", "committee", "zhonghai")
    await chat.say(a, "/newsurvey")
    await chat.say(a, "Our courtyard")
    await chat.press(a, "One choice")
    await chat.say(a, "Where should the bench go?")
    assert "separated by , ; 、 or ，" in chat.last_text(a)
    await chat.say(a, "By the gate、By the pond，In the garden")
    await chat.press(a, "Several choices")
    await chat.say(a, "What should we add?")
    await chat.say(a, "Lights; Benches；Trees, Swings")
    await chat.press(a, "No more questions")
    assert chat.last_text(a) == "Who may answer this survey? Choose the area."
    await chat.press(a, "Victoria Garden")
    await chat.press(a, "Whole estate")
    await chat.press(a, "Verified residents only")
    assert "at least 5 minutes and at most 90 days" in chat.last_text(a)
    await chat.say(a, "7d")
    preview = chat.last_text(a)
    assert "   - By the gate\n   - By the pond\n   - In the garden" in preview
    assert "   - Lights\n   - Benches\n   - Trees\n   - Swings" in preview
    await chat.press(a, "Publish")
    await run_jobs_once(app.sessions, app.services, None, app.jobs)
    await _drain(app)
    await chat.press("r1", "Start")
    await chat.press("r1", "By the pond")

    # A resident, and a committee member elsewhere, hold no right to close it.
    async with app.sessions() as s:
        survey_id = (await s.scalars(select(Survey.id))).one()
    for user in ("r2", "other"):
        forged = app.services.signer.sign(await _identity_id(app, user), "svcy", survey_id)
        await chat.press(user, forged, raw=True)
        assert chat.last_text(user) == "You are not allowed to do that."

    await chat.say(a, "/surveys")
    await chat.press(a, "Results #1")
    assert "To end it now" in chat.last_text(a)
    await chat.press(a, "Close it now")
    assert "1 respondent so far" in chat.last_text(a)
    await chat.press(a, "Yes, close it")
    assert "closed early" in chat.last_text(a)
    await chat.press(a, "Yes, close it")  # a double tap closes nothing twice
    assert "already closed" in chat.last_text(a)
    await _drain(app)
    assert any("has closed" in t for t in chat.texts_to(a))
    results = [t for t in chat.texts_to("r1") if "Respondents: 1" in t]
    assert len(results) == 1 and "  By the pond | 1 | 100.00%" in results[0]
    await chat.press("r2", "Start")
    assert chat.last_text("r2") == "This survey is closed."
    # The clock, later, neither closes it again nor sends the results twice.
    app.services.clock.advance(timedelta(days=8))
    await run_jobs_once(app.sessions, app.services, None, app.jobs)
    await _drain(app)
    assert len([t for t in chat.texts_to("r1") if "Respondents: 1" in t]) == 1
    async with app.sessions() as s:
        closes = [e for e in await audit.recent(s, 50) if e.action == "survey.close"]
    assert len(closes) == 1 and closes[0].detail == {"early": True}
