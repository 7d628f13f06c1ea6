"""Report categories and the working-day calendar, read from `content/reports/`.

Typed text finds a category by fuzzy matching over names and synonyms in both languages;
Chinese text is cut into words with jieba so "小区门口的路灯坏了" still meets "路灯".
"""

from __future__ import annotations

import asyncio
import re
import tomllib
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import jieba
from rapidfuzz import fuzz

CONTENT = Path(__file__).resolve().parent.parent / "content" / "reports"
_HAN = re.compile(r"[\u4e00-\u9fff]")

jieba.setLogLevel(60)  # jieba prints its dictionary loading to stderr otherwise


@dataclass(frozen=True)
class Category:
    key: str
    name_zh: str
    name_en: str
    synonyms: tuple[str, ...]
    ack_days: int
    fix_days: int
    duplicate_radius_m: float
    # Reports of a private category (safety: often someone's home, or a person in need) are
    # shown to outside systems without their place or description (web/open311.py).
    private: bool = False

    def name(self, lang: str) -> str:
        return self.name_en if lang == "en" else self.name_zh


def _fold(text: str) -> str:
    return re.sub(r"[\W_]+", " ", unicodedata.normalize("NFKC", text).lower()).strip()


def _words(text: str) -> set[str]:
    folded = _fold(text)
    words = set(folded.split())
    if _HAN.search(folded):
        words.update(w for w in jieba.lcut(folded.replace(" ", "")) if w.strip())
    return words


class Catalog:
    def __init__(self, categories: list[Category]) -> None:
        if not categories:
            raise ValueError("no report categories")
        self.categories = categories
        self.by_key = {c.key: c for c in categories}
        self._terms: list[tuple[str, str]] = []  # (folded term, category key)
        for c in categories:
            for term in (c.name_zh, c.name_en, *c.synonyms):
                self._terms.append((_fold(term), c.key))
        self._jieba_ready = False

    @classmethod
    def load(cls, path: Path = CONTENT / "categories.toml") -> Catalog:
        with Path(path).open("rb") as fh:
            data = tomllib.load(fh)
        default = data.get("default", {})
        cats = []
        for raw in data.get("category", []):
            merged = {**default, **raw}
            cats.append(Category(
                key=merged["key"], name_zh=merged["name_zh"], name_en=merged["name_en"],
                synonyms=tuple(merged.get("synonyms", [])),
                ack_days=int(merged.get("ack_days", 1)), fix_days=int(merged.get("fix_days", 6)),
                duplicate_radius_m=float(merged.get("duplicate_radius_m", 250)),
                private=bool(merged.get("private", False)),
            ))
        return cls(cats)

    def get(self, key: str | None) -> Category | None:
        return self.by_key.get(key or "")

    def get_or_other(self, key: str | None) -> Category:
        """The category, or "other" for a key the catalogue does not know (a report filed by
        an older button, an API client's made-up code)."""
        found = self.get(key) or self.get("other")
        if found is None:
            raise LookupError("the report catalogue has no 'other' category")
        return found

    def _prepare_jieba(self) -> None:
        # Loading jieba's dictionary takes a second or more: done on first use (in a worker
        # thread, see `match_async`), not when the catalogue is read.
        if not self._jieba_ready:
            for term, _ in self._terms:
                if _HAN.search(term):
                    jieba.add_word(term.replace(" ", ""))
            self._jieba_ready = True

    def names(self, text: str) -> bool:
        """`text` is only a category's name or synonym ("路灯", "Street lighting"), not a
        description of a problem ("路灯不亮": a sentence in four characters)."""
        folded = _fold(text)
        return any(folded == term for term, _ in self._terms)

    async def match_async(self, text: str, limit: int = 3, cutoff: float = 70
                          ) -> list[tuple[str, float]]:
        """`match`, off the event loop (jieba's first call loads its dictionary)."""
        return await asyncio.to_thread(self.match, text, limit, cutoff)

    def match(self, text: str, limit: int = 3, cutoff: float = 70) -> list[tuple[str, float]]:
        """Categories that `text` seems to name, best first, as (key, score 0-100)."""
        if _HAN.search(text):
            self._prepare_jieba()
        folded = _fold(text)
        if not folded:
            return []
        words = _words(text)
        tokens = folded.split()
        pieces = {folded, folded.replace(" ", ""), *tokens}
        pieces.update(a + b for a, b in zip(tokens, tokens[1:], strict=False))
        pieces.update(f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False))
        best: dict[str, float] = {}
        for term, key in self._terms:
            if not term:
                continue
            if term == folded or term in words:
                score = 100.0
            elif len(term) >= 2 and (f" {term} " in f" {folded} "
                                     or (_HAN.search(term) and term in folded)):
                score = 95.0  # a whole synonym inside the sentence
            else:
                # Typos: the whole text, or any word or pair of words in it, against the term.
                bare = term.replace(" ", "")
                score = max(fuzz.ratio(piece, target) for piece in pieces
                            for target in (term, bare))
            if score > best.get(key, 0):
                best[key] = score
        ranked = sorted(((k, s) for k, s in best.items() if s >= cutoff), key=lambda kv: -kv[1])
        return ranked[:limit]


class WorkCalendar:
    """Working days in the sub-district's time zone: weekdays, minus holidays, plus make-up
    working weekends."""

    def __init__(self, holidays: set[date], extra_workdays: set[date], tz: str,
                 day_start: time = time(9, 0)) -> None:
        self.holidays = holidays
        self.extra_workdays = extra_workdays
        self.tz = ZoneInfo(tz)
        self.day_start = day_start

    @classmethod
    def load(cls, tz: str, path: Path = CONTENT / "holidays.toml") -> WorkCalendar:
        with Path(path).open("rb") as fh:
            data = tomllib.load(fh)
        hh, mm = (int(x) for x in data.get("day_start", "09:00").split(":"))
        return cls({date.fromisoformat(d) for d in data.get("holidays", [])},
                   {date.fromisoformat(d) for d in data.get("extra_workdays", [])}, tz,
                   time(hh, mm))

    def is_working(self, day: date) -> bool:
        if day in self.extra_workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """`days` working days after `start`, at the same local time. A start on a day off
        counts from the next working day's opening; 0 days means by the end of that day."""
        local = start.astimezone(self.tz)
        day = local.date()
        at = local.timetz().replace(tzinfo=None)
        if not self.is_working(day):
            while not self.is_working(day):
                day += timedelta(days=1)
            at = self.day_start
        if days <= 0:
            return datetime.combine(day, time(23, 59), self.tz).astimezone(start.tzinfo)
        remaining = days
        while remaining:
            day += timedelta(days=1)
            if self.is_working(day):
                remaining -= 1
        return datetime.combine(day, at, self.tz).astimezone(start.tzinfo)
