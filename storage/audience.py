"""Who may take part in a poll, survey or proposal: an area (committee, estate or building) and
whether verification is required. Shared by the deliberation features; holds no tables."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.people import Identity, Resident
from storage.territory import Estate

KINDS = ("committee", "estate", "building")


@dataclass(frozen=True)
class Audience:
    kind: str  # committee / estate / building
    area_id: int
    verified_only: bool

    def area_condition(self):
        if self.kind == "committee":
            return Resident.estate_id.in_(
                select(Estate.id).where(Estate.committee_id == self.area_id))
        if self.kind == "estate":
            return Resident.estate_id == self.area_id
        return Resident.building_id == self.area_id

    def condition(self):
        if self.verified_only:
            return and_(self.area_condition(), Resident.verified.is_(True))
        return self.area_condition()


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


async def recipients_after(session: AsyncSession, audience: Audience, after_resident: int,
                           limit: int) -> tuple[list[Recipient], int | None]:
    """The next batch of reachable identities of eligible residents, in resident order, and the
    last resident looked at (None: no one left), so a fan-out can resume where it stopped."""
    ids = list((await session.scalars(
        select(Resident.id).where(audience.condition(), Resident.id > after_resident)
        .order_by(Resident.id).limit(limit))).all())
    if not ids:
        return [], None
    rows = await session.execute(
        select(Identity.resident_id, Identity.id, Resident.language)
        .join(Resident, Resident.id == Identity.resident_id)
        .where(Identity.resident_id.in_(ids), Identity.unreachable_at.is_(None))
        .order_by(Identity.resident_id, Identity.id))
    return [Recipient(r, i, lang) for r, i, lang in rows.all()], ids[-1]


async def count_eligible(session: AsyncSession, audience: Audience, *,
                         per_household: bool = False) -> int:
    if per_household:
        # Households count through members staff approved for them (people.household_voter).
        return await session.scalar(
            select(func.count(func.distinct(Resident.verified_household_id))).where(
                audience.condition(), Resident.verified.is_(True),
                Resident.verified_household_id == Resident.household_id)) or 0
    return await session.scalar(
        select(func.count()).select_from(Resident).where(audience.condition())) or 0


def percent(part: int, whole: int) -> Decimal:
    """A percentage with two decimals, rounded half up, the way the studies publish them."""
    if not whole:
        return Decimal("0.00")
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.01"), ROUND_HALF_UP)
