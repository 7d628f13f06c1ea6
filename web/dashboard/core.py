"""What every dashboard page shares: the viewer (who is signed in, their scope, language and
CSRF token), the guard middleware (session cookie, CSRF, security headers, one database
session per request), and rendering with Jinja2 in the viewer's language."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.context import Services
from bot.i18n import LANGUAGES, normalize_language
from services import dashboard as rules
from services import role_rules
from services import verification as verifying
from storage import dashboard as dash
from storage.access import Scope, scope_of
from storage.people import Resident, resident_by_id

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
PREFIX = "/dashboard"
COOKIE = "dashboard_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
# Pages anyone may open: the sign-in page (its one-time token is the credential), the
# signed-out page, and the static files.
PUBLIC = ("/dashboard/login", "/dashboard/signed-out", "/dashboard/static/")
SECTIONS = {  # section -> role kinds that may use it (storage.people.RoleKind values)
    "reports": ("team", "staff", "admin"),
    "figures": ("staff", "admin"),  # as the chat's /stats
    "notices": ("staff", "committee", "admin"),
    "polls": ("staff", "committee", "admin"),
    "people": verifying.VERIFIERS,  # pending verifications and invite codes, as /pending
    "roles": role_rules.MANAGERS,  # as /grant, /revoke, /roles
    "audit": role_rules.AUDITORS,  # as /audit
    "volunteering": ("staff", "committee", "admin"),  # as /roster; may_manage per activity
}
CSP = ("default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; "
       "script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'; object-src 'none'")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class DashboardDeps:
    sessions: async_sessionmaker[AsyncSession]
    services: Services
    wake: Callable[[], None]  # the deliverer sends what an action queued


@dataclass
class Viewer:
    resident: Resident
    scope: Scope
    lang: str
    csrf: str
    session_id: int

    def may(self, section: str) -> bool:
        return self.scope.has(*SECTIONS[section])


@dataclass
class Page:
    """A request's state, kept on the request by the guard."""

    db: AsyncSession
    lang: str
    viewer: Viewer | None = None
    pushed: bool = False  # something was queued for chat: wake delivery after the commit
    extra: dict[str, Any] = field(default_factory=dict)


def csrf_for(cookie: str) -> str:
    """The CSRF token of a session: derived from its cookie (which only the browser holds),
    so nothing extra is stored and another session's token never fits."""
    return hmac.new(cookie.encode(), b"dashboard-csrf", hashlib.sha256).hexdigest()


PAGE = web.RequestKey("dashboard_page", Page)


def see_other(location: str) -> web.Response:
    """A redirect returned, not raised: raising would roll the request's transaction back."""
    return web.Response(status=303, headers={"Location": location})


def page(request: web.Request) -> Page:
    return request[PAGE]


def viewer(request: web.Request) -> Viewer:
    found = page(request).viewer
    if found is None:  # the guard lets no such request through to a private page
        raise web.HTTPUnauthorized()
    return found


def need(request: web.Request, section: str) -> Viewer:
    """The viewer, when their roles open this section; 403 otherwise."""
    who = viewer(request)
    if not who.may(section):
        raise Refused(403, "dashboard.forbidden")
    return who


class Refused(Exception):
    """A page refused: its status and the text key that says why."""

    def __init__(self, status: int, key: str) -> None:
        super().__init__(key)
        self.status, self.key = status, key


class Renderer:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=jinja2.select_autoescape(["html", "svg"], default=True),
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

    def html(self, request: web.Request, template: str, http_status: int = 200,
             **values: Any) -> web.Response:
        pg = page(request)
        lang = pg.lang

        def t(key: str, **kw: Any) -> str:
            return self.services.texts.get(lang, key, **kw)

        body = self.env.get_template(template).render(
            t=t, lang=lang, languages=LANGUAGES, viewer=pg.viewer, prefix=PREFIX,
            csrf_field=CSRF_FIELD, path=request.path_qs, local=self.services.local_time,
            **values)
        return web.Response(text=body, status=http_status, content_type="text/html",
                            charset="utf-8")


