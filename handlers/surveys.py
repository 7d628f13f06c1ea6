"""/newsurvey (committee, staff, admins): several questions, then the same area and eligibility
rules as polls. Residents answer one question after another; every answer is saved at once, so
they can stop and resume from /surveys."""

from __future__ import annotations

from datetime import datetime

from bot.context import Context, Services
from bot.messaging.model import Button
from bot.pushes import Recipient, push
from bot.router import Router
from bot.scheduler import Job
from handlers import drafting
from handlers.text_lists import split_items
from services import survey_results as results
from services.survey_results import results_reply
from storage import audit, outbox, surveys
from storage.audience import Audience, Each, recipients
from storage.territory import buildings_of

router = Router()
DRAFT, ANSWER = "survey.draft", "survey.answer"
AUTHORS = ("admin", "staff", "committee")
MAX_TITLE, MAX_QUESTION, MAX_OPTION, MAX_OPTIONS = 200, 300, 60, 12


@router.command("newsurvey", help_key="surveys.help_newsurvey", roles=AUTHORS, order=41)
async def new_survey(ctx: Context) -> None:
    ctx.goto(DRAFT, step="title", questions=[])
    ctx.say("surveys.ask_title", limit=MAX_TITLE)


async def ask(ctx: Context, step: str) -> None:
    ctx.remember(step=step)
    if step == "kind":
        rows = [[ctx.button(ctx.t(f"surveys.kind_{k}"), "nsv", "kind", i)]
                for i, k in enumerate(surveys.KINDS)]
        if ctx.data["questions"]:
            rows.append([ctx.button(ctx.t("surveys.no_more"), "nsv", "kind", 9)])
        ctx.say("surveys.ask_kind", rows, n=len(ctx.data["questions"]) + 1)
    elif step == "qtext":
        ctx.say("surveys.ask_qtext", limit=MAX_QUESTION)
    elif step == "qoptions":
        ctx.say("surveys.ask_qoptions", high=MAX_OPTIONS, limit=MAX_OPTION)
    elif step == "area":
        ctx.say("surveys.ask_area", await drafting.area_buttons(ctx, "nsv", "area"))
    elif step == "building":
        ctx.say("surveys.ask_building", [[ctx.button(ctx.t("polls.whole_estate"), "nsv",
                                                    "building", 0)]])
    elif step == "verified":
        ctx.say("polls.ask_verified", [[
            ctx.button(ctx.t("polls.opt_anyone"), "nsv", "verified", 0),
            ctx.button(ctx.t("polls.opt_verified_only"), "nsv", "verified", 1)]])
    elif step == "closes":
        ctx.say("surveys.ask_closes", tz=ctx.services.settings.bot.timezone,
                min=drafting.MIN_MINUTES, days=drafting.MAX_DAYS)
    elif step == "preview":
        await _preview(ctx)


@router.state(DRAFT)
async def typed(ctx: Context) -> None:
    step, text = ctx.data.get("step"), ctx.inbound.text or ""
    if not text:
        ctx.say("polls.type_please")
        return
    if step == "title":
        if not 3 <= len(text) <= MAX_TITLE:
            ctx.say("surveys.title_length", limit=MAX_TITLE)
            return
        ctx.remember(title=text)
        await ask(ctx, "kind")
    elif step == "qtext":
        if not 3 <= len(text) <= MAX_QUESTION:
            ctx.say("surveys.qtext_length", limit=MAX_QUESTION)
            return
        ctx.remember(qtext=text)
        if ctx.data["qkind"] in ("single", "multiple"):
            await ask(ctx, "qoptions")
        else:
            _add_question(ctx, [])
            await ask(ctx, "kind")
    elif step == "qoptions":
        options = split_items(text)
        if not 2 <= len(options) <= MAX_OPTIONS or any(len(o) > MAX_OPTION for o in options) \
                or len({o.casefold() for o in options}) != len(options):
            ctx.say("surveys.qoptions_invalid", high=MAX_OPTIONS, limit=MAX_OPTION)
            return
        _add_question(ctx, options)
        await ask(ctx, "kind")
    elif step == "building":
        number = text.strip().casefold()
        found = [b for b in await buildings_of(ctx.session, ctx.data["area_id"])
                 if b.number.casefold() == number]
        if not found:
            ctx.refuse("polls.building_unknown", number=text[:20])
            return
        ctx.remember(area_kind="building", area_id=found[0].id)
        await ask(ctx, "verified")
    elif step == "closes":
        at = drafting.parse_closing(text, ctx.now, ctx.services.settings.bot.timezone)
        if isinstance(at, str):
            ctx.say(f"surveys.{at}", days=drafting.MAX_DAYS, min=drafting.MIN_MINUTES)
            return
        ctx.remember(closes_at=at.isoformat())
        await ask(ctx, "preview")
    else:
        ctx.refuse("polls.press_button")


