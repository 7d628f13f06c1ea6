"""Becoming a verified resident: /join CODE, or asking staff; staff's /invite and /pending."""

from __future__ import annotations

from dataclasses import dataclass

from bot.context import Context
from bot.payloads import Action
from bot.pushes import Recipient
from bot.router import Router
from storage import audit, territory
from storage import verification as ver
from storage.people import identities_of, resident_by_id

router = Router()
STAFF = ("admin", "staff", "committee")


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
    scope = await ctx.scope()
    estates = [e for e in await territory.estates(ctx.session) if scope.covers_estate(e.id)]
    if not estates:
        ctx.say("common.not_allowed")
        return
    ctx.say("verify.invite_which", [
        [ctx.button(territory.localized(e, ctx.lang), InviteFor(e.id))] for e in estates])


@router.action(InviteFor)
async def invite_for(ctx: Context, press: InviteFor) -> None:
    scope = await ctx.scope()
    estate_id = press.estate_id
    if not scope.covers_estate(estate_id):
        ctx.say("common.not_allowed")
        return
    code = await ver.create_invite(ctx.session, estate_id, None, ctx.resident.id, max_uses=50)
    await audit.record(ctx.session, ctx.resident.id, "invite.create", f"estate:{estate_id}",
                       invite_id=code.id)
    estate = await territory.estate(ctx.session, estate_id)
    ctx.say("verify.invite_created", code=code.code, estate=territory.localized(estate, ctx.lang),
            uses=code.max_uses, days=14)


@router.command("pending", help_key="help.pending", roles=STAFF, order=51)
async def pending(ctx: Context) -> None:
    scope = await ctx.scope()
    rows = await ver.pending(ctx.session, None if scope.everything else scope.estate_ids)
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
    req_id, approve = press.request_id, press.approve
    req = await ver.get_request(ctx.session, req_id)
    if req is None or not (await ctx.scope()).covers_estate(req.estate_id):
        ctx.say("common.not_allowed")
        return
    done = await ver.decide(ctx.session, req_id, approve, ctx.resident.id)
    if done is None:
        ctx.say("verify.already_withdrawn" if req.status == ver.RequestStatus.WITHDRAWN
                else "verify.already_decided")
        return
    if done.status == ver.RequestStatus.WITHDRAWN:
        ctx.say("verify.already_withdrawn")
        return
    await audit.record(ctx.session, ctx.resident.id,
                       "verify.approve" if approve else "verify.reject",
                       f"resident:{req.resident_id}")
    ctx.say("verify.decided_approved" if approve else "verify.decided_rejected")
    resident = await resident_by_id(ctx.session, req.resident_id)
    for ident in await identities_of(ctx.session, resident.id):
        await ctx.tell(Recipient(ident.id, resident.language),
                       "verify.you_approved" if approve else "verify.you_rejected")
