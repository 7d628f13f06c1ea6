"""Polls in memory: drafting, eligibility, one vote per resident/household, changes, closing by the
clock, results, forged payloads, and that anonymous ballots cannot be joined to voters."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select

from bot.delivery import Deliverer
from bot.scheduler import run_jobs_once
from storage import audit, dialog, outbox, polls
from storage.people import Identity
from tests.deliberation_helpers import grant, make_resident

TZ = ZoneInfo("Asia/Shanghai")


def _head(path: str) -> bytes:
    return Path(path).read_bytes()[:8]


async def _publish(chat, author: str, *, question="Where should the new bench go?",
                   options="By the gate\nBy the pond\nNear building 3", multiple=False,
                   area="Victoria Garden", verified=True, household=False, anonymous=True,
                   live=False, closes="48h", quorum="0"):
    await chat.say(author, "/newpoll")
    await chat.say(author, question)
    await chat.say(author, options)
    await chat.press(author, "Several options" if multiple else "One option")
    await chat.press(author, area)
    if "Committee" not in area:
        await chat.press(author, "Whole estate")
    await chat.press(author, "Verified residents only" if verified else "Anyone registered")
    await chat.press(author, "Per household" if household else "Per resident")
    await chat.press(author, "Anonymous" if anonymous else "Named")
    await chat.press(author, "While open" if live else "Only after close")
    await chat.say(author, closes)
    await chat.say(author, quorum)
    assert "Preview" in chat.last_text(author), chat.texts_to(author)[-3:]
    await chat.press(author, "Publish")
    text = chat.last_text(author)
    assert "is published" in text, text
    return int(text.split("#")[1].split()[0])


async def _setup(make_app, url, **kw):
    app, chat = await make_app(url, **kw)
    await make_resident(app.sessions, "memory", "author", lang="en")
    await grant(app.sessions, "memory:author", "committee", "victoria")
    return app, chat


async def test_draft_validation_keeps_what_was_given(make_app, sqlite_url):
    app, chat = await _setup(make_app, sqlite_url)
    await chat.say("author", "/newpoll")
    await chat.say("author", "Q?")
    assert "3 to 300" in chat.last_text("author")
    await chat.say("author", "Which colour for the fence?")
    await chat.say("author", "Green")
    assert "2 to 12 options" in chat.last_text("author")
    await chat.say("author", "Green\ngreen")
    assert "same" in chat.last_text("author")
    await chat.say("author", "\n".join(f"Colour {i}" for i in range(13)))
    assert "2 to 12 options" in chat.last_text("author")
    await chat.say("author", "Green\n" + "x" * 61)
    assert "at most 60" in chat.last_text("author")
    await chat.say("author", "Green\nBlue")
    await chat.press("author", "One option")
    # An area outside the author's committee is not offered.
    assert chat.find_button("author", "Zhonghai Mingcheng") is None
    await chat.press("author", "Victoria Garden")
    await chat.say("author", "99")
    assert "no building 99" in chat.last_text("author")
    await chat.say("author", "2")
    await chat.press("author", "Verified residents only")
    await chat.press("author", "Per resident")
    await chat.press("author", "Named")
    await chat.press("author", "While open")
    await chat.say("author", "yesterday")
    assert "could not read" in chat.last_text("author")
    await chat.say("author", "2001-01-01 10:00")
    assert "already past" in chat.last_text("author")
    await chat.say("author", "400d")
    assert "at most 90 days" in chat.last_text("author")
    await chat.say("author", "3d")
    await chat.say("author", "many")
    assert "whole number" in chat.last_text("author")
    await chat.say("author", "5")
    preview = chat.last_text("author")
    assert "Which colour for the fence?" in preview and "1. Green\n2. Blue" in preview
    assert "building 2" in preview and "Quorum: 5" in preview
    await chat.press("author", "Discard")
    assert chat.last_text("author") == "The draft is discarded."
    async with app.sessions() as s:
        assert (await s.scalars(select(polls.Poll))).all() == []


async def test_named_poll_vote_change_close_and_results(make_app, sqlite_url):
    app, chat = await _setup(make_app, sqlite_url)
    for name in ("ann", "bob", "cid"):
        await make_resident(app.sessions, "memory", name, unit=f"{name}-1")
    await make_resident(app.sessions, "memory", "unv", verified=False)
    await make_resident(app.sessions, "memory", "far", estate="zhonghai-mingcheng")
    poll_id = await _publish(chat, "author", anonymous=False, live=True, quorum="3")
    deliverer = Deliverer(app.engine, app.sessions, app.adapters)
    await run_jobs_once(app.sessions, app.services, None, app.jobs)
    while await deliverer.drain_once():
        pass
    assert "Where should the new bench go?" in chat.last_text("ann")
    assert chat.texts_to("unv") == [] and chat.texts_to("far") == []
    # A second run of the job (or a second worker) does not invite twice.
    await run_jobs_once(app.sessions, app.services, None, app.jobs)
    assert not await deliverer.drain_once()

    await chat.press("ann", "2. By the pond")
    assert "You voted in poll" in chat.texts_to("ann")[-3] and "By the pond" in \
        chat.texts_to("ann")[-3]
    assert "1 of 4 eligible" in chat.last_text("ann")  # live results; author is eligible too
    await chat.press("ann", "1. By the gate")
    assert "changed to: 1. By the gate" in chat.texts_to("ann")[-3]
    await chat.press("bob", "1. By the gate")
    # Not eligible: told why.
    await chat.say("unv", "/polls")
    await chat.press("unv", "#")
    assert "verified residents only" in chat.last_text("unv")
    await chat.say("far", "/polls")
    assert "no open poll" in chat.last_text("far")

    app.services.clock.advance(timedelta(hours=49))
    await run_jobs_once(app.sessions, app.services, None, app.jobs)
    await run_jobs_once(app.sessions, app.services, None, app.jobs)  # a second tick closes nothing twice
    while await deliverer.drain_once():
        pass
    result = [s.out for s in chat.sent if s.chat_id == "cid" and s.out.photo]
    assert len(result) == 1
    text = result[0].text
    assert "1. By the gate: 2 (100.00%)" in text and "2. By the pond: 0 (0.00%)" in text
    assert "Turnout: 2 of 4 eligible (50.00%)" in text
    assert "NOT met" in text
    assert _head(result[0].photo) == b"\x89PNG\r\n\x1a\n"
    assert len([s for s in chat.sent if s.chat_id == "author" and s.out.photo]) == 1
    await chat.press("cid", "3. Near building 3")
    assert "closed" in chat.last_text("cid")
    async with app.sessions() as s:
        closes = [e for e in await audit.recent(s) if e.action == "poll.close"]
        assert len(closes) == 1
        assert await polls.recount(s, poll_id) == {0: 2}


async def test_household_and_anonymity(make_app, db_url):
    app, chat = await _setup(make_app, db_url)
    await make_resident(app.sessions, "memory", "mum", unit="3-301")
    await make_resident(app.sessions, "memory", "dad", unit="3-301")
    await make_resident(app.sessions, "memory", "kid", unit=None)
    for i in range(6):
        await make_resident(app.sessions, "memory", f"v{i}", unit=f"5-{i}")
    poll_id = await _publish(chat, "author", household=True, anonymous=True, multiple=True)
    await run_jobs_once(app.sessions, app.services, None, app.jobs)
    deliverer = Deliverer(app.engine, app.sessions, app.adapters)
    while await deliverer.drain_once():
        pass
    # Multiple choice: tick two, then submit.
    await chat.press("mum", "☐ 1. By the gate")
    assert chat.last("mum").buttons[0][0].label == "☑ 1. By the gate"
    await chat.press("mum", "☐ 3. Near building 3")
    await chat.press("mum", "Submit")
    assert "recorded anonymously" in chat.last_text("mum")
    assert "gate" not in chat.last_text("mum")
    await chat.press("dad", "☐ 2. By the pond")
    await chat.press("dad", "Submit")
    assert "Your household has already voted" in chat.last_text("dad")
    await chat.say("kid", "/polls")
    await chat.press("kid", "#")
    assert "building and unit" in chat.last_text("kid")
    for i in range(6):
        await chat.press(f"v{i}", f"☐ {i % 3 + 1}.")
        await chat.press(f"v{i}", "Submit")
    await chat.press("v0", "☐ 2.")
    await chat.press("v0", "Submit")
    assert "already voted" in chat.last_text("v0")

    async with app.sessions() as s:
        # The ballot side has no voter, no time and no order: nothing to join on.
        # Read from the live database (as migrated), not from the models.
        conn = await s.connection()
        live = await conn.run_sync(lambda c: {
            t: {col["name"] for col in sa_inspect(c).get_columns(t)}
            for t in ("poll_tallies", "poll_participations")})
        assert live == {"poll_tallies": {"poll_id", "position", "votes"},
                        "poll_participations": {"poll_id", "voter_key"}}
        assert (await s.scalars(select(polls.PollVote))).all() == []
        tallies = dict((await s.execute(select(polls.PollTally.position, polls.PollTally.votes)
                                        .where(polls.PollTally.poll_id == poll_id))).all())
        # Seven ballots, fewer than a group (POLLS_ANONYMITY_BATCH): none counted yet.
        assert tallies == {0: 0, 1: 0, 2: 0}
        assert len((await s.scalars(select(polls.PollPendingBallot))).all()) == 7
    app.services.clock.advance(timedelta(hours=49))
    await run_jobs_once(app.sessions, app.services, None, app.jobs)
    async with app.sessions() as s:
        tallies = dict((await s.execute(select(polls.PollTally.position, polls.PollTally.votes)
                                        .where(polls.PollTally.poll_id == poll_id))).all())
        assert tallies == {0: 3, 1: 2, 2: 3}  # counted at close
        assert (await s.scalars(select(polls.PollPendingBallot))).all() == []
        # Neither the conversations, nor the outbox, nor the audit log keep a choice.
        assert (await s.scalars(select(dialog.DialogState))).all() == []
        for row in (await s.scalars(select(outbox.OutboxMessage))).all():
            assert "☑" not in str(row.payload)
        assert not [e for e in await audit.recent(s, 500) if "vote" in e.action]


async def test_forged_and_foreign_payloads(make_app, sqlite_url):
    app, chat = await _setup(make_app, sqlite_url)
    await make_resident(app.sessions, "memory", "eve")
    await make_resident(app.sessions, "memory", "zed", estate="zhonghai-mingcheng")
    first = await _publish(chat, "author", anonymous=False)
    await grant(app.sessions, "memory:other", "committee", "zhonghai")
    await make_resident(app.sessions, "memory", "other", estate="zhonghai-mingcheng")
    second = await _publish(chat, "other", area="Zhonghai Mingcheng", anonymous=False)
    signer = app.services.signer
    async with app.sessions() as s:
        eve = await s.scalar(select(Identity.id).where(
            Identity.platform_user_id == "eve"))
        zed = await s.scalar(select(Identity.id).where(
            Identity.platform_user_id == "zed"))
    # A payload signed for someone else is refused before any handler sees it.
    await chat.press("eve", signer.sign(zed, "pv", first, 0), raw=True)
    assert "no longer valid" in chat.last_text("eve")
    # Her own signature, but an option the poll does not have.
    await chat.press("eve", signer.sign(eve, "pv", first, 7), raw=True)
    assert "not an option" in chat.last_text("eve")
    await chat.press("eve", signer.sign(eve, "ps", first, 1 << 20), raw=True)
    assert "not an option" in chat.last_text("eve") or "choose" in chat.last_text("eve")
    await chat.press("eve", signer.sign(eve, "pv", first, -1), raw=True)
    assert "no longer valid" in chat.last_text("eve")
    # Another area's poll.
    await chat.press("eve", signer.sign(eve, "pv", second, 0), raw=True)
    assert "another area" in chat.last_text("eve")
    # A poll that does not exist.
    await chat.press("eve", signer.sign(eve, "pv", 999, 0), raw=True)
    assert "not an option" in chat.last_text("eve")
    # Tampering with a genuine payload breaks its signature.
    genuine = signer.sign(eve, "pv", first, 0)
    await chat.press("eve", genuine.replace(f"pv:{first}:0", f"pv:{second}:0"), raw=True)
    assert "no longer valid" in chat.last_text("eve")
    await chat.press("eve", genuine, raw=True)
    await chat.press("eve", genuine, raw=True)
    assert "was already" in chat.texts_to("eve")[-2]
    async with app.sessions() as s:
        p = await s.get(polls.Poll, first)
        assert (await polls.results(s, p)).voters == 1


async def test_options_on_one_line_and_the_shortest_poll(make_app, sqlite_url):
    """Options may come one a line or on one line separated by 、 ， , ; ；; the prompt says
    so, and it states how short and how long a poll may run."""
    app, chat = await _setup(make_app, sqlite_url)
    await chat.say("author", "/newpoll")
    await chat.say("author", "Which colour for the fence?")
    assert "separated by , ; 、 or ，" in chat.last_text("author")
    await chat.say("author", "Green、Blue，Red, White;Black；Grey")
    await chat.press("author", "One option")
    await chat.press("author", "Victoria Garden")
    await chat.press("author", "Whole estate")
    await chat.press("author", "Verified residents only")
    await chat.press("author", "Per resident")
    await chat.press("author", "Named")
    await chat.press("author", "While open")
    assert "at least 5 minutes and at most 90 days" in chat.last_text("author")
    await chat.say("author", "2001-01-01 10:00")
    assert "less than 5 minutes away" in chat.last_text("author")
    # At 19:00, "18:30" means tomorrow, and the preview says so.
    clock = app.services.clock
    local = clock().astimezone(TZ)
    seven = local.replace(hour=19, minute=0, second=0, microsecond=0)
    clock.advance((seven if seven > local else seven + timedelta(days=1)) - local)
    await chat.say("author", "18:30")
    await chat.say("author", "0")
    preview = chat.last_text("author")
    assert "1. Green\n2. Blue\n3. Red\n4. White\n5. Black\n6. Grey" in preview
    tomorrow = clock().astimezone(TZ) + timedelta(days=1)
    assert f"Closes: tomorrow at 18:30 ({tomorrow:%Y-%m-%d})" in preview
    await chat.press("author", "Discard")
    # Several lines: each line is one option, commas and all.
    await chat.say("author", "/newpoll")
    await chat.say("author", "Shall we plant trees?")
    await chat.say("author", "Yes, by the gate\nNo, thank you")
    await chat.press("author", "One option")
    await chat.press("author", "Victoria Garden")
    await chat.press("author", "Whole estate")
    await chat.press("author", "Verified residents only")
    await chat.press("author", "Per resident")
    await chat.press("author", "Named")
    await chat.press("author", "While open")
    await chat.say("author", "3d")
    await chat.say("author", "0")
    assert "1. Yes, by the gate\n2. No, thank you" in chat.last_text("author")
    # In Chinese too.
    await make_resident(app.sessions, "memory", "zhang", lang="zh-Hans")
    await grant(app.sessions, "memory:zhang", "committee", "victoria")
    await chat.say("zhang", "/newpoll")
    await chat.say("zhang", "围栏刷什么颜色？")
    assert "用、，,；分隔" in chat.last_text("zhang")
    await chat.say("zhang", "绿色、蓝色")
    assert chat.last_text("zhang") == "每人只能选一项，还是可以多选？"


async def test_committee_closes_a_poll_early(make_app, db_url):
    """The committee closes a poll before its time; the clock then closes it as at any closing
    time (results to everyone eligible, once); residents and other committees may not."""
    app, chat = await _setup(make_app, db_url)
    for name in ("ann", "bob"):
        await make_resident(app.sessions, "memory", name)
    await grant(app.sessions, "memory:other", "committee", "zhonghai")
    await make_resident(app.sessions, "memory", "other", estate="zhonghai-mingcheng")
    poll_id = await _publish(chat, "author", anonymous=True, closes="7d")
    deliverer = Deliverer(app.engine, app.sessions, app.adapters)
    await run_jobs_once(app.sessions, app.services, None, app.jobs)
    while await deliverer.drain_once():
        pass
    await chat.press("ann", "2. By the pond")
    async with app.sessions() as s:
        ids = dict((await s.execute(select(Identity.platform_user_id, Identity.id))).all())
    for user in ("ann", "other"):
        await chat.press(user, app.services.signer.sign(ids[user], "pcy", poll_id), raw=True)
        assert chat.last_text(user) == "You are not allowed to do that."
    await chat.say("other", "/polls")
    assert chat.find_button("other", f"Close #{poll_id}") is None

    await chat.say("author", "/polls")
    await chat.press("author", f"Close #{poll_id}")
    assert "No more votes will be taken" in chat.last_text("author")
    await chat.press("author", "Yes, close it")
    assert "closed to votes" in chat.last_text("author")
    await chat.press("author", "Yes, close it")  # a double tap
    assert "already closed" in chat.last_text("author")
    await chat.press("bob", "1. By the gate")
    assert "closed" in chat.last_text("bob")
    await run_jobs_once(app.sessions, app.services, None, app.jobs)
    await run_jobs_once(app.sessions, app.services, None, app.jobs)
    while await deliverer.drain_once():
        pass
    for user in ("ann", "bob", "author"):
        results = [s.out for s in chat.sent if s.chat_id == user and s.out.photo]
        assert len(results) == 1, user
        assert "2. By the pond: 1 (100.00%)" in results[0].text
    async with app.sessions() as s:
        actions = [(e.action, e.actor_id is None) for e in await audit.recent(s)]
    assert ("poll.close_early", False) in actions and actions.count(("poll.close", True)) == 1
