"""The staff dashboard under /dashboard/: where station staff, committees and zone teams work
at a desk what they work in chat (issue 15). Signed in by a one-time link from the chat's
/dashboard, in a browser session tied to the roles the person holds.

HTTP in, HTML out (Jinja2 templates, htmx for the live parts, both served from here): every
rule is a service's or storage's, the same the chat calls, so a change made here is what the
chat shows and the reverse; every push to residents goes through the outbox in their language.
"""

from __future__ import annotations

from aiohttp import web

from web.dashboard import auth, notices, polls, reports
from web.dashboard.core import HERE, PREFIX, DashboardDeps, Guard, Renderer

__all__ = ["DashboardDeps", "feature"]


def feature(deps: DashboardDeps):
    """The web feature (bot.web.WebFeature): the dashboard's routes and its guard."""
    renderer = Renderer(deps.services)
    guard = Guard(deps, renderer)
    sections: list[auth.AuthPages | reports.ReportPages | notices.NoticePages
                   | polls.PollPages] = [
        auth.AuthPages(deps, renderer, guard), reports.ReportPages(deps, renderer),
        notices.NoticePages(deps, renderer), polls.PollPages(deps, renderer)]

    def register(app: web.Application) -> None:
        app.middlewares.append(guard.middleware)
        routes = web.RouteTableDef()
        for section in sections:
            section.routes(routes)
        app.router.add_routes(routes)
        app.router.add_static(PREFIX + "/static/", HERE / "static", append_version=False)

    return register
