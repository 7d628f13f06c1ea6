"""The one font every drawn image uses (charts, cards): it must cover Chinese and Latin.

WenQuanYi Micro Hei (Apache-2.0, `content/fonts/`) ships with the bot, because a fresh server
rarely has a CJK font installed and an image of empty boxes is worse than no image.
`BOT_FONT_FILE` points to another font, e.g. a house typeface.
"""

from __future__ import annotations

import functools
from pathlib import Path

from PIL import ImageFont

BUNDLED = Path(__file__).resolve().parent.parent / "content" / "fonts" / "wqy-microhei.ttc"


@functools.lru_cache(maxsize=32)
def font(size: int, path: str | None = None) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path or str(BUNDLED), size)
