"""Scheduled pushes from outside sources: the morning forecast and official CAP alerts."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError

from bot import cap, weather
from bot.scheduler import Job
from handlers.router import Router
from storage.kv import KeyValue

router = Router()
CAP_LAST_POLL = "cap_last_poll"


async def weather_tick(sessions, services, deliverer) -> None:
    await weather.morning_forecast(sessions, services, deliverer)


async def cap_tick(sessions, services, deliverer) -> None:
    """Every minute, but the feed is read only every `CAP_POLL_SECONDS`, by the time kept in
    the database (a restart does not poll early, and settings change the pace without code)."""
    cfg = services.settings.cap
    if not cfg.feed_url and not cfg.folder:
        return
    now = services.clock()
    async with sessions() as session, session.begin():
        row = await session.get(KeyValue, CAP_LAST_POLL, with_for_update=True)
        if row is not None and now - datetime.fromisoformat(row.value) < timedelta(
                seconds=cfg.poll_seconds):
            return
        if row is None:
            try:
                async with session.begin_nested():
                    session.add(KeyValue(key=CAP_LAST_POLL, value=now.isoformat()))
            except IntegrityError:
                return  # another worker is polling right now
        else:
            row.value = now.isoformat()
    await cap.poll(sessions, services, deliverer)


jobs = [Job("weather-morning", 60, weather_tick), Job("cap-poll", 60, cap_tick)]
