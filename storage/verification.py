"""Verifying residents: invite codes staff hand out, and a queue staff approve from.

A request is for one home: the estate and the household (building and unit) the resident had
when asking. Moving withdraws it (`close_pending_on_move`, called by `set_home`), and an
approval checks again that the resident still lives there, so staff of one estate can never
verify someone who now lives in another. Approval confirms the household shown to staff; an
invite code verifies its estate (and building) only, never a typed unit.
"""

from __future__ import annotations

import enum
import secrets
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, String, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage import people
from storage.base import Base, affected, by_id, must_get, utcnow
from storage.people import Resident, normalize_unit

# No 0/O/1/I: codes are read aloud and copied from paper.
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class Invite(Base):
    __tablename__ = "invites"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id"))
    building_id: Mapped[int | None] = mapped_column(ForeignKey("buildings.id"))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("residents.id"))
    max_uses: Mapped[int] = mapped_column(default=1)
    uses: Mapped[int] = mapped_column(default=0)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RequestStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"  # the resident moved before anyone decided


class VerificationRequest(Base):
    __tablename__ = "verification_requests"
    id: Mapped[int] = mapped_column(primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), index=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id"), index=True)
    household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id"))
    status: Mapped[str] = mapped_column(String(12), default=RequestStatus.PENDING.value)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("residents.id"))
    decided_at: Mapped[datetime | None]


async def get_request(session: AsyncSession, request_id: int | None
                      ) -> VerificationRequest | None:
    return await by_id(session, VerificationRequest, request_id)


async def create_invite(
    session: AsyncSession, estate_id: int, building_id: int | None, created_by: int | None,
    *, max_uses: int = 1, valid_days: int = 14,
) -> Invite:
    for _ in range(10):
        code = "".join(secrets.choice(_ALPHABET) for _ in range(8))
        if await session.scalar(select(Invite.id).where(Invite.code == code)) is None:
            break
    invite = Invite(
        code=code, estate_id=estate_id, building_id=building_id, created_by=created_by,
        max_uses=max_uses, expires_at=utcnow() + timedelta(days=valid_days),
    )
    session.add(invite)
    await session.flush()
    return invite


async def invites(session: AsyncSession, estate_ids: set[int] | None, limit: int = 50
                  ) -> list[Invite]:
    """The newest invite codes of these estates (None: every estate), used up and expired
    ones too."""
    q = select(Invite).order_by(Invite.id.desc()).limit(limit)
    if estate_ids is not None:
        q = q.where(Invite.estate_id.in_(estate_ids))
    return list((await session.scalars(q)).all())


class InviteError(enum.StrEnum):
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    USED_UP = "used_up"


def normalize_code(text: str) -> str:
    return "".join(ch for ch in text.upper() if ch.isalnum())


async def redeem_invite(
    session: AsyncSession, resident: Resident, code: str
) -> Invite | InviteError:
    invite = await session.scalar(select(Invite).where(Invite.code == normalize_code(code)))
    if invite is None:
        return InviteError.UNKNOWN
    if invite.expires_at < utcnow():
        return InviteError.EXPIRED
    # The guarded update holds the use count even when two people redeem at once.
    taken = await session.execute(
        update(Invite)
        .where(Invite.id == invite.id, Invite.uses < Invite.max_uses)
        .values(uses=Invite.uses + 1)
    )
    if affected(taken) != 1:
        return InviteError.USED_UP
    if resident.estate_id != invite.estate_id or (
        invite.building_id and resident.building_id != invite.building_id
    ):
        await set_home(session, resident, invite.estate_id, invite.building_id, resident.unit
                       if invite.building_id == resident.building_id else None)
    resident.verified = True
    resident.verified_at = utcnow()
    await _close_pending(session, resident.id, RequestStatus.APPROVED, None)
    return invite


async def request_verification(session: AsyncSession, resident: Resident) -> bool:
    """Queue the resident for staff approval; False when a request is already waiting."""
    existing = await session.scalar(
        select(VerificationRequest.id).where(
            VerificationRequest.resident_id == resident.id,
            VerificationRequest.status == RequestStatus.PENDING.value,
        )
    )
    if existing is not None:
        return False
    session.add(VerificationRequest(resident_id=resident.id, estate_id=resident.estate_id,
                                    household_id=resident.household_id))
    return True


async def pending(session: AsyncSession, estate_ids: set[int] | None, limit: int = 10):
    q = (
        select(VerificationRequest, Resident)
        .join(Resident, Resident.id == VerificationRequest.resident_id)
        .where(VerificationRequest.status == RequestStatus.PENDING.value,
               Resident.estate_id == VerificationRequest.estate_id)
        .order_by(VerificationRequest.id)
        .limit(limit)
    )
    if estate_ids is not None:
        q = q.where(VerificationRequest.estate_id.in_(estate_ids))
    return list((await session.execute(q)).all())


async def decide(
    session: AsyncSession, request_id: int, approve: bool, decided_by: int
) -> VerificationRequest | None:
    """Approve or reject a pending request; None when it was already decided. A request whose
    resident no longer lives where they asked is withdrawn instead (returned, status
    `withdrawn`), whatever the decision."""
    req = await session.get(VerificationRequest, request_id)
    if req is None or req.status != RequestStatus.PENDING.value:
        return None
    resident = await must_get(session, Resident, req.resident_id)
    status = RequestStatus.APPROVED if approve else RequestStatus.REJECTED
    if (resident.estate_id, resident.household_id) != (req.estate_id, req.household_id):
        status = RequestStatus.WITHDRAWN
    done = await session.execute(
        update(VerificationRequest)
        .where(VerificationRequest.id == request_id,
               VerificationRequest.status == RequestStatus.PENDING.value)
        .values(status=status.value, decided_by=decided_by, decided_at=utcnow())
    )
    if affected(done) != 1:
        return None
    if status == RequestStatus.APPROVED:
        resident.verified = True
        resident.verified_at = utcnow()
        resident.verified_household_id = req.household_id
    await session.refresh(req)
    return req


async def set_home(
    session: AsyncSession,
    resident: Resident,
    estate_id: int,
    building_id: int | None = None,
    unit: str | None = None,
) -> bool:
    """Move the resident; True when the home changed. A changed estate, building or unit ends
    verification and closes waiting verification requests: whoever approved the old home did
    not approve the new one."""
    unit = normalize_unit(unit) or None
    if not building_id:
        unit = None
    if unit is not None and building_id and await people.unit_in(
            session, building_id, unit) is None:
        raise ValueError(f"unit {unit!r} is not one of the building's units")
    moved = (resident.estate_id, resident.building_id, resident.unit) != (
        estate_id, building_id, unit)
    if moved:
        resident.verified = False
        resident.verified_at = None
        resident.verified_household_id = None
        if resident.id is not None:
            await close_pending_on_move(session, resident.id)
    resident.estate_id = estate_id
    resident.building_id = building_id
    resident.unit = unit
    resident.household_id = (
        (await people.household_for(session, building_id, unit)).id if building_id and unit else None
    )
    return moved


async def close_pending_on_move(session: AsyncSession, resident_id: int) -> None:
    await _close_pending(session, resident_id, RequestStatus.WITHDRAWN, None)


async def _close_pending(session, resident_id, status, decided_by) -> None:
    await session.execute(
        update(VerificationRequest)
        .where(VerificationRequest.resident_id == resident_id,
               VerificationRequest.status == RequestStatus.PENDING.value)
        .values(status=status.value, decided_by=decided_by, decided_at=utcnow())
    )
