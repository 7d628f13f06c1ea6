"""The yearly volunteering card: a bilingual PNG drawn with Pillow in the bundled CJK font."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

from bot.fonts import font

WIDTH, HEIGHT = 900, 560


def render_card(*, year: int, name: str, estate: tuple[str, str] | None, total: float,
                shifts: int, top: list[tuple[str, float]], labels: dict[str, list[str]],
                font_path: str | None = None) -> bytes:
    """PNG bytes of the card; `labels` holds each text in both languages."""

    def pick(pair: list[str]) -> str:
        return " · ".join(dict.fromkeys(pair))

    def face(size: int):
        return font(size, font_path)

    img = Image.new("RGB", (WIDTH, HEIGHT), (250, 246, 238))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, WIDTH, 110], fill=(196, 58, 49))
    big, mid, small = face(44), face(30), face(24)
    draw.text((40, 30), pick(labels["title"]), font=big, fill="white")
    y = 140
    who = name
    if estate:
        who = f"{who} — {pick([estate[0], estate[1]])}"
    draw.text((40, y), who, font=mid, fill=(40, 40, 40))
    y += 60
    draw.text((40, y), f"{round(total, 1):g}", font=face(96), fill=(196, 58, 49))
    draw.text((300, y + 20), pick(labels["hours"]), font=mid, fill=(40, 40, 40))
    draw.text((300, y + 60), f"{shifts} {pick(labels['shifts'])}", font=small,
              fill=(90, 90, 90))
    y += 140
    if top:
        draw.text((40, y), pick(labels["top"]), font=small, fill=(90, 90, 90))
        y += 36
        for title, hours in top:
            draw.text((60, y), f"{title[:40]} — {round(hours, 1):g} h", font=small,
                      fill=(40, 40, 40))
            y += 32
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