def _add_question(ctx: Context, options: list[str]) -> None:
    questions = [*ctx.data["questions"],
                 {"kind": ctx.data["qkind"], "text": ctx.data["qtext"], "options": options}]
    ctx.remember(questions=questions)


@router.button("nsv")
async def pressed(ctx: Context) -> None:
    if ctx.state != DRAFT or not ctx.args or ctx.args[0] != ctx.data.get("step"):
        ctx.say("polls.step_stale")
        return
    step, values = ctx.args[0], ctx.args[1:]
    try:
        if step == "kind":
            index = int(values[0])
            if index == 9 and ctx.data["questions"]:
                await ask(ctx, "area")
                return
            if len(ctx.data["questions"]) >= surveys.MAX_QUESTIONS:
                ctx.say("surveys.too_many", limit=surveys.MAX_QUESTIONS)
                await ask(ctx, "area")
                return
            ctx.remember(qkind=surveys.KINDS[index])
            await ask(ctx, "qtext")
        elif step == "area":
            kind = {"c": "committee", "e": "estate"}[values[0]]
            area_id = int(values[1])
            if not await drafting.may_address(ctx, kind, area_id):
                ctx.say("common.not_allowed")
                return
            ctx.remember(area_kind=kind, area_id=area_id)
            await ask(ctx, "building" if kind == "estate" else "verified")
        elif step == "building":
            await ask(ctx, "verified")
        elif step == "verified":
            ctx.remember(verified=values[0] == "1")
            await ask(ctx, "closes")
        elif step == "preview":
            if values[0] == "1":
                await _publish(ctx)
            else:
                ctx.finish()
                ctx.say("polls.discarded")
        else:
            ctx.say("polls.type_please")
    except (IndexError, KeyError, ValueError):
        ctx.say("common.button_invalid")


def _describe(ctx: Context, q: dict, n: int) -> str:
    line = ctx.t("surveys.preview_question", n=n, text=q["text"],
                 kind=ctx.t(f"surveys.kind_{q['kind']}"))
    if q["options"]:
        line += "\n" + "\n".join(f"   - {o}" for o in q["options"])
    return line


async def _preview(ctx: Context) -> None:
    d = ctx.data
    audience = Audience(d["area_kind"], d["area_id"], d["verified"])
    questions = "\n".join(_describe(ctx, q, i + 1) for i, q in enumerate(d["questions"]))
    ctx.say("surveys.preview", [[ctx.button(ctx.t("polls.publish"), "nsv", "preview", 1),
                                 ctx.button(ctx.t("polls.discard"), "nsv", "preview", 0)]],
            title=d["title"], questions=questions, area=await drafting.area_name(ctx, audience),
            who=ctx.t("polls.opt_verified_only" if d["verified"] else "polls.opt_anyone"),
            closes=drafting.closing_said(ctx, datetime.fromisoformat(d["closes_at"])))


