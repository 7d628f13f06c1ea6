"""Filing a report: the one path every channel takes (the chat conversation, an emergency's
"I need help", the Open311 API). Routes the report (services.report_routing), works out its
deadlines from the category's SLA in working days, numbers and stores it. Telling the team
(its card) is the caller's part: the card is a chat message, rendered by handlers/.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

if TYPE_CHECKING:
    from bot.context import Services

from zoneinfo import ZoneInfo

from services.report_routing import route
from storage import reports as rep


async def file(session: AsyncSession, services: Services, reporter_id: int, *, category: str, description: str,
               latitude: float | None = None, longitude: float | None = None,
               exact_point: bool = False, estate_id: int | None = None,
               building_id: int | None = None, photos: tuple[str, ...] = (),
               voice: str | None = None, voice_duration: int | None = None,
               urgent: bool = False, reason: dict | None = None) -> rep.Report:
    """Route, number and store a report (an unknown category files as "other")."""
    cat = services.catalog.get_or_other(category)
    now = services.clock()
    where = await route(session, services.geo, cat.key, latitude=latitude, longitude=longitude,
                        estate_id=estate_id)
    cal = services.calendar
    return await rep.create(session, rep.NewReport(
        reporter_id=reporter_id, category=cat.key, description=description,
        ack_due_at=cal.add_working_days(now, cat.ack_days),
        fix_due_at=cal.add_working_days(now, cat.fix_days),
        latitude=latitude, longitude=longitude, exact_point=exact_point,
        estate_id=where.estate_id, building_id=building_id, zone_id=where.zone_id,
        team_id=where.team_id, urgent=urgent, photos=tuple(photos), voice=voice,
        voice_duration=voice_duration, reason=reason,
    ), now, now.astimezone(ZoneInfo(services.settings.bot.timezone)).year,
        services.settings.reports.reference_prefix)


async def same_nearby(session: AsyncSession, services: Services, category: str, latitude: float, longitude: float
                      ) -> list[tuple[rep.Report, float]]:
    """Open reports of the same category within the category's duplicate radius, nearest
    first: what the chat offers to follow instead, and what an API filing is merged into."""
    cat = services.catalog.get_or_other(category)
    return await rep.open_nearby(session, cat.key, latitude, longitude, cat.duplicate_radius_m)
