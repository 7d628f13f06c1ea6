"""What an operator watches: `GET /healthz` (is this worker up, can it reach the database,
does it hold the sender lease) and `GET /metrics` in Prometheus's text format (outbox depth by
priority, sends, 429s, retries, updates, flood refusals, handler errors).

Counters are this process's; the outbox depth is the database's, the same from every worker.
With several workers on one port a scrape reaches one of them: give each its own
`BOT_WEB_PORT` to scrape them all (README, deployment)."""

from __future__ import annotations

import os
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text

from storage.outbox import OutboxMessage, Priority, Status


def health_routes(sessions: Any, dispatcher: Any, deliverer: Any):
    worker = os.environ.get("BOT_WORKER_INDEX", "0")

    async def healthz(request: web.Request) -> web.Response:
        try:
            async with sessions() as session:
                await session.execute(text("SELECT 1"))
            database = "ok"
        except Exception as exc:  # the database is down or refuses: say so, 503
            database = f"unreachable: {type(exc).__name__}"
        body = {"ok": database == "ok", "database": database, "worker": worker,
                "sender": deliverer.leads()}
        return web.json_response(body, status=200 if body["ok"] else 503)

    async def metrics(request: web.Request) -> web.Response:
        async with sessions() as session:
            depth = dict((await session.execute(
                select(OutboxMessage.priority, func.count())
                .where(OutboxMessage.status.in_([Status.PENDING.value, Status.SENDING.value]))
                .group_by(OutboxMessage.priority))).all())
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Snapshot(worker, depth, dispatcher, deliverer))
        return web.Response(body=generate_latest(registry),
                            content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    def register(app: web.Application) -> None:
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/metrics", metrics)

    return register


class _Snapshot(Collector):
    """The figures as they are at the scrape."""

    def __init__(self, worker: str, depth: dict[int, int], dispatcher: Any, deliverer: Any):
        self.worker, self.depth = worker, depth
        self.dispatcher, self.deliverer = dispatcher, deliverer

    def collect(self):
        queued = GaugeMetricFamily("bot_outbox_queued", "Messages waiting or being sent",
                                   labels=["priority"])
        for priority in Priority:
            queued.add_metric([priority.name.lower()], self.depth.get(int(priority), 0))
        yield queued
        lease = GaugeMetricFamily("bot_sender_lease", "1 when this worker is the sender",
                                  labels=["worker"])
        lease.add_metric([self.worker], 1 if self.deliverer.leads() else 0)
        yield lease
        for name, doc, value in (
                ("bot_sends", "Messages the platforms accepted", self.deliverer.sent),
                ("bot_sends_rate_limited", "Sends answered 429", self.deliverer.limited),
                ("bot_sends_retried", "Sends to be tried again", self.deliverer.retried),
                ("bot_updates", "Updates received", self.dispatcher.updates),
                ("bot_updates_flood_refused", "Updates refused by the flood guard",
                 self.dispatcher.flooded),
                ("bot_handler_errors", "Updates whose handling failed", self.dispatcher.errors)):
            counter = CounterMetricFamily(name, doc, labels=["worker"])
            counter.add_metric([self.worker], value)
            yield counter
