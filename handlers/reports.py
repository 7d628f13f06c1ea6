"""Residents report a problem: /report (or a photo or a location sent out of the blue), then
category, description (text or voice), up to three photos and where; a look for the same problem
nearby; filing; /myreports; and closing the loop when the team says it is fixed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from bot.context import Context
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

CATEGORY, DESCRIBE, PHOTOS, WHERE, CONFIRM = (
    "report.category", "report.describe", "report.photos", "report.where", "report.confirm")
DRAFT_STATES = (CATEGORY, DESCRIBE, PHOTOS, WHERE, CONFIRM)


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


def _cancel_row(ctx: Context) -> list:
    return [ctx.button(ctx.t("reports.btn_cancel"), CancelDraft())]


# -- starting ------------------------------------------------------------------------------

@router.command("report", help_key="reports.help_report", order=10)
async def start(ctx: Context) -> None:
    ctx.goto(CATEGORY, photos=[])
    await advance(ctx)


@router.on(Kind.PHOTO)
async def photo_out_of_the_blue(ctx: Context) -> None:
    ctx.goto(CATEGORY, photos=[])
    ctx.say("reports.started_from_photo")
    await _add_photo(ctx)
    caption = (ctx.inbound.text or "").strip()
    if caption and len(caption) <= ctx.services.settings.reports.max_description:
        # A caption is the description, and may name the category too.
        ctx.remember(desc=caption)
        matches = await ctx.services.catalog.match_async(caption)
        if matches and _clear(matches):
            ctx.remember(cat=matches[0][0])
    await advance(ctx)


def _clear(matches: list[tuple[str, float]]) -> bool:
    best = matches[0][1]
    return best >= 90 and (len(matches) == 1 or matches[1][1] <= best - 5)


@router.on(Kind.LOCATION)
async def location_out_of_the_blue(ctx: Context) -> None:
    place = ctx.services.geo.locate(ctx.inbound.latitude, ctx.inbound.longitude)
    if not place.inside:
        ctx.say("reports.outside")
        return
    ctx.goto(CATEGORY, photos=[])
    ctx.say("reports.started_from_location")
    _set_point(ctx, ctx.inbound.latitude, ctx.inbound.longitude, place.estate_id)
    await advance(ctx)


# -- the next missing piece ----------------------------------------------------------------

async def advance(ctx: Context) -> None:
    """Ask for the first thing the draft still lacks; with nothing missing, the summary."""
    d = ctx.data
    if not d.get("cat"):
        await ask_category(ctx)
    elif not d.get("desc") and not d.get("voice"):
        ctx.state = DESCRIBE
        ctx.say("reports.ask_description", [
            [ctx.button(ctx.t("reports.btn_change_category"), Correct("cat"))], _cancel_row(ctx)],
            category=filing.category_name(ctx.services, ctx.lang, d["cat"]),
            limit=ctx.services.settings.reports.max_description)
    elif not d.get("photos_done") and len(d.get("photos", [])) < _max_photos(ctx):
        ctx.state = PHOTOS
        n = len(d.get("photos", []))
        label = "reports.btn_photos_done" if n else "reports.btn_no_photos"
        ctx.say("reports.ask_photos", [[ctx.button(ctx.t(label), PhotosDone())], _cancel_row(ctx)],
                have=n, max=_max_photos(ctx))
    elif d.get("lat") is None and not d.get("estate"):
        await ask_where(ctx)
    elif not d.get("dup_checked"):
        await check_duplicates(ctx)
    else:
        await show_summary(ctx)


def _max_photos(ctx: Context) -> int:
    return ctx.services.settings.reports.max_photos


async def ask_category(ctx: Context) -> None:
    ctx.state = CATEGORY
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


async def ask_where(ctx: Context) -> None:
    ctx.state = WHERE
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


def _set_point(ctx: Context, lat: float, lon: float, estate_id: int | None) -> None:
    ctx.remember(lat=lat, lon=lon, exact=True, estate=estate_id, dup_checked=False)


def _require_draft(ctx: Context) -> bool:
    if ctx.state in DRAFT_STATES:
        return True
    ctx.say("reports.no_draft")
    return False


# -- category ------------------------------------------------------------------------------

@router.action(ChooseCategory)
async def category_chosen(ctx: Context, press: ChooseCategory) -> None:
    if not _require_draft(ctx):
        return
    cats = ctx.services.catalog.categories
    i = press.index
    if not 0 <= i < len(cats):
        ctx.say("common.button_invalid")
        return
    ctx.remember(cat=cats[i].key, dup_checked=False)
    await advance(ctx)


@router.state(CATEGORY)
async def category_typed(ctx: Context) -> None:
    if ctx.inbound.kind in (Kind.PHOTO, Kind.DOCUMENT):
        await _add_photo(ctx)
        await ask_category(ctx)
        return
    if ctx.inbound.kind == Kind.LOCATION:
        await _location(ctx)
        if ctx.data.get("lat") is not None:
            await ask_category(ctx)
        return
    if ctx.inbound.kind != Kind.TEXT:
        ctx.say("reports.expect_category")
        return
    text = ctx.inbound.text
    matches = await ctx.services.catalog.match_async(text)
    if not matches:
        ctx.say("reports.category_unknown", text=text[:40])
        await ask_category(ctx)
        return
    best_key = matches[0][0]
    if _clear(matches):
        ctx.remember(cat=best_key, dup_checked=False)
        # A sentence rather than a bare category name is the description too.
        if len(text) > 6 and not ctx.data.get("desc") and not ctx.data.get("voice"):
            ctx.remember(desc=text[: ctx.services.settings.reports.max_description])
        if ctx.data.get("desc") or ctx.data.get("voice"):
            # Otherwise the next question (the description) names the category itself.
            ctx.say("reports.category_set", category=filing.category_name(
                ctx.services, ctx.lang, best_key))
        await advance(ctx)
        return
    cats = ctx.services.catalog.categories
    index = {c.key: i for i, c in enumerate(cats)}
    rows = [[ctx.button(filing.category_name(ctx.services, ctx.lang, key), ChooseCategory(index[key]))]
            for key, _ in matches]
    rows.append(_cancel_row(ctx))
    ctx.say("reports.category_which", rows)


# -- description ---------------------------------------------------------------------------

@router.state(DESCRIBE)
async def description_given(ctx: Context) -> None:
    kind = ctx.inbound.kind
    if kind == Kind.VOICE:
        try:
            path, seconds = await take_voice(ctx)
        except MediaRefused as no:
            ctx.say(f"reports.{no.key}", **no.values)
            return
        ctx.remember(voice=path, voice_s=seconds)
        ctx.say("reports.voice_saved", seconds=seconds)
        await advance(ctx)
        return
    if kind in (Kind.PHOTO, Kind.DOCUMENT):
        if await _add_photo(ctx):
            ctx.say("reports.still_need_description")
        return
    if kind != Kind.TEXT:
        ctx.say("reports.expect_description")
        return
    limit = ctx.services.settings.reports.max_description
    if len(ctx.inbound.text) > limit:
        ctx.say("reports.description_too_long", limit=limit, length=len(ctx.inbound.text))
        return
    ctx.remember(desc=ctx.inbound.text)
    await advance(ctx)


# -- photos --------------------------------------------------------------------------------

async def _add_photo(ctx: Context) -> bool:
    photos = list(ctx.data.get("photos", []))
    if len(photos) >= _max_photos(ctx):
        ctx.say("reports.photos_full", max=_max_photos(ctx))
        return False
    try:
        path = await take_photo(ctx)
    except MediaRefused as no:
        ctx.say(f"reports.{no.key}", **no.values)
        return False
    photos.append(path)
    ctx.remember(photos=photos)
    more = ctx.state == PHOTOS and len(photos) < _max_photos(ctx)
    ctx.say("reports.photo_saved", [[ctx.button(ctx.t("reports.btn_photos_done"), PhotosDone())]]
            if more else None, have=len(photos), max=_max_photos(ctx))
    return True


@router.state(PHOTOS)
async def photo_given(ctx: Context) -> None:
    kind = ctx.inbound.kind
    if kind in (Kind.PHOTO, Kind.DOCUMENT):
        if await _add_photo(ctx) and len(ctx.data["photos"]) >= _max_photos(ctx):
            ctx.remember(photos_done=True)
            await advance(ctx)
        return
    if kind == Kind.LOCATION:
        await _location(ctx)
        return
    if kind == Kind.TEXT:
        # Residents type on rather than press buttons: a "skip" or "done" moves on, and a
        # sentence is more of the description, not a mistake.
        text = ctx.inbound.text.strip()
        words = {w.lower() for key in ("common.skip", "reports.btn_photos_done",
                                       "reports.btn_no_photos")
                 for w in ctx.services.texts.all_languages(key)}
        if text.lower() in words:
            ctx.remember(photos_done=True)
            await advance(ctx)
            return
        desc = f"{ctx.data.get('desc') or ''}\n{text}".strip()
        limit = ctx.services.settings.reports.max_description
        if len(desc) > limit:
            ctx.say("reports.description_too_long", limit=limit, length=len(desc))
            return
        ctx.remember(desc=desc)
        ctx.say("reports.description_added", [[ctx.button(ctx.t(
            "reports.btn_photos_done" if ctx.data.get("photos") else "reports.btn_no_photos"),
            PhotosDone())], _cancel_row(ctx)])
        return
    ctx.say("reports.expect_photo", [[ctx.button(ctx.t("reports.btn_photos_done"),
                                                PhotosDone())],
                                     _cancel_row(ctx)])


@router.action(PhotosDone)
async def photos_done(ctx: Context, _: PhotosDone) -> None:
    if not _require_draft(ctx):
        return
    ctx.remember(photos_done=True)
    await advance(ctx)


# -- where ---------------------------------------------------------------------------------

async def _location(ctx: Context) -> None:
    place = ctx.services.geo.locate(ctx.inbound.latitude, ctx.inbound.longitude)
    if not place.inside:
        ctx.say("reports.outside")
        return
    _set_point(ctx, ctx.inbound.latitude, ctx.inbound.longitude, place.estate_id)
    ctx.say("reports.location_saved")


@router.state(WHERE)
async def where_given(ctx: Context) -> None:
    kind = ctx.inbound.kind
    if kind == Kind.LOCATION:
        await _location(ctx)
        if ctx.data.get("lat") is not None:
            await advance(ctx)
        return
    if kind != Kind.TEXT:
        ctx.say("reports.expect_where")
        return
    matches = ctx.services.geo.match_estate(ctx.inbound.text)
    if not matches:
        ctx.say("reports.address_unknown", text=ctx.inbound.text[:40])
        return
    best_id, best = matches[0]
    if best >= 80 and (len(matches) == 1 or matches[1][1] < best - 10):
        building = await _building_in(ctx, best_id, ctx.inbound.text)
        await _at_estate(ctx, best_id, building)
        return
    rows = []
    for estate_id, _ in matches:
        estate = await territory.estate(ctx.session, estate_id)
        rows.append([ctx.button(territory.localized(estate, ctx.lang), ChooseEstate(estate_id))])
    rows.append(_cancel_row(ctx))
    ctx.say("reports.address_which", rows)


_BUILDING = re.compile(r"(?:building|bldg|block)\s*(\d{1,3})|(\d{1,3})\s*(?:号楼|栋|幢|号)",
                       re.IGNORECASE)


async def _building_in(ctx: Context, estate_id: int, text: str) -> int | None:
    """A building number typed with the estate ("中海名城3栋", "Victoria building 2")."""
    match = _BUILDING.search(text)
    if not match:
        return None
    found = await territory.building(ctx.session, estate_id, match.group(1) or match.group(2))
    return found.id if found else None


async def _at_estate(ctx: Context, estate_id: int, building_id: int | None = None) -> None:
    estate = await territory.estate(ctx.session, estate_id)
    if estate is None:
        ctx.say("common.button_invalid")
        return
    # The estate's centre stands in for the point: close enough to spot the same problem.
    ctx.remember(lat=estate.latitude, lon=estate.longitude, exact=False, estate=estate.id,
                 building=building_id, dup_checked=False)
    place = territory.localized(estate, ctx.lang)
    if building_id:
        found = await territory.building_by_id(ctx.session, building_id)
        place += " " + ctx.t("reports.building", number=found.number)
    ctx.say("reports.place_set", place=place)
    await advance(ctx)


@router.action(ChooseEstate)
async def estate_chosen(ctx: Context, press: ChooseEstate) -> None:
    if _require_draft(ctx):
        await _at_estate(ctx, press.estate_id)


@router.action(AtHome)
async def at_home(ctx: Context, _: AtHome) -> None:
    if not _require_draft(ctx):
        return
    if not ctx.resident.estate_id:
        ctx.say("reports.no_home")
        return
    await _at_estate(ctx, ctx.resident.estate_id, ctx.resident.building_id)


# -- same problem nearby? ------------------------------------------------------------------

async def check_duplicates(ctx: Context) -> None:
    d = ctx.data
    nearby = await same_nearby(ctx.session, ctx.services, d["cat"], d["lat"], d["lon"])
    ctx.remember(dup_checked=True)
    if not nearby:
        await show_summary(ctx)
        return
    ctx.state = CONFIRM
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


@router.action(SameAs)
async def follow_instead(ctx: Context, press: SameAs) -> None:
    if not _require_draft(ctx):
        return
    report = await rep.get(ctx.session, press.report_id)
    if report is None or report.status not in [s.value for s in rep.OPEN]:
        ctx.say("reports.duplicate_gone")
        await show_summary(ctx)
        return
    if report.reporter_id == ctx.resident.id:
        ctx.finish()
        ctx.say("reports.already_yours", ref=report.reference)
        return
    await rep.follow(ctx.session, report.id, ctx.resident.id)
    _keep_language(ctx)
    ctx.finish()
    ctx.say("reports.now_following", ref=report.reference,
            status=filing.status_label(ctx.services, ctx.lang, report))


@router.action(NotTheSame)
async def not_a_duplicate(ctx: Context, _: NotTheSame) -> None:
    if _require_draft(ctx):
        await show_summary(ctx)


# -- summary, corrections, filing ----------------------------------------------------------

async def show_summary(ctx: Context) -> None:
    ctx.state = CONFIRM
    d = ctx.data
    if d.get("estate"):
        estate = await territory.estate(ctx.session, d["estate"])
        place = territory.localized(estate, ctx.lang)
        if d.get("building"):
            found = await territory.building_by_id(ctx.session, d["building"])
            place += " " + ctx.t("reports.building", number=found.number)
    else:
        place = ctx.t("reports.place_point")
    if d.get("exact"):
        place += f" ({d['lat']:.5f}, {d['lon']:.5f})"
    description = d.get("desc") or ctx.t("reports.voice_note", seconds=d.get("voice_s", 0))
    ctx.say("reports.summary", [
        [ctx.button(ctx.t("reports.btn_file"), FileIt())],
        [ctx.button(ctx.t("reports.btn_change_category"), Correct("cat")),
         ctx.button(ctx.t("reports.btn_change_description"), Correct("desc"))],
        [ctx.button(ctx.t("reports.btn_change_photos"), Correct("photos")),
         ctx.button(ctx.t("reports.btn_change_place"), Correct("where"))],
        _cancel_row(ctx)],
        category=filing.category_name(ctx.services, ctx.lang, d["cat"]),
        description=description, photos=len(d.get("photos", [])), place=place)


@router.state(CONFIRM)
async def confirm_input(ctx: Context) -> None:
    ctx.refuse("reports.use_buttons")


@router.action(Correct)
async def correct(ctx: Context, press: Correct) -> None:
    if not _require_draft(ctx):
        return
    clear = {"cat": ("cat",), "desc": ("desc", "voice", "voice_s"),
             "photos": ("photos", "photos_done"), "where": ("lat", "lon", "exact", "estate",
                                                           "building")}[press.part]
    for key in clear:
        ctx.data.pop(key, None)
    ctx.data.setdefault("photos", [])
    ctx.remember(dup_checked=False)
    await advance(ctx)


@router.action(CancelDraft)
async def cancel(ctx: Context, _: CancelDraft) -> None:
    if ctx.state not in DRAFT_STATES:
        ctx.say("common.nothing_to_cancel")
        return
    ctx.finish()
    ctx.say("reports.cancelled")


@router.action(FileIt)
async def file_it(ctx: Context, _: FileIt) -> None:
    if not _require_draft(ctx):
        return
    d = ctx.data
    if not d.get("cat") or not (d.get("desc") or d.get("voice")) or (
            d.get("lat") is None and not d.get("estate")):
        await advance(ctx)
        return
    report = await filing.file_report(
        ctx.session, ctx.services, ctx.resident, category=d["cat"], description=d.get("desc", ""),
        latitude=d.get("lat"), longitude=d.get("lon"), exact_point=bool(d.get("exact")),
        estate_id=d.get("estate"), building_id=d.get("building"),
        photos=tuple(d.get("photos", [])), voice=d.get("voice"), voice_duration=d.get("voice_s"))
    ctx.pushed = True
    _keep_language(ctx)
    ctx.finish()
    team = await territory.team(ctx.session, report.team_id)
    ctx.say("reports.filed", ref=report.reference,
            team=territory.localized(team, ctx.lang) if team else ctx.t("reports.no_team"),
            due=ctx.services.local_time(report.fix_due_at))


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
