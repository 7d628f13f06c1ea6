"""Typed times for scheduled notices, read in the bot's timezone."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

MAX_DAYS_AHEAD = 60
_TIME = r"(\d{1,2})[:：](\d{2})"
_FULL = re.compile(rf"^(?:(\d{{4}})[-/.])?(\d{{1,2}})[-/.](\d{{1,2}})\s*{_TIME}$")
_DAY_WORDS = {"today": 0, "今天": 0, "tomorrow": 1, "明天": 1, "后天": 2}


class BadTime(ValueError):
    """`code` is bad / past / far: which text explains it."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def parse_when(text: str, now: datetime, tz: str) -> datetime:
    """A future moment (aware, UTC) from "18:30", "tomorrow 08:00", "12-01 09:00",
    "2026-12-01 09:00"."""
    zone = ZoneInfo(tz)
    local_now = now.astimezone(zone)
    cleaned = " ".join(text.strip().lower().split())
    day: date | None = None
    for word, offset in _DAY_WORDS.items():
        if cleaned.startswith(word):
            day = local_now.date() + timedelta(days=offset)
            cleaned = cleaned[len(word):].strip()
            break
    try:
        if match := re.fullmatch(_TIME, cleaned):
            hour, minute = int(match.group(1)), int(match.group(2))
            day = day or local_now.date()
        elif day is None and (match := _FULL.fullmatch(cleaned)):
            year = int(match.group(1) or local_now.year)
            day = date(year, int(match.group(2)), int(match.group(3)))
            hour, minute = int(match.group(4)), int(match.group(5))
        else:
            raise BadTime("bad")
        at = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
    except ValueError as exc:  # 25:00, February 30th...
        if isinstance(exc, BadTime):
            raise
        raise BadTime("bad") from None
    if at <= local_now:
        raise BadTime("past")
    if at - local_now > timedelta(days=MAX_DAYS_AHEAD):
        raise BadTime("far")
    return at.astimezone(now.tzinfo)
