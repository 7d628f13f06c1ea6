"""/start: language, then home (estate by name or location, building, unit); /help; /cancel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.context import Context
from bot.messaging.model import Kind
from bot.payloads import Action
from bot.router import Router
from handlers.verification import RequestVerification
from storage import people, territory, verification

router = Router()


@dataclass(frozen=True)
class ChooseLanguage(Action, code="lang"):
    lang: Literal["zh-Hans", "en"]


@dataclass(frozen=True)
class HomeAgain(Action, code="home"):
    what: str = "again"  # drawn by earlier versions; means nothing more


@dataclass(frozen=True)
class ChooseEstate(Action, code="estate"):
    estate_id: int


@dataclass(frozen=True)
class ChooseBuilding(Action, code="bldg"):
    building_id: int  # 0: skip the building (and the unit)


@dataclass(frozen=True)
class PickUnit(Action, code="unitp"):
    building_id: int
    index: int  # into the building's listed units


@dataclass(frozen=True)
class SkipUnit(Action, code="unit"):
    what: str = "skip"


def language_buttons(ctx: Context) -> list:
    return [ctx.button("中文", ChooseLanguage("zh-Hans")),
            ctx.button("English", ChooseLanguage("en"))]

ASK_HOME, ASK_BUILDING, ASK_UNIT = "home.estate", "home.building", "home.unit"
MAX_UNIT = 20
MAX_UNIT_BUTTONS = 48  # more units than this: typed, and checked against the list


async def first_contact(ctx: Context) -> None:
    await start(ctx)


@router.command("start", help_key="help.start", order=1)
async def start(ctx: Context) -> None:
    ctx.finish()
    ctx.reply(ctx.t("start.greeting"), [language_buttons(ctx)])


@router.action(ChooseLanguage)
async def choose_language(ctx: Context, press: ChooseLanguage) -> None:
    lang = press.lang
    ctx.resident.language = lang
    ctx.lang = lang
    ctx.say("start.language_set")
    if ctx.resident.estate_id is None or ctx.data.get("onboarding"):
        await ask_home(ctx)


async def ask_home(ctx: Context) -> None:
    ctx.goto(ASK_HOME)
    estates = await territory.estates(ctx.session)
    rows = [[ctx.button(territory.localized(e, ctx.lang), ChooseEstate(e.id))] for e in estates[:8]]
    key = "home.ask_estate" if ctx.capabilities and ctx.capabilities.location else \
        "home.ask_estate_typed"
    ctx.reply(ctx.t(key), rows, request_location=ctx.t("home.share_location"))


@router.state(ASK_HOME)
async def home_input(ctx: Context) -> None:
    inbound = ctx.inbound
    geo = ctx.services.geo
    if inbound.kind == Kind.LOCATION:
        place = geo.locate(inbound.latitude, inbound.longitude)
        if not place.inside:
            ctx.refuse("home.outside")
            return
        if place.estate_id is None:
            ctx.refuse("home.no_estate_here")
            return
        await _confirm_estate(ctx, place.estate_id)
        return
    if inbound.kind != Kind.TEXT:
        ctx.refuse("home.expect_name")
        return
    matches = geo.match_estate(inbound.text)
    if not matches:
        ctx.refuse("home.not_found", text=inbound.text[:40])
        return
    best_id, best = matches[0]
    clear = best >= 80 and (len(matches) == 1 or matches[1][1] < best - 10)
    if clear:
        await _confirm_estate(ctx, best_id)
        return
    rows = []
    for estate_id, _ in matches:
        estate = await territory.estate(ctx.session, estate_id)
        rows.append([ctx.button(territory.localized(estate, ctx.lang),
                                ChooseEstate(estate_id))])
    ctx.say("home.which", rows)


async def _confirm_estate(ctx: Context, estate_id: int) -> None:
    estate = await territory.estate(ctx.session, estate_id)
    ctx.say("home.confirm", [[ctx.button(ctx.t("common.yes"), ChooseEstate(estate_id)),
                              ctx.button(ctx.t("common.no"), HomeAgain())]],
            estate=territory.localized(estate, ctx.lang))


@router.action(HomeAgain)
async def home_again(ctx: Context, _: HomeAgain) -> None:
    await ask_home(ctx)


@router.action(ChooseEstate)
async def estate_chosen(ctx: Context, press: ChooseEstate) -> None:
    estate = await territory.estate(ctx.session, press.estate_id)
    if estate is None:
        ctx.say("common.button_invalid")
        return
    # Nothing is saved until the last step: a half-finished change leaves the home (and its
    # verification) as it was.
    ctx.goto(ASK_BUILDING, estate_id=estate.id)
    buildings = await territory.buildings_of(ctx.session, estate.id)
    rows, row = [], []
    for b in buildings:
        row.append(ctx.button(b.number, ChooseBuilding(b.id)))
        if len(row) == 6:
            rows.append(row)
            row = []
    if row:
        rows.append(row)
    rows.append([ctx.button(ctx.t("common.skip"), ChooseBuilding(0))])
    ctx.say("home.ask_building", rows, estate=territory.localized(estate, ctx.lang))


@router.state(ASK_BUILDING)
async def building_typed(ctx: Context) -> None:
    if ctx.typed("common.skip"):  # the button's label typed: as if pressed
        await building_chosen(ctx, ChooseBuilding(0))
        return
    number = (ctx.inbound.text or "").strip().rstrip("号栋幢楼").strip()
    found = await territory.building(ctx.session, ctx.data.get("estate_id"), number) \
        if number else None
    if found is None:
        ctx.say("home.building_unknown")
        return
    await _building(ctx, found)


@router.action(ChooseBuilding)
async def building_chosen(ctx: Context, press: ChooseBuilding) -> None:
    bid = press.building_id
    if bid == 0:
        if ctx.state == ASK_BUILDING and ctx.data.get("estate_id"):
            await _save(ctx, ctx.data["estate_id"], None, None)
        await _done(ctx)
        return
    found = await territory.building_by_id(ctx.session, bid)
    if found is None or ctx.state != ASK_BUILDING or found.estate_id != ctx.data.get("estate_id"):
        ctx.say("common.button_invalid")
        return
    await _building(ctx, found)


async def _building(ctx: Context, found: territory.Building) -> None:
    ctx.goto(ASK_UNIT, estate_id=found.estate_id, building_id=found.id)
    skip = [ctx.button(ctx.t("common.skip"), SkipUnit())]
    listed = await people.listed_units(ctx.session, found.id)
    if listed is None:
        ctx.say("home.ask_unit", [skip])
        return
    # The building's own units: pick one (or type it), so no one invents a household.
    rows = [[ctx.button(u, PickUnit(found.id, i)) for i, u in enumerate(listed)][j:j + 4]
            for j in range(0, min(len(listed), MAX_UNIT_BUTTONS), 4)]
    ctx.say("home.ask_unit_listed", rows + [skip])


@router.state(ASK_UNIT)
async def unit_typed(ctx: Context) -> None:
    if ctx.typed("common.skip"):  # the button's label typed, not a unit called "SKIP"
        await unit_skipped(ctx, SkipUnit())
        return
    typed = people.normalize_unit(ctx.inbound.text)
    if not typed or len(typed) > MAX_UNIT:
        ctx.say("home.unit_invalid", limit=MAX_UNIT)
        return
    unit = await people.unit_in(ctx.session, ctx.data["building_id"], typed)
    if unit is None:
        ctx.refuse("home.unit_not_listed", unit=typed)
        return
    await _save(ctx, ctx.data["estate_id"], ctx.data["building_id"], unit)
    await _done(ctx)


@router.action(PickUnit)
async def unit_picked(ctx: Context, press: PickUnit) -> None:
    listed = await people.listed_units(ctx.session, press.building_id)
    if (ctx.state != ASK_UNIT or listed is None or press.building_id != ctx.data.get("building_id")
            or not 0 <= press.index < len(listed)):
        ctx.say("common.button_invalid")
        return
    await _save(ctx, ctx.data["estate_id"], press.building_id, listed[press.index])
    await _done(ctx)


@router.action(SkipUnit)
async def unit_skipped(ctx: Context, _: SkipUnit) -> None:
    if ctx.state == ASK_UNIT:
        await _save(ctx, ctx.data["estate_id"], ctx.data["building_id"], None)
    await _done(ctx)


async def _save(ctx: Context, estate_id: int, building_id: int | None, unit: str | None) -> None:
    was_verified = ctx.resident.verified
    if await verification.set_home(ctx.session, ctx.resident, estate_id, building_id, unit) \
            and was_verified:
        ctx.say("home.verification_ended")


async def _done(ctx: Context) -> None:
    ctx.finish()
    estate = await territory.estate(ctx.session, ctx.resident.estate_id)
    ctx.say("home.saved", estate=territory.localized(estate, ctx.lang) if estate else "-")
    if not ctx.resident.verified:
        ctx.say("verify.how", [[ctx.button(ctx.t("verify.request_button"), RequestVerification())]])
    await show_help(ctx)


@router.command("help", help_key="help.help", order=2)
async def show_help(ctx: Context) -> None:
    scope = await ctx.scope()
    lines = [ctx.t("help.title")]
    if ctx.resident.estate_id is None:
        # Most commands need a home: say first how to give one, or, while it is being given,
        # that the question above is still open (not to start again).
        giving = ctx.state in (ASK_HOME, ASK_BUILDING, ASK_UNIT)
        lines[:0] = [ctx.t("help.home_in_progress" if giving else "help.no_home"), ""]
    for spec in ctx.services.commands:  # those with a help text, in /help's order
        if spec.roles and not scope.has(*spec.roles):
            continue
        if spec.visible is not None and not await spec.visible(ctx):
            continue
        lines.append(f"/{spec.name} — {ctx.t(spec.help_key)}")
    ctx.reply("\n".join(lines))


@router.command("cancel", help_key="help.cancel", order=3)
async def cancel(ctx: Context) -> None:
    if ctx.state is None:
        ctx.say("common.nothing_to_cancel")
        return
    ctx.finish()
    ctx.say("common.cancelled")


@router.command("back", help_key="help.back", order=4)
async def back(ctx: Context) -> None:
    """Reached outside a declared conversation (the dispatcher hands /back to the conversation
    the person is in, bot/conversation.py)."""
    ctx.say("common.nothing_to_go_back")
