"""A poll's bar chart as a PNG, drawn with Pillow.

Bars are labelled by option number, not by the option's text: the machine this runs on may have
no font with Chinese glyphs (`fc-list :lang=zh` was empty where this was written), so the legend
with the option texts is the caption sent with the image.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

_FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
          "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
WIDTH, ROW, PAD, LABEL = 800, 56, 24, 60


def _font(size: int):
    for path in _FONTS:
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size)


def render(votes: list[int], percents: list[str], footer: str) -> bytes:
    """Bars for `votes` (one per option, in order), each with its count and percentage.

    `footer` must be Latin text (turnout figures), for the same font reason as above."""
    height = PAD * 2 + ROW * len(votes) + 40
    img = Image.new("RGB", (WIDTH, height), "white")
    draw = ImageDraw.Draw(img)
    font, small = _font(22), _font(18)
    top = max(votes) if votes and max(votes) > 0 else 1
    bar_space = WIDTH - PAD * 2 - LABEL - 170
    for i, (count, pct) in enumerate(zip(votes, percents, strict=True)):
        y = PAD + i * ROW
        draw.text((PAD, y + 12), f"{i + 1}", fill="black", font=font)
        length = int(bar_space * count / top)
        draw.rectangle((PAD + LABEL, y + 8, PAD + LABEL + max(length, 2), y + ROW - 12),
                       fill=(52, 120, 200))
        draw.text((PAD + LABEL + max(length, 2) + 10, y + 14), f"{count}  ({pct}%)",
                  fill="black", font=small)
    draw.text((PAD, height - 40), footer, fill=(80, 80, 80), font=small)
    out = io.BytesIO()
    img.save(out, "PNG", optimize=True)
    return out.getvalue()
