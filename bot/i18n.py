"""User-facing texts, loaded from `content/texts/<language>/*.toml`.

Each file is one feature; a key `name` in `start.toml` is looked up as `start.name`.
"""

from __future__ import annotations

import logging
import string
import tomllib
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_LANGUAGE = "zh-Hans"
LANGUAGES = ("zh-Hans", "en")
CONTENT = Path(__file__).resolve().parent.parent / "content"


def normalize_language(hint: str | None, default: str = DEFAULT_LANGUAGE) -> str:
    """Map a platform's language code (`zh-hans`, `zh-CN`, `en-US`) to one we speak."""
    if not hint:
        return default
    hint = hint.lower()
    if hint.startswith("zh"):
        return "zh-Hans"
    if hint.startswith("en"):
        return "en"
    return default


class Texts:
    def __init__(self, root: Path = CONTENT / "texts", default: str = DEFAULT_LANGUAGE) -> None:
        self.default = default
        self.catalogs: dict[str, dict[str, str]] = {}
        for lang in LANGUAGES:
            catalog: dict[str, str] = {}
            for path in sorted((root / lang).glob("*.toml")):
                with path.open("rb") as fh:
                    _flatten(path.stem, tomllib.load(fh), catalog)
            self.catalogs[lang] = catalog

    def get(self, lang: str, key: str, **values) -> str:
        template = self.catalogs.get(lang, {}).get(key)
        if template is None:
            template = self.catalogs[self.default].get(key)
            if template is None:
                log.error("missing text %s", key)
                return key
        try:
            if not values:
                return template
            if "|" in template:
                return _PLURALS.format(template, **values)
            return template.format(**values)
        except (KeyError, IndexError):
            log.exception("text %s needs other values than %s", key, sorted(values))
            return template

    def has(self, key: str) -> bool:
        return key in self.catalogs[self.default]

    def all_languages(self, key: str) -> list[str]:
        return [c[key] for c in self.catalogs.values() if key in c]


class _Plurals(string.Formatter):
    """`{n:shift|shifts}` reads "1 shift" or "3 shifts": English needs the count's noun to
    agree, Chinese texts simply do not use the form."""

    def format_field(self, value, format_spec: str) -> str:
        if "|" in format_spec:
            one, other = format_spec.split("|", 1)
            return f"{value} {one if str(value) == '1' else other}"
        return super().format_field(value, format_spec)


_PLURALS = _Plurals()


def _flatten(prefix: str, table: dict, out: dict[str, str]) -> None:
    for key, value in table.items():
        full = f"{prefix}.{key}"
        if isinstance(value, dict):
            _flatten(full, value, out)
        else:
            out[full] = str(value)
