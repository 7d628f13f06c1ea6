"""Shared bits of the report tests: pictures with a GPS tag, residents with a home, roles."""

from __future__ import annotations

import asyncio
import io
import re

from PIL import Image

from bot.delivery import Deliverer
from storage import roles_service


def jpeg_with_gps(color=(200, 30, 30), size=(64, 48)) -> bytes:
    img = Image.new("RGB", size, color)
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # camera make
    gps = {1: "N", 2: (30.0, 38.0, 0.0), 3: "E", 4: (104.0, 2.0, 0.0)}
    exif[0x8825] = gps
    out = io.BytesIO()
    img.save(out, format="JPEG", exif=exif.tobytes())
    return out.getvalue()


async def english_resident(chat, user: str, estate: str = "Zhonghai Mingcheng") -> None:
    await chat.say(user, "/start")
    await chat.press(user, "English")
    await chat.press(user, estate)
    await chat.press(user, "Skip")  # the building, and with it the unit


async def grant(app, user: str, kind: str, scope: str | None) -> None:
    async with app.sessions() as s, s.begin():
        await roles_service.change_role(s, f"memory:{user}", kind, scope, actor_id=None,
                                        grant=True, create_missing=True)


async def identity_id(app, platform: str, user: str) -> int:
    from storage.people import identity_for

    async with app.sessions() as s:
        return (await identity_for(s, platform, user)).id


async def drain(app) -> None:
    """Deliver everything queued (one message per chat per round, as the budget allows)."""
    deliverer = Deliverer(app.engine, app.sessions, app.adapters)
    for _ in range(100):
        if not await deliverer.drain_once():
            await asyncio.sleep(0.01)
            if not await deliverer.drain_once():
                return
        await asyncio.sleep(0.002)


async def file_report(chat, user: str, category: str, text: str, lat: float, lon: float) -> str:
    """A resident files a report at a point (not a duplicate); its reference."""
    await chat.say(user, "/report")
    await chat.press(user, category)
    await chat.say(user, text)
    await chat.press(user, "No photos")
    await chat.share_location(user, lat, lon)
    if "Is it one of these?" in chat.last_text(user):
        await chat.press(user, "No, it is a different problem")
    await chat.press(user, "File the report")
    return re.search(r"Z-\d{4}-\d{5}", chat.last_text(user)).group(0)
