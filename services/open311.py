"""Open311 GeoReport v2's rules over our reports: which of our statuses are open or closed
(and FixMyStreet's extended statuses), what a key's scope covers, what an outside reader may
see of a report, and filing a report that arrives by POST through the same path as one filed
in chat (services.report_filing: routing, deadlines, numbering; a report of the same category
open nearby takes it instead of a second one; the team gets the card).

Errors carry a text key (content/texts/*/open311.toml) and the HTTP status the specification
gives them; web/open311.py words and serialises them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

if TYPE_CHECKING:
    from bot.context import Services

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from services import report_filing
from services.report_routing import route
from storage import audit, open311, territory
from storage import reports as rep

OPEN_STATUSES = tuple(s.value for s in rep.OPEN)
CLOSED_STATUSES = (rep.Status.FIXED.value, rep.Status.CLOSED.value)
# FixMyStreet's extended statuses (its Open311 "additional states"), for clients that ask.
EXTENDED = {
    rep.Status.NEW.value: "open",
    rep.Status.ACKNOWLEDGED.value: "investigating",
    rep.Status.IN_PROGRESS.value: "in_progress",
    rep.Status.REOPENED.value: "open",
    rep.Status.FIXED.value: "fixed",
}
EXTENDED_CLOSED = {
    rep.CloseReason.DUPLICATE.value: "duplicate",
    rep.CloseReason.NOT_RESPONSIBLE.value: "not_councils_responsibility",
    rep.CloseReason.UNABLE.value: "no_further_action",
}
MAX_DESCRIPTION_FALLBACK = 1000


class Open311Error(Exception):
    """A request the API refuses: HTTP status, text key (open311.error_<key>) and values."""

    def __init__(self, status: int, key: str, **values: object) -> None:
        super().__init__(key)
        self.status, self.key, self.values = status, key, values


def status_of(report: rep.Report) -> str:
    return "open" if report.status in OPEN_STATUSES else "closed"


def extended_status_of(report: rep.Report) -> str:
    if report.status == rep.Status.CLOSED.value:
        return EXTENDED_CLOSED.get(report.close_reason or "", "closed")
    return EXTENDED.get(report.status, status_of(report))


def statuses_for(words: list[str]) -> list[str]:
    """Our statuses for `status=open,closed` (400 for anything else)."""
    found: list[str] = []
    for word in words:
        if word == "open":
            found += OPEN_STATUSES
        elif word == "closed":
            found += CLOSED_STATUSES
        else:
            raise Open311Error(400, "bad_status", value=word)
    return found


# -- scope ---------------------------------------------------------------------------------

@dataclass
class KeyScope:
    """What a key is held over: a station's estates (and the zones they lie in), or a team."""

    estate_ids: set[int] = field(default_factory=set)
    zone_ids: set[int] = field(default_factory=set)
    team_ids: set[int] = field(default_factory=set)

    def covers(self, report: rep.Report) -> bool:
        return self.covers_place(report.estate_id, report.zone_id, report.team_id)

    def covers_place(self, estate_id: int | None, zone_id: int | None,
                     team_id: int | None) -> bool:
        if team_id is not None and team_id in self.team_ids:
            return True
        if estate_id is not None:
            return estate_id in self.estate_ids
        return zone_id is not None and zone_id in self.zone_ids and bool(self.estate_ids)


async def jurisdiction(session: AsyncSession, services: Services, station_id: int) -> tuple[set[int], set[int]]:
    """A station's estates and the zones they lie in."""
    estates = await open311.station_estates(session, station_id)
    zones = {z for z in (services.geo.zone_of_estate(e) for e in estates) if z is not None}
    return estates, zones


async def scope_of_key(session: AsyncSession, services: Services, key: open311.ApiKey | None) -> KeyScope:
    if key is None:
        return KeyScope()
    if key.scope_kind == "station":
        estates, zones = await jurisdiction(session, services, key.scope_id)
        return KeyScope(estate_ids=estates, zone_ids=zones)
    return KeyScope(team_ids={key.scope_id})


def is_private(services: Services, report: rep.Report) -> bool:
    """A report whose place and words stay with those responsible: a category marked private,
    or one the bot filed itself for a resident (an emergency's "I need help", at their home)."""
    cat = services.catalog.get(report.category)
    return bool((cat is not None and cat.private) or report.reason)


# -- filing --------------------------------------------------------------------------------

@dataclass
class NewRequest:
    service_code: str
    description: str
    latitude: float | None = None
    longitude: float | None = None
    address_string: str | None = None
    media_url: str | None = None
    contact: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Filed:
    report: rep.Report
    merged: bool  # an open report of the same category nearby took the request


Announce = Callable[..., Awaitable[object]]  # (session, services, report) -> the team is told


async def submit(session: AsyncSession, services: Services, key: open311.ApiKey, new: NewRequest, *,
                 announce: Announce) -> Filed:
    """File a POSTed request as a report, as the chat does, within the key's scope."""
    cat = services.catalog.get(new.service_code)
    if cat is None:
        raise Open311Error(404, "service_unknown", code=new.service_code)
    limit = services.settings.reports.max_description or MAX_DESCRIPTION_FALLBACK
    description = (new.description or "").strip()
    if not description:
        raise Open311Error(400, "description_required")
    if len(description) > limit:
        raise Open311Error(400, "description_too_long", limit=limit)
    lat: float
    lon: float
    exact = new.latitude is not None and new.longitude is not None
    if new.latitude is not None and new.longitude is not None:
        place = services.geo.locate(new.latitude, new.longitude)
        if not place.inside:
            raise Open311Error(400, "outside")
        estate_id, lat, lon = place.estate_id, new.latitude, new.longitude
    elif new.address_string:
        matches = services.geo.match_estate(new.address_string)
        best = matches[0] if matches else None
        if best is None or best[1] < 80 or (len(matches) > 1 and matches[1][1] >= best[1] - 10):
            raise Open311Error(400, "address_unknown", address=new.address_string[:60])
        found = await territory.estate(session, best[0])
        if found is None:
            raise Open311Error(400, "address_unknown", address=new.address_string[:60])
        estate_id, lat, lon = found.id, found.latitude, found.longitude
    else:
        raise Open311Error(400, "location_required")
    where = await route(session, services.geo, cat.key, latitude=lat, longitude=lon,
                        estate_id=estate_id)
    scope = await scope_of_key(session, services, key)
    if not scope.covers_place(where.estate_id, where.zone_id, where.team_id):
        raise Open311Error(403, "out_of_scope")
    now = services.clock()
    merged_into = None
    if exact:
        nearby = await report_filing.same_nearby(session, services, cat.key, lat, lon)
        merged_into = nearby[0][0] if nearby else None
    if merged_into is not None:
        report = merged_into
    else:
        report = await report_filing.file(
            session, services, key.reporter_id, category=cat.key, description=description,
            latitude=lat, longitude=lon, exact_point=exact, estate_id=estate_id)
    await open311.record_submission(
        session, report.id, key.id, merged=merged_into is not None, contact=new.contact,
        address_string=new.address_string, media_url=new.media_url, now=now)
    await audit.record(session, key.reporter_id, "open311.post", report.reference,
                       by="open311", key=key.id, merged=merged_into is not None,
                       service_code=cat.key)
    if merged_into is None:
        await announce(session, services, report)
    return Filed(report, merged_into is not None)
