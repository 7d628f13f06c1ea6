"""Residents and roles on the dashboard: pending verifications in the viewer's scope with
approve and reject, invite codes (listed and made), roles (listed, granted, revoked) and the
audit log searched by person and action. Each rule is the chat's: services.verification for
/pending and /invite (admins, station staff and committee members, in their estates),
services.role_rules for /grant, /revoke, /roles and /audit (admins only), storage.roles_service
for what a grant or revoke does. The resident hears of a decision in chat, as when staff decide
there.

A request outside the viewer's estates is answered 404, as one that does not exist; a revoke
or grant by anyone but an admin is refused (403) like the chat's /revoke."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services import verification as verifying
from storage import audit, roles_service, territory
from storage import verification as ver
from storage.people import RoleKind
from web.dashboard.core import PREFIX, DashboardDeps, Refused, Renderer, need, page, see_other

PENDING_LIMIT = 100
INVITE_LIMIT = 50
AUDIT_PAGE = 50
DECISIONS = {"approve": True, "reject": False}
VERIFY_OUTCOMES = ("approved", "rejected", "already_decided", "withdrawn")
ROLE_OUTCOMES = ("granted", "revoked", "unchanged", "error_unknown_role", "error_unknown_scope",
                 "error_scope_needed", "error_unknown_user")


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _outcome(request: web.Request, allowed: tuple[str, ...]) -> str | None:
    done = request.query.get("done")
    return done if done in allowed else None


class PeoplePages:
    def __init__(self, deps: DashboardDeps, renderer: Renderer) -> None:
        self.deps, self.renderer, self.services = deps, renderer, deps.services

    def routes(self, routes: web.RouteTableDef) -> None:
        routes.get(PREFIX + "/verifications")(self.verifications)
        routes.post(PREFIX + "/verifications/{id:\\d+}")(self.decide)
        routes.get(PREFIX + "/invites")(self.invites)
        routes.post(PREFIX + "/invites")(self.create_invite)
        routes.get(PREFIX + "/roles")(self.roles)
        routes.post(PREFIX + "/roles")(self.grant)
        routes.post(PREFIX + "/roles/{id:\\d+}/revoke")(self.revoke)
        routes.get(PREFIX + "/audit")(self.audit_log)

    # -- verifications -------------------------------------------------------------------
    async def verifications(self, request: web.Request) -> web.Response:
        who = need(request, "people")
        db = page(request).db
        rows = await verifying.pending(db, who.scope, limit=PENDING_LIMIT)
        estates = {e.id: e for e in await territory.estates(db)}
        items = [{"request": req, "resident": resident,
                  "estate": territory.localized(estates[req.estate_id], who.lang)
                  if req.estate_id in estates else "-"} for req, resident in rows]
        return self.renderer.html(request, "verifications.html", items=items,
                                  outcome=_outcome(request, VERIFY_OUTCOMES),
                                  limit=PENDING_LIMIT)

    async def decide(self, request: web.Request) -> web.StreamResponse:
        who = need(request, "people")
        form = await request.post()
        decision = form.get("decision")
        if decision not in DECISIONS:
            raise Refused(400, "dashboard_people.bad_form")
        pg = page(request)
        approve = DECISIONS[str(decision)]
        decided = await verifying.decide(pg.db, self.services.texts, who.scope, who.resident.id,
                                         int(request.match_info["id"]), approve)
        if decided.outcome == "not_allowed":
            raise Refused(404, "dashboard_people.request_not_found")
        pg.pushed = pg.pushed or decided.pushed
        shown = ("approved" if approve else "rejected") if decided.outcome == "done" \
            else decided.outcome
        return see_other(f"{PREFIX}/verifications?done={shown}")

    # -- invite codes ----------------------------------------------------------------------
    async def invites(self, request: web.Request) -> web.Response:
        who = need(request, "people")
        db = page(request).db
        estates = await verifying.invite_estates(db, who.scope)
        names = {e.id: territory.localized(e, who.lang) for e in estates}
        now = self.services.clock()
        rows = await ver.invites(db, verifying.estate_ids(who.scope), limit=INVITE_LIMIT)
        items = [{"invite": i, "estate": names.get(i.estate_id, "-"),
                  "state": "expired" if i.expires_at < now else
                  "used_up" if i.uses >= i.max_uses else "valid"} for i in rows]
        return self.renderer.html(request, "invites.html", estates=estates, names=names,
                                  items=items, created=_int(request.query.get("created")),
                                  uses=verifying.INVITE_USES, days=verifying.INVITE_DAYS)

    async def create_invite(self, request: web.Request) -> web.StreamResponse:
        who = need(request, "people")
        form = await request.post()
        raw = form.get("estate")
        estate_id = _int(raw) if isinstance(raw, str) else None
        code = None
        if estate_id is not None:
            code = await verifying.create_invite(page(request).db, who.scope, who.resident.id,
                                                 estate_id)
        if code is None:
            raise Refused(404, "dashboard_people.estate_not_found")
        return see_other(f"{PREFIX}/invites?created={code.id}")

    # -- roles -------------------------------------------------------------------------------
    async def roles(self, request: web.Request) -> web.Response:
        need(request, "roles")
        db = page(request).db
        return self.renderer.html(
            request, "roles.html", rows=await roles_service.role_rows(db),
            kinds=[k.value for k in RoleKind], codes=await roles_service.scope_codes(db),
            outcome=_outcome(request, ROLE_OUTCOMES))

    async def grant(self, request: web.Request) -> web.StreamResponse:
        who = need(request, "roles")
        form = await request.post()
        fields = {k: str(form.get(k, "")).strip()[:100] for k in ("who", "kind", "scope")}
        try:
            changed = await roles_service.change_role(
                page(request).db, fields["who"], fields["kind"], fields["scope"] or None,
                actor_id=who.resident.id, grant=True, create_missing=False)
        except roles_service.RoleError as exc:
            return see_other(f"{PREFIX}/roles?done=error_{exc.code}")
        return see_other(f"{PREFIX}/roles?done={'granted' if changed else 'unchanged'}")

    async def revoke(self, request: web.Request) -> web.StreamResponse:
        who = need(request, "roles")
        row = await roles_service.revoke_by_id(page(request).db, int(request.match_info["id"]),
                                               actor_id=who.resident.id)
        if row is None:
            raise Refused(404, "dashboard_people.role_not_found")
        return see_other(f"{PREFIX}/roles?done=revoked")

    # -- the audit log ---------------------------------------------------------------------
    async def audit_log(self, request: web.Request) -> web.Response:
        who = need(request, "audit")
        db = page(request).db
        typed = request.query.get("person", "").strip()[:100]
        action = request.query.get("action", "").strip()[:60]
        number = max(1, _int(request.query.get("page")) or 1)
        person_id, unknown = None, False
        if typed:
            ref = f"#{typed}" if typed.isdigit() else typed
            try:
                person_id = (await roles_service.find_resident(db, ref, create=False)).id
            except roles_service.RoleError:
                unknown = True
        entries: list[audit.AuditEntry] = []
        total = 0
        if not unknown:
            entries, total = await audit.search(db, person_id=person_id, action=action or None,
                                                limit=AUDIT_PAGE,
                                                offset=(number - 1) * AUDIT_PAGE)
        query: dict[str, Any] = {k: v for k, v in (("person", typed), ("action", action)) if v}
        return self.renderer.html(
            request, "audit.html", entries=entries, total=total, typed=typed, action=action,
            actions=await audit.actions(db), unknown=unknown, number=number, query=query,
            pages=max(1, -(-total // AUDIT_PAGE)),
            actor=self._actor(who.lang, await audit.actor_names(db, entries)),
            detail=_detail)

    def _actor(self, lang: str, names: dict[int, str | None]):
        texts = self.services.texts

        def name(entry: audit.AuditEntry) -> str:
            """A person by name and number; otherwise who acted without one, as the chat's
            /audit names them."""
            key = audit.system_actor_key(entry)
            if key is not None:
                return texts.get(lang, key)
            shown = names.get(entry.actor_id) if entry.actor_id is not None else None
            return f"{shown} (#{entry.actor_id})" if shown else f"#{entry.actor_id}"

        return name


def _detail(entry: audit.AuditEntry) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted((entry.detail or {}).items())
                    if k != "by" and v is not None)
