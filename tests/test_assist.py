"""Issue 18, assisted voting through the chat: a committee member records a vote for a resident
who is with them (/assist), under exactly the rules of the resident's own vote; it is audited
without the choice, the resident is told and can dispute it, and the results count it."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, text

from bot.delivery import Deliverer
from bot.scheduler import run_jobs_once
from storage import audit, dialog, outbox, polls, territory
from storage.people import Resident
from storage.verification import set_home
from tests.deliberation_helpers import grant, make_resident
from tests.test_polls import _publish


async def assist_vote(chat, helper: str, who: str, option: str, *, poll_id: int | None = None,
                      submit: bool = False) -> str:
    """/assist → "name, building, unit" → the resident → the poll → their answer; the last
    text the helper got (a refusal, which has no buttons, stops wherever it comes). Presses
    by label, so it runs on WeChat's numbered lines too (tests/test_handlers_on_wechat.py)."""
    await chat.say(helper, "/assist")
    await chat.say(helper, who)
    if not _offers(chat, helper):
        return chat.last_text(helper)
    await chat.press(helper, chat.last(helper).buttons[0][0].label)
    if not _offers(chat, helper):
        return chat.last_text(helper)
    await chat.press(helper, f"#{poll_id}" if poll_id else "#")
    if not _offers(chat, helper):
        return chat.last_text(helper)
    await chat.press(helper, option)
    if submit:
        await chat.press(helper, "Record these choices")
    return chat.last_text(helper)


def _offers(chat, user: str) -> bool:
    """The last message to `user` offers choices (whatever the language or platform)."""
    last = chat.last(user)
    return bool(last and last.buttons)


async def _drain(app) -> None:
    deliverer = Deliverer(app.engine, app.sessions, app.adapters)
    while await deliverer.drain_once():
        pass


async def _self_vote(chat, user: str, option: str = "1. By the gate") -> str:
    await chat.say(user, "/polls")
    await chat.press(user, "#")
    if "Poll #" in chat.last_text(user):
        await chat.press(user, option)
    return chat.last_text(user)


async def test_household_poll_dispute_and_results(make_app, db_url):
    app, chat = await make_app(db_url)
    await make_resident(app.sessions, "memory", "author", lang="en")
    await grant(app.sessions, "memory:author", "committee", "victoria")
    await make_resident(app.sessions, "memory", "clerk", lang="en")
    await grant(app.sessions, "memory:clerk", "committee", "victoria")
    await make_resident(app.sessions, "memory", "Mia Wang", building="2", unit="2-301")
    await make_resident(app.sessions, "memory", "Max Wang", building="2", unit="2-301")
    await make_resident(app.sessions, "memory", "Lin Chen", building="2", unit="2-302")
    await make_resident(app.sessions, "memory", "Lin Zhou", building="2", unit="2-302")
    poll_id = await _publish(chat, "author", household=True, anonymous=False, live=True)

    # Mia is with the author: her household's vote is recorded with help.
    said = await assist_vote(chat, "author", "mia, 2, 2-301", "2. By the pond")
    assert "The vote of Mia Wang in poll" in said and "By the pond" in said, said
    # The second vote of the household is refused: her husband's own ...
    assert "Your household has already voted" in await _self_vote(chat, "Max Wang")
    # ... an assisted one for him ...
    assert "household of Max Wang has already voted" in await assist_vote(
        chat, "author", "Max Wang，2，2－301", "1. By the gate")
    # ... and Mia herself cannot change what was recorded for her.
    assert "with help from the committee or staff" in await _self_vote(chat, "Mia Wang")
    # The reverse: a household that voted by itself cannot be voted for with help.
    await _self_vote(chat, "Lin Chen", "3. Near building 3")
    assert "You voted in poll" in chat.texts_to("Lin Chen")[-3]
    assert "household of Lin Zhou has already voted" in await assist_vote(
        chat, "clerk", "lin zhou, 2, 2-302", "3. Near building 3")
    assert "already voted" in await assist_vote(chat, "clerk", "Mia, 2, 2-301", "1. By the gate")

    async with app.sessions() as s:
        entries = [e for e in await audit.recent(s, 100) if e.action == "poll.assisted_vote"]
        assert len(entries) == 1
        assisted = (await s.scalars(select(polls.AssistedVote))).one()
        mia = await s.get(Resident, assisted.resident_id)
        assert entries[0].target == f"poll:{poll_id}" and mia.display_name == "Mia Wang"
        assert entries[0].detail == {"resident": mia.id, "assisted": assisted.id}
        assert (await s.scalars(select(dialog.DialogState))).all() == []

    # Mia is told who recorded it, in her language, and says it was not her.
    await _drain(app)
    told = chat.texts_to("Mia Wang")
    notice = next(t for t in told if "recorded your vote" in t)
    assert "author recorded your vote in poll" in notice and "By the pond" in notice, notice
    await chat.press("Mia Wang", "This was not me")
    assert "The committee has been told" in chat.last_text("Mia Wang")
    await chat.press("Mia Wang", "This was not me")
    assert "already told the committee" in chat.last_text("Mia Wang")
    await _drain(app)
    for member in ("author", "clerk"):
        flag = chat.last_text(member)
        assert flag.startswith("Disputed assisted vote: Mia Wang (Victoria Garden, building 2, "
                               "unit 2-301)") and "author recorded" in flag, flag
    async with app.sessions() as s:
        assert (await s.scalars(select(polls.AssistedVote))).one().disputed_at is not None
        assert [e.action for e in await audit.recent(s, 100)
                if e.action == "poll.assisted_dispute"] == ["poll.assisted_dispute"]

    # The results say how many votes were recorded with help.
    app.services.clock.advance(timedelta(hours=49))
    await run_jobs_once(app.sessions, app.services, None, app.jobs)
    await _drain(app)
    result = [m.out.text for m in chat.sent if m.chat_id == "clerk" and m.out.photo][-1]
    assert "Turnout: 2 of 2 eligible" in result
    assert "1 vote was recorded with help from the committee or staff" in result, result


