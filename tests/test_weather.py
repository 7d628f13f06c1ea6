"""The morning forecast: Open-Meteo format on loopback, one notice per zone and day, warnings
for severe weather, retries after a failed fetch, and exactly the zone's residents reached."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.config import WeatherSettings
from handlers.alerts import weather_tick
from services.weather import Forecast, ForecastError, parse_forecast
from storage.alerts import AlertWeatherDay
from storage.notices import Notice
from storage.subscriptions import SubscriptionOptOut
from storage.territory import Zone
from tests.fakes.open_meteo import FakeOpenMeteo, daily_answer
from tests.notice_support import add_resident, pump

TZ = ZoneInfo("Asia/Shanghai")


def _tomorrow() -> date:
    """Tomorrow in the bot's timezone: every time set on it is ahead of the real clock (a
    UTC date would put 07:00 in Shanghai behind it after 23:00 UTC, before rows stamped now)."""
    return datetime.now(TZ).date() + timedelta(days=1)


def _set_local(app, day: date, at: time) -> None:
    clock = app.services.clock
    target = datetime.combine(day, at, TZ).astimezone(UTC)
    clock.offset = timedelta()
    clock.offset = target - clock()


@pytest.fixture
async def meteo():
    fake = FakeOpenMeteo()
    await fake.start()
    yield fake
    await fake.stop()


def test_send_time_is_checked():
    from pydantic import ValidationError

    assert WeatherSettings(send_at=" 06:30").send_at == "06:30"
    for bad in ("7am", "25:00", "07:60", ""):
        with pytest.raises(ValidationError):
            WeatherSettings(send_at=bad)


def test_parse_and_warnings():
    day = date(2026, 7, 20)
    f = parse_forecast(daily_answer(day, 95, 33.4, 24.0, 12.0), day)
    assert f == Forecast(day, 95, 33.4, 24.0, 12.0, 12.0)
    assert f.warnings(25, 35) == ["thunderstorm"]
    assert parse_forecast(daily_answer(day, 3, 36, 27, 0), day).warnings(25, 35) == ["heat"]
    assert parse_forecast(daily_answer(day, 63, 20, 15, 31), day).warnings(25, 35) == [
        "heavy_rain"]
    assert parse_forecast(daily_answer(day, 82, 20, 15, 3), day).warnings(25, 35) == [
        "heavy_rain"]
    assert parse_forecast(daily_answer(day, 75, -1, -6, 8), day).warnings(25, 35) == ["snow"]
    assert parse_forecast(daily_answer(day, 61, 20, 15, 5), day).warnings(25, 35) == []
    with pytest.raises(ForecastError):
        parse_forecast(daily_answer(day, 0, 1, 1, 0), date(2026, 7, 25))  # not that day
    with pytest.raises(ForecastError):
        parse_forecast({"error": True, "reason": "bad"}, day)
    with pytest.raises(ForecastError):
        parse_forecast({"daily": {"time": [day.isoformat()], "weather_code": ["x"]}}, day)


async def test_morning_forecast_reaches_each_zone_once(make_app, db_url, meteo, caplog):
    app, chat = await make_app(db_url)
    app.services.settings.weather = WeatherSettings(base_url=meteo.base_url, retry_minutes=10)
    day = _tomorrow()
    meteo.bands = [
        (30.6134, daily_answer(day, 95, 31.0, 23.0, 38.5, 40)),  # south: storms, heavy rain
        (30.6267, daily_answer(day, 2, 22.4, 14.6, 0.0)),  # central: fine
        (90.0, daily_answer(day, 61, 18.0, 12.0, 3.2)),  # north: light rain
    ]
    async with app.sessions() as s, s.begin():
        await add_resident(s, "vic1", "victoria")
        await add_resident(s, "vic2", "victoria", lang="zh-Hans")
        quiet = await add_resident(s, "vic3", "victoria")
        await add_resident(s, "rong", "rongcheng-houjie")
        await add_resident(s, "sxs", "shenxianshu-dayuan")
        await add_resident(s, "zh", "zhonghai-mingcheng")
        await add_resident(s, "nohome", None)
        s.add(SubscriptionOptOut(resident_id=quiet.resident_id, category="weather"))

    _set_local(app, day, time(6, 50))
    await weather_tick(app.sessions, app.services, None)
    assert meteo.requests == []  # not yet time

    _set_local(app, day, time(7, 1))
    meteo.fail_next = 1
    with caplog.at_level(logging.WARNING):
        await weather_tick(app.sessions, app.services, None)
    assert len(meteo.requests) == 3
    assert "weather for zone" in caplog.text
    await pump(app)
    async with app.sessions() as s:
        rows = (await s.scalars(select(AlertWeatherDay))).all()
    assert sorted(r.status for r in rows) == ["pending", "sent", "sent"]

    # A minute later nothing is due: the failed zone waits for its retry.
    app.services.clock.advance(timedelta(minutes=1))
    await weather_tick(app.sessions, app.services, None)
    assert len(meteo.requests) == 3
    app.services.clock.advance(timedelta(minutes=10))
    await weather_tick(app.sessions, app.services, None)
    assert len(meteo.requests) == 4
    await pump(app)
    # Later that morning, and a second worker running the same tick: nothing more.
    app.services.clock.advance(timedelta(minutes=30))
    await weather_tick(app.sessions, app.services, None)
    await weather_tick(app.sessions, app.services, None)
    await pump(app)
    assert len(meteo.requests) == 4

    first = meteo.requests[0]
    assert first["timezone"] == "Asia/Shanghai"
    assert "weather_code" in first["daily"] and "precipitation_sum" in first["daily"]

    for user in ("vic1", "rong"):
        [text] = chat.texts_to(user)
        assert "weather warning" in text and "thunderstorms, heavy rain" in text
        assert "South zone" in text and "Stay indoors" in text
    [zh] = chat.texts_to("vic2")
    assert "天气预警" in zh and "雷暴、强降雨" in zh and "南片区" in zh
    [central] = chat.texts_to("sxs")
    assert "Partly cloudy, 15 to 22 °C" in central and "warning" not in central
    [north] = chat.texts_to("zh")
    assert "Light rain" in north and "3.2 mm" in north
    assert chat.texts_to("vic3") == [] and chat.texts_to("nohome") == []
    async with app.sessions() as s:
        keys = sorted((await s.scalars(select(Notice.dedupe_key))).all())
    iso = day.isoformat()
    assert keys == [f"weather:central:{iso}", f"weather:north:{iso}", f"weather:south:{iso}"]


async def test_provider_down_all_morning_gives_up_without_crashing(make_app, sqlite_url, meteo,
                                                                   caplog):
    app, chat = await make_app(sqlite_url)
    app.services.settings.weather = WeatherSettings(base_url=meteo.base_url, retry_minutes=30)
    async with app.sessions() as s, s.begin():
        await add_resident(s, "vic1", "victoria")
    day = _tomorrow()
    meteo.fail_next = 10_000
    _set_local(app, day, time(7, 0))
    for _ in range(9):  # 07:00 to 11:00, every half hour
        await weather_tick(app.sessions, app.services, None)
        app.services.clock.advance(timedelta(minutes=30))
    with caplog.at_level(logging.ERROR):
        await weather_tick(app.sessions, app.services, None)
    assert "never answered" in caplog.text
    async with app.sessions() as s:
        assert {r.status for r in (await s.scalars(select(AlertWeatherDay))).all()} == {"failed"}
    tries = len(meteo.requests)
    assert tries == 3 * 8  # three zones, eight tries each before 11:00
    await weather_tick(app.sessions, app.services, None)
    assert len(meteo.requests) == tries
    await pump(app)
    assert chat.texts_to("vic1") == []


async def test_unreachable_provider_and_no_url(make_app, sqlite_url):
    app, _ = await make_app(sqlite_url)
    day = _tomorrow()
    _set_local(app, day, time(8, 0))
    await weather_tick(app.sessions, app.services, None)  # no base URL: nothing at all
    async with app.sessions() as s:
        assert (await s.scalars(select(AlertWeatherDay))).all() == []
    # A port nobody listens on: logged and retried, never raised.
    app.services.settings.weather = WeatherSettings(base_url="http://127.0.0.1:9",
                                                    timeout_seconds=2)
    await weather_tick(app.sessions, app.services, None)
    async with app.sessions() as s:
        rows = (await s.scalars(select(AlertWeatherDay))).all()
    assert {r.status for r in rows} == {"pending"} and all(r.error for r in rows)


async def test_a_worker_dying_mid_fetch_is_taken_over_once(make_app, db_url, meteo):
    from storage import alerts

    app, chat = await make_app(db_url)
    app.services.settings.weather = WeatherSettings(base_url=meteo.base_url)
    day = _tomorrow()
    meteo.bands = [(90.0, daily_answer(day, 1, 25, 16, 0))]
    async with app.sessions() as s, s.begin():
        await add_resident(s, "vic1", "victoria")
    _set_local(app, day, time(7, 5))
    async with app.sessions() as s, s.begin():  # a worker claims every zone, then dies
        zones = [z.id for z in (await s.scalars(select(Zone))).all()]
        await alerts.weather_days_ensure(s, zones, day, app.services.clock())
        assert len(await alerts.weather_days_claim(s, day, app.services.clock(),
                                                   timedelta(minutes=5))) == 3
    await weather_tick(app.sessions, app.services, None)
    assert meteo.requests == []  # its claims are still fresh
    app.services.clock.advance(timedelta(minutes=6))
    await asyncio.gather(weather_tick(app.sessions, app.services, None),
                         weather_tick(app.sessions, app.services, None))
    await pump(app)
    assert len(meteo.requests) == 3  # two workers, each zone fetched once
    assert len(chat.texts_to("vic1")) == 1
    assert "Mainly clear, 16 to 25 °C" in chat.texts_to("vic1")[0]


async def test_one_zones_odd_answer_does_not_cost_the_others(make_app, sqlite_url, meteo,
                                                              caplog):
    app, chat = await make_app(sqlite_url)
    app.services.settings.weather = WeatherSettings(base_url=meteo.base_url)
    day = _tomorrow()
    odd = daily_answer(day, 0, 20, 10, 0)
    odd["daily"]["weather_code"][0] = float("inf")  # sent as Infinity: no WMO code at all
    meteo.bands = [(30.6134, odd), (90.0, daily_answer(day, 3, 20, 10, 0))]
    async with app.sessions() as s, s.begin():
        await add_resident(s, "vic", "victoria")
        await add_resident(s, "sxs", "shenxianshu-dayuan")
    _set_local(app, day, time(7, 0))
    with caplog.at_level(logging.ERROR):
        await weather_tick(app.sessions, app.services, None)
    assert "weather for zone id" in caplog.text
    await pump(app)
    assert chat.texts_to("vic") == [] and len(chat.texts_to("sxs")) == 1
    async with app.sessions() as s:
        statuses = sorted(r.status for r in (await s.scalars(select(AlertWeatherDay))).all())
    assert statuses == ["pending", "sent", "sent"]


def test_send_at_after_give_up_is_refused_at_start_up(tmp_path):
    """`python -m bot run` with WEATHER_SEND_AT=12:00 and the default give-up time (11:00)
    exits non-zero with one clear line, instead of never sending and saying nothing."""
    import os
    import subprocess
    import sys

    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not before WEATHER_GIVE_UP_AT"):
        WeatherSettings(send_at="12:00")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEATHER_", "TELEGRAM_"))}
    env.update(WEATHER_SEND_AT="12:00",
               DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    done = subprocess.run([sys.executable, "-m", "bot", "run"], cwd=tmp_path, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == ["settings error (WeatherSettings): WEATHER_SEND_AT=12:00 is not before "
                     "WEATHER_GIVE_UP_AT=11:00: the forecast would never be sent; set the "
                     "give-up time later than the send time"]
    assert "Traceback" not in done.stderr + done.stdout


async def test_first_fetch_is_scheduled_at_the_send_time(make_app, sqlite_url):
    """Besides the minute tick (for retries), the forecast job runs at the send time itself."""
    from bot.scheduler import build_scheduler

    app, _ = await make_app(sqlite_url)
    app.services.settings.weather = WeatherSettings(send_at="06:45", give_up_at="11:00")
    scheduler = build_scheduler(app.sessions, app.services, None, app.jobs)
    job = scheduler.get_job("weather-morning-at")
    tz = ZoneInfo(app.services.settings.bot.timezone)
    fire = job.trigger.get_next_fire_time(None, datetime.now(tz))
    assert (fire.astimezone(tz).hour, fire.astimezone(tz).minute) == (6, 45)
