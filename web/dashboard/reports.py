"""Reports on the dashboard: the queue (overdue first, filtered by zone, team, category and
status, with the territory's map), a report's page (photos, voice note, history) and the team
card's actions, through services.report_work as the chat's card does.

A report the viewer may not act on (services.report_cards.may_act, the chat's rule) is answered
404, as one that does not exist: an edited URL learns nothing about another scope."""

from __future__ import annotations

import asyncio
import mimetypes
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.pushes import translator
from services import report_cards as cards
from services import report_figures, report_media
from services import report_work as work
from storage import access, territory
from storage import reports as rep
from storage.people import resident_by_id
from web.dashboard import mapsvg
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

PAGE_SIZE = 50
STATUS_CHOICES = ("open", *[s.value for s in rep.Status], "all")
OUTCOMES = ("done", "moved_on", "invalid", "unknown", "not_yours", "closed", "dup_unknown",
            "dup_closed", "too_long", "photo_too_large", "photo_unsupported")


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


@dataclass
class Names:
    """The territory's names, read once per page (a queue of 50 rows asks no more)."""

    estates: dict[int, territory.Estate]
    zones: dict[int, territory.Zone]
    teams: dict[int, territory.Team]

    def place(self, report: rep.Report, lang: str) -> str:
        parts = []
        if report.estate_id in self.estates:
            parts.append(territory.localized(self.estates[report.estate_id], lang))
        if report.zone_id in self.zones:
            parts.append(territory.localized(self.zones[report.zone_id], lang))
        return " · ".join(parts) or "-"

    def team(self, team_id: int | None, lang: str) -> str:
        return territory.localized(self.teams[team_id], lang) if team_id in self.teams else "-"


async def names(db) -> Names:
    return Names({e.id: e for e in await territory.estates(db)},
                 {z.id: z for z in await territory.zones(db)},
                 {t.id: t for t in await territory.teams_other_than(db, None)})


