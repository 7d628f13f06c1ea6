"""Volunteering on the dashboard: the activities the viewer may manage (services.volunteer_rosters,
the chat's /roster rule), each with its shifts (time, places, signed up, waitlist), a shift's
roster with names (as /roster shows them, to those who manage it), marking a volunteer present
(the roster's button in chat, audited the same), the roster's CSV (byte for byte the chat's)
and a CSV of volunteer hours for a period (the hours /myhours counts).

An activity, shift or sign-up the viewer may not manage is answered 404, as one that does not
exist."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from bot.pushes import Translator, translator
from services import volunteer_organising as organising
from services import volunteer_rosters as rosters
from storage import audit, territory
from storage import volunteering as vol
from web.dashboard.core import (
    PREFIX,
    DashboardDeps,
    Refused,
    Renderer,
    Viewer,
    need,
    page,
    see_other,
)

SECTION = "volunteering"
LISTED_DAYS = 30  # activities with a shift ending in the last 30 days, or to come
MAX_PERIOD_DAYS = 366
OUTCOMES = ("marked", "unchanged", "too_early")
PUBLISHED = ("published", "announcing")
SHIFT_ROWS = 5  # shift rows on the form (the chat takes up to organising.MAX_SHIFTS)


class VolunteeringPages:
    def __init__(self, deps: DashboardDeps, renderer: Renderer) -> None:
        self.deps, self.renderer, self.services = deps, renderer, deps.services

    def routes(self, routes: web.RouteTableDef) -> None:
        base = PREFIX + "/volunteering"
        routes.get(base)(self.listing)
        routes.get(base + "/hours.csv")(self.hours_csv)
        routes.get(base + "/new")(self.new)
        routes.post(base + "/new")(self.create)
        routes.get(base + "/{id:\\d+}")(self.activity)
        routes.get(base + "/shifts/{id:\\d+}")(self.shift)
        routes.get(base + "/shifts/{id:\\d+}.csv")(self.roster_csv)
        routes.post(base + "/signups/{id:\\d+}/attended")(self.attended)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.services.settings.bot.timezone)

    def _t(self, who: Viewer) -> Translator:
        return translator(self.services.texts, who.lang)

    def _when(self, shift: vol.Shift) -> str:
        start, end = shift.starts_at.astimezone(self.tz), shift.ends_at.astimezone(self.tz)
        return f"{start:%Y-%m-%d %H:%M}–{end:%H:%M}"

    # -- the activities ---------------------------------------------------------------------
    async def listing(self, request: web.Request) -> web.Response:
        who = need(request, SECTION)
        db = page(request).db
        now = self.services.clock()
        rows = await rosters.managed_shifts(db, who.scope, who.resident.id,
                                            now - timedelta(days=LISTED_DAYS))
        by_activity: dict[int, dict[str, Any]] = {}
        for shift, activity in rows:
            item = by_activity.setdefault(activity.id, {
                "activity": activity, "first": shift, "shifts": 0, "taken": 0, "capacity": 0,
                "category": self.services.texts.get(who.lang,
                                                    f"volunteering.cat_{activity.category}")})
            item["shifts"] += 1
            if shift.status == vol.ShiftStatus.OPEN.value:
                item["taken"] += shift.taken
                item["capacity"] += shift.capacity
        items = list(by_activity.values())
        for item in items:
            item["when"] = self._when(item["first"])
        today = now.astimezone(self.tz).date()
        return self.renderer.html(request, "volunteering.html", items=items,
                                  period_from=today.replace(day=1).isoformat(),
                                  period_to=today.isoformat())

    async def _activity(self, request: web.Request, who: Viewer) -> vol.Activity:
        db = page(request).db
        activity = await vol.get_activity(db, int(request.match_info["id"]))
        if activity is None or activity.status == vol.ActivityStatus.DRAFT.value or \
                not await rosters.may_manage(db, who.scope, who.resident.id, activity):
            raise Refused(404, "volunteer_desk.activity_not_found")
        return activity

    async def activity(self, request: web.Request) -> web.Response:
        who = need(request, SECTION)
        db = page(request).db
        activity = await self._activity(request, who)
        shifts = []
        for shift in await vol.shifts_of(db, activity.id):
            lines = await vol.roster(db, shift.id)
            shifts.append({
                "shift": shift, "when": self._when(shift),
                "waiting": sum(1 for x in lines
                               if x.signup.status == vol.SignupStatus.WAITLISTED.value),
                "attended": sum(1 for x in lines
                                if x.signup.status == vol.SignupStatus.ATTENDED.value)})
        estate = await territory.estate(db, activity.estate_id) if activity.estate_id else None
        outcome = request.query.get("done")
        return self.renderer.html(
            request, "volunteering_activity.html", activity=activity, shifts=shifts,
            outcome=outcome if outcome in PUBLISHED else None,
            category=self.services.texts.get(who.lang, f"volunteering.cat_{activity.category}"),
            place=territory.localized(estate, who.lang) if estate else "-")

    # -- a shift's roster -------------------------------------------------------------------
    async def _shift(self, request: web.Request, who: Viewer) -> rosters.ManagedShift:
        found = await rosters.managed_shift(page(request).db, who.scope, who.resident.id,
                                            int(request.match_info["id"]))
        if found is None:
            raise Refused(404, "volunteer_desk.shift_not_found")
        return found

    async def shift(self, request: web.Request) -> web.Response:
        who = need(request, SECTION)
        found = await self._shift(request, who)
        lines = await vol.roster(page(request).db, found.shift.id)

        def having(status: vol.SignupStatus) -> list[vol.RosterLine]:
            return [x for x in lines if x.signup.status == status.value]

        outcome = request.query.get("done")
        return self.renderer.html(
            request, "volunteering_shift.html", shift=found.shift, activity=found.activity,
            when=self._when(found.shift), confirmed=having(vol.SignupStatus.CONFIRMED),
            attended=having(vol.SignupStatus.ATTENDED),
            waiting=having(vol.SignupStatus.WAITLISTED),
            is_open=found.shift.status == vol.ShiftStatus.OPEN.value,
            outcome=outcome if outcome in OUTCOMES else None)

    async def roster_csv(self, request: web.Request) -> web.Response:
        """The roster as the chat's "Export CSV" writes it, byte for byte; audited as there."""
        who = need(request, SECTION)
        found = await self._shift(request, who)
        shift = found.shift
        async with self.deps.sessions() as writer, writer.begin():  # a GET reads only
            body = await rosters.export_roster(writer, self._t(who), self.tz, who.resident.id,
                                               shift.id)
        name = f"roster-{shift.id}-{shift.starts_at.astimezone(self.tz):%Y%m%d}.csv"
        return web.Response(body=body, content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})

    async def attended(self, request: web.Request) -> web.StreamResponse:
        who = need(request, SECTION)
        early = timedelta(minutes=self.services.settings.volunteering.checkin_early_minutes)
        marked = await rosters.mark_attended(page(request).db, who.scope, who.resident.id,
                                             int(request.match_info["id"]),
                                             self.services.clock(), early)
        if marked.found is None:
            raise Refused(404, "volunteer_desk.shift_not_found")
        return see_other(f"{PREFIX}/volunteering/shifts/{marked.found.shift.id}"
                         f"?done={marked.outcome}")

    # -- hours for a period -----------------------------------------------------------------
    def _period(self, request: web.Request) -> tuple[date, date]:
        try:
            first = date.fromisoformat(request.query.get("from", ""))
            last = date.fromisoformat(request.query.get("to", ""))
        except ValueError:
            raise Refused(400, "volunteer_desk.bad_period") from None
        if last < first or (last - first).days >= MAX_PERIOD_DAYS:
            raise Refused(400, "volunteer_desk.bad_period")
        return first, last

    async def hours_csv(self, request: web.Request) -> web.Response:
        who = need(request, SECTION)
        first, last = self._period(request)
        start = datetime.combine(first, time(), self.tz)
        end = datetime.combine(last + timedelta(days=1), time(), self.tz)
        lines = await rosters.hours_of(page(request).db, who.scope, who.resident.id, start,
                                       end, self.services.clock())
        async with self.deps.sessions() as writer, writer.begin():  # names leave: audited
            await audit.record(writer, who.resident.id, "volunteering.hours_export", None,
                               start=first.isoformat(), end=last.isoformat(),
                               rows=len(lines))
        name = f"volunteer-hours-{first:%Y%m%d}-{last:%Y%m%d}.csv"
        return web.Response(body=rosters.hours_csv(self._t(who), self.tz, lines),
                            content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})

    # -- a new activity (what the chat's /newactivity asks, on one form) ---------------------
    async def _choices(self, request: web.Request, who: Viewer) -> dict[str, Any]:
        estates = await organising.allowed_estates(page(request).db, who.scope,
                                                   who.resident.estate_id)
        return {"estates": [(e.id, territory.localized(e, who.lang)) for e in estates],
                "categories": vol.CATEGORIES,
                "audiences": organising.audiences(who.scope, estates[0].id if estates else None),
                "rows": range(SHIFT_ROWS), "max_title": organising.MAX_TITLE,
                "max_description": organising.MAX_DESCRIPTION,
                "max_skills": organising.MAX_SKILLS, "max_capacity": vol.MAX_CAPACITY}

    async def new(self, request: web.Request) -> web.Response:
        who = need(request, SECTION)
        return self.renderer.html(request, "volunteering_new.html", draft={}, errors=[],
                                  **await self._choices(request, who))

    def _shifts(self, form: Any, t: Any, errors: list[str]) -> list[vol.ShiftSpec]:
        specs = []
        now = self.services.clock()
        for i in range(SHIFT_ROWS):
            cells = [str(form.get(f"{k}_{i}", "")).strip()[:200]
                     for k in ("date", "start", "end", "places", "skills")]
            if not any(cells[:4]):
                continue
            day, start, end, places, skills = cells
            line = f"{day} {start}-{end} {places}".strip()
            try:
                starts = datetime.combine(date.fromisoformat(day), time.fromisoformat(start),
                                          self.tz)
                ends = datetime.combine(starts.date(), time.fromisoformat(end), self.tz)
            except ValueError:
                errors.append(t("volunteering.shift_bad_date", line=line))
                continue
            if not places.isdigit():
                errors.append(t("volunteering.shift_capacity", line=line,
                                max=vol.MAX_CAPACITY))
                continue
            checked = organising.check_shift(starts.astimezone(now.tzinfo),
                                             ends.astimezone(now.tzinfo), int(places), skills,
                                             now)
            if isinstance(checked, str):
                errors.append(t(f"volunteering.{checked}", line=line, max=vol.MAX_CAPACITY))
            else:
                specs.append(checked)
        if not specs and not errors:
            errors.append(t("volunteer_desk.no_shifts"))
        return specs

    async def create(self, request: web.Request) -> web.StreamResponse:
        who = need(request, SECTION)
        db = page(request).db
        form = await request.post()
        t = self._t(who)
        draft = {k: str(form.get(k, ""))[:organising.MAX_DESCRIPTION + 1]
                 for k in form if k != "csrf"}
        title = draft.get("title", "").strip()
        description = draft.get("description", "").strip()
        category = draft.get("category", "")
        estate_id = int(draft["estate"]) if draft.get("estate", "").isdigit() else None
        audience = draft.get("audience", "")
        errors: list[str] = []
        if not title:
            errors.append(t("volunteer_desk.title_missing"))
        elif len(title) > organising.MAX_TITLE:
            errors.append(t("volunteering.title_too_long", length=len(title),
                            limit=organising.MAX_TITLE))
        if len(description) > organising.MAX_DESCRIPTION:
            errors.append(t("volunteering.description_too_long", length=len(description),
                            limit=organising.MAX_DESCRIPTION))
        allowed = {e.id for e in await organising.allowed_estates(db, who.scope,
                                                                  who.resident.estate_id)}
        if category not in vol.CATEGORIES or estate_id not in allowed or \
                audience not in organising.audiences(who.scope, estate_id):
            errors.append(t("volunteer_desk.bad_choice"))
        shifts = self._shifts(form, t, errors)
        if errors:
            return self.renderer.html(request, "volunteering_new.html", http_status=400,
                                      draft=draft, errors=errors,
                                      **await self._choices(request, who))
        activity = await vol.create_activity(
            db, title=title, category=category, description=description, audience=audience,
            organiser_id=who.resident.id, estate_id=estate_id, shifts=shifts)
        published = await organising.publish(db, who.resident.id, activity,
                                             draft.get("announce") == "yes")
        return see_other(f"{PREFIX}/volunteering/{activity.id}?done={published}")
