"""The storage under the terminal windows, on each backend: a sender claims (and recovers) only
the chats it serves; numbered choices are the latest prompt's, one reply numbered on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.messaging.model import Button, Outbound
from storage import choices, outbox
from storage.db import create_engine, session_factory
from storage.migrate import upgrade_async
from storage.people import get_or_create_identity


@pytest.fixture
async def sessions(db_url):
    await upgrade_async(db_url)
    engine = create_engine(db_url)
    yield session_factory(engine)
    await engine.dispose()


async def _people(sessions, *who: tuple[str, str]) -> dict[str, int]:
    ids = {}
    async with sessions() as s, s.begin():
        for platform, name in who:
            ident, _, _ = await get_or_create_identity(s, platform, name, name, None)
            for n in range(2):
                await outbox.enqueue(s, ident.id, {"text": f"{name} {n}"})
            ids[name] = ident.id
    return ids


async def _claim(sessions, scope) -> list[str]:
    async with sessions() as s, s.begin():
        return [c.payload["text"] for c in await outbox.claim(s, 100, scope=scope)]


async def test_a_sender_claims_only_the_chats_it_serves(sessions):
    await _people(sessions, ("terminal", "mia"), ("terminal", "sam"), ("memory", "mia"))
    assert await _claim(sessions, {"terminal": frozenset()}) == []  # a window not open yet
    assert await _claim(sessions, {"telegram": None}) == []  # nobody on that platform
    assert await _claim(sessions, {"terminal": frozenset({"mia"})}) == ["mia 0", "mia 1"]
    assert await _claim(sessions, {"terminal": frozenset({"mia", "sam"})}) == ["sam 0", "sam 1"]
    assert await _claim(sessions, {"memory": None, "terminal": None}) == ["mia 0", "mia 1"]
    async with sessions() as s:
        statuses = set((await s.scalars(select(outbox.OutboxMessage.status))).all())
    assert statuses == {outbox.Status.SENDING.value}  # nobody marked failed or unreachable


async def test_recovery_resumes_only_the_chats_served(sessions):
    await _people(sessions, ("terminal", "mia"), ("terminal", "sam"))
    assert len(await _claim(sessions, None)) == 4  # then the senders died
    async with sessions() as s, s.begin():
        resumed = await outbox.reclaim_stale(s, timedelta(0), scope={"terminal": frozenset({"sam"})})
    assert resumed == 2
    assert await _claim(sessions, None) == ["sam 0", "sam 1"]


def _prompt(*labels: str, rows: int = 1) -> Outbound:
    buttons = [Button(label, f"p:{label}") for label in labels]
    per_row = max(1, len(buttons) // rows)
    return Outbound(text="Pick one", buttons=[buttons[i:i + per_row]
                                              for i in range(0, len(buttons), per_row)])


async def test_numbers_mean_the_latest_prompts_choices(sessions):
    ids = await _people(sessions, ("terminal", "mia"), ("terminal", "sam"))
    mia, sam = ids["mia"], ids["sam"]

    async def remember(who, out, extend=False):
        async with sessions() as s, s.begin():
            return await choices.remember(s, who, out, extend=extend)

    async def pick(who, typed):
        async with sessions() as s:
            return await choices.pick(s, who, typed)

    assert await remember(mia, _prompt("a", "b", "c", rows=2)) == 1  # numbered row by row
    # A Chinese keyboard may type full-width digits.
    assert [await pick(mia, t) for t in ("1", " 2 ", "３", "4", "0", "-1", "1.0", "x")] == [
        "p:a", "p:b", "p:c", None, None, None, None, None]
    assert await pick(sam, "1") is None  # one person's choices are theirs only
    assert await remember(mia, Outbound(answer_callback="cb")) == 1  # shows nothing: kept
    assert await pick(mia, "1") == "p:a"
    assert await remember(mia, Outbound(text="How many places?")) == 1
    assert await pick(mia, "1") is None  # a prompt without buttons came after

    # One reply of several messages is one prompt: its buttons are numbered on, and a message
    # of it without buttons ends nothing.
    assert await remember(mia, _prompt("x", "y")) == 1
    assert await remember(mia, Outbound(text="(two waiting)"), extend=True) == 3
    assert await remember(mia, _prompt("z"), extend=True) == 3
    assert [await pick(mia, t) for t in ("1", "2", "3", "4")] == ["p:x", "p:y", "p:z", None]
    async with sessions() as s:
        shown = await choices.current_for(s, "terminal", "mia")
        assert [label for label, _ in shown] == ["x", "y", "z"]
        assert await choices.current_for(s, "terminal", "nobody") == []


async def test_the_person_of_an_update_comes_with_their_roles(sessions):
    """One query reads the person and every role they hold; a role granted or revoked later
    in the same transaction is not taken from that reading (the scope is read again)."""
    from bot.context import Context
    from bot.messaging.model import Capabilities, Inbound, Kind
    from storage import dialog
    from storage.people import ROLES_CHANGED, RoleKind, grant_role

    async with sessions() as s, s.begin():
        ident, resident, _ = await get_or_create_identity(s, "memory", "ann", "ann", None)
        await grant_role(s, resident.id, RoleKind.ADMIN, None, None)
        await grant_role(s, resident.id, RoleKind.TEAM, 7, None)
        await get_or_create_identity(s, "memory", "bob", "bob", None)

    async with sessions() as s, s.begin():
        ann = await dialog.load_person(s, "memory", "ann", "ann", None)
        bob = await dialog.load_person(s, "memory", "bob", "bob", None)
        assert ann.identity.id == ident.id and not ann.created
        assert sorted(ann.roles) == [("admin", None), ("team", 7)]
        assert bob.roles == () and not bob.created

        def context(person) -> Context:
            inbound = Inbound(platform="memory", user_id="x", chat_id="x", kind=Kind.TEXT)
            return Context(inbound=inbound, session=s, identity=person.identity,
                           resident=person.resident, lang="en",
                           services=None,  # type: ignore[arg-type]  # scope() reads none
                           capabilities=Capabilities(), roles=person.roles)

        assert (await context(ann).scope()).everything
        assert not (await context(bob).scope()).privileged
        await grant_role(s, bob.resident.id, RoleKind.TEAM, 7, None)
        assert s.info[ROLES_CHANGED]
        scope = await context(bob).scope()
        assert scope.has(RoleKind.TEAM) and scope.team_ids == {7}
