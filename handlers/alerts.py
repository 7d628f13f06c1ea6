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
POLL_SLACK_SECONDS = 1.0


async def weather_tick(sessions, services, deliverer) -> None:
    await weather.morning_forecast(sessions, services, deliverer)


async def cap_tick(sessions, services, deliverer) -> None:
    """Ticks every `CAP_POLL_SECONDS`; the time of the last poll is kept in the database, so a
    restart or a second worker does not poll early (a second of slack absorbs timer jitter)."""
    cfg = services.settings.cap
    if not cfg.feed_url and not cfg.folder:
        return
    now = services.clock()
    async with sessions() as session, session.begin():
        row = await session.get(KeyValue, CAP_LAST_POLL, with_for_update=True)
        if row is not None and now - datetime.fromisoformat(row.value) < timedelta(
                seconds=cfg.poll_seconds - POLL_SLACK_SECONDS):
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


def _weather_send_at(settings) -> tuple[int, int, str]:
    hours, _, minutes = settings.weather.send_at.partition(":")
    return int(hours), int(minutes), settings.bot.timezone


jobs = [Job("weather-morning", 60, weather_tick, daily_at=_weather_send_at),
        Job("cap-poll", lambda settings: settings.cap.poll_seconds, cap_tick)]
