"""Helpers for the notices tests: residents placed directly in the database."""

from __future__ import annotations

from sqlalchemy import select

from bot.delivery import Deliverer
from handlers.notice_jobs import fan_out, report_progress
from storage.people import Identity, Resident
from storage.territory import Building, Estate


async def add_resident(session, user: str, estate_code: str | None, building: str | None = None,
                       *, platform: str = "memory", lang: str | None = "en",
                       unit: str | None = "101", name: str | None = None) -> Identity:
    estate = await session.scalar(select(Estate).where(Estate.code == estate_code)) \
        if estate_code else None
    bld = await session.scalar(select(Building).where(
        Building.estate_id == estate.id, Building.number == building)) if building else None
    resident = Resident(display_name=name or user, language=lang, phone=f"138{user[-4:]:0>8}",
                        estate_id=estate.id if estate else None,
                        building_id=bld.id if bld else None, unit=unit if bld else None,
                        verified=True)
    session.add(resident)
    await session.flush()
    identity = Identity(platform=platform, platform_user_id=user, chat_id=user,
                        resident_id=resident.id)
    session.add(identity)
    await session.flush()
    return identity


async def pump(app, rounds: int = 5) -> None:
    """Run the notices jobs and drain the outbox until nothing is left to do."""
    deliverer = Deliverer(app.engine, app.sessions, app.adapters)
    for _ in range(rounds):
        await fan_out(app.sessions, app.services, None)
        while await deliverer.drain_once():
            pass
        await report_progress(app.sessions, app.services, None)
        while await deliverer.drain_once():
            pass
