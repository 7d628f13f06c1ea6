"""The council's agenda: /propose, support from neighbours, the threshold that puts a proposal on
the agenda, the council's decision (/agenda) and what the committee did. Proposer and supporters
hear of every status change through the outbox."""

from __future__ import annotations

from dataclasses import dataclass

from bot.context import Context
from bot.payloads import Action
from bot.pushes import Recipient
from bot.router import Router
from handlers.volunteering import ShowActivity
from handlers.volunteering_organise import RecruitForProposal
from services import proposals as rules
from storage import audit, people, proposals, territory, volunteer_hours
from storage import volunteering as vol
from storage.base import reread
from storage.territory import Committee

router = Router()
TITLE, BODY, NOTE, DONE = "proposal.title", "proposal.body", "proposal.note", "proposal.done"
COUNCIL = ("admin", "staff", "committee")
MAX_TITLE, MAX_BODY, MAX_NOTE = rules.MAX_TITLE, rules.MAX_BODY, rules.MAX_NOTE


@dataclass(frozen=True)
class SupportProposal(Action, code="psu"):
    proposal_id: int


@dataclass(frozen=True)
class ReadProposal(Action, code="prd"):
    proposal_id: int


@dataclass(frozen=True)
class DecideProposal(Action, code="pdc"):
    proposal_id: int
    decision: int  # an index into storage.proposals.DECISIONS


@dataclass(frozen=True)
class RecordDone(Action, code="pim"):
    proposal_id: int


async def _home_committee(ctx: Context) -> Committee | None:
    return await rules.home_committee(ctx.session, ctx.resident)


async def _refused(ctx: Context, committee_id: int) -> str | None:
    return await rules.refused(ctx.session, ctx.services.settings.polls, committee_id,
                               ctx.resident)


@router.command("propose", help_key="proposals.help_propose", order=22)
async def propose(ctx: Context) -> None:
    committee = await _home_committee(ctx)
    reason = "not_registered" if committee is None else await _refused(ctx, committee.id)
    if reason:
        ctx.say(f"proposals.refused_{reason}")
        return
    ctx.goto(TITLE)
    ctx.say("proposals.ask_title", limit=MAX_TITLE)


@router.state(TITLE)
async def typed_title(ctx: Context) -> None:
    text = ctx.inbound.text or ""
    problem = rules.title_problem(text)
    if problem:
        ctx.say(f"proposals.{problem}", limit=MAX_TITLE)
        return
    ctx.goto(BODY, title=text)
    ctx.say("proposals.ask_body", limit=MAX_BODY)


@router.state(BODY)
async def typed_body(ctx: Context) -> None:
    text = ctx.inbound.text or ""
    problem = rules.body_problem(text)
    if problem:
        ctx.say(f"proposals.{problem}", limit=MAX_BODY)
        return
    done = await rules.submit(ctx.session, ctx.services.settings.polls, ctx.resident,
                              title=ctx.data.get("title", ""), body=text)
    ctx.finish()
    if done.proposal is None:
        ctx.say("common.not_allowed")  # no longer theirs to propose (moved, verification)
        return
    row = done.proposal
    await audit.record(ctx.session, ctx.resident.id, "proposal.submit", f"proposal:{row.id}")
    ctx.say("proposals.submitted", number=row.id, threshold=row.threshold)


def _line(ctx: Context, p: proposals.Proposal) -> str:
    return ctx.t("proposals.line", number=p.id, title=p.title,
                 status=ctx.t(f"proposals.status_{p.status}"), supporters=p.supporters,
                 threshold=p.threshold)


