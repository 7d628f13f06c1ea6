"""/newpoll: a committee member (within their committee), staff (within their station) or an
admin drafts a poll step by step, previews it and publishes it; invitations then go out through
the outbox (handlers/poll_ballots.py)."""

from __future__ import annotations

from datetime import datetime

from bot.context import Context
from bot.router import Router
from handlers import drafting
from handlers.text_lists import split_items
from services import poll_rules
from storage import audit, polls
from storage.audience import Audience
from storage.territory import Building, buildings_of

router = Router()
DRAFT = "poll.draft"
AUTHORS = ("admin", "staff", "committee")
MAX_QUESTION, MAX_OPTION = 300, 60
MAX_QUORUM = 1_000_000
# Button steps carry a value; the others are answered by typing.
STEPS = ("question", "options", "multiple", "area", "building", "verified", "household",
         "anonymous", "live", "closes", "quorum", "preview")
YES_NO = {"multiple": ("single", "multiple"), "verified": ("anyone", "verified_only"),
          "household": ("per_resident", "per_household"), "anonymous": ("named", "anonymous"),
          "live": ("hidden", "live")}


@router.command("newpoll", help_key="polls.help_newpoll", roles=AUTHORS, order=40)
async def new_poll(ctx: Context) -> None:
    ctx.goto(DRAFT, step="question")
    ctx.say("polls.ask_question", limit=MAX_QUESTION)


async def ask(ctx: Context, step: str) -> None:
    ctx.remember(step=step)
    if step == "options":
        ctx.say("polls.ask_options", low=polls.MIN_OPTIONS, high=polls.MAX_OPTIONS,
                limit=MAX_OPTION)
    elif step in YES_NO:
        no, yes = YES_NO[step]
        ctx.say(f"polls.ask_{step}", [[ctx.button(ctx.t(f"polls.opt_{no}"), "npo", step, 0),
                                       ctx.button(ctx.t(f"polls.opt_{yes}"), "npo", step, 1)]])
    elif step == "area":
        rows = await drafting.area_buttons(ctx, "npo", "area")
        ctx.say("polls.ask_area", rows)
    elif step == "building":
        ctx.say("polls.ask_building", [[ctx.button(ctx.t("polls.whole_estate"), "npo",
                                                    "building", 0)]])
    elif step == "closes":
        ctx.say("polls.ask_closes", tz=ctx.services.settings.bot.timezone,
                min=drafting.MIN_MINUTES, days=drafting.MAX_DAYS)
    elif step == "quorum":
        ctx.say("polls.ask_quorum", [[ctx.button(ctx.t("polls.no_quorum"), "npo", "quorum", 0)]])
    elif step == "preview":
        await preview(ctx)


def _after(step: str) -> str:
    return STEPS[STEPS.index(step) + 1]


@router.state(DRAFT)
async def typed(ctx: Context) -> None:
    step = ctx.data.get("step")
    text = ctx.inbound.text or ""
    if not text:
        ctx.say("polls.type_please")
        return
    if step == "question":
        if not 3 <= len(text) <= MAX_QUESTION:
            ctx.say("polls.question_length", limit=MAX_QUESTION)
            return
        ctx.remember(question=text)
    elif step == "options":
        options = split_items(text)
        problem = _options_problem(options)
        if problem:
            ctx.say(f"polls.{problem}", low=polls.MIN_OPTIONS, high=polls.MAX_OPTIONS,
                    limit=MAX_OPTION)
            return
        ctx.remember(options=options)
    elif step == "building":
        found = await _building(ctx, text)
        if found is None:
            return
        ctx.remember(area_kind="building", area_id=found.id)
    elif step == "closes":
        at = drafting.parse_closing(text, ctx.now, ctx.services.settings.bot.timezone)
        if isinstance(at, str):
            ctx.say(f"polls.{at}", days=drafting.MAX_DAYS, min=drafting.MIN_MINUTES)
            return
        ctx.remember(closes_at=at.isoformat())
    elif step == "quorum":
        if not text.isdigit() or not 0 <= int(text) <= MAX_QUORUM:
            ctx.refuse("polls.quorum_invalid")
            return
        ctx.remember(quorum=int(text) or None)
    else:
        ctx.refuse("polls.press_button")
        return
    await ask(ctx, _after(step))


def _options_problem(options: list[str]) -> str | None:
    if not polls.MIN_OPTIONS <= len(options) <= polls.MAX_OPTIONS:
        return "options_count"
    if any(len(o) > MAX_OPTION for o in options):
        return "option_length"
    if len({o.casefold() for o in options}) != len(options):
        return "options_duplicate"
    return None


async def _building(ctx: Context, number: str) -> Building | None:
    estate_id = ctx.data.get("area_id")
    for b in await buildings_of(ctx.session, estate_id):
        if b.number.casefold() == number.strip().casefold():
            return b
    ctx.refuse("polls.building_unknown", number=number[:20])
    return None


