"""The clock: APScheduler ticks that claim due work from the database.

Jobs carry no state of their own and have stable ids, so a restart or a second worker neither
loses nor doubles a job: the database says what is due, and claiming it is a guarded update.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from storage import outbox, updates

log = logging.getLogger(__name__)


class Clock:
    """Now, in UTC; tests move it forward instead of sleeping."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


@dataclass(frozen=True)
class Job:
    id: str
    seconds: float | Callable[[Any], float]  # or settings -> seconds (read at start-up)
    run: Callable[[Any, Any, Any], Awaitable[None]]  # async (sessions, services, deliverer)
    # settings -> (hour, minute, timezone): also run once a day at that local time, so a job
    # due at a set time starts then rather than up to one interval later.
    daily_at: Callable[[Any], tuple[int, int, str]] | None = None

    def interval(self, settings) -> float:
        return self.seconds(settings) if callable(self.seconds) else self.seconds


async def prune_updates(sessions, services, deliverer) -> None:
    async with sessions() as session, session.begin():
        await updates.prune(session)


async def prune_outbox(sessions, services, deliverer) -> None:
    """Finished outbox rows older than OUTBOX_KEEP_DAYS go, a batch a transaction, so the
    sender's table stays the size of what is in flight and the recent past."""
    settings = services.settings.outbox
    before = services.clock() - timedelta(days=settings.keep_days)
    while True:
        async with sessions() as session, session.begin():
            gone = await outbox.prune(session, before, settings.prune_batch)
        if gone < settings.prune_batch:
            return


CORE_JOBS = [Job("prune-updates", 3600, prune_updates), Job("prune-outbox", 3600, prune_outbox)]


class Scheduler(AsyncIOScheduler):
    """APScheduler that can stop politely: jobs in progress finish their transaction."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.running_jobs: set[asyncio.Task] = set()

    async def stop(self, grace: float = 10.0) -> None:
        if self.running:
            self.shutdown(wait=False)
        pending = {t for t in self.running_jobs if not t.done()}
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)


def build_scheduler(sessions, services, deliverer, jobs: list[Job]) -> Scheduler:
    """The framework's own jobs plus the features' `jobs`, handed in by the composition root
    (the framework never imports a feature)."""
    scheduler = Scheduler(timezone=UTC)
    for job in [*CORE_JOBS, *jobs]:
        scheduler.add_job(
            _guard(job, scheduler.running_jobs), "interval", seconds=job.interval(services.settings),
            id=job.id, replace_existing=True, args=[sessions, services, deliverer], **_TICKS,
            next_run_time=datetime.now(UTC) + timedelta(seconds=1),
        )
        if job.daily_at is not None:
            hour, minute, tz = job.daily_at(services.settings)
            scheduler.add_job(
                _guard(job, scheduler.running_jobs), CronTrigger(hour=hour, minute=minute,
                                                                 timezone=ZoneInfo(tz)),
                id=f"{job.id}-at", replace_existing=True, args=[sessions, services, deliverer],
                **_TICKS)
    return scheduler


# A job is a tick that asks the database what is due, so a tick that comes while the last one
# still runs has nothing to add, and one that comes late (a busy event loop) is still wanted.
# `_guard` skips the first quietly; APScheduler's own refusal (max_instances=1) and its
# "missed by" check (misfire_grace_time, 1 s) each logged a warning a tick under load, and
# the second dropped the late tick.
_TICKS: dict[str, Any] = {"max_instances": 2, "coalesce": True, "misfire_grace_time": None}


async def run_jobs_once(sessions, services, deliverer, jobs: list[Job]) -> None:
    """Every tick once, now: what the tests call instead of waiting for the scheduler."""
    for job in [*CORE_JOBS, *jobs]:
        await job.run(sessions, services, deliverer)


def _guard(job: Job, running: set):
    busy = False  # this schedule's run of the job is still going

    async def run(sessions, services, deliverer) -> None:
        nonlocal busy
        if not deliverer.leads():
            # Several workers: the jobs run in the one holding the sender lease; when it dies
            # another takes the lease within seconds (bot/delivery.py), and its jobs with it.
            return
        if busy:
            log.debug("job %s still running: this tick skipped", job.id)
            return
        busy = True
        task = asyncio.current_task()
        running.add(task)
        try:
            await job.run(sessions, services, deliverer)
        except asyncio.CancelledError:
            log.info("job %s stopped by shutdown", job.id)  # its transaction rolled back
        except Exception:
            log.exception("job %s failed", job.id)
        finally:
            busy = False
            running.discard(task)
    return run
