"""Running an activity's rosters: who may manage an activity, the shifts they manage, marking a
volunteer present (audited), the roster's CSV and a CSV of volunteer hours for a period. One
rule for the chat (handlers/volunteering_organise.py, handlers/volunteering_hours.py) and the
staff dashboard (web/dashboard/volunteering.py)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage import volunteer_teams as vteams
from storage import volunteering as vol
from storage.access import Scope
from storage.people import Resident
from storage.volunteer_hours import served_hours

Translate = Callable[..., str]  # t(key, **values) in the reader's language
ROSTER_COLUMNS = ("queue_no", "resident", "name", "status", "waitlist_position",
                  "signed_up_at", "attended_at", "checked_out_at")  # volunteering.csv_*
HOURS_COLUMNS = ("date", "activity", "shift", "resident", "name", "hours")  # ...hours_col_*


def hours_text(hours: float) -> str:
    """Hours as /myhours shows them (and the hours CSV writes them): one decimal, no '.0'."""
    return f"{round(hours, 1):g}"


async def may_manage(session: AsyncSession, scope: Scope, resident_id: int,
                     activity: vol.Activity) -> bool:
    """Asked at every roster action, from the roles held now (a revoked organiser loses it);
    the rule itself is storage.volunteering.may_manage."""
    leads = bool(await vteams.led_teams(session, resident_id))
    return vol.may_manage(scope, activity, resident_id, leads_team=leads)


async def managed_shifts(session: AsyncSession, scope: Scope, resident_id: int,
                         since: datetime) -> list[tuple[vol.Shift, vol.Activity]]:
    """The published activities' shifts ending after `since` that this person may manage."""
    rows = await vol.organised_shifts(
        session, organiser_id=resident_id,
        estate_ids=None if scope.everything else scope.estate_ids,
        committee_ids=scope.committee_ids, since=since)
    leads = bool(await vteams.led_teams(session, resident_id))
    return [(s, a) for s, a in rows if vol.may_manage(scope, a, resident_id, leads_team=leads)]


@dataclass(frozen=True)
class ManagedShift:
    shift: vol.Shift
    activity: vol.Activity


async def managed_shift(session: AsyncSession, scope: Scope, resident_id: int,
                        shift_id: int | None) -> ManagedShift | None:
    """A shift and its activity, when this person may manage it; None as when there is none."""
    shift = await vol.get_shift(session, shift_id)
    activity = await vol.get_activity(session, shift.activity_id) if shift else None
    if shift is None or activity is None or not await may_manage(session, scope, resident_id,
                                                                   activity):
        return None
    return ManagedShift(shift, activity)


Marked = Literal["marked", "unchanged", "too_early", "not_allowed"]


@dataclass(frozen=True)
class Attendance:
    outcome: Marked
    found: ManagedShift | None = None


async def mark_attended(session: AsyncSession, scope: Scope, actor_id: int, signup_id: int,
                        now: datetime, early: timedelta) -> Attendance:
    """The organiser marks a confirmed volunteer present: not before the check-in opens
    (`early` before the start), once (a second mark changes nothing); audited."""
    signup = await vol.get_signup(session, signup_id)
    found = await managed_shift(session, scope, actor_id, signup.shift_id if signup else None)
    if signup is None or found is None:
        return Attendance("not_allowed")
    if now < found.shift.starts_at - early:
        return Attendance("too_early", found)
    if not await vol.mark_attended(session, signup.id, actor_id, now):
        return Attendance("unchanged", found)
    await audit.record(session, actor_id, "volunteering.attended", f"signup:{signup.id}")
    return Attendance("marked", found)


def _at(tz: ZoneInfo, moment: datetime | None) -> str:
    return f"{moment.astimezone(tz):%Y-%m-%d %H:%M}" if moment else ""


def roster_csv(t: Translate, tz: ZoneInfo, lines: list[vol.RosterLine]) -> bytes:
    """A shift's roster as CSV, headers in the reader's language, times local; with a BOM so
    spreadsheet programs read the Chinese names as UTF-8."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([t(f"volunteering.csv_{c}") for c in ROSTER_COLUMNS])
    for line in lines:
        s = line.signup
        writer.writerow([s.queue_no, s.resident_id, line.name,
                         t(f"volunteering.status_{s.status}"), line.position or "",
                         _at(tz, s.created_at), _at(tz, s.attended_at),
                         _at(tz, s.checked_out_at)])
    return ("\ufeff" + buf.getvalue()).encode()


async def export_roster(session: AsyncSession, t: Translate, tz: ZoneInfo, actor_id: int,
                        shift_id: int) -> bytes:
    """The roster's CSV for someone who manages the shift (the caller asked), audited."""
    body = roster_csv(t, tz, await vol.roster(session, shift_id))
    await audit.record(session, actor_id, "volunteering.export", f"shift:{shift_id}")
    return body


@dataclass(frozen=True)
class HoursLine:
    shift: vol.Shift
    activity: vol.Activity
    resident_id: int
    name: str
    hours: float


async def hours_of(session: AsyncSession, scope: Scope, resident_id: int, start: datetime,
                   end: datetime, now: datetime) -> list[HoursLine]:
    """Hours credited (storage.volunteer_hours.served_hours, as /myhours counts them) for each
    attended sign-up of the shifts starting in [start, end) of the activities this person
    may manage; by shift start, then volunteer."""
    rows = (await session.execute(
        select(vol.Signup, vol.Shift, vol.Activity, Resident.display_name)
        .join(vol.Shift, vol.Shift.id == vol.Signup.shift_id)
        .join(vol.Activity, vol.Activity.id == vol.Shift.activity_id)
        .join(Resident, Resident.id == vol.Signup.resident_id)
        .where(vol.Signup.status == vol.SignupStatus.ATTENDED.value,
               vol.Shift.starts_at >= start, vol.Shift.starts_at < end)
        .order_by(vol.Shift.starts_at, vol.Shift.id, vol.Signup.queue_no))).all()
    leads = bool(await vteams.led_teams(session, resident_id))
    out = []
    for signup, shift, activity, name in rows:
        if not vol.may_manage(scope, activity, resident_id, leads_team=leads):
            continue
        hours = served_hours(shift, signup, now)
        if hours is not None:
            out.append(HoursLine(shift, activity, signup.resident_id,
                                 name or f"#{signup.resident_id}", hours))
    return out


def hours_csv(t: Translate, tz: ZoneInfo, lines: list[HoursLine]) -> bytes:
    """One row per volunteer and shift, then the total; hours as /myhours writes them."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([t(f"volunteering.hours_col_{c}") for c in HOURS_COLUMNS])
    for line in lines:
        start, finish = line.shift.starts_at.astimezone(tz), line.shift.ends_at.astimezone(tz)
        writer.writerow([f"{start:%Y-%m-%d}", line.activity.title,
                         f"{start:%H:%M}–{finish:%H:%M}", line.resident_id, line.name,
                         hours_text(line.hours)])
    writer.writerow([t("volunteering.hours_col_total"), "", "", "", "",
                     hours_text(sum(x.hours for x in lines))])
    return ("\ufeff" + buf.getvalue()).encode()
