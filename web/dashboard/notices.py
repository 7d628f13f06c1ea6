"""Notices on the dashboard: compose (category, an audience within the sender's scope, a
single building chosen by estate then its number, both languages, a photo, a time typed in the
bot's timezone), preview with the reachable count, send now or schedule, cancel until it has
gone, and follow delivery live (htmx polls the progress fragment until it is done); an
emergency's answers building by building. Through services.notice_compose, as the chat's
/notice and /notices; the notices-fanout job sends it, and the sender's chat gets the same
progress message.

The photo is cleaned and stored at the preview (services.report_media, as the chat's photo
step); the send form carries its media path signed with the session's CSRF key, so a form
cannot name any other file.

A notice the viewer may not manage (services.notice_compose.may_manage) is answered 404."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from datetime import datetime
from typing import Any

from aiohttp import web

from services import notice_audience as aud
from services import notice_compose as compose
from services import report_media
from services.notice_time import MAX_DAYS_AHEAD, BadTime, parse_when, spoken
from storage import notices, outbox, territory
from storage.audience import Kind
from storage.notices import NoticeError, NoticeStatus
from storage.people import Resident, identities_of
from storage.subscriptions import CATEGORIES
from storage.territory import localized
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
MEDIA_PATH = re.compile(r"[0-9a-f]{2}/[0-9a-f]{64}\.jpg")  # what the media store names a photo
MAX_WHEN = 40
MAX_BUILDING = 20
SILENT_LIMIT = 20


class DraftRefused(Exception):
    """A draft the form must show again, with this text."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def photo_tag(csrf: str, rel: str) -> str:
    """The signature the send form carries with the preview's stored photo."""
    return hmac.new(csrf.encode(), b"notice-photo:" + rel.encode(), hashlib.sha256).hexdigest()


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
        routes.get(PREFIX + "/notices/{id:\\d+}/photo")(self.photo)
        routes.get(PREFIX + "/notices/{id:\\d+}/answers")(self.answers)
        routes.post(PREFIX + "/notices/{id:\\d+}/cancel")(self.cancel)

    async def _audiences(self, request: web.Request, who: Viewer) -> list[tuple[str, str]]:
        """(value, label) of every audience this person may choose: "kind:target"."""
        db = page(request).db
        found = []
        for kind in aud.allowed_kinds(who.scope):
            if kind == Kind.BUILDING:  # an estate here, its building's number typed beside
                for row in await aud.targets(db, self.services.geo, who.scope, kind):
                    found.append((f"{kind}:{row.id}", self.services.texts.get(
                        who.lang, "dashboard.notice_aud_building",
                        estate=localized(row, who.lang))))
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
            figures = await outbox.figures(db, notice.group)
            items.append({"notice": notice, "progress": await compose.progress(db, notice),
                          "audience": await self._describe(request, who, notice),
                          "cancellable": compose.may_cancel(notice, figures)})
        done = request.query.get("done", "")
        outcome = done if done in ("cancelled", "already_cancelled", "cannot_cancel") else None
        return self.renderer.html(request, "notices.html", items=items, outcome=outcome,
                                  outcome_id=request.query.get("id", "")[:12])

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
            draft=draft, error=error, langs=LANGS, max_text=compose.MAX_TEXT,
            tz=self.services.settings.bot.timezone, max_when=MAX_WHEN,
            max_building=MAX_BUILDING)

    async def _draft(self, request: web.Request) -> dict[str, Any]:
        form = await request.post()
        audience = str(form.get("audience", ""))
        kind, _, target = audience.partition(":")
        upload = form.get("photo")
        return {"category": str(form.get("category", "")), "audience": audience,
                "kind": kind, "target": int(target) if target.isdigit() else None,
                "building": str(form.get("building", "")).strip()[:MAX_BUILDING],
                "when": str(form.get("when", "")).strip()[:MAX_WHEN],
                "photo": str(form.get("photo_path", "")),
                "photo_tag": str(form.get("photo_tag", "")),
                "upload": upload if isinstance(upload, web.FileField) else None,
                "texts": {lang: str(form.get(f"text_{lang}", ""))[:compose.MAX_TEXT + 1]
                          for lang in LANGS}}

    def _error(self, who: Viewer, exc: NoticeError) -> str:
        return self.services.texts.get(who.lang, f"notices.error_{exc.code}",
                                       limit=compose.MAX_TEXT)

    async def _target(self, request: web.Request, who: Viewer, draft: dict[str, Any]
                      ) -> int | None:
        """The audience's target id: for a building, the estate chosen and the number typed,
        as the chat's building step reads it ("3", "3号楼", "3栋")."""
        if draft["kind"] != Kind.BUILDING:
            return draft["target"]
        db = page(request).db
        estate = await territory.estate(db, draft["target"])
        if estate is None:
            raise NoticeError("unknown_audience")
        if not who.scope.covers_estate(estate.id):
            raise NoticeError("out_of_scope")
        number = draft["building"].removesuffix("号楼").removesuffix("栋")
        row = await territory.building(db, estate.id, number) if number else None
        if row is None:
            raise DraftRefused(self.services.texts.get(
                who.lang, "notices.unknown_building", estate=localized(estate, who.lang),
                value=draft["building"]))
        return row.id

    def _when(self, who: Viewer, draft: dict[str, Any], now: datetime) -> datetime | None:
        """The typed time (None: now), read as the chat's schedule step reads it."""
        if not draft["when"]:
            return None
        try:
            return parse_when(draft["when"], now, self.services.settings.bot.timezone)
        except BadTime as exc:
            raise DraftRefused(self.services.texts.get(
                who.lang, f"notices.time_{exc.code}", days=MAX_DAYS_AHEAD)) from None

    async def _photo(self, who: Viewer, draft: dict[str, Any]) -> str | None:
        """The media path of the draft's photo: a new upload cleaned and stored now, or the
        one the preview stored (its signature checked)."""
        upload = draft["upload"]
        if upload is not None:
            data = await asyncio.to_thread(upload.file.read)
            if data:  # an empty file input sends an empty part
                try:
                    return await report_media.store_photo(self.services, data)
                except report_media.MediaRefused as no:
                    raise DraftRefused(self.services.texts.get(
                        who.lang, f"reports.{no.key}", **no.values)) from None
        rel = draft["photo"]
        if not rel:
            return None
        if not (MEDIA_PATH.fullmatch(rel) and hmac.compare_digest(
                draft["photo_tag"], photo_tag(who.csrf, rel))
                and await asyncio.to_thread(self.services.media.path(rel).is_file)):
            raise DraftRefused(self.services.texts.get(who.lang,
                                                       "dashboard.notice_photo_refused"))
        return rel

    async def _checked(self, request: web.Request, who: Viewer, draft: dict[str, Any]
                       ) -> tuple[dict[str, str], int, int | None, datetime | None]:
        """Texts, the reachable count, the target id and the time; NoticeError or
        DraftRefused when the draft cannot go."""
        if draft["category"] not in CATEGORIES:
            raise NoticeError("unknown_category")
        texts = compose.clean_texts(draft["texts"])
        target = await self._target(request, who, draft)
        at = self._when(who, draft, self.services.clock())
        count = await compose.reachable(page(request).db, self.services.geo, who.scope,
                                        draft["category"], draft["kind"], target)
        return texts, count, target, at

    async def _refused(self, request: web.Request, who: Viewer, draft: dict[str, Any],
                       exc: Exception) -> web.Response:
        text = exc.text if isinstance(exc, DraftRefused) else (
            self._error(who, exc) if isinstance(exc, NoticeError) else "")
        return await self._form(request, who, draft, text, 400)

    async def preview(self, request: web.Request) -> web.Response:
        who = need(request, "notices")
        draft = await self._draft(request)
        try:
            texts, count, target, at = await self._checked(request, who, draft)
            photo = await self._photo(who, draft)
        except (NoticeError, DraftRefused) as exc:
            return await self._refused(request, who, draft, exc)
        t = self.services.texts
        shown = [(lang, t.get(lang, "notices.push",
                              category=t.get(lang, f"notices.cat_{draft['category']}"),
                              text=text)) for lang, text in texts.items()]
        return self.renderer.html(
            request, "notice_preview.html", draft=draft, shown=shown, count=count,
            audience=await aud.describe(page(request).db, who.lang, t, draft["kind"], target),
            langs=LANGS, photo=photo, photo_tag=photo_tag(who.csrf, photo) if photo else "",
            at=self._spoken(who, at) if at else None)

    def _spoken(self, who: Viewer, at: datetime) -> str:
        t = self.services.texts
        return spoken(lambda key, **kw: t.get(who.lang, key, **kw), at, self.services.clock(),
                      self.services.settings.bot.timezone)

    async def send(self, request: web.Request) -> web.StreamResponse:
        who = need(request, "notices")
        draft = await self._draft(request)
        db = page(request).db
        try:
            texts, _, target, at = await self._checked(request, who, draft)
            photo = await self._photo(who, draft)
            identities = await identities_of(db, who.resident.id)
            now = self.services.clock()
            notice = await compose.create(
                db, self.services.geo, who.scope, category=draft["category"],
                kind=draft["kind"], target=target, texts=texts,
                # Kept as the chat's photo step keeps it: the file in the media store.
                photo=str(self.services.media.path(photo)) if photo else None,
                at=at or now, now=now, created_by=who.resident.id,
                # The sender's chat gets the progress message, as when sent from chat.
                sender_identity_id=identities[0].id if identities else None)
        except (NoticeError, DraftRefused) as exc:
            return await self._refused(request, who, draft, exc)
        if at is None:
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
        db = page(request).db
        figures = await outbox.figures(db, notice.group)
        return self.renderer.html(
            request, "notice.html", notice=notice,
            progress=await compose.progress(db, notice),
            audience=await self._describe(request, who, notice),
            text=notices.text_for(notice, who.lang),
            cancellable=compose.may_cancel(notice, figures),
            # Waiting for a later time: no delivery to follow yet (one sent now is followed
            # from the start).
            scheduled=notice.status == NoticeStatus.SCHEDULED
            and notice.scheduled_at > self.services.clock(),
            emergency=notice.category == "emergency")

    async def progress(self, request: web.Request) -> web.Response:
        """The progress fragment htmx swaps in every second, until it says done."""
        who = need(request, "notices")
        notice = await self._notice(request, who)
        return self.renderer.html(request, "notice_progress.html", notice=notice,
                                  progress=await compose.progress(page(request).db, notice))

    async def photo(self, request: web.Request) -> web.StreamResponse:
        """A notice's photo, for those who may manage the notice."""
        who = need(request, "notices")
        notice = await self._notice(request, who)
        path = self.services.media.path(notice.photo) if notice.photo else None
        if path is None or not await asyncio.to_thread(path.is_file):
            raise Refused(404, "dashboard.notice_not_found")
        return web.FileResponse(path, headers={"Content-Type": "image/jpeg"})

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        """Cancel before (or while) it goes: the chat's /notices cancel, by the same rule."""
        who = need(request, "notices")
        notice = await self._notice(request, who)
        outcome = await compose.cancel(page(request).db, who.resident.id, notice)
        return see_other(f"{PREFIX}/notices?done={outcome}&id={notice.id}")

    async def answers(self, request: web.Request) -> web.Response:
        """An emergency's answers building by building, the fragment htmx refreshes: counts
        for every building reached, names only of residents whose home the viewer covers."""
        who = need(request, "notices")
        notice = await self._notice(request, who)
        if notice.category != "emergency":
            raise Refused(404, "dashboard.notice_not_found")
        db = page(request).db
        found = await compose.emergency_answers(db, who.scope, notice,
                                                silent_limit=SILENT_LIMIT)
        buildings = [{"place": (f"{localized(row.estate, who.lang)} {row.building}"
                                if row.estate is not None else None), "row": row}
                     for row in found.buildings]
        return self.renderer.html(
            request, "notice_answers.html", notice=notice, buildings=buildings,
            needing=[(r, await self._home(request, who, r)) for r in found.needing],
            silent=[(r, await self._home(request, who, r)) for r in found.silent],
            silent_limit=SILENT_LIMIT)

    async def _home(self, request: web.Request, who: Viewer, resident: Resident) -> str:
        """A resident's home as far as it is known (the chat's wording)."""
        db, t = page(request).db, self.services.texts
        building = await territory.building_by_id(db, resident.building_id)
        estate = await territory.estate(db, building.estate_id if building
                                        else resident.estate_id)
        if estate is None:
            return t.get(who.lang, "notices.home_none")
        name = localized(estate, who.lang)
        if building is None:
            return t.get(who.lang, "notices.home_estate", estate=name)
        if not resident.unit:
            return t.get(who.lang, "notices.home_building", estate=name,
                         building=building.number)
        return t.get(who.lang, "notices.home_unit", estate=name, building=building.number,
                     unit=resident.unit)
