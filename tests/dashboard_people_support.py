"""The residents-and-roles pages in tests: a resident waiting for verification, a second
station (the demo territory has one), a role's number."""

from __future__ import annotations

from tests.dashboard_support import person


async def asks(app, user: str, estate: str = "victoria") -> tuple[int, int]:
    """A resident of the estate who asked to be verified: (resident id, request id)."""
    from sqlalchemy import select

    from storage import verification as ver
    from storage.people import Resident

    resident_id = await person(app, user, estate=estate)
    async with app.sessions() as s, s.begin():
        assert await ver.request_verification(s, await s.get(Resident, resident_id))
        await s.flush()
        request_id = await s.scalar(select(ver.VerificationRequest.id).where(
            ver.VerificationRequest.resident_id == resident_id))
    return resident_id, request_id


async def far_station(app) -> None:
    """A second station with a committee and an estate (`far-estate`): the demo has one."""
    from sqlalchemy import select

    from storage.territory import Committee, Estate, Station, Subdistrict

    async with app.sessions() as s, s.begin():
        sub = (await s.scalars(select(Subdistrict))).first()
        station = Station(code="far-station", subdistrict_id=sub.id, name_zh="远方工作站",
                          name_en="Far station")
        s.add(station)
        await s.flush()
        committee = Committee(code="far", station_id=station.id, name_zh="远方居委会",
                              name_en="Far committee")
        s.add(committee)
        await s.flush()
        s.add(Estate(code="far-estate", committee_id=committee.id, name_zh="远方小区",
                     name_en="Far Estate", latitude=30.7, longitude=104.1, boundary=None))


async def role_id(app, user: str, kind: str) -> int:
    from sqlalchemy import select

    from storage.people import Identity, Role

    async with app.services.readers() as s:
        return await s.scalar(select(Role.id).join(
            Identity, Identity.resident_id == Role.resident_id).where(
            Identity.platform_user_id == user, Role.kind == kind))
