"""Typed times, read in the bot's timezone: when a notice goes out, when a shift starts. One
reader, so "18:30", "明天 08:00" and "2026-12-01 09:00" mean the same everywhere."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

MAX_DAYS_AHEAD = 60
TIME = r"(\d{1,2})[:：](\d{2})"
_FULL = re.compile(rf"^(?:(\d{{4}})[-/.])?(\d{{1,2}})[-/.](\d{{1,2}})\s*{TIME}$")
_DAY_WORDS = {"today": 0, "今天": 0, "tomorrow": 1, "明天": 1, "后天": 2}


class BadTime(ValueError):
    """`code` is bad / past / far: which text explains it."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def parse_local(text: str, now: datetime, tz: str) -> datetime:
    """A moment in the bot's timezone (aware) from "18:30", "tomorrow 08:00", "明天20:00",
    "12-01 09:00" or "2026-12-01 09:00". A bare time already past today means tomorrow, as a
    person saying "at 18:30" at 19:00 means; a named day or a date is taken as given (the
    caller says when that is in the past)."""
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
        if match := re.fullmatch(TIME, cleaned):
            hour, minute = int(match.group(1)), int(match.group(2))
            if day is None:
                day = local_now.date()
                if (hour, minute) <= (local_now.hour, local_now.minute):
                    day += timedelta(days=1)
        elif day is None and (match := _FULL.fullmatch(cleaned)):
            year = int(match.group(1) or local_now.year)
            day = date(year, int(match.group(2)), int(match.group(3)))
            hour, minute = int(match.group(4)), int(match.group(5))
        else:
            raise BadTime("bad")
        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
    except ValueError as exc:  # 25:00, February 30th...
        if isinstance(exc, BadTime):
            raise
        raise BadTime("bad") from None


def parse_when(text: str, now: datetime, tz: str) -> datetime:
    """A future moment (aware, UTC) at most MAX_DAYS_AHEAD away, for a scheduled notice."""
    at = parse_local(text, now, tz)
    if at <= now:
        raise BadTime("past")
    if at - now > timedelta(days=MAX_DAYS_AHEAD):
        raise BadTime("far")
    return at.astimezone(now.tzinfo)


def spoken(t: Callable[..., str], at: datetime, now: datetime, tz: str) -> str:
    """A moment as said back to the person: "今天 18:30", "明天 18:30", else the full date, so a
    time that rolled over to tomorrow is never a surprise. `t(key, **values)` gives texts."""
    zone = ZoneInfo(tz)
    local, today = at.astimezone(zone), now.astimezone(zone).date()
    clock = f"{local:%H:%M}"
    if local.date() == today:
        return t("notices.day_today", time=clock)
    if local.date() == today + timedelta(days=1):
        return t("notices.day_tomorrow", time=clock, date=f"{local:%Y-%m-%d}")
    return t("notices.day_other", time=clock, date=f"{local:%Y-%m-%d}")
