"""The yearly volunteering card: a bilingual PNG drawn with Pillow.

Chinese needs a CJK font. One is taken from the settings, else from fontconfig (`fc-match
:lang=zh`), else from the usual install paths; without one the card is drawn in English only,
and texts that need CJK glyphs are left out rather than drawn as empty boxes.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 900, 560
_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/System/Library/Fonts/PingFang.ttc",
    "C:/Windows/Fonts/msyh.ttc",
)
_LATIN = ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


@functools.lru_cache(maxsize=4)
def find_cjk_font(configured: str | None) -> str | None:
    if configured and Path(configured).is_file():
        return configured
    if shutil.which("fc-match"):
        try:
            out = subprocess.run(["fc-match", "-f", "%{file}", ":lang=zh"], capture_output=True,
                                 text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        # fc-match always answers; only trust a font that really covers Chinese.
        if out and Path(out).is_file() and _covers_chinese(out):
            return out
    for path in _CANDIDATES:
        if Path(path).is_file():
            return path
    return None


def _covers_chinese(path: str) -> bool:
    try:
        font = ImageFont.truetype(path, 20)
    except OSError:
        return False
    # A font without the glyph draws its "missing" box, the same as for a private-use code.
    drawn = _glyph(font, "志")
    return any(drawn) and drawn != _glyph(font, "\ue000")


def _glyph(font, char: str) -> bytes:
    img = Image.new("L", (40, 40))
    ImageDraw.Draw(img).text((5, 5), char, font=font, fill=255)
    return img.tobytes()


def _font(path: str | None, size: int):
    for candidate in ([path] if path else []) + list(_LATIN):
        try:
            return ImageFont.truetype(candidate, size)
        except OSError:
            continue
    return ImageFont.load_default()


def _needs_cjk(text: str) -> bool:
    return any(ord(c) >= 0x2E80 for c in text)


def render_card(*, year: int, name: str, estate: tuple[str, str] | None, total: float,
                shifts: int, top: list[tuple[str, float]], labels: dict[str, list[str]],
                font_path: Path | str | None) -> tuple[bytes, bool]:
    """PNG bytes of the card, and whether Chinese could be drawn."""
    cjk = find_cjk_font(str(font_path) if font_path else None)
    can = (lambda s: True) if cjk else (lambda s: not _needs_cjk(s))

    def pick(pair: list[str]) -> str:
        shown = [s for s in pair if can(s)]
        return " · ".join(dict.fromkeys(shown))

    img = Image.new("RGB", (WIDTH, HEIGHT), (250, 246, 238))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, WIDTH, 110], fill=(196, 58, 49))
    big, mid, small = _font(cjk, 44), _font(cjk, 30), _font(cjk, 24)
    draw.text((40, 30), pick(labels["title"]), font=big, fill="white")
    y = 140
    who = name if can(name) else ""
    if estate:
        place = pick([estate[0], estate[1]]) if cjk else estate[1]
        who = f"{who} — {place}" if who else place
    if who:
        draw.text((40, y), who, font=mid, fill=(40, 40, 40))
        y += 60
    draw.text((40, y), f"{round(total, 1):g}", font=_font(cjk, 96), fill=(196, 58, 49))
    draw.text((300, y + 20), pick(labels["hours"]), font=mid, fill=(40, 40, 40))
    draw.text((300, y + 60), f"{shifts} {pick(labels['shifts'])}", font=small,
              fill=(90, 90, 90))
    y += 140
    if top:
        draw.text((40, y), pick(labels["top"]), font=small, fill=(90, 90, 90))
        y += 36
        for i, (title, hours) in enumerate(top, 1):
            shown = title if can(title) else f"#{i}"
            draw.text((60, y), f"{shown[:40]} — {round(hours, 1):g} h", font=small, fill=(40, 40, 40))
            y += 32
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue(), cjk is not None
