"""Every feature's conversations, gathered into one router."""

from __future__ import annotations

from handlers import (
    admin,
    onboarding,
    poll_ballots,
    polls,
    profile,
    proposals,
    surveys,
    verification,
)
from handlers.router import Router

MODULES = [onboarding, profile, verification, admin, polls, poll_ballots, surveys, proposals]


def build_router() -> Router:
    router = Router()
    for module in MODULES:
        router.include(module.router)
    return router


def build_jobs() -> list:
    return [job for module in MODULES for job in getattr(module, "jobs", [])]


first_contact = onboarding.first_contact
