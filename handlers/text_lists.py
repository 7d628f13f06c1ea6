"""Lists typed by a person (poll options, survey choices, shifts): one shared reading, so every
prompt that asks for a list accepts the same separators on every platform."""

from __future__ import annotations

import re

# On one line, items may be separated by any of these (Chinese and Western punctuation).
_ON_ONE_LINE = re.compile(r"[、，,;；]")
_SEMICOLONS = re.compile(r"[;；]")


def split_items(text: str, *, commas: bool = True) -> list[str]:
    """The non-empty items of a typed list.

    Several lines: each line is one item, so an item may itself hold a comma. One line: split
    at 、 ， , ; ； (with `commas=False` only at semicolons, for items such as shifts whose
    free-text part may contain commas).
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        return lines
    pattern = _ON_ONE_LINE if commas else _SEMICOLONS
    return [item.strip() for item in pattern.split(lines[0]) if item.strip()]
