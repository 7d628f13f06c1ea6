"""Roles in chat, for admins: /grant, /revoke, /roles, /audit."""

from __future__ import annotations

from bot.context import Context
from bot.router import Router
from services import role_rules
from storage import audit, roles_service

router = Router()


@router.command("grant", help_key="help.grant", roles=role_rules.MANAGERS, order=60)
async def grant(ctx: Context) -> None:
    await _change(ctx, grant=True)


@router.command("revoke", help_key="help.revoke", roles=role_rules.MANAGERS, order=61)
async def revoke(ctx: Context) -> None:
    await _change(ctx, grant=False)


async def _change(ctx: Context, *, grant: bool) -> None:
    parts = ctx.inbound.args.split()
    if len(parts) not in (2, 3):
        ctx.say("admin.usage")
        return
    who, kind, scope_code = parts[0], parts[1], parts[2] if len(parts) == 3 else None
    try:
        outcome = await roles_service.change_role(
            ctx.session, who, kind, scope_code, actor_id=ctx.resident.id, grant=grant,
            create_missing=False)
    except roles_service.RoleError as exc:
        ctx.say(f"admin.error_{exc.code}", value=exc.value)
        return
    ctx.say("admin.granted" if grant and outcome else "admin.revoked" if outcome
            else "admin.unchanged", who=who, kind=kind, scope=scope_code or "-")


@router.command("roles", help_key="help.roles", roles=role_rules.MANAGERS, order=62)
async def roles(ctx: Context) -> None:
    lines = [ctx.t("admin.roles_title")]
    for line in await roles_service.describe_roles(ctx.session):
        lines.append(line)
    ctx.reply("\n".join(lines))


@router.command("audit", help_key="help.audit", roles=role_rules.AUDITORS, order=63)
async def audit_log(ctx: Context) -> None:
    entries = await audit.recent(ctx.session, 20)
    lines = [ctx.t("admin.audit_title")]
    lines += [f"{ctx.services.local_time(e.at)} {_actor(ctx, e)} {e.action} {e.target or ''}"
              .rstrip() for e in entries]
    ctx.reply("\n".join(lines))



def _actor(ctx: Context, entry: audit.AuditEntry) -> str:
    """A person by number; otherwise who acted without one: the scheduler, the bot itself
    (a threshold reached), or the command line."""
    key = audit.system_actor_key(entry)
    return f"#{entry.actor_id}" if key is None else ctx.t(key)
