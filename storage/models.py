"""Every model module, imported so `Base.metadata` is complete (Alembic reads it)."""

from storage import (
    alerts,
    audit,
    choices,
    dashboard,
    dialog,
    guides,
    kv,
    notices,
    open311,
    outbox,
    people,
    polls,
    proposals,
    reports,
    subscriptions,
    surveys,
    territory,
    updates,
    verification,
    volunteer_hours,
    volunteer_teams,
    volunteering,
)
from storage.base import Base

__all__ = ["Base", "alerts", "audit", "choices", "dashboard", "dialog", "guides", "kv", "notices", "open311", "outbox",
           "people", "polls", "proposals", "reports", "subscriptions", "surveys", "territory",
           "updates", "verification", "volunteer_hours", "volunteer_teams", "volunteering"]
