"""Signing in (the one-time link's page, then its POST), signing out, the language switch and
the home page listing the sections the viewer's roles open."""

from __future__ import annotations

from aiohttp import web

from bot.i18n import LANGUAGES
from services import dashboard as rules
from storage import audit
from storage import dashboard as dash
from web.dashboard.core import PREFIX, DashboardDeps, Guard, Renderer, page, see_other, viewer


class AuthPages:
    def __init__(self, deps: DashboardDeps, renderer: Renderer, guard: Guard) -> None:
        self.deps, self.renderer, self.guard = deps, renderer, guard

    def routes(self, routes: web.RouteTableDef) -> None:
        routes.get(PREFIX + "/login")(self.login_page)
        routes.post(PREFIX + "/login")(self.login)
        routes.post(PREFIX + "/logout")(self.logout)
        routes.get(PREFIX + "/signed-out")(self.signed_out)
        routes.post(PREFIX + "/language")(self.language)
        routes.get(PREFIX + "/")(self.home)

    async def login_page(self, request: web.Request) -> web.Response:
        """The link's page: a button that signs in. A GET never uses the token up, so a chat
        app's link preview cannot spend it before the person clicks."""
        token = request.query.get("t", "")
        return self.renderer.html(request, "login.html", token=token[:100])

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        token = form.get("t")
        pg = page(request)
        began = None
        if isinstance(token, str) and 0 < len(token) <= 100:
            began = await rules.begin_session(pg.db, self.deps.services.settings,
                                              self.deps.services.signer, token,
                                              self.deps.services.clock(), None)
        if began is None:
            return self.renderer.html(request, "message.html", http_status=400,
                                      key="dashboard.link_invalid")
        cookie, resident_id = began
        await audit.record(pg.db, resident_id, "dashboard.sign_in", None)
        response = see_other(PREFIX + "/")
        self.guard.set_cookie(response, cookie)
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        who = viewer(request)
        pg = page(request)
        await dash.end_session(pg.db, who.session_id, self.deps.services.clock())
        await audit.record(pg.db, who.resident.id, "dashboard.sign_out", None)
        response = see_other(PREFIX + "/signed-out")
        self.guard.clear_cookie(response)
        return response

    async def signed_out(self, request: web.Request) -> web.Response:
        return self.renderer.html(request, "message.html", key="dashboard.signed_out")

    async def language(self, request: web.Request) -> web.StreamResponse:
        who = viewer(request)
        form = await request.post()
        lang = form.get("lang")
        if lang in LANGUAGES:
            await dash.set_language(page(request).db, who.session_id, str(lang))
        back = form.get("back")
        target = back if isinstance(back, str) and back.startswith(PREFIX + "/") \
            and "//" not in back else PREFIX + "/"
        return see_other(target)

    async def home(self, request: web.Request) -> web.Response:
        viewer(request)
        return self.renderer.html(request, "home.html")