async def _publish(ctx: Context) -> None:
    d = ctx.data
    if not await drafting.may_address(ctx, d["area_kind"], d["area_id"]):
        ctx.say("common.not_allowed")
        return
    closes_at = datetime.fromisoformat(d["closes_at"])
    if closes_at <= ctx.now:
        await ask(ctx, "closes")
        return
    survey = await surveys.create(
        ctx.session, title=d["title"],
        questions=[surveys.QuestionDraft(q["kind"], q["text"], q["options"])
                   for q in d["questions"]],
        audience=Audience(d["area_kind"], d["area_id"], d["verified"]), closes_at=closes_at,
        committee_id=await drafting.committee_of(ctx, d["area_kind"], d["area_id"]),
        author_id=ctx.resident.id)
    await audit.record(ctx.session, ctx.resident.id, "survey.create", f"survey:{survey.id}",
                       area=f"{survey.area_kind}:{survey.area_id}")
    ctx.finish()
    ctx.say("surveys.published", number=survey.id)


# -- residents answering -------------------------------------------------------------------
@router.command("surveys", help_key="surveys.help_surveys", order=21)
async def list_surveys(ctx: Context) -> None:
    rows = []
    for s in await surveys.open_for(ctx.session, ctx.resident):
        rows.append([ctx.button(ctx.t("surveys.take", number=s.id, title=s.title[:40]), "sv",
                                s.id)])
    scope = await ctx.scope()
    if scope.has("admin", "staff", "committee"):
        mine = await surveys.listed(ctx.session, committee_ids=None if scope.everything
                                    else scope.committee_ids, limit=10)
        rows += [[ctx.button(ctx.t("surveys.results_of", number=s.id, title=s.title[:40]),
                             "sr", s.id)] for s in mine]
    else:
        for s in await surveys.listed(ctx.session, committee_ids=None, status="closed", limit=30):
            if await surveys.response_for(ctx.session, s.id, ctx.resident.id, create=False):
                rows.append([ctx.button(ctx.t("surveys.results_of", number=s.id,
                                              title=s.title[:40]), "sr", s.id)])
    if not rows:
        ctx.say("surveys.none")
        return
    ctx.say("surveys.list", rows[:20])


async def _usable(ctx: Context, survey_id: int) -> surveys.Survey | None:
    survey = await surveys.get_survey(ctx.session, survey_id)
    if survey is None:
        ctx.say("common.button_invalid")
        return None
    reason = await surveys.may_answer(ctx.session, survey, ctx.resident, ctx.now)
    if reason == "closed":
        ctx.say("surveys.closed")
        return None
    if reason is not None:
        ctx.say(f"surveys.refused_{reason}")
        return None
    response = await surveys.response_for(ctx.session, survey.id, ctx.resident.id, create=False)
    if response is not None and response.assisted_by is not None:
        # Answers recorded with help are not continued or changed by the resident: they
        # dispute them instead ("This was not me").
        ctx.say("surveys.refused_assisted", number=survey.id)
        return None
    return survey


@router.button("sv")
async def start(ctx: Context) -> None:
    try:
        survey_id = int(ctx.args[0])
    except (IndexError, ValueError):
        ctx.say("common.button_invalid")
        return
    survey = await _usable(ctx, survey_id)
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
        rows.append([ctx.button(c, "sa", survey.id, q.id, i) for i, c in enumerate(choices)])
        text += "\n" + ctx.t("surveys.scale_hint")
    elif q.kind == "single":
        rows = [[ctx.button(c, "sa", survey.id, q.id, i)] for i, c in enumerate(choices)]
    else:
        rows = [[ctx.button(("☑ " if mask >> i & 1 else "☐ ") + c, "sm", survey.id, q.id,
                            mask ^ (1 << i))] for i, c in enumerate(choices)]
        rows.append([ctx.button(ctx.t("polls.submit"), "sx", survey.id, q.id, mask)])
    return text, rows


