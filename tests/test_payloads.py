"""Typed button payloads (bot/payloads.py): fields in, the same fields out, or nothing."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

import handlers  # every feature's actions declared
from bot.payloads import Action, BadPayload, codes
from bot.signing import Signer


@dataclass(frozen=True)
class _Vote(Action, code="t_vote", fresh="vote"):
    poll_id: int
    option: int
    how: Literal["add", "drop"] = "add"
    anonymous: bool = False
    note: str = ""


def test_fields_round_trip_and_defaults_fill_what_an_older_payload_lacks():
    press = _Vote(12, 3, "drop", True, "x")
    assert press.pack() == ["12", "3", "drop", "1", "x"]
    assert _Vote.unpack(press.pack()) == press
    assert _Vote.unpack(["12", "3"]) == _Vote(12, 3)
    assert _Vote.fresh == "vote" and _Vote.code == "t_vote"


@pytest.mark.parametrize("args", [
    [],  # a required field missing
    ["12"],
    ["x", "3"],  # not an int
    ["12", "3", "maybe"],  # not one of the Literal's values
    ["12", "3", "add", "yes"],  # a bool is 0 or 1
    ["12", "3", "add", "0", "x", "extra"],  # one field too many
])
def test_arguments_that_do_not_fit_give_nothing(args):
    assert _Vote.unpack(args) is None


def test_a_field_cannot_break_the_payload_format():
    with pytest.raises(BadPayload):
        _Vote(1, 2, note="a:b").pack()
    with pytest.raises(BadPayload):
        _Vote(1, 2, note="a~b").pack()


def test_the_signer_packs_a_typed_action_as_its_code_and_fields():
    signer = Signer(b"k" * 32)
    press = _Vote(12, 3, "drop")
    payload = signer.sign(7, press)
    assert payload == signer.sign(7, "t_vote", 12, 3, "drop", 0, "")
    action, args = signer.verify(7, payload)
    assert action == "t_vote" and _Vote.unpack(args) == press
    with pytest.raises(TypeError):
        signer.sign(7, press, 1)


def test_a_code_is_declared_once_across_the_bot():
    with pytest.raises(ValueError, match="already"):
        @dataclass(frozen=True)
        class Other(Action, code="gshow"):  # handlers/guides.py's ShowGuide
            number: int
    assert codes()["gshow"].__qualname__ == "ShowGuide"


# Payloads as the string-action versions drew them (code, then arguments): a button already
# sent must mean the same after its module moved to typed actions.
DRAWN_BEFORE = [
    ("nans", ["12", "s"]), ("nans", ["12", "h"]), ("nhn", ["5", "trapped"]),
    ("ncat", ["0"]), ("nkind", ["2"]), ("ntgt", ["1", "9"]), ("nbe", ["3", "4"]),
    ("npv", ["now"]), ("npv", ["lang2"]),
    ("nview", ["8"]), ("nedit", ["8", "t"]), ("nedit", ["8", "w"]), ("nstop", ["8"]),
    ("nanswers", ["8"]),
    ("verreq", []), ("inv", ["2"]), ("vdec", ["6", "1"]), ("vdec", ["6", "0"]),
    ("rx", []), ("rc", ["3"]), ("rph", []), ("rest", ["2"]), ("rhome", []), ("rdup", ["7"]),
    ("rnew", []), ("rfile", []), ("rgo", ["where"]), ("rcf", ["7", "1"]), ("rcf", ["7", "0"]),
    ("rrate", ["7", "5"]),
    ("rs", ["7", "a"]), ("rs", ["7", "c"]), ("rfx", ["7"]), ("rto", ["7", "3"]),
    ("rcl", ["7", "n"]), ("rcard", ["7"]),
    ("vcf", ["environment"]), ("vcf", ["all"]), ("vact", ["4"]), ("vsu", ["4"]), ("vcx", ["4"]),
    ("vci", ["4"]), ("vco", ["4"]),
    ("vcard", ["2026"]), ("vlb", ["1"]), ("vlb", ["0"]), ("vlbv", []),
    ("vtj", ["2"]), ("vtl", ["2"]), ("vtm", ["2"]),
    ("asr", ["3"]), ("asp", ["3", "5"]), ("asm", ["3", "5", "6"]), ("asv", ["3", "5", "0"]),
    ("asx", ["3", "5", "6"]), ("adp", ["9"]), ("ads", ["9"]), ("asq", ["3", "4"]),
    ("aqa", ["3", "4", "11", "2"]), ("aqm", ["3", "4", "11", "5"]),
    ("aqx", ["3", "4", "11", "5"]),
    ("pb", ["5"]), ("pv", ["5", "0"]), ("pm", ["5", "6"]), ("ps", ["5", "6"]), ("pr", ["5"]),
    ("vnc", ["environment"]), ("vnp", ["3"]), ("vnd", []), ("vna", ["estate"]),
    ("vna", ["committee"]), ("vna", ["everyone"]), ("vpub", ["4", "0"]), ("vpub", ["4", "1"]),
    ("vdis", ["4"]), ("vfp", ["6"]), ("vros", ["8"]), ("vatt", ["9"]), ("vcsv", ["8"]),
    ("vcap", ["8"]), ("vcsh", ["8"]), ("vcsy", ["8"]),
    ("psu", ["2"]), ("prd", ["2"]), ("pdc", ["2", "0"]), ("pdc", ["2", "1"]),
    ("pdc", ["2", "2"]), ("pim", ["2"]),
    ("npo", ["question"]), ("npo", ["area", "c", "3"]), ("npo", ["multiple", "1"]),
    ("npo", ["preview", "0"]), ("nsv", ["kind", "9"]), ("nsv", ["area", "e", "2"]),
    ("pce", ["5"]), ("pcy", ["5"]), ("pb", ["5"]),
    ("sv", ["3"]), ("sa", ["3", "8", "1"]), ("sm", ["3", "8", "5"]), ("sx", ["3", "8", "5"]),
    ("sr", ["3"]), ("svc", ["3"]), ("svcy", ["3"]),
]


@pytest.mark.parametrize(("code", "args"), DRAWN_BEFORE)
def test_buttons_drawn_before_the_typed_actions_still_fit(code, args):
    press = codes()[code].unpack(args)
    assert press is not None and press.pack() == args


FRESH_BEFORE = {
    "rs": "staff", "rfx": "staff", "rto": "staff", "rcl": "staff",
    "asm": "vote", "asv": "vote", "asx": "vote", "pv": "vote", "pm": "vote", "ps": "vote",
    "vatt": "staff", "vcap": "staff", "vcsy": "staff", "pcy": "staff", "svcy": "staff",
}


def test_freshness_stayed_with_the_buttons_that_expire():
    fresh = handlers.build_router().fresh
    assert {code: fresh[code] for code, _ in DRAWN_BEFORE if code in fresh} == FRESH_BEFORE


ROOT = Path(__file__).resolve().parent.parent


def _string_buttons(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "button" and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "router"):
            return True
    return False


def test_no_handler_module_uses_untyped_button_actions():
    # handlers/__init__.py registers the answer to an expired payload (signing.EXPIRED), not
    # an action.
    using = {p.stem for p in (ROOT / "handlers").glob("*.py")
             if p.stem != "__init__" and _string_buttons(p)}
    assert using == set(), f"typed actions only (bot/payloads.py): {sorted(using)}"