def _is_public(path: str) -> bool:
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in PUBLIC)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class Guard:
    def __init__(self, deps: DashboardDeps, renderer: Renderer) -> None:
        self.deps, self.renderer = deps, renderer
        settings = deps.services.settings
        self.secure = rules.secure_cookies(settings)
        self.origins = {_origin(settings.bot.web_url)} if settings.bot.web_url else set()

    def browser_lang(self, request: web.Request) -> str:
        default = self.deps.services.settings.bot.default_language
        return normalize_language(request.headers.get("Accept-Language", "").split(",")[0],
                                  default)

    def refuse(self, request: web.Request, status: int, key: str) -> web.Response:
        return self.renderer.html(request, "message.html", http_status=status, key=key)

    def _origin_ok(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if not origin:
            return True  # no Origin (an older browser, a test client): the CSRF token decides
        own = _origin(f"{request.scheme}://{request.host}")
        return origin.lower() in self.origins | {own}

    async def _viewer(self, request: web.Request, db: AsyncSession) -> Viewer | None:
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            return None
        now = self.deps.services.clock()
        if request.method == "GET":  # a read: the session is looked at without a write lock
            found = await dash.live_session(db, cookie, now)
            if found is not None and await rules.roles_changed(db, found):
                async with self.deps.sessions() as writer, writer.begin():
                    await dash.end_session(writer, found.id, now)
                found = None
        else:
            found = await rules.current_session(db, cookie, now)
        if found is None:
            return None
        resident = await resident_by_id(db, found.resident_id)
        if resident is None:
            return None
        lang = found.language or normalize_language(
            resident.language, self.deps.services.settings.bot.default_language)
        return Viewer(resident, await scope_of(db, resident.id), lang, csrf_for(cookie),
                      found.id)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(PREFIX):
            return await handler(request)
        began = time.perf_counter()
        response = await self._guarded(request, handler)
        self._headers(request, response)
        # The server's own time for the page (bench/dashboard.py reads it; so do browsers'
        # developer tools).
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - began) * 1000:.1f}"
        return response

    async def _guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        public = _is_public(request.path)
        if request.path.startswith(PREFIX + "/static/"):
            return await handler(request)
        writes = request.method not in ("GET", "HEAD")
        factory = self.deps.sessions if writes else self.deps.services.readers
        pg: Page | None = None
        try:
            async with factory() as db, db.begin():
                pg = Page(db, self.browser_lang(request))
                request[PAGE] = pg
                pg.viewer = await self._viewer(request, db)
                if pg.viewer is not None:
                    pg.lang = pg.viewer.lang
                if writes and not self._origin_ok(request):
                    return self.refuse(request, 403, "dashboard.csrf_refused")
                if pg.viewer is None and not public:
                    refused = self.refuse(request, 401, "dashboard.sign_in_needed")
                    if request.headers.get("HX-Request") == "true":
                        # A page left open and polling (a notice's progress) whose session
                        # has ended: the page goes to the signed-out one, rather than
                        # polling on into 401s.
                        refused.headers["HX-Redirect"] = PREFIX + "/"
                    return refused
                if writes and not public and not await self._csrf_ok(request, pg.viewer):
                    return self.refuse(request, 403, "dashboard.csrf_refused")
                try:
                    response = await handler(request)
                except Refused as no:
                    return self.refuse(request, no.status, no.key)
        except web.HTTPNotFound:
            # No route here (an address typed or kept from an older version): the dashboard's
            # own page, in the viewer's language, after the transaction is rolled back.
            if pg is None:
                raise
            pg.viewer = None  # its rows went with the rolled-back session
            return self.refuse(request, 404, "dashboard.not_found")
        except web.HTTPException:
            raise
        except Exception:
            log.exception("dashboard %s %s failed", request.method, request.path)
            if pg is None:
                pg = Page(None, self.browser_lang(request))  # type: ignore[arg-type]
                request[PAGE] = pg
            pg.viewer = None  # its rows went with the rolled-back session
            return self.refuse(request, 500, "dashboard.internal")
        if pg.pushed:
            self.deps.wake()
        return response

    async def _csrf_ok(self, request: web.Request, who: Viewer | None) -> bool:
        if who is None:
            return False
        sent = request.headers.get(CSRF_HEADER)
        if sent is None:
            form = await request.post()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
        return sent is not None and hmac.compare_digest(sent, who.csrf)

    def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        # same-origin, not no-referrer: with no-referrer a browser sends `Origin: null` on its own
        # forms, and the sign-in link in the address never leaves for another site either way.
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if not request.path.startswith(PREFIX + "/static/"):
            response.headers.setdefault("Cache-Control", "no-store")

    def set_cookie(self, response: web.StreamResponse, value: str) -> None:
        hours = self.deps.services.settings.bot.web_session_hours
        response.set_cookie(COOKIE, value, path=PREFIX, httponly=True, samesite="Lax",
                            secure=self.secure, max_age=int(hours * 3600))

    def clear_cookie(self, response: web.StreamResponse) -> None:
        response.del_cookie(COOKIE, path=PREFIX)
