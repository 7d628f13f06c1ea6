"""Storage on both databases, through the Alembic migrations."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from bot.app import load_territory_file
from storage import outbox, roles_service, territory, updates
from storage import verification as ver
from storage.access import scope_of
from storage.db import create_engine, session_factory
from storage.migrate import upgrade_async
from storage.people import RoleKind, get_or_create_identity, resident_by_id
from storage.territory import Estate, Team
from tests.conftest import DEMO


@pytest.fixture
async def sessions(db_url):
    """A migrated database with the demo territory, on each backend."""
    await upgrade_async(db_url)
    engine = create_engine(db_url)
    factory = session_factory(engine)
    await load_territory_file(factory, DEMO)
    yield factory
    await engine.dispose()


async def test_territory_loads_and_reloads_in_place(sessions):
    counts = await load_territory_file(sessions, DEMO)  # a second load updates, adds none
    assert counts["estates"] == 4 and counts["committees"] == 3 and counts["zones"] == 3
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Estate)) == 4
        assert await s.scalar(select(func.count()).select_from(Team)) == 4


async def test_lookups_by_id_answer_none_without_an_id(sessions):
    """The readers handlers use instead of session.get: a resident without a home (no estate,
    no building) gets None, as an unknown id does, and a known id its row."""
    async with sessions() as s:
        first = (await territory.estates(s))[0]
        assert (await territory.estate(s, first.id)).code == first.code
        assert await territory.estate(s, None) is None
        assert await territory.estate(s, 999_999) is None
        one = (await territory.buildings_of(s, first.id))[0]
        assert (await territory.building_by_id(s, one.id)).number == one.number
        assert await territory.building_by_id(s, None) is None
        assert await territory.zone(s, None) is None
        assert (await territory.zone(s, (await territory.zones(s))[0].id)) is not None
        assert await resident_by_id(s, None) is None
        assert await resident_by_id(s, 999_999) is None


async def test_update_ids_are_claimed_once_even_when_racing(sessions):
    async def claim():
        async with sessions() as s, s.begin():
            return await updates.claim(s, "telegram", "77")

    results = await asyncio.gather(*(claim() for _ in range(5)), return_exceptions=True)
    wins = [r for r in results if r is True]
    assert len(wins) == 1, results


async def test_roles_scope_and_invites(sessions):
    async with sessions() as s, s.begin():
        assert await roles_service.change_role(
            s, "telegram:5", "committee", "victoria", actor_id=None, grant=True,
            create_missing=True)
        assert not await roles_service.change_role(
            s, "telegram:5", "committee", "victoria", actor_id=None, grant=True,
            create_missing=True)
        _, member, _ = await get_or_create_identity(s, "telegram", "5", "5", None)
        scope = await scope_of(s, member.id)
        codes = set((await s.scalars(select(Estate.code).where(
            Estate.id.in_(scope.estate_ids)))).all())
        assert codes == {"victoria", "rongcheng-houjie"}  # one committee, two estates
        assert scope.has(RoleKind.COMMITTEE) and not scope.has(RoleKind.ADMIN)
        victoria = await s.scalar(select(Estate).where(Estate.code == "victoria"))
        invite = await ver.create_invite(s, victoria.id, None, member.id, max_uses=1)
        _, r1, _ = await get_or_create_identity(s, "telegram", "6", "6", None)
        _, r2, _ = await get_or_create_identity(s, "telegram", "7", "7", None)
        assert (await ver.redeem_invite(s, r1, invite.code.lower())).id == invite.id
        assert r1.verified and r1.estate_id == victoria.id
        assert await ver.redeem_invite(s, r2, invite.code) == ver.InviteError.USED_UP
        assert await ver.redeem_invite(s, r2, "NOPE") == ver.InviteError.UNKNOWN


async def test_outbox_claims_never_overlap(sessions):
    async with sessions() as s, s.begin():
        ident, _, _ = await get_or_create_identity(s, "memory", "x", "x", None)
        for i in range(50):
            await outbox.enqueue(s, ident.id, {"text": f"m{i}"}, dedupe_key=f"k{i}")
        assert await outbox.enqueue(s, ident.id, {"text": "again"}, dedupe_key="k1") is None

    async def claim():
        async with sessions() as s, s.begin():
            return [c.id for c in await outbox.claim(s, 10)]

    batches = await asyncio.gather(*(claim() for _ in range(8)))
    ids = [i for b in batches for i in b]
    assert len(ids) == len(set(ids)) == 50
