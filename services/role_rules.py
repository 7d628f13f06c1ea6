"""Who manages roles and reads the audit log: one rule for the chat (handlers/admin.py:
/grant, /revoke, /roles, /audit) and the staff dashboard (web/dashboard/people.py).

Admins only, everywhere: the chat lets no station staff grant, revoke or list roles, nor read
the audit log, so the dashboard does not either. The audit log is not scoped to a station:
its entries name their targets in many shapes (a resident, an estate, a poll, a report
reference, an invite), most with no station of their own, so an admin's view is the whole."""

from __future__ import annotations

from storage.access import Scope

MANAGERS = ("admin",)  # role kinds (storage.people.RoleKind values)
AUDITORS = ("admin",)


def may_manage_roles(scope: Scope) -> bool:
    return scope.has(*MANAGERS)


def may_read_audit(scope: Scope) -> bool:
    return scope.has(*AUDITORS)
