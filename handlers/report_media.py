"""Photos and voice notes for reports, fetched from the chat platform: checked, cleaned of
metadata (services.report_media, which the dashboard's uploads go through too), kept in the
media store."""

from __future__ import annotations

import asyncio

from bot.messaging.model import Kind
from services.report_media import PHOTO_TYPES, MediaRefused, store_photo

__all__ = ["MediaRefused", "take_photo", "take_voice"]

VOICE_TYPES = {"audio/ogg", "audio/opus", "audio/mpeg", "audio/mp4", "audio/aac", "audio/amr",
               "audio/x-m4a", "audio/wav"}
# The file a voice note is kept in is named for its format, so what plays it later (a chat,
# a browser) knows what it holds: WeChat's are AMR, Telegram's OGG/Opus.
VOICE_SUFFIXES = {"audio/ogg": ".ogg", "audio/opus": ".ogg", "audio/mpeg": ".mp3",
                  "audio/mp4": ".m4a", "audio/x-m4a": ".m4a", "audio/aac": ".aac",
                  "audio/amr": ".amr", "audio/wav": ".wav"}


async def _fetch(ctx) -> bytes:
    adapter = ctx.services.adapters[ctx.inbound.platform]
    return await adapter.fetch_media(ctx.inbound.media)


async def take_photo(ctx) -> str:
    """The inbound photo (or image sent as a file), cleaned and stored; its media path."""
    limits = ctx.services.settings.reports
    ref = ctx.inbound.media
    if ref is None:
        raise MediaRefused("photo_unsupported")
    if ctx.inbound.kind == Kind.DOCUMENT and (ref.mime_type or "").lower() not in PHOTO_TYPES:
        raise MediaRefused("photo_unsupported")
    if ref.size is not None and ref.size > limits.max_photo_bytes:
        raise MediaRefused("photo_too_large", mb=limits.max_photo_bytes // (1024 * 1024))
    return await store_photo(ctx.services, await _fetch(ctx))


async def take_voice(ctx) -> tuple[str, int]:
    limits = ctx.services.settings.reports
    ref = ctx.inbound.media
    if ref is None or not ref.duration or ref.duration <= 0:
        raise MediaRefused("voice_empty")
    if ref.duration > limits.max_voice_seconds:
        raise MediaRefused("voice_too_long", seconds=limits.max_voice_seconds)
    if ref.mime_type and ref.mime_type.lower() not in VOICE_TYPES:
        raise MediaRefused("voice_unsupported")
    if ref.size is not None and ref.size > limits.max_voice_bytes:
        raise MediaRefused("voice_too_long", seconds=limits.max_voice_seconds)
    data = await _fetch(ctx)
    if not data:
        raise MediaRefused("voice_empty")
    if len(data) > limits.max_voice_bytes:
        raise MediaRefused("voice_too_long", seconds=limits.max_voice_seconds)
    suffix = VOICE_SUFFIXES.get((ref.mime_type or "").lower())
    if suffix is None and data.startswith(b"#!AMR"):
        suffix = ".amr"
    return (await asyncio.to_thread(ctx.services.media.save, data, suffix or ".ogg"),
            int(ref.duration))
