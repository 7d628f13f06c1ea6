"""Polls on the dashboard: those the viewer runs (services.poll_rules.runs, the chat's rule),
with turnout; a poll's results as counts (never who voted: anonymous ballots are only counted,
named votes are not shown either), when the chat would show them (closed, or live results), as a
chart and CSV; closing early, as /polls' button does. A new poll: the form asks what /newpoll
asks, checked by the same rules (services.poll_drafts), previewed with who can vote, published
as in chat; the polls job then sends the invitations.

A poll the viewer does not run is answered 404, as one that does not exist."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from bot.pushes import Translator, translator
from services import poll_drafts as drafts
from services import poll_rules
from services.notice_time import spoken
from storage import polls, territory
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

OUTCOMES = ("done", "already_closed", "published")
FLAGS = ("multiple", "verified", "household", "anonymous", "live")


def lines(text: str) -> list[str]:
    """Options typed one per line (blank lines dropped)."""
    return [line.strip() for line in text.splitlines() if line.strip()]


async def area_choices(request: web.Request, who: Viewer) -> list[tuple[str, str]]:
    """(value, label) of each committee and estate the viewer may address: "kind:id", as the
    chat's area buttons."""
    db = page(request).db
    found = [(f"committee:{c.id}", territory.localized(c, who.lang))
             for c in await territory.committees(db)
             if who.scope.everything or c.id in who.scope.committee_ids]
    found += [(f"estate:{e.id}", territory.localized(e, who.lang))
              for e in await territory.estates(db) if who.scope.covers_estate(e.id)]
    return found


async def area_of(request: web.Request, who: Viewer, form: dict[str, str],
                  errors: dict[str, str], t: Any) -> tuple[str, int]:
    """The area chosen ("area" and, for an estate, an optional "building" number), checked
    against the viewer's scope (services.poll_drafts.may_address); problems go to `errors`."""
    db = page(request).db
    kind, _, raw = form.get("area", "").partition(":")
    area_id = int(raw) if raw.isdigit() else 0
    if kind not in ("committee", "estate") or not await drafts.area_exists(db, kind, area_id) \
            or not await drafts.may_address(who.scope, db, kind, area_id):
        errors["area"] = t("poll_desk.area_not_allowed")
        return kind, area_id
    number = form.get("building", "").strip()
    if not number:
        return kind, area_id
    if kind != "estate":
        errors["building"] = t("poll_desk.building_needs_estate")
        return kind, area_id
    for b in await territory.buildings_of(db, area_id):
        if b.number.casefold() == number.casefold():
            return "building", b.id
    errors["building"] = t("polls.building_unknown", number=number[:20])
    return kind, area_id


async def area_label(request: web.Request, who: Viewer, t: Any, audience: Audience) -> str:
    db = page(request).db
    assert audience.area_id is not None
    if audience.kind == "building":
        b = await territory.building_by_id(db, audience.area_id)
        assert b is not None
        estate = await territory.estate(db, b.estate_id)
        return t("polls.building_of", estate=territory.localized(estate, who.lang),
                 number=b.number)
    row = (await territory.committee(db, audience.area_id) if audience.kind == "committee"
           else await territory.estate(db, audience.area_id))
    return territory.localized(row, who.lang)


def closing_of(form: dict[str, str], now: datetime, tz: str) -> datetime | str:
    """The closing time: the one the preview settled ("closes_at", so "48h" does not move
    between preview and publish), else the typed one read as in chat."""
    settled = form.get("closes_at", "")
    if settled:
        try:
            at = datetime.fromisoformat(settled)
        except ValueError:
            at = None
        if at is not None and at.tzinfo is not None:
            if at > now + timedelta(days=drafts.MAX_DAYS):
                return "closes_too_far"
            return at if at > now else "closes_past"
    return drafts.parse_closing(form.get("closes", ""), now, tz)


@dataclass
class Checked:
    spec: drafts.PollSpec | None
    errors: dict[str, str]