async def test_anonymous_assisted_vote_keeps_no_choice(make_app, db_url):
    app, chat = await make_app(db_url)
    await make_resident(app.sessions, "memory", "author", lang="en")
    await grant(app.sessions, "memory:author", "committee", "victoria")
    await make_resident(app.sessions, "memory", "Ann Li", unit="1-1", lang="zh-Hans")
    poll_id = await _publish(chat, "author", anonymous=True)
    said = await assist_vote(chat, "author", "ann li, 1, 1-1", "3. Near building 3")
    assert "recorded anonymously" in said and "building 3" not in said, said
    # Ann herself is refused as for any second vote of an anonymous poll.
    await chat.say("Ann Li", "/polls")
    await chat.press("Ann Li", "#")
    await chat.press("Ann Li", "1. By the gate")
    assert chat.last_text("Ann Li") == "您已经投过票了。"
    await _drain(app)
    notice = next(t for t in chat.texts_to("Ann Li") if "代录" in t)
    assert "author于" in notice and "匿名投票" in notice and "Near building 3" not in notice
    async with app.sessions() as s:
        entry = next(e for e in await audit.recent(s, 100) if e.action == "poll.assisted_vote")
        assert set(entry.detail) == {"resident", "assisted"}
        # Nothing written for the assisted vote holds the choice: the audit entry, the
        # assisted row, the outbox (reply and push), the conversations.
        said_after = [str(r.payload) for r in (await s.scalars(select(outbox.OutboxMessage)))
                      if ("recorded" in str(r.payload) or "代录" in str(r.payload))
                      and "Vote for" not in str(r.payload)]  # the ballot itself lists all
        assert len(said_after) >= 2 and not [p for p in said_after if "building 3" in p]
        assert not [r for r in (await s.scalars(select(outbox.OutboxMessage)))
                    if "☑" in str(r.payload)]
        assert (await s.scalars(select(dialog.DialogState))).all() == []
        joined = (await s.execute(text(
            "SELECT a.*, v.*, p.* FROM audit_log a JOIN poll_assisted_votes v "
            "ON a.target = 'poll:' || v.poll_id JOIN poll_participations p "
            "ON p.poll_id = v.poll_id WHERE a.action = 'poll.assisted_vote'"))).all()
        assert len(joined) == 1
        assert not [c for c in joined[0] if "building 3" in str(c) or c == 4]  # label, mask
        columns = set(joined[0]._fields)
        assert not columns & {"choices", "position", "votes", "sealed", "mask"}
        assert (await s.scalars(select(polls.PollVote))).all() == []
    app.services.clock.advance(timedelta(hours=49))
    await run_jobs_once(app.sessions, app.services, None, app.jobs)
    async with app.sessions() as s:
        res = await polls.results(s, await s.get(polls.Poll, poll_id))
        assert [o.votes for o in res.options] == [0, 0, 1] and res.assisted == 1


