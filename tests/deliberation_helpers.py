"""Residents placed straight in the database, for the polls, surveys and proposals tests."""

from __future__ import annotations

from storage import people, roles_service, territory, verification


async def make_resident(sessions, platform: str, user: str, *, estate: str = "victoria",
                        building: str | None = "1", unit: str | None = None,
                        verified: bool = True, lang: str | None = "en") -> int:
    async with sessions() as s, s.begin():
        _, resident, _ = await people.get_or_create_identity(s, platform, user, user, user)
        e = await territory.estate_by_code(s, estate)
        b = await territory.building(s, e.id, building) if building else None
        await verification.set_home(s, resident, e.id, b.id if b else None, unit)
        resident.verified = verified
        # As if staff had approved the request showing this unit (storage.verification.decide).
        resident.verified_household_id = resident.household_id if verified else None
        resident.language = lang
        return resident.id


async def grant(sessions, who: str, kind: str, scope: str | None) -> None:
    async with sessions() as s, s.begin():
        await roles_service.change_role(s, who, kind, scope, actor_id=None, grant=True,
                                        create_missing=True)
