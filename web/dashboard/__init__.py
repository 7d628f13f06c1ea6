"""The staff dashboard under /dashboard/: where station staff, committees and zone teams work
at a desk what they work in chat (issue 15). Signed in by a one-time link from the chat's
/dashboard, in a browser session tied to the roles the person holds.

HTTP in, HTML out (Jinja2 templates, htmx for the live parts, both served from here): every
rule is a service's or storage's, the same the chat calls, so a change made here is what the
chat shows and the reverse; every push to residents goes through the outbox in their language.
"""

from __future__ import annotations

from aiohttp import web

from web.dashboard import auth, notices, people, polls, reports, surveys, volunteering
from web.dashboard.core import HERE, PREFIX, DashboardDeps, Guard, Renderer, see_other

__all__ = ["DashboardDeps", "feature"]
FORM_MARGIN = 256 * 1024  # a fix form's fields beside its photo


def feature(deps: DashboardDeps):
    """The web feature (bot.web.WebFeature): the dashboard as a sub-application under PREFIX,
    with its guard, and a body limit that lets a fix's photo through."""
    renderer = Renderer(deps.services)
    guard = Guard(deps, renderer)
    sections: list[auth.AuthPages | reports.ReportPages | notices.NoticePages
                   | polls.PollPages | surveys.SurveyPages
                   | volunteering.VolunteeringPages] = [
        auth.AuthPages(deps, renderer, guard), reports.ReportPages(deps, renderer),
        notices.NoticePages(deps, renderer), polls.PollPages(deps, renderer),
        surveys.SurveyPages(deps, renderer)]
    people_pages = people.PeoplePages(deps, renderer)  # residents and roles
    sections.append(volunteering.VolunteeringPages(deps, renderer))

    async def to_home(request: web.Request) -> web.StreamResponse:
        return see_other(PREFIX + "/")

    def register(app: web.Application) -> None:
        limit = deps.services.settings.reports.max_photo_bytes + FORM_MARGIN
        sub = web.Application(middlewares=[guard.middleware], client_max_size=limit)
        routes = web.RouteTableDef()
        for section in sections:
            section.routes(routes)
        people_pages.routes(routes)
        for route in routes:  # declared with their full path, served under the prefix
            assert isinstance(route, web.RouteDef) and route.path.startswith(PREFIX + "/")
            sub.router.add_route(route.method, route.path[len(PREFIX):], route.handler,
                                 **route.kwargs)
        sub.router.add_static("/static/", HERE / "static", append_version=False)
        app.router.add_get(PREFIX, to_home)  # before the sub-application, which would take it
        app.add_subapp(PREFIX, sub)

    return register
