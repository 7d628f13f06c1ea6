"""Open311 GeoReport v2 under /open311/v2/: discovery, services, service definitions,
requests (GET, and POST with an API key), one request; XML and JSON (`.xml` / `.json`).

HTTP in, HTTP out: parameters are read and checked here, the rules are services.open311's,
the data storage.open311's and storage.reports'. What an outside reader may see:
- never a reporter's name, phone or other contact (not even with a key);
- reports of a private category (services.open311.is_private) without their point, building,
  estate or words, unless the key presented covers the report (services.open311.KeyScope);
- places as estate and zone names (no building, no unit), the point only when one was shared.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.context import Services
from bot.i18n import normalize_language
from bot.web.limits import BodyTooLarge, RateLimiter, read_body
from services import open311 as rules
from services.open311 import Open311Error
from storage import audit, open311, reports
from storage import territory as terr
from web.open311_format import FORMATS, respond

log = logging.getLogger(__name__)

PREFIX = "/open311/v2"
SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
CHANGESET = "2026-12-03T00:00:00+08:00"  # when this API last changed shape
CONTACT_FIELDS = ("first_name", "last_name", "email", "phone", "device_id", "account_id")
FIELD_LIMIT = 120  # characters of a contact field kept


@dataclass(frozen=True)
class Open311Deps:
    sessions: async_sessionmaker[AsyncSession]
    services: Services
    announce: rules.Announce  # the team's card (the chat's, from the composition root)
    wake: Any  # () -> None: the deliverer sends what the filing queued


def feature(deps: Open311Deps):
    """The web feature (bot.web.WebFeature): the API as a sub-application under PREFIX."""
    api = Open311Api(deps)

    def register(app: web.Application) -> None:
        sub = web.Application(middlewares=[api.errors])
        sub.router.add_get("/discovery.{fmt}", api.discovery)
        sub.router.add_get("/services.{fmt}", api.services_list)
        sub.router.add_get("/services/{code:[^/]+?}.{fmt}", api.service_definition)
        sub.router.add_get("/requests.{fmt}", api.requests_list)
        sub.router.add_post("/requests.{fmt}", api.create)
        sub.router.add_get("/requests/{id:[^/]+?}.{fmt}", api.request_one)
        sub.router.add_route("*", "/{tail:.*}", api.not_found)
        app.add_subapp(PREFIX, sub)

    return register


def _fmt(request: web.Request) -> str:
    fmt = request.match_info.get("fmt", "")
    if fmt not in FORMATS:
        # An error must still be written in some format: the required one.
        tail = request.path.rsplit(".", 1)[-1] if "." in request.path else ""
        raise Open311Error(400, "bad_format", format=(fmt or tail)[:10])
    return fmt


def _guess_fmt(request: web.Request) -> str:
    fmt = request.match_info.get("fmt") or request.path.rsplit(".", 1)[-1]
    return fmt if fmt in FORMATS else "xml"


class Open311Api:
    def __init__(self, deps: Open311Deps) -> None:
        self.deps = deps
        self.services = deps.services
        cfg = deps.services.settings.open311
        self.cfg = cfg
        self.limiter = RateLimiter(cfg.rate_per_minute, cfg.burst)
        self.tz = ZoneInfo(deps.services.settings.bot.timezone)

    # -- language, errors --------------------------------------------------------------
    def lang(self, request: web.Request, form: dict[str, str] | None = None) -> str:
        hint = (form or {}).get("locale") or request.query.get("locale")
        return normalize_language(hint, self.services.settings.bot.default_language)

    def t(self, lang: str, key: str, **values: object) -> str:
        return self.services.texts.get(lang, key, **values)

    def error_response(self, request: web.Request, status: int, key: str,
                       lang: str | None = None, headers: dict[str, str] | None = None,
                       values: dict[str, Any] | None = None) -> web.Response:
        lang = lang or self.lang(request)
        text = self.t(lang, f"open311.error_{key}", **(values or {}))
        return respond(_guess_fmt(request), "errors", [{"code": status, "description": text}],
            status=status, headers=headers)

    @web.middleware
    async def errors(self, request: web.Request, handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except _RateLimited as slow:
            return self._slow_down(request, slow, self.lang(request))
        except Open311Error as no:
            return self.error_response(request, no.status, no.key, values=no.values)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("Open311 %s %s failed", request.method, request.path)
            return self.error_response(request, 500, "internal")

    async def not_found(self, request: web.Request) -> web.Response:
        return self.error_response(request, 404, "not_found")

    def _limit(self, caller: str) -> None:
        wait = self.limiter.allow(caller)
        if wait:
            raise _RateLimited(wait)

    def _caller(self, request: web.Request, key: open311.ApiKey | None) -> str:
        return f"key:{key.id}" if key is not None else f"ip:{request.remote}"

    # -- discovery and services ----------------------------------------------------------
    async def discovery(self, request: web.Request) -> web.Response:
        fmt = _fmt(request)
        lang = self.lang(request)
        base = (self.services.settings.bot.web_url or "").rstrip("/")
        return respond(fmt, "discovery", {
            "changeset": CHANGESET,
            "contact": self.t(lang, "open311.discovery_contact"),
            "key_service": self.t(lang, "open311.key_service"),
            "endpoints": [{
                "specification": SPECIFICATION, "url": base + PREFIX, "changeset": CHANGESET,
                "type": "production", "formats": ["text/xml", "application/json"]}],
        })

    async def _check_jurisdiction(self, session: AsyncSession, request: web.Request,
                                  form: dict[str, str] | None = None
                                  ) -> tuple[set[int], set[int]] | None:
        code = ((form or {}).get("jurisdiction_id") or request.query.get("jurisdiction_id")
                or "").strip()
        if not code:
            return None
        station = next((s for s in await open311.stations(session) if s.code == code), None)
        if station is None:
            raise Open311Error(404, "jurisdiction_unknown", code=code[:40])
        return await rules.jurisdiction(session, self.services, station.id)

    async def services_list(self, request: web.Request) -> web.Response:
        fmt = _fmt(request)
        lang = self.lang(request)
        async with self.services.readers() as session:
            await self._check_jurisdiction(session, request)
        return respond(fmt, "services", [self._service(c, lang)
                                         for c in self.services.catalog.categories])

    def _service(self, cat, lang: str) -> dict[str, Any]:
        return {"service_code": cat.key, "service_name": cat.name(lang),
                "description": self.t(lang, "open311.service_description",
                                      name=cat.name(lang), days=cat.fix_days),
                "metadata": False, "type": "realtime",
                "keywords": ", ".join(s for s in cat.synonyms if _same_script(s, lang)),
                "group": self.t(lang, "open311.group")}

    async def service_definition(self, request: web.Request) -> web.Response:
        fmt = _fmt(request)
        code = request.match_info["code"]
        if self.services.catalog.get(code) is None:
            raise Open311Error(404, "service_unknown", code=code[:40])
        async with self.services.readers() as session:
            await self._check_jurisdiction(session, request)
        # Our categories ask no extra questions: a definition with no attributes.
        return respond(fmt, "service_definition", {"service_code": code, "attributes": []})

    # -- reading requests ----------------------------------------------------------------
    async def _key(self, session: AsyncSession, token: str | None) -> open311.ApiKey | None:
        key = await open311.key_for(session, token)
        if token and key is None:
            raise Open311Error(403, "key_invalid")
        return key

    async def requests_list(self, request: web.Request) -> web.Response:
        fmt = _fmt(request)
        q = request.query
        async with self.services.readers() as session:
            key = await self._key(session, q.get("api_key"))
            self._limit(self._caller(request, key))
            place = await self._check_jurisdiction(session, request)
            query = self._query(q)
            if place is not None:
                query.estate_ids, query.zone_ids = place
            found = await open311.find_requests(session, query)
            return respond(fmt, "service_requests",
                           await self._views(session, request, found, key))

    async def request_one(self, request: web.Request) -> web.Response:
        fmt = _fmt(request)
        ref = request.match_info["id"]
        async with self.services.readers() as session:
            key = await self._key(session, request.query.get("api_key"))
            self._limit(self._caller(request, key))
            place = await self._check_jurisdiction(session, request)
            query = open311.RequestQuery(references=[ref], limit=1)
            if place is not None:
                query.estate_ids, query.zone_ids = place
            found = await open311.find_requests(session, query)
            if not found:
                raise Open311Error(404, "request_unknown", id=ref[:30])
            return respond(fmt, "service_requests",
                           await self._views(session, request, found, key))

    def _query(self, q) -> open311.RequestQuery:
        cfg = self.cfg
        page, size = _int(q.get("page"), 1, "page"), _int(q.get("page_size"), cfg.page_size,
                                                             "page_size")
        if page < 1 or not 1 <= size <= cfg.max_page_size:
            raise Open311Error(400, "bad_page", max=cfg.max_page_size)
        query = open311.RequestQuery(limit=size, offset=(page - 1) * size)
        ids = _list(q.get("service_request_id"))
        if ids:
            query.references = ids[:cfg.max_page_size]
            return query
        codes = _list(q.get("service_code"))
        for code in codes:
            if self.services.catalog.get(code) is None:
                raise Open311Error(400, "service_code_unknown", code=code[:40])
        query.categories = codes or None
        words = _list(q.get("status"))
        query.statuses = rules.statuses_for(words) if words else None
        start, end = self._date(q.get("start_date")), self._date(q.get("end_date"))
        span = timedelta(days=cfg.default_days)
        if start and end and end < start:
            raise Open311Error(400, "date_order")
        if start and end and end - start > span:
            raise Open311Error(400, "date_span", days=cfg.default_days)
        if end is None and start is None:
            end = self.services.clock()
        query.since = start if start is not None else (end - span if end is not None else None)
        query.until = end
        return query

    def _date(self, text: str | None) -> datetime | None:
        if not text:
            return None
        try:
            when = datetime.fromisoformat(text.strip().replace(" ", "+"))
        except ValueError:
            raise Open311Error(400, "bad_date", value=text[:40]) from None
        return when if when.tzinfo else when.replace(tzinfo=self.tz)

    async def _views(self, session: AsyncSession, request: web.Request,
                     found: list[reports.Report], key: open311.ApiKey | None
                     ) -> list[dict[str, Any]]:
        lang = self.lang(request)
        extended = request.query.get("extensions", "").lower() in ("true", "1", "yes")
        scope = await rules.scope_of_key(session, self.services, key)
        changes = await open311.last_changes(session, found)
        names = await open311.names(session)
        media = await open311.media_urls(session, [r.id for r in found])
        return [self._view(r, changes[r.id], names, media.get(r.id), lang, extended,
                           full=scope.covers(r) or not rules.is_private(self.services, r))
                for r in found]

    def _view(self, report: reports.Report, change: open311.LastChange, names: open311.Names,
              media_url: str | None, lang: str, extended: bool, *, full: bool
              ) -> dict[str, Any]:
        cat = self.services.catalog.get(report.category)
        team = names.teams.get(report.team_id) if report.team_id else None
        zone = names.zones.get(report.zone_id) if report.zone_id else None
        estate = names.estates.get(report.estate_id) if report.estate_id else None
        note = change.note
        if note is None and report.status == reports.Status.CLOSED.value and report.close_reason:
            note = self.t(lang, f"reports.reason_{report.close_reason}")
        parts = [terr.localized(row, lang) for row in (estate if full else None, zone) if row]
        point = full and report.latitude is not None and report.longitude is not None
        return {
            "service_request_id": report.reference,
            "status": (rules.extended_status_of(report) if extended
                       else rules.status_of(report)),
            "status_notes": note,
            "service_name": cat.name(lang) if cat else report.category,
            "service_code": report.category,
            "description": (report.description or None) if full else None,
            "agency_responsible": terr.localized(team, lang) if team else None,
            "service_notice": None,
            "requested_datetime": report.created_at.astimezone(self.tz),
            "updated_datetime": change.at.astimezone(self.tz),
            "expected_datetime": (report.fix_due_at.astimezone(self.tz)
                                  if report.status in rules.OPEN_STATUSES else None),
            "address": " · ".join(parts) or None,
            "address_id": None,
            "zipcode": None,
            "lat": report.latitude if point else None,
            "long": report.longitude if point else None,
            "media_url": media_url if full else None,
        }

    # -- filing --------------------------------------------------------------------------
    async def create(self, request: web.Request) -> web.Response:
        fmt = _fmt(request)
        try:
            body = await read_body(request, self.cfg.max_body_bytes)
        except BodyTooLarge:
            return self.error_response(request, 413, "too_large",
                                       values={"limit": self.cfg.max_body_bytes})
        try:
            form = {k: v[0] for k, v in parse_qs(body.decode("utf-8"),
                                                 keep_blank_values=False).items()}
        except (UnicodeDecodeError, ValueError):
            form = None
        lang = self.lang(request, form)
        token = (form or {}).get("api_key") or request.query.get("api_key")
        async with self.services.readers() as session:
            key = await open311.key_for(session, token)
        who = (key.id, key.reporter_id) if key is not None else None  # for the audit
        try:
            self._limit(self._caller(request, key))
        except _RateLimited as slow:
            return self._slow_down(request, slow, lang)
        try:
            if form is None:
                raise Open311Error(400, "bad_body")
            if key is None:
                raise Open311Error(403, "key_missing" if not token else "key_invalid")
            new = self._new_request(form)
            async with self.deps.sessions() as session, session.begin():
                await self._check_jurisdiction(session, request, form)
                live = await open311.key_for(session, token)  # revoked since? (then None)
                if live is None:
                    raise Open311Error(403, "key_invalid")
                filed = await rules.submit(session, self.services, live, new,
                                           announce=self.deps.announce)
                team = (await terr.team(session, filed.report.team_id)
                        if filed.report.team_id else None)
                notice = self.t(
                    lang, "open311.notice_merged" if filed.merged else "open311.notice_filed",
                    ref=filed.report.reference,
                    team=terr.localized(team, lang) if team else self.t(lang, "reports.no_team"),
                    due=self.services.local_time(filed.report.fix_due_at))
        except Open311Error as no:
            await self._audit_refusal(who, no.status, no.key)
            return self.error_response(request, no.status, no.key, lang, values=no.values)
        self.deps.wake()
        return respond(fmt, "service_requests", [{
            "service_request_id": filed.report.reference, "service_notice": notice,
            "account_id": new.contact.get("account_id")}], status=201)

    def _slow_down(self, request: web.Request, slow: _RateLimited, lang: str) -> web.Response:
        seconds = max(1, math.ceil(slow.wait))
        return self.error_response(request, 429, "rate_limited", lang,
                                   headers={"Retry-After": str(seconds)},
                                   values={"seconds": seconds})

    def _new_request(self, form: dict[str, str]) -> rules.NewRequest:
        code = (form.get("service_code") or "").strip()
        if not code:
            raise Open311Error(400, "service_code_required")
        lat, lon = _coordinate(form.get("lat"), 90, "lat"), _coordinate(form.get("long"), 180,
                                                                        "long")
        if (lat is None) != (lon is None):
            raise Open311Error(400, "lat_long_pair")
        media_url = (form.get("media_url") or "").strip() or None
        if media_url is not None:
            parts = urlsplit(media_url)
            if parts.scheme not in ("http", "https") or not parts.netloc or len(media_url) > 500:
                raise Open311Error(400, "bad_media_url")
        contact = {f: form[f].strip()[:FIELD_LIMIT] for f in CONTACT_FIELDS
                   if form.get(f, "").strip()}
        return rules.NewRequest(
            service_code=code, description=form.get("description", ""), latitude=lat,
            longitude=lon, address_string=(form.get("address_string") or "").strip() or None,
            media_url=media_url, contact=contact)

    async def _audit_refusal(self, who: tuple[int, int] | None, status: int,
                             reason: str) -> None:
        """A refused POST is audited too (its own transaction): which key (if a live one)
        tried what, never the body. 429s are not (a flood would write the log full)."""
        async with self.deps.sessions() as session, session.begin():
            await audit.record(session, who[1] if who else None, "open311.post_refused",
                               None, by="open311", key=who[0] if who else None, status=status,
                               reason=reason)


class _RateLimited(Open311Error):
    def __init__(self, wait: float) -> None:
        super().__init__(429, "rate_limited", seconds=max(1, math.ceil(wait)))
        self.wait = wait


def _list(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _int(text: str | None, default: int, name: str) -> int:
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise Open311Error(400, "bad_number", name=name) from None


def _coordinate(text: str | None, bound: float, name: str) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise Open311Error(400, "bad_number", name=name) from None
    if not math.isfinite(value) or abs(value) > bound:
        raise Open311Error(400, "bad_number", name=name)
    return value


def _same_script(word: str, lang: str) -> bool:
    chinese = any("\u4e00" <= ch <= "\u9fff" for ch in word)
    return chinese == (lang != "en")
