"""Who runs a poll or survey once published, when its results may be read, and closing a poll
early: one rule for the chat (handlers/polls.py, handlers/drafting.py) and the staff dashboard
(web/dashboard)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit, polls
from storage.access import Scope


def runs(scope: Scope, committee_id: int | None) -> bool:
    """Admins, and the members and station staff of the committee it belongs to: they see it
    whole (turnout) and may close it early."""
    return scope.everything or (committee_id in scope.committee_ids
                                and scope.has("staff", "committee"))


def results_visible(poll: polls.Poll) -> bool:
    """Results are read once the poll has closed, or while it runs when it shows them live;
    for everyone alike (its runners too), as the ballot says."""
    return poll.live_results or poll.status == "closed"


Closed = Literal["done", "unknown", "not_allowed", "already_closed"]


async def close_early(session: AsyncSession, scope: Scope, actor_id: int, poll_id: int,
                      now: datetime) -> Closed:
    """Bring an open poll's closing time forward to now (the clock's job closes it, counts the
    last anonymous ballots and sends the results); audited."""
    poll = await polls.get_poll(session, poll_id)
    if poll is None:
        return "unknown"
    if not runs(scope, poll.committee_id):
        return "not_allowed"
    if poll.status != "open" or poll.closes_at <= now:
        return "already_closed"
    if not await polls.close_early(session, poll.id, now):
        return "already_closed"
    await audit.record(session, actor_id, "poll.close_early", f"poll:{poll.id}")
    return "done"
