"""/notice: staff write a notice, choose who gets it (within their scope), preview, send now
or at a time. The draft lives in the dialog state, so it survives a restart."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.context import Context
from bot.conversation import KEEP, NEXT, STAY, Conversation, ConversationTexts, Go, StepAnswer
from bot.messaging.model import Kind
from bot.payloads import Action
from bot.router import Router
from handlers.report_media import MediaRefused, take_photo
from services import notice_audience as aud
from services import notice_compose as compose
from services.typed_time import MAX_DAYS_AHEAD, BadTime, parse_when, spoken
from storage import territory
from storage.audience import Kind as AudienceKind
from storage.notices import NoticeError
from storage.subscriptions import CATEGORIES
from storage.territory import building, localized

router = Router()

STAFF = ("staff", "committee", "admin")
MAX_TEXT = compose.MAX_TEXT
KINDS = list(AudienceKind)


@dataclass(frozen=True)
class ChooseCategory(Action, code="ncat"):
    index: int  # into storage.subscriptions.CATEGORIES


@dataclass(frozen=True)
class ChooseKind(Action, code="nkind"):
    index: int  # into KINDS


@dataclass(frozen=True)
class ChooseTarget(Action, code="ntgt"):
    kind: int  # into KINDS
    target: int  # the estate, committee... of that kind


@dataclass(frozen=True)
class ChooseBuildingEstate(Action, code="nbe"):
    kind: int  # into KINDS (the building kind)
    estate_id: int  # whose building is then typed


@dataclass(frozen=True)
class PreviewChoice(Action, code="npv"):
    choice: Literal["now", "time", "lang2", "edit", "drop"]


@dataclass
class NoticeForm:
    """A notice being written; each step fills its fields."""

    category: str = ""
    kind: str = ""  # the audience's kind (storage.audience.Kind) ...
    target: int | None = None  # ... and which estate, committee, building
    estate: int | None = None  # whose building is being typed
    text: str = ""
    lang: str = ""  # the language `text` is in
    text2: str = ""  # the other language's text, when given
    photo: str | None = None


STEPS = ("category", "audience", "building", "text", "text2", "preview", "when")
# Steps where a press of an audience button (re)chooses who gets the notice.
CHOOSING = ("audience", "building", "text", "text2", "preview", "when")
TEXTS = ConversationTexts(stale="notices.expired", press_button="notices.use_buttons",
                          type_please="notices.error_empty_text")


@dataclass(frozen=True)
class _NoticeAnswer(StepAnswer, code="nstep"):
    pass  # every choice of this conversation is one of the typed actions above


# The states of the version before the declared conversation, one per step.
LEGACY = {f"notice.{step}": step for step in STEPS}
notice_form = Conversation(router, "notice.draft", NoticeForm, _NoticeAnswer, steps=STEPS,
                           texts=TEXTS, legacy_states=LEGACY)


@router.command("notice", help_key="notices.help", roles=STAFF, order=40)
async def new_notice(ctx: Context) -> None:
    await notice_form.start(ctx, NoticeForm())


@notice_form.asks("category")
async def ask_category(ctx: Context, d: NoticeForm) -> None:
    labels = [ctx.button(ctx.t(f"notices.cat_{c}"), ChooseCategory(i))
              for i, c in enumerate(CATEGORIES)]
    ctx.say("notices.choose_category", [labels[:3], labels[3:]])


@notice_form.takes_action(ChooseCategory, "category")
async def category_pressed(ctx: Context, d: NoticeForm, press: ChooseCategory) -> Go:
    if not 0 <= press.index < len(CATEGORIES):
        ctx.say("notices.expired")
        return STAY
    d.category = CATEGORIES[press.index]
    return NEXT


@notice_form.takes("category")
async def category_typed(ctx: Context, d: NoticeForm, text: str) -> Go:
    said = text.strip().lower()
    for category in CATEGORIES:
        names = {category, *(n.lower() for n in
                             ctx.services.texts.all_languages(f"notices.cat_{category}"))}
        if said in names:
            d.category = category
            return NEXT
    ctx.say("notices.unknown_category")
    return STAY


@notice_form.asks("audience")
async def ask_audience(ctx: Context, d: NoticeForm) -> None:
    scope = await ctx.scope()
    buttons = [ctx.button(ctx.t(f"notices.aud_{k}"), ChooseKind(KINDS.index(k)))
               for k in aud.allowed_kinds(scope)]
    ctx.say("notices.choose_audience", [buttons[i:i + 3] for i in range(0, len(buttons), 3)])


@notice_form.takes_action(ChooseKind, *CHOOSING)
async def kind_pressed(ctx: Context, d: NoticeForm, press: ChooseKind) -> Go:
    if not 0 <= press.index < len(KINDS):
        ctx.say("notices.expired")
        return STAY
    kind = KINDS[press.index]
    if kind in (AudienceKind.SUBDISTRICT, AudienceKind.VOLUNTEERS):
        return await _set_audience(ctx, d, kind, None)
    rows = await aud.targets(ctx.session, ctx.services.geo, await ctx.scope(), kind)
    label = ctx.t(f"notices.aud_{kind}")
    if not rows:
        ctx.say("notices.no_targets", kind=label)
        return STAY
    action = ChooseBuildingEstate if kind == AudienceKind.BUILDING else ChooseTarget
    buttons = [ctx.button(localized(r, ctx.lang), action(press.index, r.id)) for r in rows]
    ctx.say("notices.choose_target", [buttons[i:i + 2] for i in range(0, len(buttons), 2)],
            kind=ctx.t("notices.aud_estate") if kind == AudienceKind.BUILDING else label)
    return STAY  # the step stays: its answer is the target pressed next


@notice_form.takes_action(ChooseTarget, *CHOOSING)
async def target_pressed(ctx: Context, d: NoticeForm, press: ChooseTarget) -> Go:
    if not 0 <= press.kind < len(KINDS):
        ctx.say("notices.expired")
        return STAY
    return await _set_audience(ctx, d, KINDS[press.kind], press.target)


@notice_form.takes_action(ChooseBuildingEstate, *CHOOSING)
async def building_estate_pressed(ctx: Context, d: NoticeForm,
                                  press: ChooseBuildingEstate) -> Go:
    estate = await territory.estate(ctx.session, press.estate_id)
    if estate is None or not (await ctx.scope()).covers_estate(press.estate_id):
        ctx.say("notices.error_out_of_scope")
        return STAY
    d.estate = estate.id
    return "building"


@notice_form.takes("audience")
async def audience_typed(ctx: Context, d: NoticeForm, text: str) -> Go:
    try:
        kind, target = await aud.parse_typed(ctx.session, text)
    except NoticeError as exc:
        ctx.say(f"notices.error_{exc.code}")
        return STAY
    return await _set_audience(ctx, d, kind, target)


@notice_form.asks("building")
async def ask_building(ctx: Context, d: NoticeForm) -> None:
    estate = await territory.estate(ctx.session, d.estate)
    ctx.say("notices.ask_building", estate=localized(estate, ctx.lang) if estate else "")


@notice_form.takes("building")
async def building_typed(ctx: Context, d: NoticeForm, text: str) -> Go:
    estate = await territory.estate(ctx.session, d.estate)
    if estate is None:
        ctx.say("notices.expired")
        ctx.finish()
        return STAY
    number = text.strip().removesuffix("号楼").removesuffix("栋")
    row = await building(ctx.session, estate.id, number) if number else None
    if row is None:
        ctx.say("notices.unknown_building", estate=localized(estate, ctx.lang),
                value=text[:20])
        return STAY
    return await _set_audience(ctx, d, AudienceKind.BUILDING, row.id)


async def _set_audience(ctx: Context, d: NoticeForm, kind: str, target: int | None) -> Go:
    try:
        await aud.resolve(ctx.session, ctx.services.geo, await ctx.scope(), kind, target)
    except NoticeError as exc:
        ctx.say(f"notices.error_{exc.code}")
        return STAY
    d.kind, d.target = str(kind), target
    return "text"


@notice_form.asks("text")
async def ask_text(ctx: Context, d: NoticeForm) -> None:
    ctx.say("notices.ask_text", audience=await aud.describe(
        ctx.session, ctx.lang, ctx.services.texts, d.kind, d.target))


@notice_form.takes_media("text")
async def photo_given(ctx: Context, d: NoticeForm, kind: Kind) -> Go:
    inbound = ctx.inbound
    if kind != Kind.PHOTO or inbound.media is None:
        ctx.say("notices.error_empty_text")
        return STAY
    # Kept in our media store, not as the author's platform file id: the notice goes to
    # residents on every platform (a Telegram id means nothing to WeChat, and WeChat's own
    # media ids expire after three days), and EXIF (where it was taken) is dropped.
    try:
        rel = await take_photo(ctx)
    except MediaRefused as refused:
        ctx.say(f"reports.{refused.key}", **refused.values)
        return STAY
    d.photo = str(ctx.services.media.path(rel))
    if not (inbound.text or "").strip():
        ctx.say("notices.photo_kept")
        return KEEP  # the photo kept, the text comes next
    return await text_given(ctx, d, inbound.text or "")


@notice_form.takes("text")
async def text_given(ctx: Context, d: NoticeForm, text: str) -> Go:
    problem = _text_problem(ctx, text)
    if problem:
        return STAY
    d.text, d.lang = text.strip(), ctx.lang
    return "preview"


def _text_problem(ctx: Context, text: str) -> bool:
    if not text.strip():
        ctx.say("notices.error_empty_text")
        return True
    if len(text.strip()) > MAX_TEXT:
        ctx.say("notices.error_too_long", limit=MAX_TEXT)
        return True
    return False


def _other(lang: str) -> str:
    return "en" if lang == "zh-Hans" else "zh-Hans"


@notice_form.asks("text2")
async def ask_other(ctx: Context, d: NoticeForm) -> None:
    ctx.say("notices.ask_other")


@notice_form.takes("text2")
async def second_language_given(ctx: Context, d: NoticeForm, text: str) -> Go:
    if _text_problem(ctx, text):
        return STAY
    d.text2 = text.strip()
    return "preview"


def _texts(d: NoticeForm, fallback: str) -> dict[str, str]:
    first = d.lang or fallback
    texts = {first: d.text}
    if d.text2:
        texts[_other(first)] = d.text2
    return texts


@notice_form.asks("preview")
async def preview(ctx: Context, d: NoticeForm) -> None:
    count = await compose.reachable(ctx.session, ctx.services.geo, await ctx.scope(),
                                    d.category, d.kind, d.target)
    category = ctx.t(f"notices.cat_{d.category}")
    ctx.say("notices.preview_title")
    for lang, text in _texts(d, ctx.lang).items():
        ctx.reply(ctx.t_for(lang, "notices.push", category=ctx.t_for(
            lang, f"notices.cat_{d.category}"), text=text), photo=d.photo)
    buttons = [
        [ctx.button(ctx.t("notices.btn_send_now"), PreviewChoice("now")),
         ctx.button(ctx.t("notices.btn_schedule"), PreviewChoice("time"))],
        [ctx.button(ctx.t("notices.btn_edit_text"), PreviewChoice("edit")),
         ctx.button(ctx.t("notices.btn_discard"), PreviewChoice("drop"))],
    ]
    if not d.text2:
        buttons.insert(1, [ctx.button(ctx.t("notices.btn_add_other"), PreviewChoice("lang2"))])
    audience = await aud.describe(ctx.session, ctx.lang, ctx.services.texts, d.kind, d.target)
    ctx.say("notices.preview_summary", buttons, category=category, count=count,
            audience=audience)


@notice_form.takes("preview")
async def preview_typed(ctx: Context, d: NoticeForm, text: str) -> Go:
    ctx.refuse("notices.use_buttons")
    return STAY


@notice_form.takes_action(PreviewChoice, "preview", "when", "text2")
async def preview_pressed(ctx: Context, d: NoticeForm, press: PreviewChoice) -> Go:
    if not d.text:
        ctx.say("notices.expired")
        return STAY
    choice = press.choice
    if choice == "now":
        await _create(ctx, d, None)
        return STAY
    if choice == "time":
        return "when"
    if choice == "lang2":
        return "text2"
    if choice == "edit":
        d.text = d.text2 = ""
        return "text"
    ctx.finish()
    ctx.say("notices.discarded")
    return STAY


@notice_form.asks("when")
async def ask_time(ctx: Context, d: NoticeForm) -> None:
    ctx.say("notices.ask_time", tz=ctx.services.settings.bot.timezone)


@notice_form.takes("when")
async def when_typed(ctx: Context, d: NoticeForm, text: str) -> Go:
    tz = ctx.services.settings.bot.timezone
    try:
        at = parse_when(text, ctx.now, tz)
    except BadTime as exc:
        ctx.say(f"notices.time_{exc.code}", days=MAX_DAYS_AHEAD)
        return STAY
    await _create(ctx, d, at)
    return STAY


async def _create(ctx: Context, d: NoticeForm, at) -> None:
    try:
        notice = await compose.create(
            ctx.session, ctx.services.geo, await ctx.scope(), category=d.category,
            kind=d.kind, target=d.target, texts=_texts(d, ctx.lang), photo=d.photo,
            at=at or ctx.now, now=ctx.now, created_by=ctx.resident.id,
            sender_identity_id=ctx.identity.id)
    except NoticeError as exc:
        ctx.say(f"notices.error_{exc.code}")
        return
    ctx.finish()
    if at is None:
        ctx.say("notices.sending", id=notice.id)
    else:
        ctx.say("notices.scheduled", id=notice.id,
                at=spoken(ctx.t, at, ctx.now, ctx.services.settings.bot.timezone))
