"""/newsurvey (committee, staff, admins): several questions, then the same area and eligibility
rules as polls. Residents answer one question after another; every answer is saved at once, so
they can stop and resume from /surveys."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bot.context import Context, Services
from bot.conversation import NEXT, STAY, Conversation, ConversationTexts, Go, StepAnswer
from bot.messaging.model import Button
from bot.payloads import Action
from bot.pushes import Recipient, push
from bot.router import Router
from bot.scheduler import Job
from handlers import drafting
from handlers.text_lists import split_items
from services import deliberation, poll_drafts, poll_rules
from services import survey_results as results
from services.survey_results import results_reply
from storage import audit, outbox, surveys
from storage.audience import Audience, Each, recipients

router = Router()
DRAFT, ANSWER = "survey.draft", "survey.answer"
AUTHORS = ("admin", "staff", "committee")
MAX_TITLE, MAX_QUESTION = poll_drafts.MAX_TITLE, poll_drafts.MAX_QUESTION
MAX_OPTION, MAX_OPTIONS = poll_drafts.MAX_OPTION, poll_drafts.MAX_OPTIONS


STEPS = ("title", "kind", "qtext", "qoptions", "area", "building", "verified", "closes",
         "preview")
TEXTS = ConversationTexts(stale="polls.step_stale", press_button="polls.press_button",
                          type_please="polls.type_please")
NO_MORE = 9  # the "no more questions" choice of the kind step


@dataclass
class SurveyForm:
    """A survey being drafted: its questions so far, the one being written, then the area."""

    title: str = ""
    questions: list[dict] = field(default_factory=list)  # kind, text, options
    qkind: str = ""
    qtext: str = ""
    area_kind: str = ""
    area_id: int = 0
    verified: bool = False
    closes_at: str = ""  # ISO 8601, aware

    def add_question(self, options: list[str]) -> None:
        self.questions = [*self.questions,
                          {"kind": self.qkind, "text": self.qtext, "options": options}]


@dataclass(frozen=True)
class SurveyAnswer(StepAnswer, code="nsv"):
    pass


@dataclass(frozen=True)
class TakeSurvey(Action, code="sv"):
    survey_id: int


@dataclass(frozen=True)
class Choose(Action, code="sa"):
    survey_id: int
    question_id: int
    choice: int


@dataclass(frozen=True)
class Toggle(Action, code="sm"):
    survey_id: int
    question_id: int
    mask: int  # the choices ticked once this press is taken


@dataclass(frozen=True)
class Submit(Action, code="sx"):
    survey_id: int
    question_id: int
    mask: int


@dataclass(frozen=True)
class ShowResults(Action, code="sr"):
    survey_id: int


@dataclass(frozen=True)
class AskClose(Action, code="svc"):
    survey_id: int


@dataclass(frozen=True)
class CloseNow(Action, code="svcy", fresh="staff"):
    survey_id: int


survey_form = Conversation(router, DRAFT, SurveyForm, SurveyAnswer, steps=STEPS, texts=TEXTS)


@router.command("newsurvey", help_key="surveys.help_newsurvey", roles=AUTHORS, order=41)
async def new_survey(ctx: Context) -> None:
    await survey_form.start(ctx, SurveyForm())


@survey_form.asks("title")
async def ask_title(ctx: Context, d: SurveyForm) -> None:
    ctx.say("surveys.ask_title", limit=MAX_TITLE)


@survey_form.takes("title")
async def title_typed(ctx: Context, d: SurveyForm, text: str) -> Go:
    if problem := poll_drafts.title_problem(text):
        ctx.say(f"surveys.{problem}", limit=MAX_TITLE)
        return STAY
    d.title = text
    return NEXT


@survey_form.asks("kind")
async def ask_kind(ctx: Context, d: SurveyForm) -> None:
    rows = [[survey_form.button(ctx, ctx.t(f"surveys.kind_{k}"), "kind", i)]
            for i, k in enumerate(surveys.KINDS)]
    if d.questions:
        rows.append([survey_form.button(ctx, ctx.t("surveys.no_more"), "kind", NO_MORE)])
    ctx.say("surveys.ask_kind", rows, n=len(d.questions) + 1)


@survey_form.takes_press("kind")
async def kind_chosen(ctx: Context, d: SurveyForm, press: SurveyAnswer) -> Go:
    index = int(press.value) if press.value.isdigit() else -1
    if index == NO_MORE and d.questions:
        return "area"
    if not 0 <= index < len(surveys.KINDS):
        ctx.button_invalid()
        return STAY
    if len(d.questions) >= surveys.MAX_QUESTIONS:
        ctx.say("surveys.too_many", limit=surveys.MAX_QUESTIONS)
        return "area"
    d.qkind = surveys.KINDS[index]
    return "qtext"


@survey_form.asks("qtext")
async def ask_qtext(ctx: Context, d: SurveyForm) -> None:
    ctx.say("surveys.ask_qtext", limit=MAX_QUESTION)


@survey_form.takes("qtext")
async def qtext_typed(ctx: Context, d: SurveyForm, text: str) -> Go:
    if problem := poll_drafts.qtext_problem(text):
        ctx.say(f"surveys.{problem}", limit=MAX_QUESTION)
        return STAY
    d.qtext = text
    if d.qkind in ("single", "multiple"):
        return "qoptions"
    d.add_question([])
    return "kind"


@survey_form.asks("qoptions")
async def ask_qoptions(ctx: Context, d: SurveyForm) -> None:
    ctx.say("surveys.ask_qoptions", high=MAX_OPTIONS, limit=MAX_OPTION)


@survey_form.takes("qoptions")
async def qoptions_typed(ctx: Context, d: SurveyForm, text: str) -> Go:
    options = split_items(text)
    if problem := poll_drafts.choices_problem(options):
        ctx.say(f"surveys.{problem}", high=MAX_OPTIONS, limit=MAX_OPTION)
        return STAY
    d.add_question(options)
    return "kind"


drafting.declare_area_steps(survey_form, ask_area="surveys.ask_area",
                            ask_building="surveys.ask_building",
                            then="verified")


@survey_form.asks("verified")
async def ask_verified(ctx: Context, d: SurveyForm) -> None:
    ctx.say("polls.ask_verified", [[
        survey_form.button(ctx, ctx.t("polls.opt_anyone"), "verified", 0),
        survey_form.button(ctx, ctx.t("polls.opt_verified_only"), "verified", 1)]])


@survey_form.takes_press("verified")
async def verified_chosen(ctx: Context, d: SurveyForm, press: SurveyAnswer) -> Go:
    d.verified = press.value == "1"
    return "closes"


@survey_form.asks("closes")
async def ask_closes(ctx: Context, d: SurveyForm) -> None:
    ctx.say("surveys.ask_closes", tz=ctx.services.settings.bot.timezone,
            min=poll_drafts.MIN_MINUTES, days=poll_drafts.MAX_DAYS)


@survey_form.takes("closes")
async def closes_typed(ctx: Context, d: SurveyForm, text: str) -> Go:
    at = poll_drafts.parse_closing(text, ctx.now, ctx.services.settings.bot.timezone)
    if isinstance(at, str):
        ctx.say(f"surveys.{at}", days=poll_drafts.MAX_DAYS, min=poll_drafts.MIN_MINUTES)
        return STAY
    d.closes_at = at.isoformat()
    return "preview"


def _describe(ctx: Context, q: dict, n: int) -> str:
    line = ctx.t("surveys.preview_question", n=n, text=q["text"],
                 kind=ctx.t(f"surveys.kind_{q['kind']}"))
    if q["options"]:
        line += "\n" + "\n".join(f"   - {o}" for o in q["options"])
    return line


@survey_form.asks("preview")
async def preview(ctx: Context, d: SurveyForm) -> None:
    audience = Audience(d.area_kind, d.area_id, d.verified)
    questions = "\n".join(_describe(ctx, q, i + 1) for i, q in enumerate(d.questions))
    ctx.say("surveys.preview", [[survey_form.button(ctx, ctx.t("polls.publish"), "preview", 1),
                                 survey_form.button(ctx, ctx.t("polls.discard"), "preview", 0)]],
            title=d.title, questions=questions, area=await drafting.area_name(ctx, audience),
            who=ctx.t("polls.opt_verified_only" if d.verified else "polls.opt_anyone"),
            closes=drafting.closing_said(ctx, datetime.fromisoformat(d.closes_at)))


@survey_form.takes_press("preview")
async def publish_or_discard(ctx: Context, d: SurveyForm, press: SurveyAnswer) -> Go:
    if press.value != "1":
        ctx.finish()
        ctx.say("polls.discarded")
        return STAY
    survey = await poll_drafts.publish_survey(
        ctx.session, await ctx.scope(), title=d.title,
        questions=[surveys.QuestionDraft(q["kind"], q["text"], q["options"])
                   for q in d.questions],
        audience=Audience(d.area_kind, d.area_id, d.verified),
        closes_at=datetime.fromisoformat(d.closes_at), author_id=ctx.resident.id,
        now=ctx.now)
    if survey == "closes_past":
        return "closes"
    if isinstance(survey, str):
        ctx.say("common.not_allowed")
        return STAY
    ctx.finish()
    ctx.say("surveys.published", number=survey.id)
    return STAY


# -- residents answering -------------------------------------------------------------------
@router.command("surveys", help_key="surveys.help_surveys", order=21)
async def list_surveys(ctx: Context) -> None:
    rows = []
    for s in await surveys.open_for(ctx.session, ctx.resident):
        rows.append([ctx.button(ctx.t("surveys.take", number=s.id, title=s.title[:40]),
                                TakeSurvey(s.id))])
    scope = await ctx.scope()
    if scope.has("admin", "staff", "committee"):
        mine = await surveys.listed(ctx.session, committee_ids=None if scope.everything
                                    else scope.committee_ids, limit=10)
        rows += [[ctx.button(ctx.t("surveys.results_of", number=s.id, title=s.title[:40]),
                             ShowResults(s.id))] for s in mine]
    else:
        for s in await surveys.listed(ctx.session, committee_ids=None, status="closed", limit=30):
            if await surveys.response_for(ctx.session, s.id, ctx.resident.id, create=False):
                rows.append([ctx.button(ctx.t("surveys.results_of", number=s.id,
                                              title=s.title[:40]), ShowResults(s.id))])
    if not rows:
        ctx.say("surveys.none")
        return
    ctx.say("surveys.list", rows[:20])


async def _usable(ctx: Context, survey_id: int) -> surveys.Survey | None:
    survey = await surveys.get_survey(ctx.session, survey_id)
    if survey is None:
        ctx.say("common.button_invalid")
        return None
    reason = await deliberation.survey_refusal(ctx.session, survey, ctx.resident, ctx.now)
    if reason is not None:
        _refused(ctx, survey, reason)
        return None
    return survey


def _refused(ctx: Context, survey: surveys.Survey, reason: str) -> None:
    if reason == "closed":
        ctx.say("surveys.closed")
    else:  # "assisted": answers recorded with help are disputed ("This was not me")
        ctx.say(f"surveys.refused_{reason}", number=survey.id)


@router.action(TakeSurvey)
async def start(ctx: Context, press: TakeSurvey) -> None:
    survey = await _usable(ctx, press.survey_id)
    if survey is None:
        return
    response = await surveys.response_for(ctx.session, survey.id, ctx.resident.id, create=True)
    await _next(ctx, survey, response)


async def _next(ctx: Context, survey: surveys.Survey, response: surveys.SurveyResponse) -> None:
    question = await surveys.next_question(ctx.session, response)
    total = len(await surveys.questions_of(ctx.session, survey.id))
    if question is None:
        ctx.finish()
        ctx.say("surveys.thanks", number=survey.id)
        return
    ctx.reply(*_question(ctx, survey, question, total, 0))


def _question(ctx: Context, survey: surveys.Survey, q: surveys.SurveyQuestion, total: int,
              mask: int) -> tuple[str, list[list[Button]]]:
    text = ctx.t("surveys.question", n=q.position + 1, total=total, text=q.text,
                 title=survey.title)
    rows: list[list[Button]] = []
    if q.kind == "text":
        ctx.goto(ANSWER, survey=survey.id, question=q.id)
        return text + "\n" + ctx.t("surveys.type_answer", limit=surveys.MAX_TEXT_ANSWER), rows
    if ctx.state == ANSWER:
        ctx.finish()  # a button question follows a typed one
    choices = q.choices()
    if q.kind == "scale":
        rows.append([ctx.button(c, Choose(survey.id, q.id, i)) for i, c in enumerate(choices)])
        text += "\n" + ctx.t("surveys.scale_hint")
    elif q.kind == "single":
        rows = [[ctx.button(c, Choose(survey.id, q.id, i))] for i, c in enumerate(choices)]
    else:
        rows = [[ctx.button(("☑ " if mask >> i & 1 else "☐ ") + c,
                            Toggle(survey.id, q.id, mask ^ (1 << i)))] for i, c in enumerate(choices)]
        rows.append([ctx.button(ctx.t("polls.submit"), Submit(survey.id, q.id, mask))])
    return text, rows


async def _answer(ctx: Context, survey_id: int, question_id: int, choices: list[int],
                  text: str | None) -> None:
    survey = await surveys.get_survey(ctx.session, survey_id)
    if survey is None:
        ctx.say("common.button_invalid")
        return
    outcome = await deliberation.answer_survey(ctx.session, survey, ctx.resident, question_id,
                                               choices, text, ctx.now)
    if outcome == "unknown":
        ctx.say("common.button_invalid")
        return
    if outcome == "invalid":
        ctx.refuse("surveys.answer_invalid", limit=surveys.MAX_TEXT_ANSWER)
        return
    if outcome not in ("saved", "already"):
        _refused(ctx, survey, outcome)
        return
    if outcome == "already":
        ctx.say("surveys.already_answered")
    response = await surveys.response_for(ctx.session, survey.id, ctx.resident.id, create=True)
    await _next(ctx, survey, response)


@router.action(Choose)
async def choose(ctx: Context, press: Choose) -> None:
    if press.choice < 0:
        ctx.button_invalid()
        return
    await _answer(ctx, press.survey_id, press.question_id, [press.choice], None)


@router.action(Toggle)
async def toggle(ctx: Context, press: Toggle) -> None:
    survey = await _usable(ctx, press.survey_id)
    if survey is None:
        return
    q = await surveys.get_question(ctx.session, press.question_id)
    if q is None or q.survey_id != survey.id or q.kind != "multiple" \
            or not 0 <= press.mask < 1 << len(q.options):
        ctx.button_invalid()
        return
    total = len(await surveys.questions_of(ctx.session, survey.id))
    text, rows = _question(ctx, survey, q, total, press.mask)
    ctx.reply(text, rows, edit_of=ctx.inbound.message_ref)


@router.action(Submit)
async def submit(ctx: Context, press: Submit) -> None:
    if not 0 <= press.mask < 1 << MAX_OPTIONS:
        ctx.button_invalid()
        return
    if press.mask == 0:
        ctx.say("polls.choose_one")
        return
    await _answer(ctx, press.survey_id, press.question_id,
                  [i for i in range(MAX_OPTIONS) if press.mask >> i & 1], None)


@router.state(ANSWER)
async def typed_answer(ctx: Context) -> None:
    text = ctx.inbound.text or ""
    if not text:
        ctx.refuse("surveys.answer_invalid", limit=surveys.MAX_TEXT_ANSWER)
        return
    await _answer(ctx, ctx.data["survey"], ctx.data["question"], [], text)


@router.action(ShowResults)
async def show_results(ctx: Context, press: ShowResults) -> None:
    survey = await surveys.get_survey(ctx.session, press.survey_id)
    if survey is None:
        ctx.say("common.button_invalid")
        return
    committee = await _runs(ctx, survey)
    if not committee and survey.status != "closed":
        ctx.say("surveys.results_after_close")
        return
    ctx.replies.extend(await results_reply(ctx.session, ctx.services, ctx.lang, survey,
                                           with_texts=committee))
    if committee and survey.status == "open":
        ctx.say("surveys.may_close_early", [[ctx.button(ctx.t("surveys.btn_close_early"),
                                                        AskClose(survey.id))]],
                closes=ctx.services.local_time(survey.closes_at))


async def _runs(ctx: Context, survey: surveys.Survey) -> bool:
    """They see the free text before the close and may close it early, as with polls."""
    return poll_rules.runs(await ctx.scope(), survey.committee_id)


async def _survey_to_close(ctx: Context, survey_id: int) -> surveys.Survey | None:
    survey = await surveys.get_survey(ctx.session, survey_id)
    if survey is None:
        ctx.say("common.button_invalid")
        return None
    if not await _runs(ctx, survey):
        ctx.say("common.not_allowed")
        return None
    if survey.status != "open":
        ctx.say("surveys.already_closed", number=survey.id)
        return None
    return survey


@router.action(AskClose)
async def confirm_close(ctx: Context, press: AskClose) -> None:
    survey = await _survey_to_close(ctx, press.survey_id)
    if survey is None:
        return
    started, _ = await surveys.respondents(ctx.session, survey.id)
    ctx.say("surveys.close_confirm", [[ctx.button(ctx.t("surveys.btn_close_yes"),
                                                  CloseNow(survey.id)),
                                       ctx.button(ctx.t("common.no"), ShowResults(survey.id))]],
            number=survey.id, title=survey.title, started=started,
            closes=ctx.services.local_time(survey.closes_at))


@router.action(CloseNow)
async def close_early(ctx: Context, press: CloseNow) -> None:
    survey = await _survey_to_close(ctx, press.survey_id)
    if survey is None:
        return
    outcome = await results.close_early(ctx.session, ctx.services, await ctx.scope(),
                                        ctx.resident.id, survey.id, ctx.now)
    if outcome != "done":
        ctx.say("common.not_allowed" if outcome == "not_allowed" else "surveys.already_closed",
                number=survey.id)
        return
    ctx.pushed = True
    ctx.say("surveys.closed_early", number=survey.id)


# -- the clock ---------------------------------------------------------------------------------
async def tick(sessions, services: Services, deliverer) -> None:
    now = services.clock()
    async with sessions() as session, session.begin():
        for survey_id in await surveys.close_due(session, now):
            survey = await surveys.get_survey(session, survey_id)
            await audit.record(session, None, "survey.close", f"survey:{survey_id}",
                               by="scheduler")
            await results.announce_closed(session, services, survey)
        pending = [s.id for s in await surveys.pending_invites(session)]
    for survey_id in pending:
        for _ in range(40):
            try:
                last = await _invite_step(sessions, services, survey_id)
            except _LostRace:
                break
            if last is None:
                break
    if deliverer is not None:
        deliverer.wake()


class _LostRace(Exception):
    """Another worker moved the cursor first; raising rolls this batch back."""


async def _invite_step(sessions, services: Services, survey_id: int) -> int | None:
    async with sessions() as session, session.begin():
        survey = await surveys.get_survey(session, survey_id)
        cursor = survey.invited_upto
        page = await recipients(session, survey.audience, each=Each.RESIDENT, after=cursor,
                                limit=services.settings.polls.fanout_batch)
        count = len(await surveys.questions_of(session, survey_id))
        for r in page.recipients:
            def start(t, identity_id=r.identity_id):
                return [[Button(t("surveys.start"),
                                services.signer.sign(identity_id, TakeSurvey(survey_id)))]]
            await push(session, services.texts, Recipient(r.identity_id, r.language),
                       "surveys.invitation", buttons=start, priority=outbox.Priority.BULK,
                       group=f"survey:{survey_id}",
                       dedupe_key=f"survey:{survey_id}:inv:{r.identity_id}", number=survey_id,
                       title=survey.title, count=count,
                       closes=services.local_time(survey.closes_at))
        if not await surveys.advance_invites(session, survey_id, cursor, page.last):
            raise _LostRace
        return page.last


jobs = [Job("surveys", 30, tick)]