class ReportPages:
    def __init__(self, deps: DashboardDeps, renderer: Renderer) -> None:
        self.deps, self.renderer, self.services = deps, renderer, deps.services

    def routes(self, routes: web.RouteTableDef) -> None:
        routes.get(PREFIX + "/reports")(self.queue)
        routes.get(PREFIX + "/figures")(self.figures)
        routes.get(PREFIX + "/figures.csv")(self.figures_csv)
        routes.get(PREFIX + "/reports/{ref}")(self.report)
        routes.post(PREFIX + "/reports/{ref}")(self.act)
        routes.get(PREFIX + "/media/{id:\\d+}")(self.media)
        routes.get(PREFIX + "/reports/{ref}/events/{event:\\d+}/photo")(self.event_photo)

    # -- the queue -------------------------------------------------------------------------
    def _filter(self, who: Viewer, query) -> tuple[rep.QueueFilter, dict[str, Any]]:
        scope = who.scope
        status = query.get("status", "open")
        if status not in STATUS_CHOICES:
            status = "open"
        statuses = (tuple(s.value for s in rep.OPEN) if status == "open" else
                    tuple(s.value for s in rep.Status) if status == "all" else (status,))
        category = query.get("category") or None
        if category is not None and self.services.catalog.get(category) is None:
            category = None
        picked = {"zone": _int(query.get("zone")), "team": _int(query.get("team")),
                  "category": category, "status": status}
        flt = rep.QueueFilter(
            team_ids=frozenset(scope.team_ids),
            estate_ids=frozenset(scope.estate_ids if "staff" in scope.kinds else ()),
            everything=scope.everything, zone_id=picked["zone"], team_id=picked["team"],
            category=category, statuses=statuses)
        return flt, picked

    async def queue(self, request: web.Request) -> web.Response:
        who = need(request, "reports")
        db = page(request).db
        flt, picked = self._filter(who, request.query)
        number = max(1, _int(request.query.get("page")) or 1)
        now = self.services.clock()
        rows, total = await rep.queue_page(db, now, flt, limit=PAGE_SIZE,
                                           offset=(number - 1) * PAGE_SIZE)
        known = await names(db)
        zone_ids, team_ids = await access.reach(db, who.scope, self.services.geo)
        zones = [z for z in known.zones.values() if zone_ids is None or z.id in zone_ids]
        teams = [t for t in known.teams.values() if team_ids is None or t.id in team_ids]
        lang = who.lang
        items = [{
            "report": r, "overdue": r.fix_due_at < now and work.is_open(r),
            "category": cards.category_name(self.services, lang, r.category),
            "status": cards.status_label(self.services, lang, r),
            "place": known.place(r, lang), "team": known.team(r.team_id, lang),
        } for r in rows]
        drawn = mapsvg.draw(list(known.zones.values()), list(known.estates.values()), rows, now,
                            lang)
        query = {k: v for k, v in (("zone", picked["zone"]), ("team", picked["team"]),
                                   ("category", picked["category"]),
                                   ("status", picked["status"])) if v}
        return self.renderer.html(
            request, "queue.html", items=items, total=total, number=number,
            pages=max(1, -(-total // PAGE_SIZE)), picked=picked, query=query,
            zones=zones, teams=teams, categories=self.services.catalog.categories,
            statuses=STATUS_CHOICES, map_svg=drawn, localized=territory.localized)

    # -- zone-vs-zone and team figures (the chat's /stats) --------------------------------
    def _days(self, request: web.Request) -> int:
        days = _int(request.query.get("days")) or self.services.settings.reports.stats_days
        return min(max(days, 1), report_figures.MAX_DAYS)

    async def figures(self, request: web.Request) -> web.Response:
        who = need(request, "figures")
        days = self._days(request)
        table = await report_figures.compute(page(request).db, self.services.geo, who.scope,
                                             days, self.services.clock())
        t = translator(self.services.texts, who.lang)
        rows = report_figures.rows(t, who.lang, table)
        top = max((fig.received for _, _, fig in rows), default=0)
        return self.renderer.html(
            request, "figures.html", days=days, table=table, top=top,
            zones=[(c, f) for k, c, f in rows if k == "zone"],
            teams=[(c, f) for k, c, f in rows if k == "team"],
            columns=report_figures.COLUMNS, choices=(7, 30, 90, 365))

    async def figures_csv(self, request: web.Request) -> web.Response:
        who = need(request, "figures")
        days = self._days(request)
        now = self.services.clock()
        table = await report_figures.compute(page(request).db, self.services.geo, who.scope,
                                             days, now)
        t = translator(self.services.texts, who.lang)
        name = f"report-stats-{self.services.local_time(now)[:10]}-{days}d.csv"
        return web.Response(body=report_figures.csv_bytes(t, who.lang, table),
                            content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})

    # -- one report ------------------------------------------------------------------------
    async def _report(self, request: web.Request, who: Viewer) -> rep.Report:
        db = page(request).db
        found = await rep.by_reference(db, request.match_info["ref"][:20])
        checked = await work.report_for(db, who.scope, found.id if found else None)
        if not checked.done or checked.report is None:
            raise Refused(404, "dashboard.report_not_found")  # another scope's: as if none
        return checked.report

    async def report(self, request: web.Request) -> web.Response:
        who = need(request, "reports")
        db = page(request).db
        report = await self._report(request, who)
        lang = who.lang
        known = await names(db)
        media = await rep.media_of(db, report.id)
        history = []
        for event in await rep.events_of(db, report.id):
            actor = await resident_by_id(db, event.actor_id)
            history.append({"event": event, "actor": (actor.display_name or f"#{actor.id}")
                            if actor else self.services.texts.get(lang, "dashboard.system"),
                            "to": self.services.texts.get(lang, f"reports.status_{event.to_status}")
                            if event.to_status else ""})
        reporter = await resident_by_id(db, report.reporter_id)
        description = (cards.reason_text(self.services, lang, report.reason) if report.reason
                       else report.description)
        choices = (await work.reassign_choices(db, self.services, who.scope, report)
                   if work.is_open(report) else [])
        outcome = request.query.get("done")
        return self.renderer.html(
            request, "report.html", report=report,
            category=cards.category_name(self.services, lang, report.category),
            status=cards.status_label(self.services, lang, report),
            place=await cards.place_text(db, self.services, report, lang),
            team=known.team(report.team_id, lang), description=description,
            reporter=reporter, photos=[m for m in media if m.kind == "photo"],
            voices=[m for m in media if m.kind == "voice"], history=history,
            is_open=work.is_open(report), steps=work.steps_for(report), teams=choices,
            localized=territory.localized,
            outcome=outcome if outcome in OUTCOMES else None, max_note=work.MAX_NOTE)

    async def act(self, request: web.Request) -> web.StreamResponse:
        """One of the card's actions; back to the report's page, saying how it went."""
        who = need(request, "reports")
        pg = page(request)
        db = pg.db
        report = await self._report(request, who)
        form = await request.post()
        step = str(form.get("step", ""))
        now = self.services.clock()
        scope, actor = who.scope, who.resident.id
        outcome: str
        if step in work.STEPS:
            worked = await work.set_status(db, self.services, scope, actor, report.id, step, now)
        elif step == "fix":
            note = str(form.get("note", "")).strip() or None
            if note is not None and len(note) > work.MAX_NOTE:
                return see_other(self._back(report, "too_long"))
            photo = None
            upload = form.get("photo")
            if isinstance(upload, web.FileField):
                data = await asyncio.to_thread(upload.file.read)
                if data:  # an empty file input sends an empty part
                    try:
                        photo = await report_media.store_photo(self.services, data)
                    except report_media.MediaRefused as no:
                        return see_other(self._back(report, no.key))
            worked = await work.mark_fixed(db, self.services, scope, actor, report.id, now,
                                           note=note, photo=photo)
        elif step == "reassign":
            worked = await work.reassign(db, self.services, scope, actor, report.id,
                                         _int(str(form.get("team", ""))), now)
        elif step == "close":
            reasons = {r.value: r for r in work.CLOSE_REASONS}
            reason = reasons.get(str(form.get("reason", "")))
            if reason is None:
                return see_other(self._back(report, "invalid"))
            worked = await work.close(db, self.services, scope, actor, report.id, reason, now)
        elif step == "duplicate":
            original = await work.find_original(db, self.services, scope, report.id,
                                                str(form.get("original", ""))[:30])
            if original.outcome != "found" or original.report is None:
                return see_other(self._back(report, "dup_" + original.outcome))
            worked = await work.mark_duplicate(
                db, self.services, scope, actor, report.id, original.report, now,
                note=self.services.texts.get(who.lang, "reports.duplicate_note",
                                             ref=original.report.reference))
        else:
            return see_other(self._back(report, "invalid"))
        pg.pushed = pg.pushed or worked.pushed
        outcome = worked.outcome
        if outcome == "not_yours":  # lost the right meanwhile (reassigned away): not found
            raise Refused(404, "dashboard.report_not_found")
        return see_other(self._back(report, outcome))

    @staticmethod
    def _back(report: rep.Report, outcome: str) -> str:
        return f"{PREFIX}/reports/{report.reference}?done={outcome}"

    # -- media -----------------------------------------------------------------------------
    async def media(self, request: web.Request) -> web.StreamResponse:
        """A report's photo or voice note, for a viewer who may act on the report."""
        who = need(request, "reports")
        db = page(request).db
        item = await rep.media_by_id(db, int(request.match_info["id"]))
        checked = await work.report_for(db, who.scope, item.report_id if item else None)
        if item is None or not checked.done:
            raise Refused(404, "dashboard.report_not_found")
        return await self._file(item.path)

    async def event_photo(self, request: web.Request) -> web.StreamResponse:
        """The photo a status change came with (a fix's), for a viewer who may act on it."""
        who = need(request, "reports")
        report = await self._report(request, who)
        wanted = int(request.match_info["event"])
        event = next((e for e in await rep.events_of(page(request).db, report.id)
                      if e.id == wanted and e.photo), None)
        if event is None or event.photo is None:
            raise Refused(404, "dashboard.report_not_found")
        return await self._file(event.photo)

    async def _file(self, relative: str) -> web.StreamResponse:
        path = self.services.media.path(relative)
        if not await asyncio.to_thread(path.is_file):
            raise Refused(404, "dashboard.report_not_found")
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if path.suffix == ".ogg":
            kind = "audio/ogg"
        body = await asyncio.to_thread(path.read_bytes)
        return web.Response(body=body, content_type=kind,
                            headers={"Cache-Control": "private, max-age=3600"})
