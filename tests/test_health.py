"""What an operator watches: /healthz and /metrics on the web port."""

from __future__ import annotations

import aiohttp

from tests.conftest import _drop_pg


async def _get(app, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{app.web.port}{path}") as r:
        return r.status, await r.text()


async def test_health_and_metrics(sqlite_url, make_app):
    app, chat = await make_app(sqlite_url, web_url="http://127.0.0.1/", web_host="127.0.0.1",
                               web_port=0)
    await chat.say("ann", "/start")
    await chat.say("ann", "/help")
    status, body = await _get(app, "/healthz")
    assert status == 200 and '"ok": true' in body and '"database": "ok"' in body
    status, body = await _get(app, "/metrics")
    assert status == 200
    lines = dict(line.rsplit(" ", 1) for line in body.splitlines() if line and line[0] != "#")
    assert float(lines['bot_updates_total{worker="0"}']) == 2
    assert float(lines['bot_handler_errors_total{worker="0"}']) == 0
    assert 'bot_outbox_queued{priority="reply"}' in lines
    assert 'bot_sends_rate_limited_total{worker="0"}' in lines


async def test_healthz_says_503_when_the_database_is_gone(pg_url, make_app):
    app, _ = await make_app(pg_url, web_url="http://127.0.0.1/", web_host="127.0.0.1",
                            web_port=0)
    assert (await _get(app, "/healthz"))[0] == 200
    await _drop_pg(pg_url.rsplit("/", 1)[1])
    status, body = await _get(app, "/healthz")
    assert status == 503 and '"ok": false' in body
