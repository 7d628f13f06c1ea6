"""A poll's bar chart as a PNG, drawn with Pillow in the bundled CJK font."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

from bot.fonts import font

WIDTH, ROW, PAD, NUMBER = 800, 78, 24, 40
LABEL_CHARS = 40


def render(question: str, labels: list[str], votes: list[int], percents: list[str],
           footer: str, font_path: str | None = None) -> bytes:
    """A bar per option (in order), each under its label with its count and percentage."""
    height = PAD * 3 + 40 + ROW * len(votes) + 40
    img = Image.new("RGB", (WIDTH, height), "white")
    draw = ImageDraw.Draw(img)
    title, body, small = font(26, font_path), font(20, font_path), font(18, font_path)
    draw.text((PAD, PAD), _clip(question, 48), fill="black", font=title)
    top = max(votes) if votes and max(votes) > 0 else 1
    bar_space = WIDTH - PAD * 2 - NUMBER - 170
    for i, (label, count, pct) in enumerate(zip(labels, votes, percents, strict=True)):
        y = PAD * 2 + 40 + i * ROW
        draw.text((PAD, y + 30), f"{i + 1}", fill="black", font=body)
        draw.text((PAD + NUMBER, y), _clip(label, LABEL_CHARS), fill=(40, 40, 40), font=small)
        length = max(int(bar_space * count / top), 2)
        draw.rectangle((PAD + NUMBER, y + 28, PAD + NUMBER + length, y + ROW - 12),
                       fill=(52, 120, 200))
        draw.text((PAD + NUMBER + length + 10, y + 32), f"{count}  ({pct}%)",
                  fill="black", font=small)
    draw.text((PAD, height - 40), footer, fill=(80, 80, 80), font=small)
    out = io.BytesIO()
    img.save(out, "PNG", optimize=True)
    return out.getvalue()


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
