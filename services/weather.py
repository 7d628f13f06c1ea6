"""The morning forecast: one Open-Meteo request per zone, one notice per zone and day.

A forecast that calls for thunderstorms, heavy rain, snow or heat is sent as a warning, in the
"weather" category and not as urgent: it is a model forecast hours ahead, not an official alert
(those come through CAP, services/cap.py, and are urgent when Severe/Extreme), so it respects the
residents' subscriptions and quiet hours, but its text leads with the warning and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

if TYPE_CHECKING:
    from bot.context import Services
    from bot.i18n import Texts
    from services.geo import TerritoryIndex

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import aiohttp
from shapely.geometry import shape

from storage import alerts, territory
from storage.notices import system_notice

log = logging.getLogger(__name__)

DAILY = ("weather_code", "temperature_2m_max", "temperature_2m_min", "precipitation_sum",
         "wind_speed_10m_max")
THUNDER = {95, 96, 99}
HEAVY_RAIN = {65, 82}
SNOW = {71, 73, 75, 77, 85, 86}
STALE_CLAIM = timedelta(minutes=5)


class ForecastError(Exception):
    pass


@dataclass(frozen=True)
class Forecast:
    day: date
    code: int | None
    tmax: float | None
    tmin: float | None
    precip: float | None
    wind: float | None

    def warnings(self, heavy_rain_mm: float, heat_celsius: float) -> list[str]:
        found = []
        if self.code in THUNDER:
            found.append("thunderstorm")
        if self.code in HEAVY_RAIN or (self.precip is not None and self.precip >= heavy_rain_mm):
            found.append("heavy_rain")
        if self.code in SNOW:
            found.append("snow")
        if self.tmax is not None and self.tmax >= heat_celsius:
            found.append("heat")
        return found


def parse_forecast(data: dict, day: date) -> Forecast:
    """The given day out of an Open-Meteo `/v1/forecast` answer with `daily` arrays."""
    if not isinstance(data, dict) or data.get("error"):
        raise ForecastError(f"provider error: {data.get('reason') if isinstance(data, dict) else data}")
    daily = data.get("daily")
    if not isinstance(daily, dict) or not isinstance(daily.get("time"), list):
        raise ForecastError("no daily forecast in the answer")
    try:
        i = daily["time"].index(day.isoformat())
    except ValueError:
        raise ForecastError(f"no forecast for {day}") from None

    def value(name: str) -> float | None:
        column = daily.get(name)
        if not isinstance(column, list) or i >= len(column) or column[i] is None:
            return None
        try:
            return float(column[i])
        except (TypeError, ValueError):
            raise ForecastError(f"{name} is not a number") from None

    code = value("weather_code")
    return Forecast(day, int(code) if code is not None else None, value("temperature_2m_max"),
                    value("temperature_2m_min"), value("precipitation_sum"),
                    value("wind_speed_10m_max"))


async def fetch_forecast(http: aiohttp.ClientSession, base_url: str, latitude: float,
                         longitude: float, tz: str, day: date, limit_seconds: float) -> Forecast:
    params = {"latitude": f"{latitude:.4f}", "longitude": f"{longitude:.4f}",
              "daily": ",".join(DAILY), "timezone": tz, "forecast_days": "2",
              "wind_speed_unit": "kmh"}
    url = base_url.rstrip("/") + "/v1/forecast"
    try:
        async with http.get(url, params=params,
                            timeout=aiohttp.ClientTimeout(total=limit_seconds)) as resp:
            if resp.status != 200:
                raise ForecastError(f"HTTP {resp.status}")
            data = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise ForecastError(f"{type(exc).__name__}: {exc}") from None
    return parse_forecast(data, day)


def render(texts: Texts, lang: str, zone_name: str, forecast: Forecast, warnings: list[str]) -> str:
    def num(v: float | None) -> str:
        return "–" if v is None else f"{v:.0f}" if abs(v - round(v)) < 0.05 else f"{v:.1f}"

    code_key = f"weather.code.{forecast.code}"
    desc = texts.get(lang, code_key) if forecast.code is not None and texts.has(code_key) \
        else texts.get(lang, "weather.unknown")
    def whole(v: float | None) -> str:
        return "–" if v is None else f"{round(v):.0f}"

    values = dict(zone=zone_name, date=forecast.day.strftime("%m-%d"), desc=desc,
                  tmin=whole(forecast.tmin), tmax=whole(forecast.tmax),
                  precip=num(forecast.precip), wind=whole(forecast.wind))
    if not warnings:
        return texts.get(lang, "weather.forecast", **values)
    sep = texts.get(lang, "weather.separator")
    return texts.get(lang, "weather.warning", **values,
                     warnings=sep.join(texts.get(lang, f"weather.warn_{w}") for w in warnings),
                     advice="\n".join(texts.get(lang, f"weather.advice_{w}") for w in warnings))


def zone_targets(zones: Sequence[territory.Zone], estates: Sequence[territory.Estate],
                 geo: TerritoryIndex) -> dict[int, tuple[list[int], float, float]]:
    """Zone id → (estate ids in it, latitude, longitude of the zone's centroid)."""
    targets = {}
    for zone in zones:
        estate_ids = [e.id for e in estates if geo.zone_of_estate(e.id) == zone.id]
        if not estate_ids:
            continue  # nobody lives there: no request, no notice
        centre = shape(zone.boundary).centroid
        targets[zone.id] = (estate_ids, centre.y, centre.x)
    return targets


def _clock(text: str) -> time:
    hours, minutes = text.strip().split(":")
    return time(int(hours), int(minutes))


async def morning_forecast(sessions: async_sessionmaker[AsyncSession], services: Services,
                           deliverer: object, *,
                           http: aiohttp.ClientSession | None = None) -> None:
    """Every minute: from the send time on, claim today's zones not yet sent, fetch, notify.

    A failed fetch leaves the zone pending for a retry `retry_minutes` later, until `give_up_at`.
    """
    cfg = services.settings.weather
    if not cfg.base_url:
        return
    tz = services.settings.bot.timezone
    now = services.clock()
    local = now.astimezone(ZoneInfo(tz))
    if local.time() < _clock(cfg.send_at):
        return
    today = local.date()
    late = local.time() >= _clock(cfg.give_up_at)
    async with sessions() as session, session.begin():
        zones = await territory.zones(session)
        targets = zone_targets(zones, await territory.estates(session), services.geo)
        if late:
            await _give_up(session, today)
            return
        await alerts.weather_days_ensure(session, list(targets), today, now)
        claimed = await alerts.weather_days_claim(session, today, now, STALE_CLAIM)
        rows = {r.id: r for i in claimed
                if (r := await session.get(alerts.AlertWeatherDay, i)) is not None}
    if not rows:
        return
    zones_by_id = {z.id: z for z in zones}
    http = http or services.http
    own_http = http is None  # a caller without the app's shared client (a one-off check)
    http = http or aiohttp.ClientSession()
    try:
        for row in rows.values():
            try:
                await _one_zone(sessions, services, http, row, zones_by_id.get(row.zone_id),
                                targets.get(row.zone_id), today, now)
            except Exception as exc:  # one zone's trouble must not cost the others theirs
                log.exception("weather for zone id %s failed", row.zone_id)
                async with sessions() as session, session.begin():
                    await alerts.weather_day_retry(
                        session, row.id,
                        now + timedelta(minutes=services.settings.weather.retry_minutes),
                        f"{type(exc).__name__}: {exc}")
    finally:
        if own_http:
            await http.close()


async def _one_zone(sessions: async_sessionmaker[AsyncSession], services: Services,
                    http: aiohttp.ClientSession, row: alerts.AlertWeatherDay,
                    zone: territory.Zone | None,
                    target: tuple[list[int], float, float] | None, today: date,
                    now: datetime) -> None:
    cfg = services.settings.weather
    if not cfg.base_url:
        return  # switched off since the job began
    if zone is None or target is None:
        await _finish(sessions, row.id, "failed", "zone has no estates any more")
        return
    estate_ids, lat, lon = target
    try:
        forecast = await fetch_forecast(http, cfg.base_url, lat, lon,
                                        services.settings.bot.timezone, today,
                                        cfg.timeout_seconds)
    except ForecastError as exc:
        log.warning("weather for zone %s failed (attempt %s): %s", zone.code, row.attempts, exc)
        async with sessions() as session, session.begin():
            await alerts.weather_day_retry(session, row.id,
                                           now + timedelta(minutes=cfg.retry_minutes), str(exc))
        return
    warnings = forecast.warnings(cfg.heavy_rain_mm, cfg.heat_celsius)
    texts = {lang: render(services.texts, lang, territory.localized(zone, lang), forecast,
                          warnings) for lang in ("zh-Hans", "en")}
    async with sessions() as session, session.begin():
        # The dedupe key makes the notice itself once-only, should two workers get this far.
        await system_notice(session, category="weather", estate_ids=estate_ids, texts=texts,
                            dedupe_key=f"weather:{zone.code}:{today.isoformat()}")
        await alerts.weather_day_done(session, row.id, "sent", warning=bool(warnings))
    log.info("weather for zone %s sent%s", zone.code, " as a warning" if warnings else "")


async def _finish(sessions: async_sessionmaker[AsyncSession], row_id: int, status: str, error: str) -> None:
    async with sessions() as session, session.begin():
        await alerts.weather_day_done(session, row_id, status, error=error)


async def _give_up(session: AsyncSession, today: date) -> None:
    count = await alerts.weather_days_give_up(session, today)
    if count:
        log.error("weather for %s zone(s) not sent today: the provider never answered", count)
