"""Service guides: /guide by topic, questions answered from the guides in any free text, and
questions no guide answers sent to the staff of the resident's station, whose answer comes back
in chat."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from bot.context import Context
from bot.messaging.model import Kind
from bot.payloads import Action
from bot.pushes import Key, Recipient
from bot.router import Router
from bot.scheduler import Job
from services.guides import TOPICS, Guide, GuideIndex
from storage import audit, territory
from storage import guides as store
from storage.people import identities_of, resident_by_id

router = Router()


@dataclass(frozen=True)
class Topic(Action, code="gtop"):
    index: int  # into services.guides.TOPICS


@dataclass(frozen=True)
class TopicMenu(Action, code="gmenu"):
    pass


@dataclass(frozen=True)
class ShowGuide(Action, code="gshow"):
    number: int


@dataclass(frozen=True)
class AskStaff(Action, code="gask"):
    draft_id: int  # the question kept as a draft; 0: ask for one to be typed


@dataclass(frozen=True)
class Answer(Action, code="gans"):
    question_id: int


ASK, ANSWER = "guide.question", "guide.answer"
MIN_QUESTION, MAX_QUESTION, MAX_ANSWER = 2, 500, 2000
MAX_OPEN = 3
# /guide QUESTION shows weaker matches than free text: free text may be meant for another
# feature, so it is answered from the guides only when the match is clearly good.
ASKED_CUTOFF, FREE_CUTOFF = 55.0, 70.0


async def _search(index: GuideIndex, text: str, cutoff: float):
    if index.warmed:
        return index.search(text, cutoff=cutoff)
    # The first search loads jieba's dictionary (about a second): never on the event loop.
    return await asyncio.to_thread(index.search, text, cutoff=cutoff)


def _guide_buttons(ctx: Context, guides: list[Guide]) -> list[list]:
    return [[ctx.button(g.field(ctx.lang, "title"), ShowGuide(g.number))] for g in guides]


@router.command("guide", "guides", help_key="guides.help", order=20)
async def guide(ctx: Context) -> None:
    question = ctx.inbound.args.strip()
    if question:
        await _answer_question(ctx, question)
        return
    rows = [[ctx.button(ctx.t(f"guides.topic_{topic}"), Topic(i))]
            for i, topic in enumerate(TOPICS)]
    rows.append([ctx.button(ctx.t("guides.ask_staff"), AskStaff(0))])
    ctx.say("guides.choose_topic", rows)


@router.action(Topic)
async def topic(ctx: Context, press: Topic) -> None:
    i = press.index
    if not 0 <= i < len(TOPICS):
        ctx.say("common.button_invalid")
        return
    guides = [g for g in ctx.services.guides.guides if g.topic == TOPICS[i]]
    rows = _guide_buttons(ctx, guides)
    rows.append([ctx.button(ctx.t("guides.back"), TopicMenu())])
    ctx.say("guides.choose_guide", rows, topic=ctx.t(f"guides.topic_{TOPICS[i]}"))


@router.action(TopicMenu)
async def menu(ctx: Context, _: TopicMenu) -> None:
    ctx.inbound = _without_args(ctx)
    await guide(ctx)


@router.action(ShowGuide)
async def show(ctx: Context, press: ShowGuide) -> None:
    found = ctx.services.guides.by_number.get(press.number)
    if found is None:
        ctx.say("guides.unknown_guide")
        return
    # The way back on the guide itself: where choices are typed numbers (WeChat), the topic
    # list's own button is on an older message and means nothing by then.
    ctx.reply(render(ctx, found), [[ctx.button(ctx.t("guides.back"), TopicMenu())]])


def render(ctx: Context, g: Guide) -> str:
    lang = ctx.lang
    return ctx.t("guides.detail", title=g.field(lang, "title"), office=g.field(lang, "office"),
                 hours=g.field(lang, "hours"),
                 bring="\n".join(f"• {item}" for item in g.field(lang, "bring")),
                 steps="\n".join(f"{n}. {s}" for n, s in enumerate(g.field(lang, "steps"), 1)))


async def _answer_question(ctx: Context, question: str) -> None:
    if len(question) > MAX_QUESTION:
        ctx.say("guides.question_too_long", limit=MAX_QUESTION)
        return
    matches = await _search(ctx.services.guides, question, ASKED_CUTOFF)
    # Kept as a draft, so the "ask staff" button needs only its id and no conversation state:
    # the resident may go on chatting and still press it later.
    draft = await store.ask(ctx.session, ctx.resident, question, ctx.lang, draft=True)
    ask_row = [ctx.button(ctx.t("guides.ask_staff"), AskStaff(draft.id))]
    if matches:
        ctx.say("guides.found", [*_guide_buttons(ctx, [m.guide for m in matches]), ask_row])
    else:
        ctx.say("guides.not_found", [ask_row], question=question[:80])


@router.text_fallback(80)
async def free_question(ctx: Context) -> bool:
    """A question typed outside any conversation: the guides that clearly fit, or else the
    offer to send it to staff (it may be a question no guide answers)."""
    if ctx.state is not None or ctx.inbound.kind != Kind.TEXT:
        return False
    text = ctx.inbound.text or ""
    if len(text) > MAX_QUESTION:
        return False
    matches = await _search(ctx.services.guides, text, FREE_CUTOFF)
    if matches:
        ctx.say("guides.found_free", _guide_buttons(ctx, [m.guide for m in matches]))
        return True
    if len(text) < MIN_QUESTION or all(w.isdigit() for w in ctx.services.guides.tokens(text)):
        return False  # "ok", "谢谢", "?", "12": nothing to ask anyone
    draft = await store.ask(ctx.session, ctx.resident, text, ctx.lang, draft=True)
    ctx.say("guides.not_understood_ask", [[ctx.button(ctx.t("guides.ask_staff"),
                                                      AskStaff(draft.id))]])
    return True


@router.action(AskStaff)
async def ask_staff(ctx: Context, press: AskStaff) -> None:
    draft_id = press.draft_id
    if draft_id <= 0:
        ctx.goto(ASK)
        ctx.say("guides.type_question")
        return
    if not await _room_for_question(ctx):
        return
    if not await store.send_draft(ctx.session, draft_id, ctx.resident.id):
        ctx.say("guides.nothing_to_ask")
        return
    await _notify_staff(ctx, await store.get_question(ctx.session, draft_id))


@router.state(ASK)
async def question_input(ctx: Context) -> None:
    if ctx.inbound.kind != Kind.TEXT:
        ctx.say("guides.text_only")
        return
    question = ctx.inbound.text or ""
    if len(question) < MIN_QUESTION:
        ctx.say("guides.question_too_short")
        return
    if len(question) > MAX_QUESTION:
        ctx.say("guides.question_too_long", limit=MAX_QUESTION)
        return
    if not await _room_for_question(ctx):
        ctx.finish()
        return
    ctx.finish()
    await _notify_staff(ctx, await store.ask(ctx.session, ctx.resident, question, ctx.lang))


async def _room_for_question(ctx: Context) -> bool:
    count = await store.open_count(ctx.session, ctx.resident.id)
    if count >= MAX_OPEN:
        ctx.say("guides.too_many_open", count=count)
        return False
    return True


async def _notify_staff(ctx: Context, question: store.GuideQuestion) -> None:
    staff = await store.answerers(ctx.session, question.station_id)
    if not staff:
        # Nobody could answer: say so instead of leaving the question to wait for no one.
        question.status = "draft"
        ctx.say("guides.no_staff")
        return
    estate = await territory.estate(ctx.session, question.estate_id)

    place = (lambda lang: territory.localized(estate, lang)) if estate else Key(
        "guides.no_estate")
    for ident in staff:
        resident = await resident_by_id(ctx.session, ident.resident_id)

        def answer(t, identity_id=ident.id):
            return [[ctx.button(t("guides.answer"), Answer(question.id),
                                identity_id=identity_id)]]
        await ctx.tell(Recipient(ident.id, resident.language), "guides.staff_question",
                       buttons=answer, group=f"guideq:{question.id}",
                       dedupe_key=f"guideq:{question.id}:{ident.id}", estate=place,
                       question=question.question)
    ctx.say("guides.asked")


@router.command("questions", help_key="guides.help_questions", roles=("staff", "admin"),
                order=55)
async def open_questions(ctx: Context) -> None:
    """Questions still waiting, for staff who missed (or dismissed) the push."""
    scope = await ctx.scope()
    rows = await store.open_questions(ctx.session, None if scope.everything
                                      else scope.station_ids)
    if not rows:
        ctx.say("guides.no_open_questions")
        return
    for question in rows:
        estate = await territory.estate(ctx.session, question.estate_id)
        place = territory.localized(estate, ctx.lang) if estate else ctx.t("guides.no_estate")
        ctx.say("guides.staff_question", [[ctx.button(ctx.t("guides.answer"),
                                                      Answer(question.id))]],
                estate=place, question=question.question)


async def _may_answer(ctx: Context, question: store.GuideQuestion | None) -> bool:
    if question is None:
        return False
    scope = await ctx.scope()
    if scope.everything:
        return True
    return "staff" in scope.kinds and (question.station_id is None
                                       or question.station_id in scope.station_ids)


@router.action(Answer)
async def answer_button(ctx: Context, press: Answer) -> None:
    question = await store.get_question(ctx.session, press.question_id)
    if not await _may_answer(ctx, question):
        ctx.say("common.not_allowed")
        return
    if question.status != "open":
        ctx.say("guides.already_answered")
        return
    ctx.goto(ANSWER, question_id=question.id)
    ctx.say("guides.type_answer", question=question.question)


@router.state(ANSWER)
async def answer_input(ctx: Context) -> None:
    question = await store.get_question(ctx.session, ctx.data.get("question_id", -1))
    if not await _may_answer(ctx, question):
        ctx.finish()
        ctx.say("common.not_allowed")
        return
    if ctx.inbound.kind != Kind.TEXT:
        ctx.say("guides.answer_text_only")
        return
    text = ctx.inbound.text or ""
    if len(text) > MAX_ANSWER:
        ctx.say("guides.answer_too_long", limit=MAX_ANSWER)
        return
    ctx.finish()
    if not await store.answer(ctx.session, question.id, text, ctx.resident.id):
        ctx.say("guides.already_answered")
        return
    await audit.record(ctx.session, ctx.resident.id, "guide.answer", f"question:{question.id}",
                       resident_id=question.resident_id)
    resident = await resident_by_id(ctx.session, question.resident_id)
    for ident in await identities_of(ctx.session, resident.id):
        if ident.unreachable_at is None:
            await ctx.tell(Recipient(ident.id, resident.language, fallback=question.lang),
                           "guides.reply_to_resident",
                           group=f"guideq:{question.id}",
                           dedupe_key=f"guidea:{question.id}:{ident.id}",
                           question=question.question, answer=text)
    ctx.say("guides.answered")


async def prune_drafts(sessions, services, deliverer) -> None:
    # The scheduler runs this a second after start: loading the index and jieba's dictionary
    # here, in a worker thread, spares the first resident who types a question the wait.
    await asyncio.to_thread(services.guides.warm)
    async with sessions() as session, session.begin():
        await store.prune_drafts(session, services.clock() - timedelta(days=7))


jobs = [Job("guide-drafts-prune", 3600, prune_drafts)]


def _without_args(ctx: Context):
    from dataclasses import replace

    return replace(ctx.inbound, args="")
