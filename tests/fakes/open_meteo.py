"""A fake Open-Meteo `/v1/forecast` on loopback: answers in its JSON format, fails on demand,
and records what it was asked."""

from __future__ import annotations

from datetime import date

from aiohttp import web


def daily_answer(day: date, code: int, tmax: float, tmin: float, precip: float,
                 wind: float = 12.0, *, latitude: float = 30.6, longitude: float = 104.04,
                 tz: str = "Asia/Shanghai") -> dict:
    """An answer as Open-Meteo gives it for `daily=...&forecast_days=2`."""
    tomorrow = date.fromordinal(day.toordinal() + 1)
    return {
        "latitude": latitude, "longitude": longitude, "generationtime_ms": 0.4,
        "utc_offset_seconds": 28800, "timezone": tz, "timezone_abbreviation": "GMT+8",
        "elevation": 500.0,
        "daily_units": {"time": "iso8601", "weather_code": "wmo code",
                        "temperature_2m_max": "°C", "temperature_2m_min": "°C",
                        "precipitation_sum": "mm", "wind_speed_10m_max": "km/h"},
        "daily": {"time": [day.isoformat(), tomorrow.isoformat()],
                  "weather_code": [code, 3], "temperature_2m_max": [tmax, 20.0],
                  "temperature_2m_min": [tmin, 12.0], "precipitation_sum": [precip, 0.0],
                  "wind_speed_10m_max": [wind, 8.0]},
    }


class FakeOpenMeteo:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail_next = 0  # answer this many requests with HTTP 500
        # Answer by latitude band: a list of (max latitude, answer); the first that fits.
        self.bands: list[tuple[float, dict]] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/forecast", self._forecast)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forecast(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.query))
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.json_response({"error": True, "reason": "upstream busy"}, status=500)
        try:
            lat = float(request.query["latitude"])
            float(request.query["longitude"])
        except (KeyError, ValueError):
            return web.json_response({"error": True, "reason": "Parameter latitude missing"},
                                     status=400)
        for max_lat, answer in self.bands:
            if lat <= max_lat:
                return web.json_response(answer)
        return web.json_response({"error": True, "reason": "no answer configured"}, status=400)