class PollPages:
    def __init__(self, deps: DashboardDeps, renderer: Renderer) -> None:
        self.deps, self.renderer, self.services = deps, renderer, deps.services

    def routes(self, routes: web.RouteTableDef) -> None:
        routes.get(PREFIX + "/polls")(self.listing)
        routes.get(PREFIX + "/polls/new")(self.new)
        routes.post(PREFIX + "/polls/new")(self.edit)
        routes.post(PREFIX + "/polls/preview")(self.preview)
        routes.post(PREFIX + "/polls/publish")(self.publish)
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

    # -- a new poll (what /newpoll asks, on one form) -----------------------------------------
    def _t(self, who: Viewer) -> Translator:
        return translator(self.services.texts, who.lang)

    async def _form(self, request: web.Request, who: Viewer, draft: dict[str, str],
                    errors: dict[str, str], http_status: int = 200) -> web.Response:
        return self.renderer.html(
            request, "poll_new.html", http_status=http_status, draft=draft, errors=errors,
            areas=await area_choices(request, who), flags=FLAGS,
            max_question=drafts.MAX_QUESTION, max_option=drafts.MAX_OPTION,
            low=polls.MIN_OPTIONS, high=polls.MAX_OPTIONS, max_quorum=drafts.MAX_QUORUM,
            tz=self.services.settings.bot.timezone, min=drafts.MIN_MINUTES,
            days=drafts.MAX_DAYS)

    async def new(self, request: web.Request) -> web.Response:
        who = need(request, "polls")
        return await self._form(request, who, {}, {})

    async def edit(self, request: web.Request) -> web.Response:
        """Back from the preview to the form, as it was filled in."""
        who = need(request, "polls")
        draft = await self._posted(request)
        draft.pop("closes_at", None)
        return await self._form(request, who, draft, {})

    async def _posted(self, request: web.Request) -> dict[str, str]:
        form = await request.post()
        keep = ("question", "options", "area", "building", "closes", "closes_at", "quorum",
                *FLAGS)
        return {k: str(form.get(k, ""))[:4000] for k in keep if form.get(k) is not None}

    async def _check(self, request: web.Request, who: Viewer, draft: dict[str, str]) -> Checked:
        t = self._t(who)
        errors: dict[str, str] = {}
        question = draft.get("question", "").strip()
        options = lines(draft.get("options", ""))
        limits = {"limit": drafts.MAX_QUESTION, "low": polls.MIN_OPTIONS,
                  "high": polls.MAX_OPTIONS}
        if problem := drafts.question_problem(question):
            errors["question"] = t(f"polls.{problem}", **limits)
        if problem := drafts.options_problem(options):
            errors["options"] = t(f"polls.{problem}", low=polls.MIN_OPTIONS,
                                  high=polls.MAX_OPTIONS, limit=drafts.MAX_OPTION)
        kind, area_id = await area_of(request, who, draft, errors, t)
        now = self.services.clock()
        closes = closing_of(draft, now, self.services.settings.bot.timezone)
        if isinstance(closes, str):
            errors["closes"] = t(f"polls.{closes}", days=drafts.MAX_DAYS, min=drafts.MIN_MINUTES)
        quorum = drafts.quorum_of(draft.get("quorum", "").strip() or "0")
        if isinstance(quorum, str):
            errors["quorum"] = t(f"polls.{quorum}")
        if errors or isinstance(closes, str) or isinstance(quorum, str):
            return Checked(None, errors)
        flag = {f: draft.get(f) == "yes" for f in FLAGS}
        return Checked(drafts.PollSpec(
            question=question, options=options, multiple=flag["multiple"],
            audience=Audience(kind, area_id, flag["verified"]),
            per_household=flag["household"], anonymous=flag["anonymous"],
            live_results=flag["live"], closes_at=closes, quorum=quorum), errors)

    async def preview(self, request: web.Request) -> web.Response:
        who = need(request, "polls")
        draft = await self._posted(request)
        draft.pop("closes_at", None)  # the typed time is read now
        checked = await self._check(request, who, draft)
        if checked.spec is None:
            return await self._form(request, who, draft, checked.errors, 400)
        spec = checked.spec
        t = self._t(who)
        now = self.services.clock()
        tz = self.services.settings.bot.timezone
        return self.renderer.html(
            request, "poll_preview.html", draft=draft, spec=spec,
            closes_at=spec.closes_at.isoformat(),
            rules=drafts.rules(t, spec.multiple, spec.anonymous, spec.per_household,
                               spec.live_results).splitlines(),
            area=await area_label(request, who, t, spec.audience),
            closes=spoken(t, spec.closes_at, now, tz),
            eligible=await drafts.eligible(page(request).db, spec.audience, spec.per_household))

    async def publish(self, request: web.Request) -> web.StreamResponse:
        who = need(request, "polls")
        draft = await self._posted(request)
        checked = await self._check(request, who, draft)
        if checked.spec is None:
            draft.pop("closes_at", None)
            return await self._form(request, who, draft, checked.errors, 400)
        created = await drafts.publish_poll(page(request).db, who.scope, checked.spec,
                                            who.resident.id, self.services.clock())
        if isinstance(created, str):  # roles changed, or the time passed, since the check
            t = self._t(who)
            errors = ({"closes": t("polls.closes_past", min=drafts.MIN_MINUTES)}
                      if created == "closes_past" else {"area": t("poll_desk.area_not_allowed")})
            draft.pop("closes_at", None)
            return await self._form(request, who, draft, errors, 400)
        page(request).pushed = True  # the polls job sends the invitations; wake delivery
        return see_other(f"{PREFIX}/polls/{created.id}?done=published")