@router.command("proposals", help_key="proposals.help_proposals", order=23)
async def listing(ctx: Context) -> None:
    scope = await ctx.scope()
    committees = set(scope.committee_ids)
    if scope.everything:
        committees |= await territory.committee_ids(ctx.session)
    home = await _home_committee(ctx)
    if home is not None:
        committees.add(home.id)
    rows = await proposals.of_committee(ctx.session, committees) if committees else []
    if not rows:
        ctx.say("proposals.none")
        return
    lines, buttons = [ctx.t("proposals.list_title")], []
    for p in rows:
        lines.append(_line(ctx, p))
        if p.decision_note:
            lines.append(ctx.t("proposals.decision_note", note=p.decision_note))
        if p.implementation_note:
            lines.append(ctx.t("proposals.implementation_note", note=p.implementation_note))
        if p.status == proposals.Status.OPEN and p.author_id != ctx.resident.id and \
                home is not None and home.id == p.committee_id:
            buttons.append([ctx.button(ctx.t("proposals.support", number=p.id),
                                       SupportProposal(p.id))])
        buttons.append([ctx.button(ctx.t("proposals.read", number=p.id), ReadProposal(p.id))])
    ctx.reply("\n".join(lines), buttons)


async def _proposal(ctx: Context, proposal_id: int) -> proposals.Proposal | None:
    row = await proposals.get(ctx.session, proposal_id)
    if row is None:
        ctx.say("common.button_invalid")
    return row


async def _execution(ctx: Context, p: proposals.Proposal) -> str:
    """What became of an adopted proposal: the activity carrying it out (its sign-ups, and the
    hours given once it happened) and the execution status that follows it."""
    progress = await volunteer_hours.proposal_progress(ctx.session, p.id, ctx.now)
    status = volunteer_hours.execution(p.status, progress)
    lines = []
    if status is not None:
        lines.append(ctx.t("proposals.execution", status=ctx.t(f"proposals.execution_{status}")))
    if progress is not None:
        a = progress.activity
        lines.append(ctx.t("proposals.activity", title=a.title,
                           starts=ctx.services.local_time(progress.starts_at),
                           signups=progress.signups, waiting=progress.waiting))
        if progress.stage == "done" or progress.hours:
            lines.append(ctx.t("proposals.activity_hours", hours=f"{progress.hours:g}"))
    return "\n".join(lines)


@router.action(ReadProposal)
async def read(ctx: Context, press: ReadProposal) -> None:
    p = await _proposal(ctx, press.proposal_id)
    if p is None:
        return
    more = await _execution(ctx, p)
    activity = await vol.activity_for_proposal(ctx.session, p.id)
    buttons = [[ctx.button(ctx.t("volunteering.see_activity"), ShowActivity(activity.id))]] \
        if activity is not None else None
    ctx.reply(f"{_line(ctx, p)}\n\n{p.body}" + (f"\n\n{more}" if more else ""), buttons)


@router.action(SupportProposal)
async def support(ctx: Context, press: SupportProposal) -> None:
    p = await _proposal(ctx, press.proposal_id)
    if p is None:
        return
    outcome = await rules.support(ctx.session, ctx.services.settings.polls, p, ctx.resident,
                                  ctx.now)
    if not isinstance(outcome, proposals.Support):
        ctx.say(f"proposals.refused_{outcome}")
        return
    ctx.say(f"proposals.support_{outcome.value}", number=p.id, supporters=p.supporters,
            threshold=p.threshold)
    if outcome == proposals.Support.REACHED:
        await audit.record(ctx.session, None, "proposal.agenda", f"proposal:{p.id}",
                           supporters=p.supporters, by="system")
        await _tell(ctx, p, "agenda")


async def _tell(ctx: Context, p: proposals.Proposal, status: str) -> None:
    """Proposer and supporters hear of a status change, each in their own language."""
    residents = [p.author_id, *await proposals.supporters_of(ctx.session, p.id)]
    for identity_id, lang in await people.reachable_identities(ctx.session, residents):
        await ctx.tell(Recipient(identity_id, lang), f"proposals.news_{status}",
                       dedupe_key=f"proposal:{p.id}:{status}:{identity_id}", number=p.id,
                       title=p.title, note=p.implementation_note if status == "done" else
                       (p.decision_note or ""))