async def test_bad_inputs_and_a_resident_without_a_phone(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    await make_resident(app.sessions, "memory", "author", lang="en")
    await grant(app.sessions, "memory:author", "committee", "victoria")
    await make_resident(app.sessions, "memory", "zhou", lang="zh-Hans")
    await grant(app.sessions, "memory:zhou", "committee", "victoria")
    await make_resident(app.sessions, "memory", "Far Away", estate="zhonghai-mingcheng",
                        building="1", unit="1-1")
    await make_resident(app.sessions, "memory", "Bo", unit="1-2", verified=False)
    await make_resident(app.sessions, "memory", "plain", lang="en")
    async with app.sessions() as s, s.begin():  # registered at the door: no chat identity
        wu = Resident(display_name="吴奶奶", verified=True)
        s.add(wu)
        await s.flush()
        estate = await territory.estate_by_code(s, "victoria")
        building = await territory.building(s, estate.id, "3")
        await set_home(s, wu, estate.id, building.id, "3-101")
        wu.verified = True
        wu_id = wu.id
    poll_id = await _publish(chat, "author", anonymous=True, closes="2h")

    # Only committee members and staff may assist.
    await chat.say("plain", "/assist")
    assert chat.last_text("plain") == "You are not allowed to do that."
    # Bad inputs, each with its own answer, in the helper's language.
    await chat.say("author", "/assist")
    await chat.say("author", "just a name")
    assert "three things separated by commas" in chat.last_text("author")
    await chat.say("author", "Nobody, 1, 1-1")
    assert 'no resident named "Nobody" in building 1, unit 1-1' in chat.last_text("author")
    await chat.say("author", "Far Away, 1, 1-1")
    assert "outside the area your role covers" in chat.last_text("author")
    await chat.say("author", "/cancel")
    await chat.say("zhou", "/assist")
    await chat.say("zhou", "谁也不是，9，9-9")
    assert "没有找到名叫“谁也不是”的居民" in chat.last_text("zhou")
    await chat.say("zhou", "Far Away，1，1-1")
    assert "职责范围以外" in chat.last_text("zhou")
    await chat.say("zhou", "/cancel")
    assert "verified residents only, and Bo is not verified" in await assist_vote(
        chat, "author", "bo, 1, 1-2", "1. By the gate")
    assert "尚未认证" in await assist_vote(chat, "zhou", "bo, 1, 1-2", "1. By the gate")

    # Grandma Wu has no phone: her vote is recorded, and nobody is pushed.
    said = await assist_vote(chat, "author", "吴奶奶, 3, 3-101", "2. By the pond")
    assert "The vote of 吴奶奶 in poll" in said, said
    async with app.sessions() as s:
        assert await polls.assisted_vote(s, poll_id, wu_id) is not None
        assert not [m for m in (await s.scalars(select(outbox.OutboxMessage))).all()
                    if "recorded your vote" in str(m.payload)]

    # The poll closes while the ballot is on the helper's screen: the vote is refused.
    await chat.say("author", "/assist")
    await chat.say("author", "author, 1, ")
    assert "three things" in chat.last_text("author")
    await chat.say("author", "/cancel")
    await make_resident(app.sessions, "memory", "Late Liu", unit="1-9")
    await chat.say("author", "/assist")
    await chat.say("author", "late liu, 1, 1-9")
    await chat.press("author", chat.last("author").buttons[0][0].payload, raw=True)
    await chat.press("author", "#")
    assert "Vote for Late Liu" in chat.last_text("author")
    app.services.clock.advance(timedelta(hours=3))
    await chat.press("author", "1. By the gate")
    assert chat.last_text("author") == f"Poll #{poll_id} is closed; no more votes are accepted."
    await run_jobs_once(app.sessions, app.services, None, app.jobs)
    await chat.say("zhou", "/assist")
    await chat.say("zhou", "late liu, 1, 1-9")
    await chat.press("zhou", chat.last("zhou").buttons[0][0].payload, raw=True)
    assert "没有Late Liu可以参加的进行中投票或问卷" in chat.last_text("zhou")


async def _survey(chat, author: str) -> None:
    await chat.say(author, "/newsurvey")
    await chat.say(author, "Our courtyard")
    await chat.press(author, "One choice")
    await chat.say(author, "Where should the bench go?")
    await chat.say(author, "By the gate\nBy the pond")
    await chat.press(author, "Short free text")
    await chat.say(author, "What would you change?")
    await chat.press(author, "Several choices")
    await chat.say(author, "What should we add?")
    await chat.say(author, "Lights\nBenches\nTrees")
    await chat.press(author, "No more questions")
    await chat.press(author, "Victoria Garden")
    await chat.press(author, "Whole estate")
    await chat.press(author, "Verified residents only")
    await chat.say(author, "7d")
    await chat.press(author, "Publish")
    assert "Survey #1 is published" in chat.last_text(author)


async def test_assisted_survey_answers_and_their_dispute(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    await make_resident(app.sessions, "memory", "author", lang="en")
    await grant(app.sessions, "memory:author", "committee", "victoria")
    await make_resident(app.sessions, "memory", "Mia Wang", building="2", unit="2-301")
    await make_resident(app.sessions, "memory", "Ned", building="2", unit="2-302")
    await make_resident(app.sessions, "memory", "Bo", unit="1-2", verified=False)
    await _survey(chat, "author")

    # Ned answers himself first: a helper cannot record answers for him afterwards.
    await chat.say("Ned", "/surveys")
    await chat.press("Ned", "Answer #1")
    await chat.press("Ned", "By the gate")
    assert "Question 2 of 3" in chat.last_text("Ned")
    await chat.say("author", "/assist")
    await chat.say("author", "ned, 2, 2-302")
    await chat.press("author", chat.last("author").buttons[0][0].payload, raw=True)
    await chat.press("author", "Survey #1")
    assert "Ned has already answered survey #1" in chat.last_text("author")
    # Bo is not verified: refused as his own answers would be.
    await chat.say("author", "/assist")
    await chat.say("author", "bo, 1, 1-2")
    await chat.press("author", chat.last("author").buttons[0][0].payload, raw=True)
    await chat.press("author", "Survey #1")
    assert "verified residents only, and Bo is not verified" in chat.last_text("author")

    # Mia answers with the author: one question after another, a typed one among them.
    await chat.say("author", "/assist")
    await chat.say("author", "mia wang, 2, 2-301")
    await chat.press("author", chat.last("author").buttons[0][0].payload, raw=True)
    await chat.press("author", "Survey #1")
    assert "Answers for Mia Wang" in chat.last_text("author")
    await chat.press("author", "By the pond")
    assert "Question 2 of 3" in chat.last_text("author")
    await chat.say("author", "More shade")
    await chat.press("author", "☐ Trees")
    await chat.press("author", "Record these choices")
    assert "The answers of Mia Wang to survey #1 are saved" in chat.last_text("author")
    # Mia herself cannot change them; she disputes them instead.
    await chat.say("Mia Wang", "/surveys")
    await chat.press("Mia Wang", "Answer #1")
    assert "recorded with help" in chat.last_text("Mia Wang")
    await _drain(app)
    told = next(t for t in chat.texts_to("Mia Wang") if "recorded your answers" in t)
    assert told.startswith("author recorded your answers to survey #1 (Our courtyard)")
    await chat.press("Mia Wang", "This was not me")
    assert "survey #1 were not yours" in chat.last_text("Mia Wang")
    await _drain(app)
    assert chat.last_text("author").startswith("Disputed assisted survey answers: Mia Wang")
    async with app.sessions() as s:
        actions = [e.action for e in await audit.recent(s, 100)]
        assert actions.count("survey.assisted_answer") == 1
        assert actions.count("survey.assisted_dispute") == 1
    await chat.say("author", "/surveys")
    await chat.press("author", "Results #1")
    results = "\n".join(chat.texts_to("author")[-4:])
    assert "Respondents: 2 (completed: 1)" in results
    assert "1 response was recorded with help" in results, results


async def test_an_assisted_ballot_expires_like_the_residents_own(make_app, sqlite_url):
    # The helper's vote buttons (asv, asm, asx) carry the moment they were signed: a ballot
    # left open on the helper's screen past the vote age limit records nothing.
    app, chat = await make_app(sqlite_url, fresh_vote_hours=24)
    await make_resident(app.sessions, "memory", "author", lang="en")
    await grant(app.sessions, "memory:author", "committee", "victoria")
    await make_resident(app.sessions, "memory", "Late Liu", unit="1-9")
    poll_id = await _publish(chat, "author", anonymous=False, closes="7d")
    await chat.say("author", "/assist")
    await chat.say("author", "late liu, 1, 1-9")
    await chat.press("author", chat.last("author").buttons[0][0].payload, raw=True)
    await chat.press("author", "#")
    old_vote = chat.find_button("author", "2. By the pond")
    assert old_vote
    app.services.clock.advance(timedelta(hours=25))
    await chat.press("author", old_vote, raw=True)
    assert chat.last_text("author").startswith("This button has expired")
    async with app.sessions() as s:
        assert await polls.assisted_vote(s, poll_id, (await s.scalar(
            select(Resident.id).where(Resident.display_name == "Late Liu")))) is None
    said = await assist_vote(chat, "author", "late liu, 1, 1-9", "2. By the pond")
    assert "The vote of Late Liu in poll" in said, said
