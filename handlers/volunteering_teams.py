"""Volunteer teams: /teams to join or leave, /newteam and /teamlead for staff, /teammsg for
leads (through the outbox)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.context import Context
from bot.messaging.model import Kind
from bot.payloads import Action
from bot.pushes import Recipient
from bot.router import Router
from storage import audit, roles_service, territory
from storage import volunteer_teams as vteams
from storage.people import RoleKind

router = Router()
MESSAGE = "vol.teammsg"
MAX_NAME, MAX_MESSAGE = 60, 1000
STAFF = (RoleKind.ADMIN, RoleKind.STAFF, RoleKind.COMMITTEE)


@dataclass(frozen=True)
class JoinTeam(Action, code="vtj"):
    team_id: int


@dataclass(frozen=True)
class LeaveTeam(Action, code="vtl"):
    team_id: int


@dataclass(frozen=True)
class MessageTeam(Action, code="vtm"):
    team_id: int  # one of the teams this person leads


@router.command("teams", help_key="volunteering.help_teams", order=33)
async def list_teams(ctx: Context) -> None:
    rows = await vteams.teams(ctx.session)
    if not rows:
        ctx.say("volunteering.no_teams")
        return
    mine = await vteams.memberships(ctx.session, ctx.resident.id)
    buttons = []
    for team, members in rows[:30]:
        if team.id in mine:
            buttons.append([ctx.button(ctx.t("volunteering.team_leave", name=team.name,
                                             members=members), LeaveTeam(team.id))])
        else:
            buttons.append([ctx.button(ctx.t("volunteering.team_join", name=team.name,
                                             members=members), JoinTeam(team.id))])
    ctx.say("volunteering.teams_title", buttons)


@router.action(JoinTeam)
async def join(ctx: Context, press: JoinTeam) -> None:
    team = await vteams.team(ctx.session, press.team_id)
    if team is None:
        ctx.say("common.button_invalid")
        return
    joined = await vteams.join_team(ctx.session, team.id, ctx.resident.id)
    ctx.say("volunteering.team_joined" if joined else "volunteering.team_already_member",
            name=team.name)


@router.action(LeaveTeam)
async def leave(ctx: Context, press: LeaveTeam) -> None:
    team = await vteams.team(ctx.session, press.team_id)
    if team is None:
        ctx.say("common.button_invalid")
        return
    left = await vteams.leave_team(ctx.session, team.id, ctx.resident.id)
    ctx.say("volunteering.team_left" if left else "volunteering.team_not_member",
            name=team.name)


@router.command("newteam", help_key="volunteering.help_newteam", roles=tuple(STAFF), order=42)
async def new_team(ctx: Context) -> None:
    name = ctx.inbound.args.strip()
    if not name or len(name) > MAX_NAME:
        ctx.say("volunteering.newteam_usage", limit=MAX_NAME)
        return
    scope = await ctx.scope()
    committee_id = min(scope.committee_ids) if scope.committee_ids and not scope.everything \
        else None
    team = await vteams.create_team(ctx.session, name, committee_id, ctx.resident.id)
    if team is None:
        ctx.say("volunteering.team_name_taken", name=name)
        return
    await audit.record(ctx.session, ctx.resident.id, "volunteering.team_create",
                       f"vteam:{team.id}", name=name)
    ctx.say("volunteering.team_created", name=name, id=team.id)


@router.command("teamlead", help_key="volunteering.help_teamlead", roles=tuple(STAFF),
                order=43)
async def team_lead(ctx: Context) -> None:
    parts = ctx.inbound.args.split()
    if len(parts) != 2 or not parts[0].isdigit():
        ctx.say("volunteering.teamlead_usage")
        return
    team = await vteams.team(ctx.session, int(parts[0]))
    scope = await ctx.scope()
    if team is None:
        ctx.say("volunteering.team_unknown", id=parts[0])
        return
    if not (scope.everything or team.committee_id is None
            or team.committee_id in scope.committee_ids):
        ctx.say("common.not_allowed")
        return
    try:
        resident = await roles_service.find_resident(ctx.session, parts[1], create=False)
    except roles_service.RoleError:
        ctx.say("volunteering.teamlead_unknown_user", who=parts[1])
        return
    if not await vteams.make_lead(ctx.session, team.id, resident.id):
        ctx.say("volunteering.teamlead_not_member", who=parts[1], name=team.name)
        return
    await audit.record(ctx.session, ctx.resident.id, "volunteering.team_lead",
                       f"resident:{resident.id}", team=team.id)
    ctx.say("volunteering.teamlead_done", who=parts[1], name=team.name)


async def leads_a_team(ctx: Context) -> bool:
    return await ctx.fact("leads_a_team",
                          lambda: vteams.leads_any(ctx.session, ctx.resident.id))


@router.command("teammsg", help_key="volunteering.help_teammsg", order=44, visible=leads_a_team)
async def team_message(ctx: Context) -> None:
    led = await vteams.led_teams(ctx.session, ctx.resident.id)
    if not led:
        ctx.say("volunteering.not_a_lead")
        return
    if len(led) == 1:
        _ask_message(ctx, led[0])
        return
    ctx.say("volunteering.teammsg_which", [[ctx.button(t.name, MessageTeam(t.id))] for t in led])


@router.action(MessageTeam)
async def team_chosen(ctx: Context, press: MessageTeam) -> None:
    team_id = press.team_id
    led = {t.id: t for t in await vteams.led_teams(ctx.session, ctx.resident.id)}
    if team_id not in led:
        ctx.say("common.not_allowed")
        return
    _ask_message(ctx, led[team_id])


def _ask_message(ctx: Context, team: vteams.VolunteerTeam) -> None:
    ctx.goto(MESSAGE, team_id=team.id)
    ctx.say("volunteering.teammsg_ask", name=team.name, limit=MAX_MESSAGE)


@router.state(MESSAGE)
async def message_typed(ctx: Context) -> None:
    text = ctx.inbound.text if ctx.inbound.kind == Kind.TEXT else ""
    if not text:
        ctx.say("volunteering.expect_text")
        return
    if len(text) > MAX_MESSAGE:
        ctx.say("volunteering.teammsg_too_long", limit=MAX_MESSAGE, length=len(text))
        return
    team_id = ctx.data.get("team_id")
    led = {t.id: t for t in await vteams.led_teams(ctx.session, ctx.resident.id)}
    if team_id not in led:
        ctx.finish()
        ctx.say("common.not_allowed")
        return
    team = led[team_id]
    home = await territory.estate(ctx.session, ctx.resident.estate_id)
    sender = ctx.resident.display_name or f"#{ctx.resident.id}"
    count = 0
    # One message per member, whatever the retries: the key carries the sender's update.
    stamp = ctx.inbound.update_id or ctx.now.isoformat()
    for member in await vteams.team_recipients(ctx.session, team.id):
        if member.resident_id == ctx.resident.id:
            continue
        await ctx.tell(Recipient(member.identity_id, member.language),
                       "volunteering.teammsg_delivered", group=f"vol-team:{team.id}",
                       dedupe_key=f"vol-tm:{stamp}:{member.resident_id}"[:120],
                       name=team.name, sender=sender, text=text,
                       estate=(lambda lang: territory.localized(home, lang)) if home else "-")
        count += 1
    await audit.record(ctx.session, ctx.resident.id, "volunteering.team_message",
                       f"vteam:{team.id}", recipients=count)
    ctx.finish()
    ctx.say("volunteering.teammsg_sent", name=team.name, count=count)
