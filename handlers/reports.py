"""Residents report a problem: /report (or a photo or a location sent out of the blue), then
category, description (text or voice), up to three photos and where; a look for the same problem
nearby; filing; /myreports; and closing the loop when the team says it is fixed."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from bot.context import Context
from bot.conversation import KEEP, STAY, Conversation, ConversationTexts, Go, StepAnswer
from bot.messaging.model import Kind
from bot.payloads import Action
from bot.router import Router
from handlers.report_media import MediaRefused, take_photo, take_voice
from services import report_cards as filing
from services.report_cards import ConfirmFixed
from services.report_filing import same_nearby
from storage import reports as rep
from storage import territory
from storage.base import reread

router = Router()


@dataclass
class ReportForm:
    """A report being put together; the conversation asks for the first thing it lacks."""

    cat: str = ""
    desc: str = ""
    voice: str | None = None  # the voice note's path in the media store
    voice_s: int | None = None
    photos: list[str] = field(default_factory=list)
    photos_done: bool = False
    lat: float | None = None
    lon: float | None = None
    exact: bool = False  # a shared point, not an estate's centre
    estate: int | None = None
    building: int | None = None
    dup_checked: bool = False

    def set_point(self, lat: float, lon: float, estate_id: int | None) -> None:
        self.lat, self.lon, self.exact, self.estate = lat, lon, True, estate_id
        self.dup_checked = False


STEPS = ("category", "describe", "photos", "where", "nearby", "confirm")
TEXTS = ConversationTexts(stale="reports.no_draft", press_button="reports.use_buttons",
                          type_please="reports.use_buttons")
# The states of the version before the declared conversation, one per step.
LEGACY = {"report.category": "category", "report.describe": "describe",
          "report.photos": "photos", "report.where": "where", "report.confirm": "confirm"}


@dataclass(frozen=True)
class CancelDraft(Action, code="rx"):
    pass


@dataclass(frozen=True)
class ChooseCategory(Action, code="rc"):
    index: int  # into the catalog's categories


@dataclass(frozen=True)
class PhotosDone(Action, code="rph"):
    pass


@dataclass(frozen=True)
class ChooseEstate(Action, code="rest"):
    estate_id: int


@dataclass(frozen=True)
class AtHome(Action, code="rhome"):
    pass


@dataclass(frozen=True)
class SameAs(Action, code="rdup"):
    report_id: int  # the open report nearby this resident follows instead


@dataclass(frozen=True)
class NotTheSame(Action, code="rnew"):
    pass


@dataclass(frozen=True)
class FileIt(Action, code="rfile"):
    pass


@dataclass(frozen=True)
class Correct(Action, code="rgo"):
    part: Literal["cat", "desc", "photos", "where"]


@dataclass(frozen=True)
class Rate(Action, code="rrate"):
    report_id: int
    stars: int


@dataclass(frozen=True)
class _ReportAnswer(StepAnswer, code="rstep"):
    pass  # every choice of this conversation is one of the typed actions above


report_form = Conversation(router, "report.draft", ReportForm, _ReportAnswer, steps=STEPS,
                           texts=TEXTS, legacy_states=LEGACY)


def _cancel_row(ctx: Context) -> list:
    return [ctx.button(ctx.t("reports.btn_cancel"), CancelDraft())]


# -- starting ------------------------------------------------------------------------------

@router.command("report", help_key="reports.help_report", order=10)
async def start(ctx: Context) -> None:
    await report_form.start(ctx, ReportForm())


@router.on(Kind.PHOTO)
async def photo_out_of_the_blue(ctx: Context) -> None:
    d = ReportForm()
    ctx.say("reports.started_from_photo")
    await _add_photo(ctx, d, asking_photos=False)
    caption = (ctx.inbound.text or "").strip()
    if caption and len(caption) <= ctx.services.settings.reports.max_description:
        # A caption is the description, and may name the category too.
        d.desc = caption
        matches = await ctx.services.catalog.match_async(caption)
        if matches and _clear(matches):
            d.cat = matches[0][0]
    await report_form.start(ctx, d, await _missing(ctx, d))


def _clear(matches: list[tuple[str, float]]) -> bool:
    best = matches[0][1]
    return best >= 90 and (len(matches) == 1 or matches[1][1] <= best - 5)


@router.on(Kind.LOCATION)
async def location_out_of_the_blue(ctx: Context) -> None:
    place = ctx.services.geo.locate(ctx.inbound.latitude, ctx.inbound.longitude)
    if not place.inside:
        ctx.say("reports.outside")
        return
    d = ReportForm()
    ctx.say("reports.started_from_location")
    d.set_point(ctx.inbound.latitude, ctx.inbound.longitude, place.estate_id)
    await report_form.start(ctx, d, await _missing(ctx, d))


# -- the next missing piece ----------------------------------------------------------------

async def _missing(ctx: Context, d: ReportForm) -> str:
    """The step asking for the first thing the draft still lacks; with nothing missing, the
    look for the same problem nearby, then the summary."""
    if not d.cat:
        return "category"
    if not d.desc and not d.voice:
        return "describe"
    if not d.photos_done and len(d.photos) < _max_photos(ctx):
        return "photos"
    if d.lat is None and not d.estate:
        return "where"
    if not d.dup_checked:
        d.dup_checked = True
        if d.lat is not None and await _nearby(ctx, d):
            return "nearby"
    return "confirm"


async def _nearby(ctx: Context, d: ReportForm) -> list:
    """Open reports of the draft's category near its point: looked up once per update (the
    step that decides to ask, then the prompt itself, both want them)."""
    return await ctx.fact(f"reports nearby {d.cat} {d.lat} {d.lon}", lambda: same_nearby(
        ctx.session, ctx.services, d.cat, d.lat, d.lon))


def _max_photos(ctx: Context) -> int:
    return ctx.services.settings.reports.max_photos


@report_form.asks("category")
async def ask_category(ctx: Context, d: ReportForm) -> None:
    cats = ctx.services.catalog.categories
    rows, row = [], []
    for i, cat in enumerate(cats):
        row.append(ctx.button(cat.name(ctx.lang), ChooseCategory(i)))
        if len(row) == 2:
            rows.append(row)
            row = []
    if row:
        rows.append(row)
    rows.append(_cancel_row(ctx))
    ctx.say("reports.ask_category", rows)


@report_form.asks("describe")
async def ask_description(ctx: Context, d: ReportForm) -> None:
    ctx.say("reports.ask_description", [
        [ctx.button(ctx.t("reports.btn_change_category"), Correct("cat"))], _cancel_row(ctx)],
        category=filing.category_name(ctx.services, ctx.lang, d.cat),
        limit=ctx.services.settings.reports.max_description)


@report_form.asks("photos")
async def ask_photos(ctx: Context, d: ReportForm) -> None:
    n = len(d.photos)
    label = "reports.btn_photos_done" if n else "reports.btn_no_photos"
    ctx.say("reports.ask_photos", [[ctx.button(ctx.t(label), PhotosDone())], _cancel_row(ctx)],
            have=n, max=_max_photos(ctx))


@report_form.asks("where")
async def ask_where(ctx: Context, d: ReportForm) -> None:
    rows = []
    if ctx.resident.estate_id:
        estate = await territory.estate(ctx.session, ctx.resident.estate_id)
        rows.append([ctx.button(ctx.t("reports.btn_at_home",
                                      estate=territory.localized(estate, ctx.lang)), AtHome())])
    rows.append(_cancel_row(ctx))
    can_share = ctx.capabilities is None or ctx.capabilities.location
    has_key = ctx.capabilities is None or ctx.capabilities.buttons  # a "share location" key
    key = ("reports.ask_where" if has_key else "reports.ask_where_attach") if can_share \
        else "reports.ask_where_typed"
    ctx.reply(ctx.t(key), rows,
              request_location=ctx.t("reports.share_location") if can_share else None)


# Every choice of the draft may be pressed at any of its steps (a resident scrolls back).
ANY = STEPS


# -- category ------------------------------------------------------------------------------

@report_form.takes_action(ChooseCategory, *ANY)
async def category_chosen(ctx: Context, d: ReportForm, press: ChooseCategory) -> Go:
    cats = ctx.services.catalog.categories
    if not 0 <= press.index < len(cats):
        ctx.say("common.button_invalid")
        return STAY
    d.cat, d.dup_checked = cats[press.index].key, False
    return await _missing(ctx, d)


@report_form.takes_media("category")
async def category_media(ctx: Context, d: ReportForm, kind: Kind) -> Go:
    if kind in (Kind.PHOTO, Kind.DOCUMENT):
        await _add_photo(ctx, d)
        return "category"
    if kind == Kind.LOCATION:
        if _location(ctx, d):
            return "category"
        return STAY
    ctx.say("reports.expect_category")
    return STAY


@report_form.takes("category")
async def category_typed(ctx: Context, d: ReportForm, text: str) -> Go:
    matches = await ctx.services.catalog.match_async(text)
    if not matches:
        ctx.say("reports.category_unknown", text=text[:40])
        return "category"
    best_key = matches[0][0]
    if _clear(matches):
        d.cat, d.dup_checked = best_key, False
        # Anything more than a bare category name is the description too (by what it says,
        # not its length: "路灯不亮" is four characters, "Street lighting" fifteen).
        if not ctx.services.catalog.names(text) and not d.desc and not d.voice:
            d.desc = text[: ctx.services.settings.reports.max_description]
        if d.desc or d.voice:
            # Otherwise the next question (the description) names the category itself.
            ctx.say("reports.category_set", category=filing.category_name(
                ctx.services, ctx.lang, best_key))
        return await _missing(ctx, d)
    cats = ctx.services.catalog.categories
    index = {c.key: i for i, c in enumerate(cats)}
    rows = [[ctx.button(filing.category_name(ctx.services, ctx.lang, key),
                        ChooseCategory(index[key]))] for key, _ in matches]
    rows.append(_cancel_row(ctx))
    ctx.say("reports.category_which", rows)
    return STAY


# -- description ---------------------------------------------------------------------------

@report_form.takes_media("describe")
async def description_media(ctx: Context, d: ReportForm, kind: Kind) -> Go:
    if kind == Kind.VOICE:
        try:
            path, seconds = await take_voice(ctx)
        except MediaRefused as no:
            ctx.say(f"reports.{no.key}", **no.values)
            return STAY
        d.voice, d.voice_s = path, seconds
        ctx.say("reports.voice_saved", seconds=seconds)
        return await _missing(ctx, d)
    if kind in (Kind.PHOTO, Kind.DOCUMENT):
        if await _add_photo(ctx, d):
            ctx.say("reports.still_need_description")
        return KEEP
    ctx.say("reports.expect_description")
    return STAY


@report_form.takes("describe")
async def description_given(ctx: Context, d: ReportForm, text: str) -> Go:
    limit = ctx.services.settings.reports.max_description
    if len(text) > limit:
        ctx.say("reports.description_too_long", limit=limit, length=len(text))
        return STAY
    d.desc = text
    return await _missing(ctx, d)


# -- photos --------------------------------------------------------------------------------

async def _add_photo(ctx: Context, d: ReportForm, *, asking_photos: bool = False) -> bool:
    if len(d.photos) >= _max_photos(ctx):
        ctx.say("reports.photos_full", max=_max_photos(ctx))
        return False
    try:
        path = await take_photo(ctx)
    except MediaRefused as no:
        ctx.say(f"reports.{no.key}", **no.values)
        return False
    d.photos = [*d.photos, path]
    more = asking_photos and len(d.photos) < _max_photos(ctx)
    ctx.say("reports.photo_saved", [[ctx.button(ctx.t("reports.btn_photos_done"), PhotosDone())]]
            if more else None, have=len(d.photos), max=_max_photos(ctx))
    return True


@report_form.takes_media("photos")
async def photo_given(ctx: Context, d: ReportForm, kind: Kind) -> Go:
    if kind in (Kind.PHOTO, Kind.DOCUMENT):
        if await _add_photo(ctx, d, asking_photos=True) and len(d.photos) >= _max_photos(ctx):
            d.photos_done = True
            return await _missing(ctx, d)
        return KEEP
    if kind == Kind.LOCATION:
        _location(ctx, d)
        return KEEP
    ctx.say("reports.expect_photo", [[ctx.button(ctx.t("reports.btn_photos_done"),
                                                PhotosDone())],
                                     _cancel_row(ctx)])
    return STAY


@report_form.takes("photos")
async def typed_at_photos(ctx: Context, d: ReportForm, text: str) -> Go:
    # Residents type on rather than press buttons: a "skip" or "done" moves on, and a
    # sentence is more of the description, not a mistake.
    text = text.strip()
    if ctx.typed("common.skip", "reports.btn_photos_done", "reports.btn_no_photos"):
        d.photos_done = True
        return await _missing(ctx, d)
    desc = f"{d.desc}\n{text}".strip()
    limit = ctx.services.settings.reports.max_description
    if len(desc) > limit:
        ctx.say("reports.description_too_long", limit=limit, length=len(desc))
        return STAY
    d.desc = desc
    ctx.say("reports.description_added", [[ctx.button(ctx.t(
        "reports.btn_photos_done" if d.photos else "reports.btn_no_photos"),
        PhotosDone())], _cancel_row(ctx)])
    return KEEP


@report_form.takes_action(PhotosDone, *ANY)
async def photos_done(ctx: Context, d: ReportForm, _: PhotosDone) -> Go:
    d.photos_done = True
    return await _missing(ctx, d)


# -- where ---------------------------------------------------------------------------------

def _location(ctx: Context, d: ReportForm) -> bool:
    place = ctx.services.geo.locate(ctx.inbound.latitude, ctx.inbound.longitude)
    if not place.inside:
        ctx.say("reports.outside")
        return False
    d.set_point(ctx.inbound.latitude, ctx.inbound.longitude, place.estate_id)
    ctx.say("reports.location_saved")
    return True


@report_form.takes_media("where")
async def where_media(ctx: Context, d: ReportForm, kind: Kind) -> Go:
    if kind == Kind.LOCATION:
        if _location(ctx, d):
            return await _missing(ctx, d)
        return STAY
    ctx.say("reports.expect_where")
    return STAY


@report_form.takes("where")
async def where_given(ctx: Context, d: ReportForm, text: str) -> Go:
    matches = ctx.services.geo.match_estate(text)
    if not matches:
        ctx.say("reports.address_unknown", text=text[:40])
        return STAY
    best_id, best = matches[0]
    if best >= 80 and (len(matches) == 1 or matches[1][1] < best - 10):
        building = await _building_in(ctx, best_id, text)
        return await _at_estate(ctx, d, best_id, building)
    rows = []
    for estate_id, _ in matches:
        estate = await territory.estate(ctx.session, estate_id)
        rows.append([ctx.button(territory.localized(estate, ctx.lang), ChooseEstate(estate_id))])
    rows.append(_cancel_row(ctx))
    ctx.say("reports.address_which", rows)
    return STAY


_BUILDING = re.compile(r"(?:building|bldg|block)\s*(\d{1,3})|(\d{1,3})\s*(?:号楼|栋|幢|号)",
                       re.IGNORECASE)


async def _building_in(ctx: Context, estate_id: int, text: str) -> int | None:
    """A building number typed with the estate ("中海名城3栋", "Victoria building 2")."""
    match = _BUILDING.search(text)
    if not match:
        return None
    found = await territory.building(ctx.session, estate_id, match.group(1) or match.group(2))
    return found.id if found else None


async def _at_estate(ctx: Context, d: ReportForm, estate_id: int,
                     building_id: int | None = None) -> Go:
    estate = await territory.estate(ctx.session, estate_id)
    if estate is None:
        ctx.say("common.button_invalid")
        return STAY
    # The estate's centre stands in for the point: close enough to spot the same problem.
    d.lat, d.lon, d.exact, d.estate = estate.latitude, estate.longitude, False, estate.id
    d.building, d.dup_checked = building_id, False
    place = territory.localized(estate, ctx.lang)
    if building_id:
        found = await territory.building_by_id(ctx.session, building_id)
        place += " " + ctx.t("reports.building", number=found.number)
    ctx.say("reports.place_set", place=place)
    return await _missing(ctx, d)


@report_form.takes_action(ChooseEstate, *ANY)
async def estate_chosen(ctx: Context, d: ReportForm, press: ChooseEstate) -> Go:
    return await _at_estate(ctx, d, press.estate_id)


@report_form.takes_action(AtHome, *ANY)
async def at_home(ctx: Context, d: ReportForm, _: AtHome) -> Go:
    if not ctx.resident.estate_id:
        ctx.say("reports.no_home")
        return STAY
    return await _at_estate(ctx, d, ctx.resident.estate_id, ctx.resident.building_id)


# -- same problem nearby? ------------------------------------------------------------------

@report_form.asks("nearby")
async def ask_nearby(ctx: Context, d: ReportForm) -> None:
    nearby = await _nearby(ctx, d)
    if not nearby:  # gone since the look that led here (fixed, closed)
        await show_summary(ctx, d)
        return
    lines = [ctx.t("reports.maybe_duplicate")]
    rows = []
    for report, metres in nearby:
        lines.append(ctx.t("reports.duplicate_line", ref=report.reference,
                           status=filing.status_label(ctx.services, ctx.lang, report),
                           metres=int(round(metres)),
                           text=(report.description or "")[:60]))
        rows.append([ctx.button(ctx.t("reports.btn_same", ref=report.reference),
                                SameAs(report.id))])
    rows.append([ctx.button(ctx.t("reports.btn_different"), NotTheSame())])
    rows.append(_cancel_row(ctx))
    ctx.reply("\n".join(lines), rows)


@report_form.takes_action(SameAs, *ANY)
async def follow_instead(ctx: Context, d: ReportForm, press: SameAs) -> Go:
    report = await rep.get(ctx.session, press.report_id)
    if report is None or report.status not in [s.value for s in rep.OPEN]:
        ctx.say("reports.duplicate_gone")
        return "confirm"
    if report.reporter_id == ctx.resident.id:
        ctx.finish()
        ctx.say("reports.already_yours", ref=report.reference)
        return STAY
    await rep.follow(ctx.session, report.id, ctx.resident.id)
    _keep_language(ctx)
    ctx.finish()
    ctx.say("reports.now_following", ref=report.reference,
            status=filing.status_label(ctx.services, ctx.lang, report))
    return STAY


@report_form.takes_action(NotTheSame, *ANY)
async def not_a_duplicate(ctx: Context, d: ReportForm, _: NotTheSame) -> Go:
    return "confirm"


@report_form.takes("nearby")
async def typed_at_nearby(ctx: Context, d: ReportForm, text: str) -> Go:
    ctx.refuse("reports.use_buttons")
    return STAY


# -- summary, corrections, filing ----------------------------------------------------------

@report_form.asks("confirm")
async def show_summary(ctx: Context, d: ReportForm) -> None:
    if d.estate:
        estate = await territory.estate(ctx.session, d.estate)
        place = territory.localized(estate, ctx.lang)
        if d.building:
            found = await territory.building_by_id(ctx.session, d.building)
            place += " " + ctx.t("reports.building", number=found.number)
    else:
        place = ctx.t("reports.place_point")
    if d.exact and d.lat is not None and d.lon is not None:
        place += f" ({d.lat:.5f}, {d.lon:.5f})"
    description = d.desc or ctx.t("reports.voice_note", seconds=d.voice_s or 0)
    ctx.say("reports.summary", [
        [ctx.button(ctx.t("reports.btn_file"), FileIt())],
        [ctx.button(ctx.t("reports.btn_change_category"), Correct("cat")),
         ctx.button(ctx.t("reports.btn_change_description"), Correct("desc"))],
        [ctx.button(ctx.t("reports.btn_change_photos"), Correct("photos")),
         ctx.button(ctx.t("reports.btn_change_place"), Correct("where"))],
        _cancel_row(ctx)],
        category=filing.category_name(ctx.services, ctx.lang, d.cat),
        description=description, photos=len(d.photos), place=place)


@report_form.takes("confirm")
async def confirm_input(ctx: Context, d: ReportForm, text: str) -> Go:
    ctx.refuse("reports.use_buttons")
    return STAY


@report_form.takes_action(Correct, *ANY)
async def correct(ctx: Context, d: ReportForm, press: Correct) -> Go:
    if press.part == "cat":
        d.cat = ""
    elif press.part == "desc":
        d.desc, d.voice, d.voice_s = "", None, None
    elif press.part == "photos":
        d.photos, d.photos_done = [], False
    else:
        d.lat = d.lon = None
        d.exact, d.estate, d.building = False, None, None
    d.dup_checked = False
    return await _missing(ctx, d)


@router.action(CancelDraft)
async def cancel(ctx: Context, _: CancelDraft) -> None:
    report_form.adopt(ctx)
    if report_form.draft(ctx) is None:
        ctx.say("common.nothing_to_cancel")
        return
    ctx.finish()
    ctx.say("reports.cancelled")


@report_form.takes_action(FileIt, *ANY)
async def file_it(ctx: Context, d: ReportForm, _: FileIt) -> Go:
    if not d.cat or not (d.desc or d.voice) or (d.lat is None and not d.estate):
        return await _missing(ctx, d)
    report = await filing.file_report(
        ctx.session, ctx.services, ctx.resident, category=d.cat, description=d.desc,
        latitude=d.lat, longitude=d.lon, exact_point=d.exact,
        estate_id=d.estate, building_id=d.building,
        photos=tuple(d.photos), voice=d.voice, voice_duration=d.voice_s)
    ctx.pushed = True
    _keep_language(ctx)
    ctx.finish()
    team = await territory.team(ctx.session, report.team_id)
    ctx.say("reports.filed", ref=report.reference,
            team=territory.localized(team, ctx.lang) if team else ctx.t("reports.no_team"),
            due=ctx.services.local_time(report.fix_due_at))
    return STAY


def _keep_language(ctx: Context) -> None:
    """Updates come later, by push: remember the language this person wrote to us in."""
    if ctx.resident.language is None:
        ctx.resident.language = ctx.lang


# -- my reports ----------------------------------------------------------------------------

@router.command("myreports", help_key="reports.help_myreports", order=11)
async def my_reports(ctx: Context) -> None:
    rows = await rep.of_resident(ctx.session, ctx.resident.id)
    if not rows:
        ctx.say("reports.mine_none")
        return
    lines = [ctx.t("reports.mine_title")]
    for report, own in rows:
        lines.append(ctx.t("reports.mine_line" if own else "reports.mine_line_followed",
                           ref=report.reference,
                           category=filing.category_name(ctx.services, ctx.lang, report.category),
                           status=filing.status_label(ctx.services, ctx.lang, report),
                           date=ctx.services.local_time(report.created_at)[:10]))
    ctx.reply("\n".join(lines))


# -- closing the loop ----------------------------------------------------------------------

@router.action(ConfirmFixed)
async def is_it_fixed(ctx: Context, press: ConfirmFixed) -> None:
    report = await rep.get(ctx.session, press.report_id)
    if report is None or report.reporter_id != ctx.resident.id:
        ctx.say("common.not_allowed")
        return
    if press.fixed:
        if not await rep.confirm_fixed(ctx.session, report.id, ctx.resident.id, ctx.now):
            ctx.say("reports.moved_on", ref=report.reference,
                    status=filing.status_label(ctx.services, ctx.lang, report))
            return
        ctx.say("reports.ask_rating", [[ctx.button(str(n), Rate(report.id, n))
                                        for n in range(1, 6)]], ref=report.reference)
        return
    if report.confirmed_at is not None:
        ctx.say("reports.already_confirmed", ref=report.reference)
        return
    left = await rep.transition(ctx.session, report.id, rep.Status.REOPENED,
                                actor_id=ctx.resident.id, now=ctx.now,
                                note=ctx.t("reports.reopen_note"))
    if left is None:
        report = await reread(ctx.session, report)
        ctx.say("reports.moved_on", ref=report.reference,
                status=filing.status_label(ctx.services, ctx.lang, report))
        return
    report = await reread(ctx.session, report)
    await filing.send_card_to_team(ctx.session, ctx.services, report, reason="reopened")
    await filing.notify_status(ctx.session, ctx.services, report, include_reporter=False)
    ctx.pushed = True
    ctx.say("reports.reopened", ref=report.reference)


@router.action(Rate)
async def rated(ctx: Context, press: Rate) -> None:
    report = await rep.get(ctx.session, press.report_id)
    stars = press.stars
    if report is None or report.reporter_id != ctx.resident.id:
        ctx.say("common.not_allowed")
        return
    if not await rep.rate(ctx.session, report.id, ctx.resident.id, stars, ctx.now):
        ctx.say("reports.already_rated")
        return
    ctx.say("reports.thanks_rating", stars=stars, ref=report.reference)
