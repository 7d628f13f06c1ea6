"""The composition root: settings in, a running bot out. Nothing is built at import time."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

import aiohttp
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.ballot_key import ballot_key
from bot.config import Settings
from bot.context import Services
from bot.delivery import Deliverer
from bot.dispatch import Dispatcher
from bot.flood import FloodGuard, SharedFloodGuard
from bot.i18n import Texts
from bot.media import MediaStore
from bot.messaging.model import Adapter, AttachesRuntime
from bot.scheduler import Clock, Job, Scheduler, build_scheduler
from bot.signing import Signer, fingerprint
from bot.web import WebServer, create_web_app
from bot.web.health import health_routes
from handlers import build_jobs, build_router, first_contact
from services.geo import TerritoryIndex, validate_territory
from services.guides import GuideIndex, load_guides
from services.report_cards import send_card_to_team
from services.report_catalog import Catalog, WorkCalendar
from storage import kv
from storage.db import create_engine, reader_factory, session_factory
from storage.migrate import upgrade_async
from storage.territory_loader import load_territory
from web.dashboard import DashboardDeps
from web.dashboard import feature as dashboard_pages
from web.open311 import Open311Deps
from web.open311 import feature as open311_api

log = logging.getLogger(__name__)


@dataclass
class App:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    services: Services
    dispatcher: Dispatcher
    deliverer: Deliverer
    adapters: dict[str, Adapter]
    scheduler: Scheduler | None = None
    jobs: list[Job] = field(default_factory=list)  # the features' jobs (run_jobs_once in tests)
    started: list[Adapter] = field(default_factory=list)
    # The web application (the features' routes); served when BOT_WEB_URL is set.
    web_app: web.Application | None = None
    web: WebServer | None = None

    async def start(self, *, deliver: bool = True, schedule: bool = True) -> None:
        if deliver:
            self.deliverer.start()
        if schedule and self.scheduler is not None:
            self.scheduler.start()
        for adapter in self.adapters.values():
            await adapter.start(self.dispatcher.handle)
            self.started.append(adapter)
        if self.web is not None and not self.web.running:  # the terminal demo starts it first
            await self.web.start()

    async def stop(self) -> None:
        if self.web is not None:
            await self.web.stop()
        for adapter in reversed(self.started):
            await adapter.stop()
        self.started.clear()
        if self.scheduler is not None:
            await self.scheduler.stop()
        await self.deliverer.stop()
        if isinstance(self.dispatcher.flood, SharedFloodGuard):
            await self.dispatcher.flood.close()
        await self.services.http.close()
        await self.engine.dispose()


async def load_territory_file(sessions, path: Path) -> dict[str, int]:
    data = json.loads(await asyncio.to_thread(Path(path).read_text, encoding="utf-8"))
    validate_territory(data)
    async with sessions() as session, session.begin():
        return await load_territory(session, data)


@cache
def shipped_guides() -> GuideIndex:
    """The service guides of content/guides, indexed once per process: the files ship with the
    code, and the index's tokenizer (jieba's dictionary) costs a second to warm, so every app a
    process builds (the tests build hundreds) shares the one index."""
    return GuideIndex(load_guides())


def report_catalog(settings: Settings) -> Catalog:
    path = settings.reports.categories_file
    return Catalog.load(path) if path else Catalog.load()


def work_calendar(settings: Settings) -> WorkCalendar:
    tz, path = settings.bot.timezone, settings.reports.holidays_file
    return WorkCalendar.load(tz, path) if path else WorkCalendar.load(tz)


async def build_app(
    settings: Settings,
    adapters: dict[str, Adapter],
    *,
    migrate: bool = True,
    territory: Path | None = None,
    clock: Clock | None = None,
    flood_guard: bool = True,
) -> App:
    if migrate:
        await upgrade_async(settings.database.url)
    engine = create_engine(settings.database.url, echo=settings.database.echo)
    sessions = session_factory(engine)
    if territory is not None:
        await load_territory_file(sessions, territory)
    clock = clock or Clock()
    router = build_router()
    previous = (settings.bot.secret_previous.get_secret_value().encode()
                if settings.bot.secret_previous else None)
    async with sessions() as session, session.begin():
        secret = (settings.bot.secret.get_secret_value() if settings.bot.secret else
                  await kv.get_or_set(session, "button_secret", lambda: secrets.token_hex(32)))
        previous_until = None
        if previous:
            # The grace period runs from the first start that named this previous key, shared
            # by every process through the database.
            began = datetime.fromisoformat(await kv.get_or_set(
                session, f"key_retired:{fingerprint(previous)}",
                lambda: clock().isoformat()))
            previous_until = began + timedelta(hours=settings.bot.secret_grace_hours)
        geo = await TerritoryIndex.build(session)
    ages = {"vote": timedelta(hours=settings.bot.fresh_vote_hours),
            "staff": timedelta(hours=settings.bot.fresh_staff_hours)}
    signer = Signer(secret.encode(), previous=previous, previous_until=previous_until,
                    fresh={action: ages[kind] for action, kind in router.fresh.items()},
                    clock=clock)
    services = Services(
        texts=Texts(default=settings.bot.default_language), signer=signer,
        geo=geo, settings=settings, clock=clock, media=MediaStore(settings.bot.media_dir),
        readers=reader_factory(engine),
        # One HTTP client for the process (CAP feeds, the forecast), closed by App.stop.
        http=aiohttp.ClientSession(),
        commands=tuple(sorted((spec for spec in router.commands.values() if spec.help_key),
                              key=lambda spec: (spec.order, spec.name))),
        adapters=adapters,
        catalog=report_catalog(settings), calendar=work_calendar(settings),
        guides=shipped_guides(), ballot_key=ballot_key(settings),
    )
    for adapter in adapters.values():
        if isinstance(adapter, AttachesRuntime):
            adapter.attach(sessions=sessions, http=services.http)
    deliverer = Deliverer(engine, sessions, adapters,
                          max_attempts=settings.bot.delivery_max_attempts)
    flood: FloodGuard | SharedFloodGuard | None = None
    if flood_guard and settings.bot.redis_url:
        flood = SharedFloodGuard(settings.bot.redis_url, settings.bot.flood_burst,
                                 settings.bot.flood_rate)
    elif flood_guard:
        flood = FloodGuard(settings.bot.flood_burst, settings.bot.flood_rate)
    dispatcher = Dispatcher(
        sessions, router, services, adapters, flood=flood,
        deliverer=deliverer, on_first_contact=first_contact,
    )
    jobs = build_jobs()
    scheduler = build_scheduler(sessions, services, deliverer, jobs)

    async def announce_filed(session, services, report) -> None:
        # A report filed through the web goes to the team as a chat report does: its card.
        await send_card_to_team(session, services, report, reason="new")

    web_app = create_web_app([
        health_routes(sessions, dispatcher, deliverer),
        open311_api(Open311Deps(sessions, services, announce_filed, deliverer.wake)),
        dashboard_pages(DashboardDeps(sessions, services, deliverer.wake)),
    ])
    server = (WebServer(web_app, settings.bot.web_host, settings.bot.web_port,
                        reuse_port=settings.bot.workers > 1)
              if settings.bot.web_url else None)
    return App(settings, engine, sessions, services, dispatcher, deliverer, adapters, scheduler,
               jobs, web_app=web_app, web=server)


DEMO_ADMIN = "terminal:admin"  # who `make run`'s dashboard link signs in


async def open_demo_dashboard(app: App, adapter) -> None:
    """`make run` with no platform: the dashboard served beside the terminal chat, and a
    sign-in link for the demo admin (terminal:admin, granted admin here) printed above the
    chat. A port already taken (another window) leaves the chat without it, with a word."""
    from services import dashboard
    from storage import roles_service

    server = app.web
    if server is None:
        return
    try:
        await server.start()
    except OSError as exc:
        app.web = None
        await adapter.note("terminal.dashboard_unavailable", port=server.port, error=exc)
        return
    settings = app.settings
    if (settings.bot.web_url or "").endswith(":0"):  # BOT_WEB_PORT=0: the port chosen
        settings.bot.web_url = f"http://127.0.0.1:{server.port}"
    async with app.sessions() as session, session.begin():
        await roles_service.change_role(session, DEMO_ADMIN, "admin", None, actor_id=None,
                                        grant=True, create_missing=True)  # audited there
        who = await roles_service.find_resident(session, DEMO_ADMIN, create=False)
        link = await dashboard.sign_in_link(session, settings, app.services.signer, who.id,
                                            app.services.clock())
    await adapter.note("terminal.dashboard", url=dashboard.dashboard_url(settings), link=link,
                       who=DEMO_ADMIN, minutes=int(settings.bot.web_login_minutes))
