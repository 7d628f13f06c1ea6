"""A report's photo, however it came (a chat platform's file, a dashboard upload): checked,
re-encoded from its pixels alone (no EXIF: position, camera, time), kept in the media store."""

from __future__ import annotations

import asyncio
import io
import warnings
from typing import TYPE_CHECKING

from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    from bot.context import Services

PHOTO_TYPES = {"image/jpeg", "image/png", "image/webp"}
MAX_PIXELS = 50_000_000


class MediaRefused(Exception):
    """Why a file was not taken: a text key under `reports.`."""

    def __init__(self, key: str, **values: object) -> None:
        super().__init__(key)
        self.key = key
        self.values = values


def clean_photo(data: bytes) -> bytes:
    """Re-encode as JPEG from the pixels alone: EXIF (GPS position, camera, time) is dropped,
    the picture is turned upright first so nothing looks wrong without it."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as img:
                if img.format not in ("JPEG", "PNG", "WEBP"):
                    raise MediaRefused("photo_unsupported")
                if img.width * img.height > MAX_PIXELS:
                    raise MediaRefused("photo_unsupported")
                upright = ImageOps.exif_transpose(img).convert("RGB")
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError,
                Image.DecompressionBombWarning, ValueError):
            raise MediaRefused("photo_unsupported") from None
    pixels = Image.frombytes("RGB", upright.size, upright.tobytes())
    out = io.BytesIO()
    pixels.save(out, format="JPEG", quality=85, optimize=True)
    return out.getvalue()


async def store_photo(services: Services, data: bytes) -> str:
    """Photo bytes checked against the size limit, cleaned and stored; the media path.
    MediaRefused (photo_too_large, photo_unsupported) otherwise."""
    limit = services.settings.reports.max_photo_bytes
    if len(data) > limit:
        raise MediaRefused("photo_too_large", mb=limit // (1024 * 1024))
    cleaned = await asyncio.to_thread(clean_photo, data)
    return await asyncio.to_thread(services.media.save, cleaned, ".jpg")
