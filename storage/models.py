"""Every model module, imported so `Base.metadata` is complete (Alembic reads it)."""

from storage import (
    audit,
    dialog,
    kv,
    outbox,
    people,
    polls,
    proposals,
    surveys,
    territory,
    updates,
    verification,
)
from storage.base import Base

__all__ = ["Base", "audit", "dialog", "kv", "outbox", "people", "polls", "proposals", "surveys",
           "territory", "updates", "verification"]
