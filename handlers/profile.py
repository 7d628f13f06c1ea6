"""/profile: what the bot knows about you, and changing language or home."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.context import Context
from bot.payloads import Action
from bot.router import Router
from handlers.onboarding import ask_home, language_buttons
from storage import territory

router = Router()


@dataclass(frozen=True)
class Change(Action, code="prof"):
    what: Literal["lang", "home"]


@router.command("profile", help_key="help.profile", order=4)
async def profile(ctx: Context) -> None:
    r = ctx.resident
    estate = await territory.estate(ctx.session, r.estate_id)
    building = await territory.building_by_id(ctx.session, r.building_id)
    scope = await ctx.scope()
    ctx.say(
        "profile.summary",
        [[ctx.button(ctx.t("profile.change_language"), Change("lang")),
          ctx.button(ctx.t("profile.change_home"), Change("home"))]],
        language=ctx.t("profile.language_name"),
        estate=territory.localized(estate, ctx.lang) if estate else ctx.t("profile.unset"),
        building=building.number if building else "-",
        unit=r.unit or "-",
        verified=ctx.t("profile.verified") if r.verified else ctx.t("profile.unverified"),
        roles=", ".join(sorted(scope.kinds)) or "-",
    )


@router.action(Change)
async def change(ctx: Context, press: Change) -> None:
    if press.what == "home":
        await ask_home(ctx)
        return
    ctx.reply(ctx.t("start.choose_language"), [language_buttons(ctx)])
