"""Verifying residents, for every desk: who verifies (and hands out invite codes), which
estates their scope covers, the queue they decide from, and a decision with its audit and the
push that tells the resident. One rule for the chat (handlers/verification.py: /invite,
/pending and its buttons) and the staff dashboard (web/dashboard/people.py).

The storage rules (storage/verification.py) stay where they are: a request is for one home,
moving withdraws it, an approval checks the resident still lives there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from bot.pushes import Recipient, push
from storage import audit, territory
from storage import verification as ver
from storage.access import Scope
from storage.people import Resident, identities_of, resident_by_id

if TYPE_CHECKING:
    from bot.i18n import Texts

# Role kinds that verify residents and make invite codes (storage.people.RoleKind values).
VERIFIERS = ("admin", "staff", "committee")
INVITE_USES = 50  # how many residents one code verifies
INVITE_DAYS = 14  # how long a code works

Decision = Literal["done", "not_allowed", "already_decided", "withdrawn"]


def may_verify(scope: Scope) -> bool:
    return scope.has(*VERIFIERS)


def estate_ids(scope: Scope) -> set[int] | None:
    """The estates whose residents this person verifies; None for every estate."""
    return None if scope.everything else set(scope.estate_ids)


async def invite_estates(session: AsyncSession, scope: Scope) -> list[territory.Estate]:
    """The estates this person may make invite codes for (their scope's)."""
    return [e for e in await territory.estates(session) if scope.covers_estate(e.id)]


async def create_invite(session: AsyncSession, scope: Scope, actor_id: int, estate_id: int
                        ) -> ver.Invite | None:
    """A code for an estate the scope covers (INVITE_USES uses within INVITE_DAYS), audited;
    None when the estate is outside the scope."""
    if not may_verify(scope) or not scope.covers_estate(estate_id):
        return None
    code = await ver.create_invite(session, estate_id, None, actor_id, max_uses=INVITE_USES,
                                   valid_days=INVITE_DAYS)
    await audit.record(session, actor_id, "invite.create", f"estate:{estate_id}",
                       invite_id=code.id)
    return code


async def pending(session: AsyncSession, scope: Scope, limit: int = 10
                  ) -> list[tuple[ver.VerificationRequest, Resident]]:
    """Requests waiting in the scope's estates, oldest first."""
    if not may_verify(scope):
        return []
    rows = await ver.pending(session, estate_ids(scope), limit=limit)
    return [(req, resident) for req, resident in rows]


async def request_in_scope(session: AsyncSession, scope: Scope, request_id: int
                           ) -> ver.VerificationRequest | None:
    """The request, when it is for an estate this person verifies; None otherwise (or when
    there is none)."""
    req = await ver.get_request(session, request_id)
    if req is None or not may_verify(scope) or not scope.covers_estate(req.estate_id):
        return None
    return req


@dataclass(frozen=True)
class Decided:
    outcome: Decision
    approve: bool
    pushed: bool = False  # the resident was told (wake delivery after the commit)


async def decide(session: AsyncSession, texts: Texts, scope: Scope, actor_id: int,
                 request_id: int, approve: bool) -> Decided:
    """Approve or reject a waiting request in the scope: audited, and the resident told in
    their language on every chat they use. A request decided before, or withdrawn because the
    resident moved, changes nothing."""
    req = await request_in_scope(session, scope, request_id)
    if req is None:
        return Decided("not_allowed", approve)
    done = await ver.decide(session, request_id, approve, actor_id)
    if done is None:
        return Decided("withdrawn" if req.status == ver.RequestStatus.WITHDRAWN
                       else "already_decided", approve)
    if done.status == ver.RequestStatus.WITHDRAWN:
        return Decided("withdrawn", approve)
    await audit.record(session, actor_id, "verify.approve" if approve else "verify.reject",
                       f"resident:{req.resident_id}")
    resident = await resident_by_id(session, req.resident_id)
    pushed = False
    if resident is not None:
        for ident in await identities_of(session, resident.id):
            await push(session, texts, Recipient(ident.id, resident.language),
                       "verify.you_approved" if approve else "verify.you_rejected")
            pushed = True
    return Decided("done", approve, pushed)
