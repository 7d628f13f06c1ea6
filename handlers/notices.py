"""/notice: staff write a notice, choose who gets it (within their scope), preview, send now
or at a time. The draft lives in the dialog state, so it survives a restart."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.context import Context
from bot.messaging.model import Kind
from bot.payloads import Action
from bot.router import Router
from handlers.notice_time import BadTime, parse_when, spoken
from handlers.report_media import MediaRefused, take_photo
from services import notice_audience as aud
from services import notice_compose as compose
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


@router.command("notice", help_key="notices.help", roles=STAFF, order=40)
async def new_notice(ctx: Context) -> None:
    ctx.goto("notice.category")
    labels = [ctx.button(ctx.t(f"notices.cat_{c}"), ChooseCategory(i)) for i, c in enumerate(CATEGORIES)]
    ctx.say("notices.choose_category", [labels[:3], labels[3:]])


@router.action(ChooseCategory)
async def category_pressed(ctx: Context, press: ChooseCategory) -> None:
    index = press.index
    if ctx.state != "notice.category" or not 0 <= index < len(CATEGORIES):
        ctx.say("notices.expired")
        return
    await _set_category(ctx, CATEGORIES[index])


@router.state("notice.category")
async def category_typed(ctx: Context) -> None:
    text = (ctx.inbound.text or "").strip().lower()
    for category in CATEGORIES:
        names = {category, *(n.lower() for n in
                             ctx.services.texts.all_languages(f"notices.cat_{category}"))}
        if text in names:
            await _set_category(ctx, category)
            return
    ctx.say("notices.unknown_category")


async def _set_category(ctx: Context, category: str) -> None:
    ctx.goto("notice.audience", category=category)
    scope = await ctx.scope()
    buttons = [ctx.button(ctx.t(f"notices.aud_{k}"), ChooseKind(KINDS.index(k)))
               for k in aud.allowed_kinds(scope)]
    ctx.say("notices.choose_audience", [buttons[i:i + 3] for i in range(0, len(buttons), 3)])


@router.action(ChooseKind)
async def kind_pressed(ctx: Context, press: ChooseKind) -> None:
    index = press.index
    if not _drafting(ctx) or not 0 <= index < len(KINDS):
        ctx.say("notices.expired")
        return
    kind = KINDS[index]
    if kind in (AudienceKind.SUBDISTRICT, AudienceKind.VOLUNTEERS):
        await _set_audience(ctx, kind, None)
        return
    rows = await aud.targets(ctx.session, ctx.services.geo, await ctx.scope(), kind)
    label = ctx.t(f"notices.aud_{kind}")
    if not rows:
        ctx.say("notices.no_targets", kind=label)
        return
    action = ChooseBuildingEstate if kind == AudienceKind.BUILDING else ChooseTarget
    buttons = [ctx.button(localized(r, ctx.lang), action(index, r.id)) for r in rows]
    ctx.say("notices.choose_target", [buttons[i:i + 2] for i in range(0, len(buttons), 2)],
            kind=ctx.t("notices.aud_estate") if kind == AudienceKind.BUILDING else label)


@router.action(ChooseTarget)
async def target_pressed(ctx: Context, press: ChooseTarget) -> None:
    if not _drafting(ctx) or not 0 <= press.kind < len(KINDS):
        ctx.say("notices.expired")
        return
    await _set_audience(ctx, KINDS[press.kind], press.target)


@router.action(ChooseBuildingEstate)
async def building_estate_pressed(ctx: Context, press: ChooseBuildingEstate) -> None:
    estate_id = press.estate_id
    if not _drafting(ctx):
        ctx.say("notices.expired")
        return
    estate = await territory.estate(ctx.session, estate_id)
    if estate is None or not (await ctx.scope()).covers_estate(estate_id):
        ctx.say("notices.error_out_of_scope")
        return
    ctx.goto("notice.building", category=ctx.data["category"], estate=estate_id)
    ctx.say("notices.ask_building", estate=localized(estate, ctx.lang))


@router.state("notice.building")
async def building_typed(ctx: Context) -> None:
    estate = await territory.estate(ctx.session, ctx.data.get("estate"))
    if estate is None:
        ctx.say("notices.expired")
        ctx.finish()
        return
    number = (ctx.inbound.text or "").strip().removesuffix("号楼").removesuffix("栋")
    row = await building(ctx.session, estate.id, number) if number else None
    if row is None:
        ctx.say("notices.unknown_building", estate=localized(estate, ctx.lang),
                value=(ctx.inbound.text or "")[:20])
        return
    await _set_audience(ctx, AudienceKind.BUILDING, row.id)


@router.state("notice.audience")
async def audience_typed(ctx: Context) -> None:
    try:
        kind, target = await aud.parse_typed(ctx.session, ctx.inbound.text or "")
    except NoticeError as exc:
        ctx.say(f"notices.error_{exc.code}")
        return
    await _set_audience(ctx, kind, target)


async def _set_audience(ctx: Context, kind: str, target: int | None) -> None:
    try:
        await aud.resolve(ctx.session, ctx.services.geo, await ctx.scope(), kind, target)
    except NoticeError as exc:
        ctx.say(f"notices.error_{exc.code}")
        return
    ctx.goto("notice.text", category=ctx.data["category"], kind=str(kind), target=target)
    ctx.say("notices.ask_text", audience=await aud.describe(
        ctx.session, ctx.lang, ctx.services.texts, kind, target))


@router.state("notice.text")
async def text_given(ctx: Context) -> None:
    inbound = ctx.inbound
    if inbound.kind == Kind.PHOTO and inbound.media is not None:
        # Kept in our media store, not as the author's platform file id: the notice goes to
        # residents on every platform (a Telegram id means nothing to WeChat, and WeChat's own
        # media ids expire after three days), and EXIF (where it was taken) is dropped.
        try:
            rel = await take_photo(ctx)
        except MediaRefused as refused:
            ctx.say(f"reports.{refused.key}", **refused.values)
            return
        ctx.remember(photo=str(ctx.services.media.path(rel)))
        if not (inbound.text or "").strip():
            ctx.say("notices.photo_kept")
            return
    elif inbound.kind != Kind.TEXT:
        ctx.say("notices.error_empty_text")
        return
    text = (inbound.text or "").strip()
    if not text:
        ctx.say("notices.error_empty_text")
        return
    if len(text) > MAX_TEXT:
        ctx.say("notices.error_too_long", limit=MAX_TEXT)
        return
    ctx.remember(text=text, lang=ctx.lang)
    await _preview(ctx)


def _other(lang: str) -> str:
    return "en" if lang == "zh-Hans" else "zh-Hans"


@router.state("notice.text2")
async def second_language_given(ctx: Context) -> None:
    text = (ctx.inbound.text or "").strip() if ctx.inbound.kind == Kind.TEXT else ""
    if not text:
        ctx.say("notices.error_empty_text")
        return
    if len(text) > MAX_TEXT:
        ctx.say("notices.error_too_long", limit=MAX_TEXT)
        return
    ctx.remember(text2=text)
    await _preview(ctx)


def _texts(data: dict, fallback: str) -> dict[str, str]:
    first = data.get("lang") or fallback
    texts = {first: data["text"]}
    if data.get("text2"):
        texts[_other(first)] = data["text2"]
    return texts


async def _preview(ctx: Context) -> None:
    data = ctx.data
    ctx.state = "notice.preview"
    count = await compose.reachable(ctx.session, ctx.services.geo, await ctx.scope(),
                                    data["category"], data["kind"], data["target"])
    category = ctx.t(f"notices.cat_{data['category']}")
    ctx.say("notices.preview_title")
    for lang, text in _texts(data, ctx.lang).items():
        ctx.reply(ctx.t_for(lang, "notices.push", category=ctx.t_for(
            lang, f"notices.cat_{data['category']}"), text=text), photo=data.get("photo"))
    buttons = [
        [ctx.button(ctx.t("notices.btn_send_now"), PreviewChoice("now")),
         ctx.button(ctx.t("notices.btn_schedule"), PreviewChoice("time"))],
        [ctx.button(ctx.t("notices.btn_edit_text"), PreviewChoice("edit")),
         ctx.button(ctx.t("notices.btn_discard"), PreviewChoice("drop"))],
    ]
    if not data.get("text2"):
        buttons.insert(1, [ctx.button(ctx.t("notices.btn_add_other"), PreviewChoice("lang2"))])
    audience = await aud.describe(ctx.session, ctx.lang, ctx.services.texts, data["kind"],
                                  data["target"])
    ctx.say("notices.preview_summary", buttons, category=category, count=count,
            audience=audience)


@router.state("notice.preview")
async def preview_typed(ctx: Context) -> None:
    ctx.refuse("notices.use_buttons")


@router.action(PreviewChoice)
async def preview_pressed(ctx: Context, press: PreviewChoice) -> None:
    choice = press.choice
    if ctx.state not in ("notice.preview", "notice.when", "notice.text2") or \
            not ctx.data.get("text"):
        ctx.say("notices.expired")
        return
    if choice == "now":
        await _create(ctx, None)
    elif choice == "time":
        ctx.state = "notice.when"
        ctx.say("notices.ask_time", tz=ctx.services.settings.bot.timezone)
    elif choice == "lang2":
        ctx.state = "notice.text2"
        ctx.say("notices.ask_other")
    elif choice == "edit":
        ctx.state = "notice.text"
        ctx.data.pop("text", None)
        ctx.data.pop("text2", None)
        ctx.say("notices.ask_text", audience=await aud.describe(
            ctx.session, ctx.lang, ctx.services.texts, ctx.data["kind"], ctx.data["target"]))
    elif choice == "drop":
        ctx.finish()
        ctx.say("notices.discarded")


@router.state("notice.when")
async def when_typed(ctx: Context) -> None:
    tz = ctx.services.settings.bot.timezone
    try:
        at = parse_when(ctx.inbound.text or "", ctx.now, tz)
    except BadTime as exc:
        from handlers.notice_time import MAX_DAYS_AHEAD

        ctx.say(f"notices.time_{exc.code}", days=MAX_DAYS_AHEAD)
        return
    await _create(ctx, at)


async def _create(ctx: Context, at) -> None:
    data = ctx.data
    try:
        notice = await compose.create(
            ctx.session, ctx.services.geo, await ctx.scope(), category=data["category"],
            kind=data["kind"], target=data["target"], texts=_texts(data, ctx.lang),
            photo=data.get("photo"), at=at or ctx.now, now=ctx.now, created_by=ctx.resident.id,
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


def _drafting(ctx: Context) -> bool:
    return bool(ctx.state and ctx.state.startswith("notice.") and ctx.data.get("category"))
