"""Every model module, imported so `Base.metadata` is complete (Alembic reads it)."""

from storage import (
    audit,
    dialog,
    kv,
    outbox,
    people,
    reports,
    territory,
    updates,
    verification,
    volunteer_hours,
    volunteer_teams,
    volunteering,
)
from storage.base import Base

__all__ = ["Base", "audit", "dialog", "kv", "outbox", "people", "reports", "territory", "updates",
           "verification", "volunteer_hours", "volunteer_teams", "volunteering"]