@router.command("agenda", help_key="proposals.help_agenda", roles=COUNCIL, order=42)
async def agenda(ctx: Context) -> None:
    scope = await ctx.scope()
    committees = set(scope.committee_ids)
    if scope.everything:
        committees |= await territory.committee_ids(ctx.session)
    rows = await proposals.of_committee(
        ctx.session, committees, statuses=(proposals.Status.AGENDA, proposals.Status.ADOPTED),
        limit=20)
    if not rows:
        ctx.say("proposals.agenda_empty")
        return
    for p in rows:
        if p.status == proposals.Status.AGENDA:
            buttons = [[ctx.button(ctx.t(f"proposals.decide_{d}"), DecideProposal(p.id, i))
                        for i, d in enumerate(proposals.DECISIONS)]]
        else:
            buttons = [[ctx.button(ctx.t("proposals.record_done"), RecordDone(p.id))]]
            if await vol.activity_for_proposal(ctx.session, p.id) is None:
                buttons.append([ctx.button(ctx.t("proposals.recruit"),
                                           RecruitForProposal(p.id))])
        more = await _execution(ctx, p)
        ctx.reply(f"{_line(ctx, p)}\n\n{p.body}" + (f"\n\n{more}" if more else ""), buttons)


async def _council_may(ctx: Context, p: proposals.Proposal) -> bool:
    if rules.council_may(await ctx.scope(), p):
        return True
    ctx.say("common.not_allowed")
    return False


@router.action(DecideProposal)
async def decide_pressed(ctx: Context, press: DecideProposal) -> None:
    p = await _proposal(ctx, press.proposal_id)
    if p is None or not await _council_may(ctx, p):
        return
    if not 0 <= press.decision < len(proposals.DECISIONS):
        ctx.say("common.button_invalid")
        return
    decision = proposals.DECISIONS[press.decision]
    if p.status != proposals.Status.AGENDA:
        ctx.say("proposals.already_decided")
        return
    ctx.goto(NOTE, proposal=p.id, decision=decision)
    ctx.say("proposals.ask_note", decision=ctx.t(f"proposals.status_{decision}"),
            limit=MAX_NOTE)


@router.state(NOTE)
async def typed_note(ctx: Context) -> None:
    text = ctx.inbound.text or ""
    problem = rules.note_problem(text)
    if problem:
        ctx.say(f"proposals.{problem}", limit=MAX_NOTE)
        return
    p = await proposals.get(ctx.session, ctx.data["proposal"])
    decision = ctx.data["decision"]
    ctx.finish()
    if not await _council_may(ctx, p):
        return
    if not await proposals.decide(ctx.session, p.id, decision, text, ctx.resident.id, ctx.now):
        ctx.say("proposals.already_decided")
        return
    p = await reread(ctx.session, p)
    await audit.record(ctx.session, ctx.resident.id, "proposal.decide", f"proposal:{p.id}",
                       decision=decision)
    ctx.say("proposals.decided", number=p.id, decision=ctx.t(f"proposals.status_{decision}"))
    if decision == proposals.Status.ADOPTED:
        # One tap from the decision to the volunteers who will carry it out.
        ctx.say("proposals.offer_recruit", [[ctx.button(ctx.t("proposals.recruit"),
                                                        RecruitForProposal(p.id))]],
                number=p.id)
    await _tell(ctx, p, decision)


@router.action(RecordDone)
async def done_pressed(ctx: Context, press: RecordDone) -> None:
    p = await _proposal(ctx, press.proposal_id)
    if p is None or not await _council_may(ctx, p):
        return
    if p.status != proposals.Status.ADOPTED:
        ctx.say("proposals.not_adopted")
        return
    ctx.goto(DONE, proposal=p.id)
    ctx.say("proposals.ask_done", limit=MAX_NOTE)


@router.state(DONE)
async def typed_done(ctx: Context) -> None:
    text = ctx.inbound.text or ""
    problem = rules.note_problem(text)
    if problem:
        ctx.say(f"proposals.{problem}", limit=MAX_NOTE)
        return
    p = await proposals.get(ctx.session, ctx.data["proposal"])
    ctx.finish()
    if not await _council_may(ctx, p):
        return
    if not await proposals.implemented(ctx.session, p.id, text, ctx.resident.id, ctx.now):
        ctx.say("proposals.not_adopted")
        return
    p = await reread(ctx.session, p)
    await audit.record(ctx.session, ctx.resident.id, "proposal.implemented", f"proposal:{p.id}")
    ctx.say("proposals.done_recorded", number=p.id)
    await _tell(ctx, p, "done")
