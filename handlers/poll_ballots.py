"""Voting: ballots with buttons signed for one resident, votes, results; and the job that closes
polls at their time and streams invitations and results to every eligible resident.

Multiple-choice selections travel in the signed button payload (a bit mask), not in the dialog
state, so nothing of an anonymous voter's choice is kept on the server outside the counters.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass

from bot.context import Context, Services
from bot.messaging.model import Button, Outbound, PushKind
from bot.payloads import Action
from bot.pushes import Batch, Recipient, Translate, translator
from bot.router import Router
from bot.scheduler import Job
from handlers import poll_chart
from handlers.polls import ShowBallot, manage_rows, rules
from storage import audit, outbox, polls
from storage.audience import Each, recipients
from storage.people import identities_of, resident_by_id

log = logging.getLogger(__name__)
router = Router()
MAX_BATCHES_PER_TICK = 40


@dataclass(frozen=True)
class Vote(Action, code="pv", fresh="vote"):
    poll_id: int
    position: int


@dataclass(frozen=True)
class Toggle(Action, code="pm", fresh="vote"):
    """A multiple-choice tick: the choices so far travel only here, as a bit mask."""
    poll_id: int
    mask: int


@dataclass(frozen=True)
class Submit(Action, code="ps", fresh="vote"):
    poll_id: int
    mask: int


@dataclass(frozen=True)
class ShowResults(Action, code="pr"):
    poll_id: int


def _texts(services: Services, lang: str) -> Translate:
    return translator(services.texts, lang)


def ballot(services: Services, lang: str, identity_id: int, poll: polls.Poll,
           options: list[polls.PollOption], mask: int = 0, edit_of: str | None = None
           ) -> Outbound:
    t = _texts(services, lang)
    sign = services.signer.sign
    listing = "\n".join(f"{o.position + 1}. {o.label}" for o in options)
    text = t("polls.ballot", number=poll.id, question=poll.question, options=listing,
             rules=rules(t, poll.multiple, poll.anonymous, poll.per_household,
                         poll.live_results),
             closes=services.local_time(poll.closes_at))
    rows: list[list[Button]] = []
    for o in options:
        if poll.multiple:
            mark = "☑" if mask >> o.position & 1 else "☐"
            rows.append([Button(f"{mark} {o.position + 1}. {o.label}",
                                sign(identity_id, Toggle(poll.id, mask ^ (1 << o.position))))])
        else:
            rows.append([Button(f"{o.position + 1}. {o.label}",
                                sign(identity_id, Vote(poll.id, o.position)))])
    if poll.multiple:
        rows.append([Button(t("polls.submit"), sign(identity_id, Submit(poll.id, mask)))])
    if poll.live_results:
        rows.append([Button(t("polls.show_results"), sign(identity_id, ShowResults(poll.id)))])
    return Outbound(text=text, buttons=rows, edit_of=edit_of)


def invitation(services: Services, lang: str, identity_id: int, poll: polls.Poll,
               options: list[polls.PollOption]) -> Outbound:
    """The ballot, pushed to an eligible resident: a poll invitation, with its facts (what a
    platform's invitation form shows: the question, when it closes)."""
    out = ballot(services, lang, identity_id, poll, options)
    out.push = PushKind.POLL
    out.facts = {"title": poll.question, "deadline": services.local_iso(poll.closes_at)}
    return out


def results_text(t, poll: polls.Poll, res: polls.Results) -> str:
    lines = [t("polls.results_title" if poll.status == "closed" else "polls.results_live",
               number=poll.id, question=poll.question)]
    for o in res.options:
        lines.append(t("polls.results_line", n=o.position + 1, label=o.label, votes=o.votes,
                       percent=o.percent))
    if res.counted < res.voters:
        lines.append(t("polls.results_waiting", counted=res.counted, waiting=res.voters -
                       res.counted))
    lines.append(t("polls.results_turnout", voters=res.voters, eligible=res.eligible,
                   percent=res.turnout))
    if res.assisted:
        lines.append(t("polls.results_assisted", assisted=res.assisted))
    if res.quorum is None:
        lines.append(t("polls.results_no_quorum"))
    else:
        lines.append(t("polls.results_quorum_met" if res.quorum_met
                       else "polls.results_quorum_not_met", quorum=res.quorum))
    return "\n".join(lines)


def chart(services: Services, poll: polls.Poll, res: polls.Results) -> str:
    """The closed poll's chart, drawn once (its counters no longer move) and kept in the media
    store under a name of the poll, so every worker and every restart reuses it."""
    def draw() -> bytes:
        return poll_chart.render(poll.question, [o.label for o in res.options],
                                 [o.votes for o in res.options],
                                 [str(o.percent) for o in res.options],
                                 f"{res.voters} / {res.eligible}  ({res.turnout}%)",
                                 services.settings.bot.font_file)

    # The poll's id with what it asked and when it was made: a database started afresh beside
    # an old media folder draws its own poll 1.
    made = poll.created_at.isoformat() if poll.created_at else ""
    tag = hashlib.sha256(f"{poll.question}|{made}".encode()).hexdigest()[:12]
    return str(services.media.path(services.media.named(f"poll-{poll.id}-{tag}.png", draw)))


# -- residents ---------------------------------------------------------------------------------

@router.command("polls", help_key="polls.help_polls", order=20)
async def list_open(ctx: Context) -> None:
    found = await polls.open_for(ctx.session, ctx.resident)
    managed = await manage_rows(ctx)
    if not found and not managed:
        ctx.say("polls.none_open")
        return
    if found:
        ctx.say("polls.open_list", [[ctx.button(f"#{p.id} {p.question[:40]}", ShowBallot(p.id))]
                                    for p in found])
    if managed:
        ctx.say("polls.manage_list", managed)


@router.action(ShowBallot)
async def show_ballot(ctx: Context, press: ShowBallot) -> None:
    poll = await polls.get_poll(ctx.session, press.poll_id)
    if poll is None:
        ctx.say("common.button_invalid")
        return
    refused = await polls.may_vote(ctx.session, poll, ctx.resident, ctx.now)
    if refused is not None:
        ctx.say(f"polls.refused_{refused.value}")
        return
    options = await polls.options_of(ctx.session, poll.id)
    ctx.replies.append(ballot(ctx.services, ctx.lang, ctx.identity.id, poll, options))


@router.action(Vote)
async def vote_single(ctx: Context, press: Vote) -> None:
    if press.poll_id < 0 or press.position < 0:  # never drawn: refused as int_args did
        ctx.say("common.button_invalid")
        return
    await _cast(ctx, press.poll_id, [press.position])


@router.action(Toggle)
async def toggle(ctx: Context, press: Toggle) -> None:
    poll = await polls.get_poll(ctx.session, press.poll_id)
    if poll is None or not poll.multiple or press.mask < 0:
        ctx.say("common.button_invalid")
        return
    options = await polls.options_of(ctx.session, poll.id)
    if press.mask >= 1 << len(options):
        ctx.say("polls.refused_bad_choice")
        return
    if poll.status != "open" or poll.closes_at <= ctx.now:
        ctx.say("polls.refused_closed")
        return
    redraw = ballot(ctx.services, ctx.lang, ctx.identity.id, poll, options, mask=press.mask,
                    edit_of=ctx.inbound.message_ref)
    redraw.ephemeral = True  # the ticks are a choice in the making: never written down
    ctx.replies.append(redraw)


@router.action(Submit)
async def submit(ctx: Context, press: Submit) -> None:
    mask = press.mask
    if press.poll_id < 0 or mask < 0:  # never drawn: refused as int_args did
        ctx.say("common.button_invalid")
        return
    if mask == 0:
        ctx.say("polls.choose_one")
        return
    positions = [i for i in range(polls.MAX_OPTIONS + 1) if mask >> i & 1]
    if mask >= 1 << (polls.MAX_OPTIONS + 1):
        positions.append(polls.MAX_OPTIONS + 1)  # certainly not an option: refused below
    await _cast(ctx, press.poll_id, positions)


async def _cast(ctx: Context, poll_id: int, positions: list[int]) -> None:
    outcome = await polls.cast(ctx.session, poll_id, ctx.resident, positions, ctx.now,
                               ballot_key=ctx.services.ballot_key)
    poll = await polls.get_poll(ctx.session, poll_id)
    if outcome not in (polls.Outcome.CAST, polls.Outcome.CHANGED, polls.Outcome.UNCHANGED):
        ctx.say(f"polls.refused_{outcome.value}")
        return
    if poll.anonymous:
        # The reply names no option: if the platform delays it, it waits in the outbox, and
        # the outbox must not learn an anonymous choice.
        ctx.say("polls.voted_anonymous", number=poll.id)
    else:
        labels = {o.position: o.label for o in await polls.options_of(ctx.session, poll_id)}
        chosen = ", ".join(f"{p + 1}. {labels[p]}" for p in sorted(positions))
        key = {polls.Outcome.CAST: "polls.voted_named", polls.Outcome.CHANGED: "polls.changed",
               polls.Outcome.UNCHANGED: "polls.unchanged"}[outcome]
        ctx.say(key, number=poll.id, choice=chosen)
        ctx.say("polls.can_change", closes=ctx.services.local_time(poll.closes_at))
    if poll.live_results:
        # Counts seen right after a vote would tell the vote if they were written down.
        ctx.reply(results_text(ctx.t, poll, await polls.results(ctx.session, poll)),
                  ephemeral=poll.anonymous)


@router.action(ShowResults)
async def show_results(ctx: Context, press: ShowResults) -> None:
    poll = await polls.get_poll(ctx.session, press.poll_id)
    if poll is None:
        ctx.say("common.button_invalid")
        return
    if not poll.live_results and poll.status != "closed":
        ctx.say("polls.results_hidden", closes=ctx.services.local_time(poll.closes_at))
        return
    ctx.reply(results_text(ctx.t, poll, await polls.results(ctx.session, poll)))


# -- the clock ---------------------------------------------------------------------------------
async def tick(sessions, services: Services, deliverer) -> None:
    now = services.clock()
    async with sessions() as session, session.begin():
        due = await polls.due(session, now)
    counted = False
    for poll_id in due:
        async with sessions() as session, session.begin():
            if await polls.close(session, poll_id, now, ballot_key=services.ballot_key):
                await audit.record(session, None, "poll.close", f"poll:{poll_id}",
                                   by="scheduler")
                counted = True
    k = services.settings.polls.anonymity_batch
    async with sessions() as session:
        full = await polls.polls_to_flush(session, k)
    for poll_id in full:
        async with sessions() as session, session.begin():
            counted = await polls.flush_ballots(session, poll_id, minimum=k,
                                                ballot_key=services.ballot_key) > 0 or counted
    if counted:
        # Counted ballots' deleted rows and the counters' old versions go now, not at the
        # database's leisure; a failure here must not hold back the results below.
        try:
            await polls.erase_traces(sessions.kw["bind"])
        except Exception:
            log.exception("could not erase counted ballots' old row versions")
    async with sessions() as session:
        pending = [p.id for p in await polls.pending_fanout(session)]
    queued = False
    for poll_id in pending:
        for _ in range(MAX_BATCHES_PER_TICK):
            try:
                more = await _fanout_step(sessions, services, poll_id)
            except _LostRace:
                break
            queued = True
            if not more:
                break
    if queued and deliverer is not None:
        deliverer.wake()


class _LostRace(Exception):
    """Another worker moved the cursor first: this transaction's pushes are rolled back."""


async def _fanout_step(sessions, services: Services, poll_id: int) -> bool:
    """One batch of invitations (open poll) or results (closed poll); True if more remain."""
    batch = services.settings.polls.fanout_batch
    async with sessions() as session, session.begin():
        poll = await polls.get_poll(session, poll_id)
        inviting = poll.status == "open"
        cursor = poll.invited_upto if inviting else poll.results_upto
        page = await recipients(session, poll.audience, each=Each.RESIDENT, after=cursor,
                                limit=batch)
        options = await polls.options_of(session, poll_id)
        targets = [Recipient(r.identity_id, r.language) for r in page.recipients]
        if not inviting:
            res = await polls.results(session, poll)
            photo = await asyncio.to_thread(chart, services, poll, res)  # Pillow is CPU work
            if cursor == 0:  # the author hears the result even when not a voter
                lang = (await resident_by_id(session, poll.author_id)).language
                targets += [Recipient(i.id, lang)
                            for i in await identities_of(session, poll.author_id)]
        pushes, kind = Batch(services.texts), "inv" if inviting else "res"
        messages: dict[str, Outbound] = {}  # results: rendered once per language
        for to in targets:
            t = pushes.reader(to)
            if inviting:
                out = invitation(services, t.lang, to.identity_id, poll, options)
            else:
                if t.lang not in messages:
                    messages[t.lang] = Outbound(text=results_text(t, poll, res), photo=photo)
                out = messages[t.lang]
            pushes.add(to.identity_id, out, priority=outbox.Priority.BULK,
                       group=f"poll:{poll_id}",
                       dedupe_key=f"poll:{poll_id}:{kind}:{to.identity_id}")
        # One statement a step, as notices do; the chart is uploaded once by the adapter.
        await pushes.send(session)
        column = "invited_upto" if inviting else "results_upto"
        if not await polls.advance_cursor(session, poll_id, column, cursor, page.last):
            raise _LostRace
        return page.last is not None


jobs = [Job("polls", 30, tick)]
