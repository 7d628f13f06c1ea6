"""Scheduled pushes from outside sources: the morning forecast and official CAP alerts."""

from __future__ import annotations

from datetime import timedelta

from bot.router import Router
from bot.scheduler import Job
from services import cap, weather
from storage import kv

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
    every = timedelta(seconds=cfg.poll_seconds - POLL_SLACK_SECONDS)
    async with sessions() as session, session.begin():
        if not await kv.claim_period(session, CAP_LAST_POLL, services.clock(), every):
            return
    await cap.poll(sessions, services, deliverer)


def _weather_send_at(settings) -> tuple[int, int, str]:
    hours, _, minutes = settings.weather.send_at.partition(":")
    return int(hours), int(minutes), settings.bot.timezone


jobs = [Job("weather-morning", 60, weather_tick, daily_at=_weather_send_at),
        Job("cap-poll", lambda settings: settings.cap.poll_seconds, cap_tick)]
