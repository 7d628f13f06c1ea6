"""/subscribe: which kinds of notices a resident wants, quiet hours, language."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.context import Context
from bot.payloads import Action
from bot.router import Router
from storage import subscriptions as subs

router = Router()


@dataclass(frozen=True)
class Toggle(Action, code="sbt"):
    index: int  # into storage.subscriptions.CATEGORIES


@dataclass(frozen=True)
class AskQuiet(Action, code="sbq"):
    pass


@dataclass(frozen=True)
class Language(Action, code="sbl"):
    lang: Literal["zh-Hans", "en"]


@router.command("subscribe", help_key="subscribe.help", order=10)
async def subscribe(ctx: Context) -> None:
    await _menu(ctx)


async def _menu(ctx: Context, *, edit: bool = False) -> None:
    off = await subs.opted_out(ctx.session, ctx.resident.id)
    quiet = await subs.quiet_hours(ctx.session, ctx.resident.id)
    rows = []
    for i, category in enumerate(subs.CATEGORIES):
        name = ctx.t(f"notices.cat_{category}")
        if category in subs.ALWAYS_ON:
            label = ctx.t("subscribe.always_on", name=name)
        else:
            label = ctx.t("subscribe.on" if category not in off else "subscribe.off", name=name)
        rows.append([ctx.button(label, Toggle(i))])
    rows.append([ctx.button(ctx.t("subscribe.btn_quiet"), AskQuiet())])
    rows.append([ctx.button("中文", Language("zh-Hans")), ctx.button("English", Language("en"))])
    quiet_text = (ctx.t("subscribe.quiet_is", start=subs.format_minutes(quiet[0]),
                        end=subs.format_minutes(quiet[1])) if quiet
                  else ctx.t("subscribe.quiet_none"))
    text = ctx.t("subscribe.menu", quiet=quiet_text, language=ctx.t("subscribe.language_name"))
    # A button press redraws the menu in place rather than adding a message each time.
    edit_of = ctx.inbound.message_ref if edit and ctx.capabilities and \
        ctx.capabilities.edit else None
    ctx.reply(text, rows, edit_of=edit_of)


@router.action(Toggle)
async def toggle(ctx: Context, press: Toggle) -> None:
    index = press.index
    if not 0 <= index < len(subs.CATEGORIES):
        ctx.say("common.button_invalid")
        return
    category = subs.CATEGORIES[index]
    if category in subs.ALWAYS_ON:
        ctx.say("subscribe.cannot_turn_off", name=ctx.t(f"notices.cat_{category}"))
        return
    off = await subs.opted_out(ctx.session, ctx.resident.id)
    await subs.set_category(ctx.session, ctx.resident.id, category, category in off)
    await _menu(ctx, edit=True)


@router.action(AskQuiet)
async def ask_quiet(ctx: Context, _: AskQuiet) -> None:
    ctx.goto("subscribe.quiet")
    ctx.say("subscribe.ask_quiet", tz=ctx.services.settings.bot.timezone)


@router.state("subscribe.quiet")
async def quiet_typed(ctx: Context) -> None:
    text = (ctx.inbound.text or "").strip()
    if text.lower() in ("off", "none", "no", "关闭", "不要", "无"):
        await subs.set_quiet_hours(ctx.session, ctx.resident.id, None)
        ctx.finish()
        ctx.say("subscribe.quiet_cleared")
        return
    hours = subs.parse_quiet_hours(text)
    if hours is None:
        ctx.say("subscribe.quiet_bad")
        return
    await subs.set_quiet_hours(ctx.session, ctx.resident.id, hours)
    ctx.finish()
    ctx.say("subscribe.quiet_set", start=subs.format_minutes(hours[0]),
            end=subs.format_minutes(hours[1]))


@router.action(Language)
async def language(ctx: Context, press: Language) -> None:
    lang = press.lang
    ctx.resident.language = lang
    ctx.lang = lang
    await _menu(ctx, edit=True)