async def _answer(ctx: Context, survey_id: int, question_id: int, choices: list[int],
                  text: str | None) -> None:
    survey = await _usable(ctx, survey_id)
    if survey is None:
        return
    question = await surveys.get_question(ctx.session, question_id)
    response = await surveys.response_for(ctx.session, survey.id, ctx.resident.id, create=True)
    if question is None or question.survey_id != survey.id:
        ctx.say("common.button_invalid")
        return
    if not surveys.valid_answer(question, choices, text):
        ctx.refuse("surveys.answer_invalid", limit=surveys.MAX_TEXT_ANSWER)
        return
    if not await surveys.answer(ctx.session, response, question, choices, text, ctx.now):
        ctx.say("surveys.already_answered")
    await _next(ctx, survey, response)


@router.button("sa")
async def choose(ctx: Context) -> None:
    args = ctx.int_args(3)
    if args is None:
        ctx.say("common.button_invalid")
        return
    await _answer(ctx, args[0], args[1], [args[2]], None)


@router.button("sm")
async def toggle(ctx: Context) -> None:
    args = ctx.int_args(3)
    survey = await _usable(ctx, args[0]) if args else None
    if survey is None:
        return
    q = await surveys.get_question(ctx.session, args[1])
    if q is None or q.survey_id != survey.id or q.kind != "multiple" \
            or args[2] >= 1 << len(q.options):
        ctx.say("common.button_invalid")
        return
    total = len(await surveys.questions_of(ctx.session, survey.id))
    text, rows = _question(ctx, survey, q, total, args[2])
    ctx.reply(text, rows, edit_of=ctx.inbound.message_ref)


@router.button("sx")
async def submit(ctx: Context) -> None:
    args = ctx.int_args(3)
    if args is None or args[2] >= 1 << MAX_OPTIONS:
        ctx.say("common.button_invalid")
        return
    if args[2] == 0:
        ctx.say("polls.choose_one")
        return
    await _answer(ctx, args[0], args[1], [i for i in range(MAX_OPTIONS) if args[2] >> i & 1],
                  None)


@router.state(ANSWER)
async def typed_answer(ctx: Context) -> None:
    text = ctx.inbound.text or ""
    if not text:
        ctx.refuse("surveys.answer_invalid", limit=surveys.MAX_TEXT_ANSWER)
        return
    await _answer(ctx, ctx.data["survey"], ctx.data["question"], [], text)


@router.button("sr")
async def show_results(ctx: Context) -> None:
    try:
        survey = await surveys.get_survey(ctx.session, int(ctx.args[0]))
    except (IndexError, ValueError):
        survey = None
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
                                                        "svc", survey.id)]],
                closes=ctx.services.local_time(survey.closes_at))


async def _runs(ctx: Context, survey: surveys.Survey) -> bool:
    """They see the free text before the close and may close it early, as with polls."""
    return await drafting.runs(ctx, survey.committee_id)


async def _survey_to_close(ctx: Context) -> surveys.Survey | None:
    args = ctx.int_args(1)
    survey = await surveys.get_survey(ctx.session, args[0]) if args else None
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


@router.button("svc")
async def confirm_close(ctx: Context) -> None:
    survey = await _survey_to_close(ctx)
    if survey is None:
        return
    started, _ = await surveys.respondents(ctx.session, survey.id)
    ctx.say("surveys.close_confirm", [[ctx.button(ctx.t("surveys.btn_close_yes"), "svcy",
                                                  survey.id),
                                       ctx.button(ctx.t("common.no"), "sr", survey.id)]],
            number=survey.id, title=survey.title, started=started,
            closes=ctx.services.local_time(survey.closes_at))


@router.button("svcy", fresh="staff")
async def close_early(ctx: Context) -> None:
    survey = await _survey_to_close(ctx)
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
                                services.signer.sign(identity_id, "sv", survey_id))]]
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
