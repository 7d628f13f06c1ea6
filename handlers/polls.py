"""/newpoll: a committee member (within their committee), staff (within their station) or an
admin drafts a poll step by step, previews it and publishes it; invitations then go out through
the outbox (handlers/poll_ballots.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bot.context import Context
from bot.conversation import NEXT, STAY, Conversation, ConversationTexts, Go, StepAnswer
from bot.payloads import Action
from bot.router import Router
from handlers import drafting
from handlers.text_lists import split_items
from services import poll_drafts, poll_rules
from storage import polls
from storage.audience import Audience

router = Router()
DRAFT = "poll.draft"
AUTHORS = ("admin", "staff", "committee")
MAX_QUESTION, MAX_OPTION = poll_drafts.MAX_QUESTION, poll_drafts.MAX_OPTION
# Button steps carry a value; the others are answered by typing.
STEPS = ("question", "options", "multiple", "area", "building", "verified", "household",
         "anonymous", "live", "closes", "quorum", "preview")
YES_NO = {"multiple": ("single", "multiple"), "verified": ("anyone", "verified_only"),
          "household": ("per_resident", "per_household"), "anonymous": ("named", "anonymous"),
          "live": ("hidden", "live")}
TEXTS = ConversationTexts(stale="polls.step_stale", press_button="polls.press_button",
                          type_please="polls.type_please")


@dataclass
class PollForm:
    """A poll being drafted; each step fills its fields (the defaults stand until then)."""

    question: str = ""
    options: list[str] = field(default_factory=list)
    multiple: bool = False
    area_kind: str = ""
    area_id: int = 0
    verified: bool = False
    household: bool = False
    anonymous: bool = False
    live: bool = False
    closes_at: str = ""  # ISO 8601, aware
    quorum: int | None = None


@dataclass(frozen=True)
class PollAnswer(StepAnswer, code="npo"):
    pass


@dataclass(frozen=True)
class ShowBallot(Action, code="pb"):
    """A poll's ballot (handlers/poll_ballots.py answers it); drawn here too, as the "no" of
    an early close."""
    poll_id: int


@dataclass(frozen=True)
class AskClose(Action, code="pce"):
    poll_id: int


@dataclass(frozen=True)
class CloseNow(Action, code="pcy", fresh="staff"):
    poll_id: int


poll_form = Conversation(router, DRAFT, PollForm, PollAnswer, steps=STEPS, texts=TEXTS)


@router.command("newpoll", help_key="polls.help_newpoll", roles=AUTHORS, order=40)
async def new_poll(ctx: Context) -> None:
    await poll_form.start(ctx, PollForm())


@poll_form.asks("question")
async def ask_question(ctx: Context, d: PollForm) -> None:
    ctx.say("polls.ask_question", limit=MAX_QUESTION)


@poll_form.takes("question")
async def question_typed(ctx: Context, d: PollForm, text: str) -> Go:
    if problem := poll_drafts.question_problem(text):
        ctx.say(f"polls.{problem}", limit=MAX_QUESTION)
        return STAY
    d.question = text
    return NEXT


@poll_form.asks("options")
async def ask_options(ctx: Context, d: PollForm) -> None:
    ctx.say("polls.ask_options", low=polls.MIN_OPTIONS, high=polls.MAX_OPTIONS, limit=MAX_OPTION)


@poll_form.takes("options")
async def options_typed(ctx: Context, d: PollForm, text: str) -> Go:
    options = split_items(text)
    problem = poll_drafts.options_problem(options)
    if problem:
        ctx.say(f"polls.{problem}", low=polls.MIN_OPTIONS, high=polls.MAX_OPTIONS,
                limit=MAX_OPTION)
        return STAY
    d.options = options
    return NEXT


@poll_form.asks(*YES_NO)
async def ask_yes_no(ctx: Context, d: PollForm) -> None:
    step = poll_form.step(ctx) or ""
    no, yes = YES_NO[step]
    ctx.say(f"polls.ask_{step}", [[poll_form.button(ctx, ctx.t(f"polls.opt_{no}"), step, 0),
                                   poll_form.button(ctx, ctx.t(f"polls.opt_{yes}"), step, 1)]])


def _yes_no(step: str) -> None:
    @poll_form.takes_press(step)
    async def chosen(ctx: Context, d: PollForm, press: PollAnswer) -> Go:
        if press.value not in ("0", "1"):
            ctx.button_invalid()
            return STAY
        setattr(d, step, press.value == "1")
        return NEXT


for _step in YES_NO:
    _yes_no(_step)


drafting.declare_area_steps(poll_form, ask_area="polls.ask_area",
                            ask_building="polls.ask_building",
                            then="verified")


@poll_form.asks("closes")
async def ask_closes(ctx: Context, d: PollForm) -> None:
    ctx.say("polls.ask_closes", tz=ctx.services.settings.bot.timezone,
            min=poll_drafts.MIN_MINUTES, days=poll_drafts.MAX_DAYS)


@poll_form.takes("closes")
async def closes_typed(ctx: Context, d: PollForm, text: str) -> Go:
    at = poll_drafts.parse_closing(text, ctx.now, ctx.services.settings.bot.timezone)
    if isinstance(at, str):
        ctx.say(f"polls.{at}", days=poll_drafts.MAX_DAYS, min=poll_drafts.MIN_MINUTES)
        return STAY
    d.closes_at = at.isoformat()
    return NEXT


@poll_form.asks("quorum")
async def ask_quorum(ctx: Context, d: PollForm) -> None:
    ctx.say("polls.ask_quorum", [[poll_form.button(ctx, ctx.t("polls.no_quorum"), "quorum", 0)]])


@poll_form.takes("quorum")
async def quorum_typed(ctx: Context, d: PollForm, text: str) -> Go:
    quorum = poll_drafts.quorum_of(text)
    if isinstance(quorum, str):
        ctx.refuse(f"polls.{quorum}")
        return STAY
    d.quorum = quorum
    return NEXT


@poll_form.takes_press("quorum")
async def no_quorum(ctx: Context, d: PollForm, press: PollAnswer) -> Go:
    d.quorum = None
    return NEXT


def _draft(d: PollForm) -> poll_drafts.PollSpec:
    return poll_drafts.PollSpec(
        question=d.question, options=list(d.options), multiple=d.multiple,
        audience=Audience(d.area_kind, d.area_id, d.verified),
        per_household=d.household, anonymous=d.anonymous, live_results=d.live,
        closes_at=datetime.fromisoformat(d.closes_at), quorum=d.quorum)


@poll_form.asks("preview")
async def preview(ctx: Context, d: PollForm) -> None:
    draft = _draft(d)
    options = "\n".join(f"{i + 1}. {o}" for i, o in enumerate(draft.options))
    ctx.say("polls.preview", [[poll_form.button(ctx, ctx.t("polls.publish"), "preview", 1),
                               poll_form.button(ctx, ctx.t("polls.discard"), "preview", 0)]],
            question=draft.question, options=options,
            rules=rules(ctx.t, draft.multiple, draft.anonymous, draft.per_household,
                        draft.live_results),
            area=await drafting.area_name(ctx, draft.audience),
            who=ctx.t("polls.opt_verified_only" if draft.audience.verified_only
                      else "polls.opt_anyone"),
            closes=drafting.closing_said(ctx, draft.closes_at),
            quorum=draft.quorum or ctx.t("polls.no_quorum"))


rules = poll_drafts.rules  # the ballot's rule lines (handlers/poll_ballots.py, assist.py)


@poll_form.takes_press("preview")
async def publish_or_discard(ctx: Context, d: PollForm, press: PollAnswer) -> Go:
    if press.value != "1":
        ctx.finish()
        ctx.say("polls.discarded")
        return STAY
    created = await poll_drafts.publish_poll(ctx.session, await ctx.scope(), _draft(d),
                                             ctx.resident.id, ctx.now)
    if created == "closes_past":
        return "closes"  # the draft sat too long: its time has passed
    if isinstance(created, str):
        ctx.say("common.not_allowed")
        return STAY
    ctx.finish()
    ctx.say("polls.published", number=created.id)
    return STAY


# -- closing early -----------------------------------------------------------------------------
async def manage_rows(ctx: Context) -> list[list]:
    """"Close early" buttons for the open polls this person runs (shown in /polls)."""
    scope = await ctx.scope()
    if not scope.has(*AUTHORS):
        return []
    found = await polls.open_of_committees(
        ctx.session, None if scope.everything else set(scope.committee_ids))
    return [[ctx.button(ctx.t("polls.btn_close_early", number=p.id, question=p.question[:30]),
                        AskClose(p.id))] for p in found if await drafting.runs(ctx, p.committee_id)]


async def _poll_to_close(ctx: Context, poll_id: int) -> polls.Poll | None:
    poll = await polls.get_poll(ctx.session, poll_id)
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


@router.action(AskClose)
async def confirm_close(ctx: Context, press: AskClose) -> None:
    poll = await _poll_to_close(ctx, press.poll_id)
    if poll is not None:
        ctx.say("polls.close_confirm", [[ctx.button(ctx.t("polls.btn_close_yes"), CloseNow(poll.id)),
                                         ctx.button(ctx.t("common.no"), ShowBallot(poll.id))]],
                number=poll.id, question=poll.question,
                closes=ctx.services.local_time(poll.closes_at))


@router.action(CloseNow)
async def close_early(ctx: Context, press: CloseNow) -> None:
    poll = await _poll_to_close(ctx, press.poll_id)
    if poll is None:
        return
    outcome = await poll_rules.close_early(ctx.session, await ctx.scope(), ctx.resident.id,
                                           poll.id, ctx.now)
    if outcome != "done":
        ctx.say("common.not_allowed" if outcome == "not_allowed" else "polls.already_closed",
                number=poll.id)
        return
    ctx.say("polls.closed_early", number=poll.id)
