"""Notices on the dashboard: compose (category, an audience within the sender's scope, both
languages), preview with the reachable count, send now, and follow delivery live (htmx polls
the progress fragment until it is done). Through services.notice_compose, as the chat's
/notice; the notices-fanout job sends it, and the sender's chat gets the same progress message.

A notice the viewer may not manage (services.notice_compose.may_manage) is answered 404."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services import notice_audience as aud
from services import notice_compose as compose
from storage import notices
from storage.audience import Kind
from storage.notices import NoticeError
from storage.people import identities_of
from storage.subscriptions import CATEGORIES
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

LANGS = ("zh-Hans", "en")
# Buildings are chosen by typing their number in chat; the web form offers the other kinds.
WEB_KINDS = [k for k in Kind if k != Kind.BUILDING]


class NoticePages:
    def __init__(self, deps: DashboardDeps, renderer: Renderer) -> None:
        self.deps, self.renderer, self.services = deps, renderer, deps.services

    def routes(self, routes: web.RouteTableDef) -> None:
        routes.get(PREFIX + "/notices")(self.listing)
        routes.get(PREFIX + "/notices/new")(self.new)
        routes.post(PREFIX + "/notices/preview")(self.preview)
        routes.post(PREFIX + "/notices/send")(self.send)
        routes.get(PREFIX + "/notices/{id:\\d+}")(self.detail)
        routes.get(PREFIX + "/notices/{id:\\d+}/progress")(self.progress)

    async def _audiences(self, request: web.Request, who: Viewer) -> list[tuple[str, str]]:
        """(value, label) of every audience this person may choose: "kind:target"."""
        db = page(request).db
        found = []
        for kind in aud.allowed_kinds(who.scope):
            if kind not in WEB_KINDS:
                continue
            if kind in (Kind.SUBDISTRICT, Kind.VOLUNTEERS):
                found.append((f"{kind}:", await aud.describe(db, who.lang, self.services.texts,
                                                              kind, None)))
                continue
            for row in await aud.targets(db, self.services.geo, who.scope, kind):
                found.append((f"{kind}:{row.id}", await aud.describe(
                    db, who.lang, self.services.texts, kind, row.id)))
        return found

    async def listing(self, request: web.Request) -> web.Response:
        who = need(request, "notices")
        db = page(request).db
        rows = await notices.recent_by(db, None if who.scope.everything else who.resident.id,
                                       limit=30)
        items = []
        for notice in rows:
            if not compose.may_manage(who.scope, who.resident.id, notice):
                continue
            items.append({"notice": notice, "progress": await compose.progress(db, notice),
                          "audience": await self._describe(request, who, notice)})
        return self.renderer.html(request, "notices.html", items=items)

    async def _describe(self, request: web.Request, who: Viewer, notice) -> str:
        return await aud.describe(page(request).db, who.lang, self.services.texts,
                                  notice.audience_kind,
                                  notice.audience_ids[0] if notice.audience_ids else None)

    async def new(self, request: web.Request) -> web.Response:
        who = need(request, "notices")
        return await self._form(request, who, {}, None)

    async def _form(self, request: web.Request, who: Viewer, draft: dict[str, Any],
                    error: str | None, http_status: int = 200) -> web.Response:
        return self.renderer.html(
            request, "notice_new.html", http_status=http_status,
            audiences=await self._audiences(request, who), categories=CATEGORIES,
            draft=draft, error=error, langs=LANGS, max_text=compose.MAX_TEXT)

    async def _draft(self, request: web.Request) -> dict[str, Any]:
        form = await request.post()
        audience = str(form.get("audience", ""))
        kind, _, target = audience.partition(":")
        return {"category": str(form.get("category", "")), "audience": audience,
                "kind": kind, "target": int(target) if target.isdigit() else None,
                "texts": {lang: str(form.get(f"text_{lang}", ""))[:compose.MAX_TEXT + 1]
                          for lang in LANGS}}

    def _error(self, who: Viewer, exc: NoticeError) -> str:
        return self.services.texts.get(who.lang, f"notices.error_{exc.code}",
                                       limit=compose.MAX_TEXT)

    async def _checked(self, request: web.Request, who: Viewer,
                       draft: dict[str, Any]) -> tuple[dict[str, str], int]:
        if draft["category"] not in CATEGORIES:
            raise NoticeError("unknown_category")
        if draft["kind"] == Kind.BUILDING:
            raise NoticeError("unknown_audience")
        texts = compose.clean_texts(draft["texts"])
        count = await compose.reachable(page(request).db, self.services.geo, who.scope,
                                        draft["category"], draft["kind"], draft["target"])
        return texts, count

    async def preview(self, request: web.Request) -> web.Response:
        who = need(request, "notices")
        draft = await self._draft(request)
        try:
            texts, count = await self._checked(request, who, draft)
        except NoticeError as exc:
            return await self._form(request, who, draft, self._error(who, exc), 400)
        t = self.services.texts
        shown = [(lang, t.get(lang, "notices.push",
                              category=t.get(lang, f"notices.cat_{draft['category']}"),
                              text=text)) for lang, text in texts.items()]
        return self.renderer.html(
            request, "notice_preview.html", draft=draft, shown=shown, count=count,
            audience=await aud.describe(page(request).db, who.lang, t, draft["kind"],
                                        draft["target"]), langs=LANGS)

    async def send(self, request: web.Request) -> web.StreamResponse:
        who = need(request, "notices")
        draft = await self._draft(request)
        db = page(request).db
        try:
            texts, _ = await self._checked(request, who, draft)
            identities = await identities_of(db, who.resident.id)
            now = self.services.clock()
            notice = await compose.create(
                db, self.services.geo, who.scope, category=draft["category"],
                kind=draft["kind"], target=draft["target"], texts=texts, photo=None, at=now,
                now=now, created_by=who.resident.id,
                # The sender's chat gets the progress message, as when sent from chat.
                sender_identity_id=identities[0].id if identities else None)
        except NoticeError as exc:
            return await self._form(request, who, draft, self._error(who, exc), 400)
        page(request).pushed = True  # the fan-out job picks it up; wake delivery for it
        return see_other(f"{PREFIX}/notices/{notice.id}")

    async def _notice(self, request: web.Request, who: Viewer) -> notices.Notice:
        notice = await notices.get(page(request).db, int(request.match_info["id"]))
        if notice is None or not compose.may_manage(who.scope, who.resident.id, notice):
            raise Refused(404, "dashboard.notice_not_found")
        return notice

    async def detail(self, request: web.Request) -> web.Response:
        who = need(request, "notices")
        notice = await self._notice(request, who)
        return self.renderer.html(
            request, "notice.html", notice=notice,
            progress=await compose.progress(page(request).db, notice),
            audience=await self._describe(request, who, notice),
            text=notices.text_for(notice, who.lang))

    async def progress(self, request: web.Request) -> web.Response:
        """The progress fragment htmx swaps in every second, until it says done."""
        who = need(request, "notices")
        notice = await self._notice(request, who)
        return self.renderer.html(request, "notice_progress.html", notice=notice,
                                  progress=await compose.progress(page(request).db, notice))