@router.button("npo")
async def pressed(ctx: Context) -> None:
    if ctx.state != DRAFT or not ctx.args or ctx.args[0] != ctx.data.get("step"):
        ctx.say("polls.step_stale")
        return
    step, values = ctx.args[0], ctx.args[1:]
    try:
        if step in YES_NO:
            ctx.remember(**{step: values[0] == "1"})
        elif step == "area":
            kind = {"c": "committee", "e": "estate"}[values[0]]
            area_id = int(values[1])
            if not await drafting.may_address(ctx, kind, area_id):
                ctx.say("common.not_allowed")
                return
            ctx.remember(area_kind=kind, area_id=area_id)
            if kind == "committee":
                await ask(ctx, "verified")
                return
        elif step == "building":
            pass  # the whole estate: the area stays as chosen
        elif step == "quorum":
            ctx.remember(quorum=None)
        elif step == "preview":
            if values[0] == "1":
                await publish(ctx)
            else:
                ctx.finish()
                ctx.say("polls.discarded")
            return
        else:
            ctx.say("polls.type_please")
            return
    except (IndexError, KeyError, ValueError):
        ctx.say("common.button_invalid")
        return
    await ask(ctx, _after(step))


def _draft(ctx: Context, committee_id: int | None) -> polls.PollDraft:
    d = ctx.data
    return polls.PollDraft(
        question=d["question"], options=list(d["options"]), multiple=d["multiple"],
        audience=Audience(d["area_kind"], d["area_id"], d["verified"]),
        per_household=d["household"], anonymous=d["anonymous"], live_results=d["live"],
        closes_at=datetime.fromisoformat(d["closes_at"]), quorum=d.get("quorum"),
        committee_id=committee_id)


async def preview(ctx: Context) -> None:
    draft = _draft(ctx, None)
    options = "\n".join(f"{i + 1}. {o}" for i, o in enumerate(draft.options))
    ctx.say("polls.preview", [[ctx.button(ctx.t("polls.publish"), "npo", "preview", 1),
                               ctx.button(ctx.t("polls.discard"), "npo", "preview", 0)]],
            question=draft.question, options=options,
            rules=rules(ctx.t, draft.multiple, draft.anonymous, draft.per_household,
                        draft.live_results),
            area=await drafting.area_name(ctx, draft.audience),
            who=ctx.t("polls.opt_verified_only" if draft.audience.verified_only
                      else "polls.opt_anyone"),
            closes=drafting.closing_said(ctx, draft.closes_at),
            quorum=draft.quorum or ctx.t("polls.no_quorum"))


def rules(t, multiple: bool, anonymous: bool, per_household: bool, live: bool) -> str:
    parts = [t("polls.rule_multiple" if multiple else "polls.rule_single"),
             t("polls.rule_anonymous" if anonymous else "polls.rule_named"),
             t("polls.rule_household" if per_household else "polls.rule_resident"),
             t("polls.rule_live" if live else "polls.rule_hidden")]
    return "\n".join(parts)


async def publish(ctx: Context) -> None:
    d = ctx.data
    if not await drafting.may_address(ctx, d["area_kind"], d["area_id"]):
        ctx.say("common.not_allowed")
        return
    if datetime.fromisoformat(d["closes_at"]) <= ctx.now:
        await ask(ctx, "closes")  # the draft sat too long: its time has passed
        return
    committee_id = await drafting.committee_of(ctx, d["area_kind"], d["area_id"])
    poll = await polls.create(ctx.session, _draft(ctx, committee_id), ctx.resident.id)
    await audit.record(ctx.session, ctx.resident.id, "poll.create", f"poll:{poll.id}",
                       area=f"{poll.area_kind}:{poll.area_id}", anonymous=poll.anonymous,
                       per_household=poll.per_household)
    ctx.finish()
    ctx.say("polls.published", number=poll.id)


# -- closing early -----------------------------------------------------------------------------
async def manage_rows(ctx: Context) -> list[list]:
    """"Close early" buttons for the open polls this person runs (shown in /polls)."""
    scope = await ctx.scope()
    if not scope.has(*AUTHORS):
        return []
    found = await polls.open_of_committees(
        ctx.session, None if scope.everything else set(scope.committee_ids))
    return [[ctx.button(ctx.t("polls.btn_close_early", number=p.id, question=p.question[:30]),
                        "pce", p.id)] for p in found if await drafting.runs(ctx, p.committee_id)]


async def _poll_to_close(ctx: Context) -> polls.Poll | None:
    args = ctx.int_args(1)
    poll = await polls.get_poll(ctx.session, args[0]) if args else None
    if poll is None:
        ctx.say("common.button_invalid")
        return None
    if not await drafting.runs(ctx, poll.committee_id):
        ctx.say("common.not_allowed")
        return None
    if poll.status != "open" or poll.closes_at <= ctx.now:
        ctx.say("polls.already_closed", number=poll.id)
        return None
    return poll


@router.button("pce")
async def confirm_close(ctx: Context) -> None:
    poll = await _poll_to_close(ctx)
    if poll is not None:
        ctx.say("polls.close_confirm", [[ctx.button(ctx.t("polls.btn_close_yes"), "pcy", poll.id),
                                         ctx.button(ctx.t("common.no"), "pb", poll.id)]],
                number=poll.id, question=poll.question,
                closes=ctx.services.local_time(poll.closes_at))


@router.button("pcy", fresh="staff")
async def close_early(ctx: Context) -> None:
    poll = await _poll_to_close(ctx)
    if poll is None:
        return
    outcome = await poll_rules.close_early(ctx.session, await ctx.scope(), ctx.resident.id,
                                           poll.id, ctx.now)
    if outcome != "done":
        ctx.say("common.not_allowed" if outcome == "not_allowed" else "polls.already_closed",
                number=poll.id)
        return
    ctx.say("polls.closed_early", number=poll.id)
