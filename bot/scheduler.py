"""The clock: APScheduler ticks that claim due work from the database.

Jobs carry no state of their own and have stable ids, so a restart or a second worker neither
loses nor doubles a job: the database says what is due, and claiming it is a guarded update.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from storage import updates

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
    seconds: float
    run: object  # async (sessions, services, deliverer) -> None


async def prune_updates(sessions, services, deliverer) -> None:
    async with sessions() as session, session.begin():
        await updates.prune(session)


CORE_JOBS = [Job("prune-updates", 3600, prune_updates)]


def build_scheduler(sessions, services, deliverer) -> AsyncIOScheduler:
    from handlers import build_jobs

    scheduler = AsyncIOScheduler(timezone=UTC)
    for job in [*CORE_JOBS, *build_jobs()]:
        scheduler.add_job(
            _guard(job), "interval", seconds=job.seconds, id=job.id, replace_existing=True,
            args=[sessions, services, deliverer], max_instances=1, coalesce=True,
            next_run_time=datetime.now(UTC) + timedelta(seconds=1),
        )
    return scheduler


async def run_jobs_once(sessions, services, deliverer) -> None:
    """Every tick once, now: what the tests call instead of waiting for the scheduler."""
    from handlers import build_jobs

    for job in [*CORE_JOBS, *build_jobs()]:
        await job.run(sessions, services, deliverer)


def _guard(job: Job):
    async def run(sessions, services, deliverer) -> None:
        try:
            await job.run(sessions, services, deliverer)
        except Exception:
            log.exception("job %s failed", job.id)
    return run
