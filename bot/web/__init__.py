"""The web application served beside the chat platforms: one aiohttp application whose routes
the features register (the Open311 API; a staff dashboard later), started and stopped with the
bot. Framework only: it names no feature; the composition root (bot/app.py) hands it the
features' registrations."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from aiohttp import web

log = logging.getLogger(__name__)

# A feature adds its routes (or a sub-application under its prefix) to the application.
WebFeature = Callable[[web.Application], None]
# Bodies are read by the features with their own, smaller limits (bot.web.limits); this is
# the framework's ceiling for anything that reads a body without one.
CLIENT_MAX_SIZE = 1024 * 1024


def create_web_app(features: Iterable[WebFeature] = ()) -> web.Application:
    app = web.Application(client_max_size=CLIENT_MAX_SIZE)
    for register in features:
        register(app)
    return app


class WebServer:
    """Serves an application on host:port (port 0: any free one, then `port` says which)."""

    def __init__(self, app: web.Application, host: str, port: int, *,
                 reuse_port: bool = False) -> None:
        self.app, self.host, self.port = app, host, port
        self.reuse_port = reuse_port  # several workers on one port
        self._runner: web.AppRunner | None = None

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        runner = self._runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.host, self.port, reuse_port=self.reuse_port or None).start()
        self.port = runner.addresses[0][1]
        log.info("web application on %s:%s", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
