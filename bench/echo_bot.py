"""The bare aiogram echo bot that bench/updates_per_second.py measures the bot against.

Run as its own process (imports nothing but aiogram, so its heap is aiogram's alone)::

    python bench/echo_bot.py BASE_URL TOKEN

polls the Bot API server at BASE_URL until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Message


def echo_dispatcher() -> Dispatcher:
    """One message handler answering message.answer(text)."""
    dp = Dispatcher()

    @dp.message()
    async def echo(message: Message) -> None:
        await message.answer(message.text or "")

    return dp


async def serve(base_url: str, token: str) -> None:
    bot = Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(base_url)))
    polling = asyncio.create_task(echo_dispatcher().start_polling(
        bot, handle_signals=False, close_bot_session=True, polling_timeout=1))
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, polling.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await polling


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
