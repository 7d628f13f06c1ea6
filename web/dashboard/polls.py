"""Polls on the dashboard: those the viewer runs (services.poll_rules.runs, the chat's rule),
with turnout; a poll's results as counts (never who voted: anonymous ballots are only counted,
named votes are not shown either), when the chat would show them (closed, or live results), as a
chart and CSV; closing early, as /polls' button does.

A poll the viewer does not run is answered 404, as one that does not exist."""

from __future__ import annotations

import csv
import io

from aiohttp import web

from services import poll_rules
from storage import polls
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

OUTCOMES = ("done", "already_closed")


class PollPages:
    def __init__(self, deps: DashboardDeps, renderer: Renderer) -> None:
        self.deps, self.renderer, self.services = deps, renderer, deps.services

    def routes(self, routes: web.RouteTableDef) -> None:
        routes.get(PREFIX + "/polls")(self.listing)
        routes.get(PREFIX + "/polls/{id:\\d+}")(self.detail)
        routes.get(PREFIX + "/polls/{id:\\d+}.csv")(self.csv)
        routes.post(PREFIX + "/polls/{id:\\d+}/close")(self.close)

    async def listing(self, request: web.Request) -> web.Response:
        who = need(request, "polls")
        db = page(request).db
        scope = who.scope
        found = await polls.of_committees(db, None if scope.everything
                                          else set(scope.committee_ids))
        items = [{"poll": p, "results": await polls.results(db, p)}
                 for p in found if poll_rules.runs(scope, p.committee_id)]
        return self.renderer.html(request, "polls.html", items=items)

    async def _poll(self, request: web.Request, who: Viewer) -> polls.Poll:
        poll = await polls.get_poll(page(request).db, int(request.match_info["id"]))
        if poll is None or not poll_rules.runs(who.scope, poll.committee_id):
            raise Refused(404, "dashboard.poll_not_found")
        return poll

    async def detail(self, request: web.Request) -> web.Response:
        who = need(request, "polls")
        poll = await self._poll(request, who)
        results = await polls.results(page(request).db, poll)
        outcome = request.query.get("done")
        now = self.services.clock()
        return self.renderer.html(
            request, "poll.html", poll=poll, results=results,
            visible=poll_rules.results_visible(poll),
            may_close=poll.status == "open" and poll.closes_at > now,
            top=max((o.votes for o in results.options), default=0),
            outcome=outcome if outcome in OUTCOMES else None)

    async def csv(self, request: web.Request) -> web.Response:
        who = need(request, "polls")
        poll = await self._poll(request, who)
        if not poll_rules.results_visible(poll):
            raise Refused(403, "dashboard.poll_results_hidden")
        results = await polls.results(page(request).db, poll)
        t = self.services.texts
        buf = io.StringIO()
        out = csv.writer(buf)
        out.writerow([t.get(who.lang, f"dashboard.poll_col_{c}")
                      for c in ("option", "votes", "percent")])
        for o in results.options:
            out.writerow([o.label, o.votes, o.percent])
        out.writerow([t.get(who.lang, "dashboard.poll_voters"), results.voters, ""])
        out.writerow([t.get(who.lang, "dashboard.poll_eligible"), results.eligible,
                      results.turnout])
        return web.Response(
            body=("\ufeff" + buf.getvalue()).encode("utf-8"), content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="poll-{poll.id}.csv"'})

    async def close(self, request: web.Request) -> web.StreamResponse:
        who = need(request, "polls")
        poll = await self._poll(request, who)
        outcome = await poll_rules.close_early(page(request).db, who.scope, who.resident.id,
                                               poll.id, self.services.clock())
        if outcome == "not_allowed":
            raise Refused(404, "dashboard.poll_not_found")
        return see_other(f"{PREFIX}/polls/{poll.id}?done={outcome}")
