"""Surveys on the dashboard: those the viewer runs (services.poll_rules.runs, the chat's rule),
with how many started and completed; a survey's results per question (counts and percents,
and the free-text answers, which in chat too only its committee reads), CSV, closing early
(services.survey_results, as the chat's button). Never who answered what. A new survey: the
form asks what /newsurvey asks (several questions, the area, who may answer, the closing time),
checked by the same rules (services.poll_drafts), previewed, published as in chat; the surveys
job then sends the invitations.

A survey the viewer does not run is answered 404, as one that does not exist."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.pushes import Translator, translator
from services import poll_drafts as drafts
from services import poll_rules
from services import survey_results as results
from services.notice_time import spoken
from storage import surveys
from storage.audience import Audience
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
from web.dashboard.polls import area_choices, area_label, area_of, closing_of, lines

OUTCOMES = ("done", "already_closed", "published")
ROWS = 6  # question rows on the form (the chat's limit is surveys.MAX_QUESTIONS)


class SurveyPages:
    def __init__(self, deps: DashboardDeps, renderer: Renderer) -> None:
        self.deps, self.renderer, self.services = deps, renderer, deps.services

    def routes(self, routes: web.RouteTableDef) -> None:
        routes.get(PREFIX + "/surveys")(self.listing)
        routes.get(PREFIX + "/surveys/new")(self.new)
        routes.post(PREFIX + "/surveys/new")(self.edit)
        routes.post(PREFIX + "/surveys/preview")(self.preview)
        routes.post(PREFIX + "/surveys/publish")(self.publish)
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
        body = results.csv_bytes(self._t(who), await surveys.results(page(request).db, survey))
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

    # -- a new survey (what /newsurvey asks, on one form) -------------------------------------
    def _t(self, who: Viewer) -> Translator:
        return translator(self.services.texts, who.lang)

    async def _form(self, request: web.Request, who: Viewer, draft: dict[str, str],
                    errors: dict[str, str], http_status: int = 200) -> web.Response:
        return self.renderer.html(
            request, "survey_new.html", http_status=http_status, draft=draft, errors=errors,
            areas=await area_choices(request, who), kinds=surveys.KINDS, rows=range(ROWS),
            max_title=drafts.MAX_TITLE, max_question=drafts.MAX_QUESTION,
            tz=self.services.settings.bot.timezone, min=drafts.MIN_MINUTES,
            days=drafts.MAX_DAYS)

    async def new(self, request: web.Request) -> web.Response:
        who = need(request, "polls")
        return await self._form(request, who, {}, {})

    async def edit(self, request: web.Request) -> web.Response:
        who = need(request, "polls")
        draft = await self._posted(request)
        draft.pop("closes_at", None)
        return await self._form(request, who, draft, {})

    async def _posted(self, request: web.Request) -> dict[str, str]:
        form = await request.post()
        keep = ["title", "area", "building", "verified", "closes", "closes_at"]
        keep += [f"{part}_{i}" for i in range(ROWS) for part in ("kind", "text", "options")]
        return {k: str(form.get(k, ""))[:4000] for k in keep if form.get(k) is not None}

    def _questions(self, draft: dict[str, str]) -> tuple[list[surveys.QuestionDraft],
                                                         list[int]]:
        """The questions filled in (a row with no text and no choices is left out), and the
        row each came from."""
        found, rows = [], []
        for i in range(ROWS):
            text = draft.get(f"text_{i}", "").strip()
            options = lines(draft.get(f"options_{i}", ""))
            if not text and not options:
                continue
            kind = draft.get(f"kind_{i}", "")
            found.append(surveys.QuestionDraft(kind, text, options))
            rows.append(i)
        return found, rows

    async def _check(self, request: web.Request, who: Viewer, draft: dict[str, str]
                     ) -> tuple[dict[str, Any] | None, dict[str, str]]:
        t = self._t(who)
        title = draft.get("title", "").strip()
        questions, rows = self._questions(draft)
        errors: dict[str, str] = {}
        for key, problem in drafts.survey_problems(title, questions).items():
            n, _, part = key.partition(".")
            if part:  # "q{n}.text": beside that row's field
                row = rows[int(n[1:])]
                limit = drafts.MAX_QUESTION if part == "text" else drafts.MAX_OPTION
                errors[f"{part}_{row}"] = t(f"surveys.{problem}", limit=limit,
                                            high=drafts.MAX_OPTIONS)
            else:
                errors[key] = t(f"surveys.{problem}", limit=drafts.MAX_TITLE
                                if key == "title" else surveys.MAX_QUESTIONS)
        kind, area_id = await area_of(request, who, draft, errors, t)
        closes = closing_of(draft, self.services.clock(), self.services.settings.bot.timezone)
        if isinstance(closes, str):
            errors["closes"] = t(f"surveys.{closes}", days=drafts.MAX_DAYS,
                                 min=drafts.MIN_MINUTES)
        if errors or isinstance(closes, str):
            return None, errors
        return {"title": title, "questions": drafts.survey_questions_of(questions),
                "audience": Audience(kind, area_id, draft.get("verified") == "yes"),
                "closes_at": closes}, errors

    async def preview(self, request: web.Request) -> web.Response:
        who = need(request, "polls")
        draft = await self._posted(request)
        draft.pop("closes_at", None)
        spec, errors = await self._check(request, who, draft)
        if spec is None:
            return await self._form(request, who, draft, errors, 400)
        t = self._t(who)
        audience = spec["audience"]
        return self.renderer.html(
            request, "survey_preview.html", draft=draft, spec=spec,
            closes_at=spec["closes_at"].isoformat(),
            area=await area_label(request, who, t, audience),
            closes=spoken(t, spec["closes_at"], self.services.clock(),
                          self.services.settings.bot.timezone),
            eligible=await drafts.eligible(page(request).db, audience, False))

    async def publish(self, request: web.Request) -> web.StreamResponse:
        who = need(request, "polls")
        draft = await self._posted(request)
        spec, errors = await self._check(request, who, draft)
        if spec is None:
            draft.pop("closes_at", None)
            return await self._form(request, who, draft, errors, 400)
        made = await drafts.publish_survey(page(request).db, who.scope, author_id=who.resident.id,
                                           now=self.services.clock(), **spec)
        if isinstance(made, str):  # roles changed, or the time passed, since the check
            t = self._t(who)
            errors = ({"closes": t("surveys.closes_past", min=drafts.MIN_MINUTES)}
                      if made == "closes_past" else {"area": t("poll_desk.area_not_allowed")})
            draft.pop("closes_at", None)
            return await self._form(request, who, draft, errors, 400)
        page(request).pushed = True  # the surveys job sends the invitations; wake delivery
        return see_other(f"{PREFIX}/surveys/{made.id}?done=published")
