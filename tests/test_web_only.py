"""`python -m bot web`: the web application alone, as its own process, on the bot's database."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_python_m_bot_web_serves_the_dashboard_and_open311_alone(tmp_path):
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/bot.sqlite3",
           "BOT_MEDIA_DIR": str(tmp_path / "media"), "BOT_WEB_HOST": "127.0.0.1",
           "BOT_WEB_PORT": str(port), "BOT_DEFAULT_LANGUAGE": "en"}
    for name in ("TELEGRAM_BOT_TOKEN", "BOT_WEB_URL", "WECHAT_APP_ID"):
        env.pop(name, None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "web", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert f"http://127.0.0.1:{port}/dashboard/" in line and "web only" in line, line
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/dashboard/") as resp:
                assert resp.status == 401  # not signed in: the page says how to get a link
                assert "/dashboard" in await resp.text()
            async with http.get(f"http://127.0.0.1:{port}/open311/v2/services.json") as resp:
                assert resp.status == 200 and isinstance(await resp.json(), list)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
