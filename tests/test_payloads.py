"""Typed button payloads (bot/payloads.py): fields in, the same fields out, or nothing."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

import handlers  # noqa: F401  (every feature's actions declared)
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


ROOT = Path(__file__).resolve().parent.parent
# Handler modules whose buttons still carry string actions and untyped arguments
# (`@router.button("code")` with ctx.args): they move to typed actions one by one; no module
# may start using the untyped form again.
STRING_ACTIONS_STILL_IN = {
    "poll_ballots", "polls",
    "proposals", "surveys",
    "volunteering_organise",
}


def _string_buttons(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "button" and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "router"):
            return True
    return False


def test_no_handler_module_takes_up_untyped_button_actions_again():
    # handlers/__init__.py registers the answer to an expired payload (signing.EXPIRED), not
    # an action.
    using = {p.stem for p in (ROOT / "handlers").glob("*.py")
             if p.stem != "__init__" and _string_buttons(p)}
    assert using <= STRING_ACTIONS_STILL_IN, (
        f"typed actions only: {sorted(using - STRING_ACTIONS_STILL_IN)}")
    assert STRING_ACTIONS_STILL_IN <= using, (
        f"moved to typed actions, take off the list: {sorted(STRING_ACTIONS_STILL_IN - using)}")
