"""A newcomer's first hour: /help says what to do before a home is chosen, and the demo
community's proposal threshold is one a single person playing a few residents can reach."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storage.territory_loader import TerritoryError, load_territory
from tests.deliberation_helpers import make_resident

DEMO = Path(__file__).resolve().parent.parent / "content" / "territory" / "demo.json"


async def test_help_without_a_home_says_what_to_do_next(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    await chat.say("ann", "/start")
    await chat.press("ann", "English")
    await chat.say("ann", "/cancel")  # leaves before choosing an estate
    await chat.say("ann", "/help")
    text = chat.last_text("ann")
    assert text.startswith("You have not told me your home yet. Send /start")
    assert "\n\nWhat you can do:\n/start" in text
    await chat.say("bo", "/start")
    await chat.press("bo", "中文")
    await chat.say("bo", "/help")  # still at the estate question: answer it (not /start again)
    assert chat.last_text("bo").startswith("您正在填写住址：回答上面的问题即可完成")
    await chat.say("bo", "中海名城")  # the question is still open
    assert "中海名城" in chat.last_text("bo")

    await make_resident(app.sessions, "memory", "cy")
    await chat.say("cy", "/help")
    assert chat.last_text("cy").startswith("What you can do:")


async def test_demo_committee_threshold_is_reachable(make_app, db_url):
    app, chat = await make_app(db_url)
    assert app.services.settings.polls.proposal_threshold == 20  # the setting's default
    for name in ("pat", "sam", "kim"):
        await make_resident(app.sessions, "memory", name)
    await chat.say("pat", "/propose")
    await chat.say("pat", "Bench by the gate")
    await chat.say("pat", "Older neighbours would like somewhere to sit by the north gate.")
    assert "With 2 supporters it goes on the council's agenda" in chat.last_text("pat")
    await chat.say("sam", "/proposals")
    await chat.press("sam", "Support #1")
    await chat.say("kim", "/proposals")
    await chat.press("kim", "Support #1")
    assert "now on the council's agenda" in chat.last_text("kim")

    # A per-committee setting still wins over the territory file.
    app.services.settings.polls.proposal_thresholds = {"victoria": 5}
    await chat.say("sam", "/propose")
    await chat.say("sam", "Bike racks")
    await chat.say("sam", "Covered bike racks beside building 2, please.")
    assert "With 5 supporters" in chat.last_text("sam")


async def test_territory_threshold_is_checked_and_removed_with_the_file(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    data = json.loads(DEMO.read_text(encoding="utf-8"))
    victoria = next(c for s in data["stations"] for c in s["committees"]
                    if c["code"] == "victoria")
    for bad in (0, "3", 2.5, True):
        victoria["proposal_threshold"] = bad
        with pytest.raises(TerritoryError, match="victoria: proposal_threshold"):
            async with app.sessions() as s, s.begin():
                await load_territory(s, data)
    del victoria["proposal_threshold"]  # reloaded without it: the setting decides again
    async with app.sessions() as s, s.begin():
        await load_territory(s, data)
    await make_resident(app.sessions, "memory", "pat")
    await chat.say("pat", "/propose")
    await chat.say("pat", "Bench by the gate")
    await chat.say("pat", "Older neighbours would like somewhere to sit by the north gate.")
    assert "With 20 supporters" in chat.last_text("pat")
