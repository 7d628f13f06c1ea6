"""Becoming a verified resident: /join CODE, or asking staff; staff's /invite and /pending."""

from __future__ import annotations

from dataclasses import dataclass

from bot.context import Context
from bot.payloads import Action
from bot.router import Router
from services import verification as verifying
from storage import audit, territory
from storage import verification as ver

router = Router()
STAFF = verifying.VERIFIERS


@dataclass(frozen=True)
class RequestVerification(Action, code="verreq"):
    """Ask staff to verify me (offered once the home is saved, handlers/onboarding.py)."""


@dataclass(frozen=True)
class InviteFor(Action, code="inv"):
    estate_id: int


@dataclass(frozen=True)
class Decide(Action, code="vdec"):
    request_id: int
    approve: bool


@router.command("join", help_key="help.join", order=5)
async def join(ctx: Context) -> None:
    code = ctx.inbound.args.strip()
    if not code:
        ctx.say("verify.join_usage")
        return
    result = await ver.redeem_invite(ctx.session, ctx.resident, code)
    if isinstance(result, ver.InviteError):
        ctx.say(f"verify.invite_{result.value}")
        return
    estate = await territory.estate(ctx.session, result.estate_id)
    await audit.record(ctx.session, ctx.resident.id, "verify.invite", f"invite:{result.id}")
    ctx.say("verify.done", estate=territory.localized(estate, ctx.lang))


@router.action(RequestVerification)
async def request_pressed(ctx: Context, _: RequestVerification) -> None:
    await request(ctx)


@router.command("verify", help_key="help.verify", order=6)
async def request(ctx: Context) -> None:
    if ctx.resident.verified:
        ctx.say("verify.already")
        return
    if ctx.resident.estate_id is None:
        ctx.say("verify.need_home")
        return
    if await ver.request_verification(ctx.session, ctx.resident):
        ctx.say("verify.requested")
    else:
        ctx.say("verify.already_requested")


@router.command("invite", help_key="help.invite", roles=STAFF, order=50)
async def invite(ctx: Context) -> None:
    estates = await verifying.invite_estates(ctx.session, await ctx.scope())
    if not estates:
        ctx.say("common.not_allowed")
        return
    ctx.say("verify.invite_which", [
        [ctx.button(territory.localized(e, ctx.lang), InviteFor(e.id))] for e in estates])


@router.action(InviteFor)
async def invite_for(ctx: Context, press: InviteFor) -> None:
    code = await verifying.create_invite(ctx.session, await ctx.scope(), ctx.resident.id,
                                         press.estate_id)
    if code is None:
        ctx.say("common.not_allowed")
        return
    estate = await territory.estate(ctx.session, code.estate_id)
    ctx.say("verify.invite_created", code=code.code, estate=territory.localized(estate, ctx.lang),
            uses=code.max_uses, days=verifying.INVITE_DAYS)


@router.command("pending", help_key="help.pending", roles=STAFF, order=51)
async def pending(ctx: Context) -> None:
    rows = await verifying.pending(ctx.session, await ctx.scope())
    if not rows:
        ctx.say("verify.none_pending")
        return
    for req, resident in rows:
        estate = await territory.estate(ctx.session, req.estate_id)
        ctx.say("verify.pending_item", [[
            ctx.button(ctx.t("verify.approve"), Decide(req.id, True)),
            ctx.button(ctx.t("verify.reject"), Decide(req.id, False))]],
            name=resident.display_name or f"#{resident.id}", unit=resident.unit or "-",
            estate=territory.localized(estate, ctx.lang))


@router.action(Decide)
async def decide(ctx: Context, press: Decide) -> None:
    decided = await verifying.decide(ctx.session, ctx.services.texts, await ctx.scope(),
                                     ctx.resident.id, press.request_id, press.approve)
    if decided.pushed:
        ctx.pushed = True
    if decided.outcome == "not_allowed":
        ctx.say("common.not_allowed")
    elif decided.outcome == "withdrawn":
        ctx.say("verify.already_withdrawn")
    elif decided.outcome == "already_decided":
        ctx.say("verify.already_decided")
    else:
        ctx.say("verify.decided_approved" if press.approve else "verify.decided_rejected")
