"""Surveys on the dashboard: those the viewer runs (services.poll_rules.runs, the chat's rule),
with how many started and completed; a survey's results per question (counts and percents,
and the free-text answers, which in chat too only its committee reads), CSV, closing early
(services.survey_results, as the chat's button). Never who answered what.

A survey the viewer does not run is answered 404, as one that does not exist."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services import poll_rules
from services import survey_results as results
from storage import surveys
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


class SurveyPages:
    def __init__(self, deps: DashboardDeps, renderer: Renderer) -> None:
        self.deps, self.renderer, self.services = deps, renderer, deps.services

    def routes(self, routes: web.RouteTableDef) -> None:
        routes.get(PREFIX + "/surveys")(self.listing)
        routes.get(PREFIX + "/surveys/{id:\\d+}")(self.detail)
        routes.get(PREFIX + "/surveys/{id:\\d+}.csv")(self.csv)
        routes.post(PREFIX + "/surveys/{id:\\d+}/close")(self.close)

    async def listing(self, request: web.Request) -> web.Response:
        who = need(request, "polls")
        db = page(request).db
        scope = who.scope
        found = await surveys.listed(db, committee_ids=None if scope.everything
                                     else set(scope.committee_ids), limit=50)
        items = [{"survey": sv, "respondents": await surveys.respondents(db, sv.id)}
                 for sv in found if poll_rules.runs(scope, sv.committee_id)]
        return self.renderer.html(request, "surveys.html", items=items)

    async def _survey(self, request: web.Request, who: Viewer) -> surveys.Survey:
        survey = await surveys.get_survey(page(request).db, int(request.match_info["id"]))
        if survey is None or not poll_rules.runs(who.scope, survey.committee_id):
            raise Refused(404, "dashboard.survey_not_found")
        return survey

    async def detail(self, request: web.Request) -> web.Response:
        who = need(request, "polls")
        survey = await self._survey(request, who)
        db = page(request).db
        started, completed = await surveys.respondents(db, survey.id)
        found = await surveys.results(db, survey)
        questions: list[dict[str, Any]] = []
        for r in found:
            q = r.question
            rows = [] if q.kind == "text" else list(zip(q.choices(), r.counts, r.percents,
                                                        strict=True))
            questions.append({"result": r, "rows": rows,
                              "top": max(r.counts, default=0) or 1})
        outcome = request.query.get("done")
        return self.renderer.html(
            request, "survey.html", survey=survey, started=started, completed=completed,
            assisted=await surveys.assisted_count(db, survey.id), questions=questions,
            may_close=survey.status == "open",
            outcome=outcome if outcome in OUTCOMES else None)

    async def csv(self, request: web.Request) -> web.Response:
        who = need(request, "polls")
        survey = await self._survey(request, who)

        def t(key: str, **kw: Any) -> str:
            return self.services.texts.get(who.lang, key, **kw)

        body = results.csv_bytes(t, await surveys.results(page(request).db, survey))
        return web.Response(
            body=body, content_type="text/csv", charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="survey-{survey.id}.csv"'})

    async def close(self, request: web.Request) -> web.StreamResponse:
        who = need(request, "polls")
        survey = await self._survey(request, who)
        pg = page(request)
        outcome = await results.close_early(pg.db, self.services, who.scope, who.resident.id,
                                            survey.id, self.services.clock())
        if outcome == "not_allowed":
            raise Refused(404, "dashboard.survey_not_found")
        pg.pushed = pg.pushed or outcome == "done"  # the results go to those who answered
        return see_other(f"{PREFIX}/surveys/{survey.id}?done={outcome}")
