"""Who hears something or may take part in it: the one audience model, used by notices, polls,
surveys, proposals and volunteering announcements, and the one query that resolves it to
recipients. Holds no tables.

An `Audience` is residents with a home, narrowed by
- an area, named by `kind` and `area_id`: the whole sub-district, a committee (its estates as
  they are when asked), an estate or a building;
- fixed places chosen beforehand (`estate_ids`, `building_ids`: a notice resolves a station, a
  zone or the sender's estates to these when it is made);
- who they are: verified only, or among a set of residents a feature knows (`among`: a notice
  to volunteers passes storage.volunteer_teams.volunteer_resident_ids());
- what they chose: `category` leaves out residents who switched that category off.

`recipients` walks it in pages, `count` counts it, `refusal` says why one resident is not in
it. Stored forms stay those of each feature (a notice's kind, targets and resolved places; a
poll's or survey's area columns; an activity's audience word): each builds its Audience from
them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import ColumnElement, Select, and_, exists, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from storage.people import Identity, Resident
from storage.subscriptions import Subscription, SubscriptionOptOut
from storage.territory import Estate


class Kind(enum.StrEnum):
    """The audiences a sender or an author chooses from (a notice may take any; polls,
    surveys and proposals an area: committee, estate or building)."""

    SUBDISTRICT = "subdistrict"
    STATION = "station"
    COMMITTEE = "committee"
    ESTATE = "estate"
    BUILDING = "building"
    ZONE = "zone"
    VOLUNTEERS = "volunteers"  # everyone signed up as a volunteer, within the places chosen


KINDS = (Kind.COMMITTEE.value, Kind.ESTATE.value, Kind.BUILDING.value)  # the areas


class Each(enum.Enum):
    """How `recipients` pages: what one page is made of, and what its cursor counts."""

    IDENTITY = "identity"  # every reachable identity, by identity id (with quiet hours)
    RESIDENT = "resident"  # every reachable identity of the next residents, by resident id
    FIRST_IDENTITY = "first"  # one reachable identity (the first) a resident, by resident id


@dataclass(frozen=True)
class Audience:
    kind: str = Kind.SUBDISTRICT  # the area: subdistrict / committee / estate / building
    area_id: int | None = None
    verified_only: bool = False
    estate_ids: tuple[int, ...] | None = None  # None: no narrowing by estate
    building_ids: tuple[int, ...] | None = None
    category: str | None = None  # residents who switched this category off are left out
    # A select of resident ids to stay within (volunteers); not part of equality.
    among: Select | None = field(default=None, compare=False)

    def area_condition(self) -> ColumnElement[bool]:
        """Where the resident lives (the area and the fixed places), nothing else."""
        conds: list[ColumnElement[bool]] = []
        if self.kind == Kind.COMMITTEE:
            conds.append(Resident.estate_id.in_(
                select(Estate.id).where(Estate.committee_id == self.area_id)))
        elif self.kind == Kind.ESTATE:
            conds.append(Resident.estate_id == self.area_id)
        elif self.kind == Kind.BUILDING:
            conds.append(Resident.building_id == self.area_id)
        if self.estate_ids is not None:
            conds.append(Resident.estate_id.in_(self.estate_ids))
        if self.building_ids is not None:
            conds.append(Resident.building_id.in_(self.building_ids))
        return and_(true(), *conds)

    def condition(self) -> ColumnElement[bool]:
        conds = [Resident.estate_id.is_not(None), self.area_condition()]
        if self.verified_only:
            conds.append(Resident.verified.is_(True))
        if self.among is not None:
            conds.append(Resident.id.in_(self.among))
        if self.category is not None:
            conds.append(~exists().where(and_(SubscriptionOptOut.resident_id == Resident.id,
                                              SubscriptionOptOut.category == self.category)))
        return and_(*conds)

    def residents(self) -> Select:
        """The ids of the residents in it, a select."""
        return select(Resident.id).where(self.condition())


async def refusal(session: AsyncSession, audience: Audience, resident: Resident) -> str | None:
    """Why this resident may not take part (a text key suffix), or None when they may."""
    if resident.estate_id is None:
        return "not_registered"
    inside = await session.scalar(
        select(func.count()).select_from(Resident).where(
            Resident.id == resident.id, audience.area_condition()))
    if not inside:
        return "not_in_area"
    if audience.verified_only and not resident.verified:
        return "not_verified"
    return None


@dataclass(frozen=True)
class Recipient:
    resident_id: int
    identity_id: int
    language: str | None
    quiet_start: int | None = None
    quiet_end: int | None = None


@dataclass(frozen=True)
class Page:
    recipients: list[Recipient]
    last: int | None  # the cursor to go on after (an identity or a resident id); None: no one
    looked_at: int  # rows (identities or residents) this page took: fewer than asked, the end


async def recipients(session: AsyncSession, audience: Audience, *, each: Each = Each.IDENTITY,
                     after: int = 0, limit: int | None = None) -> Page:
    """The next page of the audience's reachable identities after the cursor `after` (keyset
    pagination: each page costs the same, however far in), so a fan-out resumes where it
    stopped."""
    if each == Each.IDENTITY:
        rows = (await session.execute(
            select(Identity.resident_id, Identity.id, Resident.language,
                   Subscription.quiet_start, Subscription.quiet_end)
            .join(Resident, Resident.id == Identity.resident_id)
            .outerjoin(Subscription, Subscription.resident_id == Resident.id)
            .where(Identity.id > after, Identity.unreachable_at.is_(None), audience.condition())
            .order_by(Identity.id).limit(limit))).all()
        found = [Recipient(*row) for row in rows]
        return Page(found, found[-1].identity_id if found else None, len(found))
    if each == Each.FIRST_IDENTITY:
        found = await one_identity_each(
            session, audience.residents().where(Resident.id > after), limit)
        return Page(found, found[-1].resident_id if found else None, len(found))
    ids = list((await session.scalars(
        audience.residents().where(Resident.id > after).order_by(Resident.id).limit(limit)
    )).all())
    if not ids:
        return Page([], None, 0)
    of_them = (await session.execute(
        select(Identity.resident_id, Identity.id, Resident.language)
        .join(Resident, Resident.id == Identity.resident_id)
        .where(Identity.resident_id.in_(ids), Identity.unreachable_at.is_(None))
        .order_by(Identity.resident_id, Identity.id))).all()
    return Page([Recipient(*row) for row in of_them], ids[-1], len(ids))


async def one_identity_each(session: AsyncSession, resident_ids: Select,
                            limit: int | None = None) -> list[Recipient]:
    """One reachable identity (the first) of each resident the select names, by resident."""
    first = (select(func.min(Identity.id).label("iid"), Identity.resident_id)
             .where(Identity.unreachable_at.is_(None), Identity.resident_id.in_(resident_ids))
             .group_by(Identity.resident_id).subquery())
    rows = await session.execute(
        select(first.c.resident_id, first.c.iid, Resident.language)
        .join(Resident, Resident.id == first.c.resident_id).order_by(first.c.resident_id)
        .limit(limit))
    return [Recipient(*row) for row in rows.all()]


async def count(session: AsyncSession, audience: Audience, *, each: Each = Each.RESIDENT,
                per_household: bool = False, besides: int | None = None) -> int:
    """How many residents (or reachable identities, or households) the audience holds now,
    `besides` one resident left out (an organiser); one COUNT query."""
    if per_household:
        # Households count through members staff approved for them (people.household_voter).
        return await session.scalar(
            select(func.count(func.distinct(Resident.verified_household_id))).where(
                audience.condition(), Resident.verified.is_(True),
                Resident.verified_household_id == Resident.household_id)) or 0
    q = (select(Identity.id).join(Resident, Resident.id == Identity.resident_id)
         .where(Identity.unreachable_at.is_(None), audience.condition())
         if each == Each.IDENTITY else audience.residents())
    if besides is not None:
        q = q.where(Resident.id != besides)
    return await session.scalar(select(func.count()).select_from(q.subquery())) or 0


def percent(part: int, whole: int) -> Decimal:
    """A percentage with two decimals, rounded half up, the way the studies publish them."""
    if not whole:
        return Decimal("0.00")
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.01"), ROUND_HALF_UP)
