"""Residents volunteer: /volunteer, sign up in two taps, waitlist, /myshifts, check-in, reminders."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.context import Context
from bot.messaging.model import PushKind
from bot.payloads import Action
from bot.pushes import Recipient, push
from bot.router import Router
from bot.scheduler import Job
from storage import outbox, territory
from storage import volunteering as vol

router = Router()
MAX_LISTED = 8


@dataclass(frozen=True)
class ByCategory(Action, code="vcf"):
    category: str = "all"  # one of storage.volunteering.CATEGORIES; anything else: all


@dataclass(frozen=True)
class ShowActivity(Action, code="vact"):
    """Also sent by handlers/volunteering_organise.py when an activity is published."""
    activity_id: int


@dataclass(frozen=True)
class SignUp(Action, code="vsu"):
    shift_id: int


@dataclass(frozen=True)
class CancelSignup(Action, code="vcx"):
    signup_id: int


@dataclass(frozen=True)
class CheckIn(Action, code="vci"):
    signup_id: int


@dataclass(frozen=True)
class CheckOut(Action, code="vco"):
    signup_id: int


# -- shared with the organiser and hours modules -------------------------------------------

def local(ctx_or_services, dt: datetime) -> datetime:
    services = getattr(ctx_or_services, "services", ctx_or_services)
    return dt.astimezone(ZoneInfo(services.settings.bot.timezone))


def when(ctx_or_services, shift: vol.Shift) -> str:
    start, end = local(ctx_or_services, shift.starts_at), local(ctx_or_services, shift.ends_at)
    return f"{start:%Y-%m-%d %H:%M}–{end:%H:%M}"


def settings(ctx: Context):
    return ctx.services.settings.volunteering


def reminder_hours(ctx_or_services) -> tuple[int, ...]:
    services = getattr(ctx_or_services, "services", ctx_or_services)
    return tuple(services.settings.volunteering.reminder_hours)


def category_name(ctx: Context, category: str) -> str:
    return ctx.t(f"volunteering.cat_{category}")


async def tell(ctx: Context, resident_ids: list[int], key: str, *, dedupe: str,
               priority: outbox.Priority = outbox.Priority.NORMAL, **values) -> None:
    """Push a text to each resident in their own language, through the outbox."""
    recipients = await vol.signup_recipients(ctx.session, resident_ids)
    for rid, identities in recipients.items():
        for identity_id, lang in identities:
            await ctx.tell(Recipient(identity_id, lang), key, priority=priority,
                           group="volunteering", dedupe_key=f"{dedupe}:{rid}:{identity_id}",
                           **values)


async def tell_promoted(ctx: Context, promoted: list[vol.Signup]) -> None:
    for signup in promoted:
        shift = await vol.get_shift(ctx.session, signup.shift_id)
        activity = await vol.get_activity(ctx.session, shift.activity_id)
        await tell(ctx, [signup.resident_id], "volunteering.promoted",
                   dedupe=f"vol-promo:{signup.id}:{signup.queue_no}",
                   title=activity.title, when=when(ctx, shift))


# -- /volunteer ----------------------------------------------------------------------------

@router.command("volunteer", help_key="volunteering.help_volunteer", order=30)
async def volunteer(ctx: Context) -> None:
    await _list(ctx, None)


@router.action(ByCategory)
async def by_category(ctx: Context, press: ByCategory) -> None:
    category = press.category if press.category in vol.CATEGORIES else None
    await _list(ctx, category)


async def _list(ctx: Context, category: str | None) -> None:
    home = await territory.estate(ctx.session, ctx.resident.estate_id)
    committee_id = home.committee_id if home else None
    rows = [
        (a, first) for a, first in await vol.upcoming_activities(ctx.session, ctx.now)
        if vol.visible_to(a, ctx.resident.estate_id, committee_id)
    ]
    if not rows:
        ctx.say("volunteering.none_upcoming")
        return
    counts = {c: 0 for c in vol.CATEGORIES}
    for a, _ in rows:
        counts[a.category] += 1
    chosen = [(a, f) for a, f in rows if category is None or a.category == category]
    estates = {e.id: e for e in await territory.estates(ctx.session)}
    chosen.sort(key=lambda item: _nearness(item[0], item[1], home, estates))
    buttons = [[ctx.button(f"{a.title[:30]} · {local(ctx, first):%m-%d}", ShowActivity(a.id))]
               for a, first in chosen[:MAX_LISTED]]
    cat_row = [ctx.button(f"{category_name(ctx, c)} ({n})", ByCategory(c))
               for c, n in counts.items() if n and c != category]
    for i in range(0, len(cat_row), 3):
        buttons.append(cat_row[i:i + 3])
    if category is not None:
        buttons.append([ctx.button(ctx.t("volunteering.all_categories"), ByCategory("all"))])
    ctx.say("volunteering.list_title", buttons,
            category=category_name(ctx, category) if category else ctx.t(
                "volunteering.all_categories"),
            shown=min(len(chosen), MAX_LISTED), total=len(chosen))


def _nearness(activity: vol.Activity, first: datetime, home, estates: dict) -> tuple:
    """Same estate first, then the same committee, then by distance; sooner first within."""
    if home is None:
        return (3, 0.0, first)
    if activity.estate_id == home.id:
        return (0, 0.0, first)
    if activity.committee_id == home.committee_id:
        return (1, 0.0, first)
    lat, lon = activity.latitude, activity.longitude
    if lat is None and activity.estate_id in estates:
        lat, lon = estates[activity.estate_id].latitude, estates[activity.estate_id].longitude
    if lat is None:
        return (2, math.inf, first)
    dy = (lat - home.latitude) * 111_000
    dx = (lon - home.longitude) * 111_000 * math.cos(math.radians(home.latitude))
    return (2, math.hypot(dx, dy), first)


@router.action(ShowActivity)
async def show_activity(ctx: Context, press: ShowActivity) -> None:
    activity = await vol.get_activity(ctx.session, press.activity_id)
    home = await territory.estate(ctx.session, ctx.resident.estate_id)
    if activity is None or activity.status != vol.ActivityStatus.PUBLISHED.value or \
            not vol.visible_to(activity, ctx.resident.estate_id,
                               home.committee_id if home else None):
        ctx.say("volunteering.activity_gone")
        return
    lines, buttons = [], []
    for shift in await vol.shifts_of(ctx.session, activity.id):
        if shift.status != vol.ShiftStatus.OPEN.value or shift.starts_at <= ctx.now:
            continue
        full = shift.taken >= shift.capacity
        lines.append(ctx.t("volunteering.shift_line", when=when(ctx, shift), taken=shift.taken,
                           capacity=shift.capacity,
                           skills=ctx.t("volunteering.skills", skills=shift.skills)
                           if shift.skills else ""))
        label = ctx.t("volunteering.waitlist_button" if full else "volunteering.signup_button",
                      when=f"{local(ctx, shift.starts_at):%m-%d %H:%M}")
        buttons.append([ctx.button(label, SignUp(shift.id))])
    if not lines:
        ctx.say("volunteering.activity_gone")
        return
    ctx.say("volunteering.activity_card", buttons, title=activity.title,
            category=category_name(ctx, activity.category),
            place=await place_name(ctx, activity), description=activity.description,
            shifts="\n".join(lines))


async def place_name(ctx: Context, activity: vol.Activity) -> str:
    if activity.estate_id is not None:
        estate = await territory.estate(ctx.session, activity.estate_id)
        name = territory.localized(estate, ctx.lang)
        if activity.latitude is not None:
            return f"{name} ({activity.latitude:.5f}, {activity.longitude:.5f})"
        return name
    if activity.latitude is not None:
        return f"{activity.latitude:.5f}, {activity.longitude:.5f}"
    return "-"


@router.action(SignUp)
async def sign_up(ctx: Context, press: SignUp) -> None:
    shift = await vol.get_shift(ctx.session, press.shift_id)
    activity = await vol.get_activity(ctx.session, shift.activity_id) if shift else None
    home = await territory.estate(ctx.session, ctx.resident.estate_id)
    if activity is None or not vol.visible_to(activity, ctx.resident.estate_id,
                                              home.committee_id if home else None):
        ctx.say("volunteering.activity_gone")
        return
    result = await vol.sign_up(ctx.session, shift.id, ctx.resident.id, ctx.now,
                               reminder_hours(ctx))
    o = vol.SignupOutcome
    values = {"title": activity.title, "when": when(ctx, shift)}
    if result.outcome == o.CONFIRMED:
        ctx.say("volunteering.signed_up", [[ctx.button(
            ctx.t("volunteering.cancel_button"), CancelSignup(result.signup.id))]], **values)
    elif result.outcome == o.WAITLISTED:
        ctx.say("volunteering.waitlisted", [[ctx.button(
            ctx.t("volunteering.leave_waitlist_button"), CancelSignup(result.signup.id))]],
            position=result.position, **values)
    elif result.outcome == o.ALREADY:
        key = "volunteering.already_waiting" if result.position else \
            "volunteering.already_signed_up"
        ctx.say(key, position=result.position, **values)
    elif result.outcome == o.OVERLAP:
        other = await vol.get_activity(ctx.session, result.clash.activity_id)
        ctx.say("volunteering.overlap", other=other.title, other_when=when(ctx, result.clash),
                **values)
    elif result.outcome == o.STARTED:
        ctx.say("volunteering.started", **values)
    else:
        ctx.say("volunteering.activity_gone")


@router.action(CancelSignup)
async def cancel(ctx: Context, press: CancelSignup) -> None:
    signup = await vol.get_signup(ctx.session, press.signup_id)
    if signup is None or signup.resident_id != ctx.resident.id:
        ctx.say("common.button_invalid")
        return
    shift = await vol.get_shift(ctx.session, signup.shift_id)
    activity = await vol.get_activity(ctx.session, shift.activity_id)
    cutoff = timedelta(hours=settings(ctx).cancel_cutoff_hours)
    result = await vol.cancel_signup(ctx.session, signup.id, ctx.resident.id, ctx.now, cutoff,
                                     reminder_hours(ctx))
    values = {"title": activity.title, "when": when(ctx, shift)}
    if result.outcome == vol.CancelOutcome.CANCELLED:
        ctx.say("volunteering.cancelled", **values)
        await tell_promoted(ctx, result.promoted)
    elif result.outcome == vol.CancelOutcome.TOO_LATE:
        ctx.say("volunteering.too_late", hours=f"{settings(ctx).cancel_cutoff_hours:g}", **values)
    else:
        ctx.say("volunteering.nothing_to_cancel", **values)


# -- /myshifts and check-in ----------------------------------------------------------------

@router.command("myshifts", help_key="volunteering.help_myshifts", order=31)
async def my_shifts(ctx: Context) -> None:
    rows = await vol.my_signups(ctx.session, ctx.resident.id, ctx.now)
    if not rows:
        ctx.say("volunteering.no_shifts")
        return
    early = timedelta(minutes=settings(ctx).checkin_early_minutes)
    ctx.say("volunteering.myshifts_title")
    for signup, shift, activity in rows:
        status = ctx.t(f"volunteering.status_{signup.status}")
        if signup.status == vol.SignupStatus.WAITLISTED.value:
            status = ctx.t("volunteering.status_position",
                           position=await vol.waitlist_position(ctx.session, signup))
        if shift.status == vol.ShiftStatus.CANCELLED.value:
            status = ctx.t("volunteering.status_shift_cancelled")
        buttons = []
        opens, closes = vol.checkin_window(shift, early)
        if signup.status == vol.SignupStatus.CONFIRMED.value and opens <= ctx.now <= closes:
            buttons.append(ctx.button(ctx.t("volunteering.checkin_button"), CheckIn(signup.id)))
        if signup.status in vol.ACTIVE and ctx.now < shift.starts_at:
            buttons.append(ctx.button(ctx.t("volunteering.cancel_button"), CancelSignup(signup.id)))
        if vol.may_check_out(signup, shift, ctx.now):
            buttons.append(ctx.button(ctx.t("volunteering.checkout_button"), CheckOut(signup.id)))
        ctx.say("volunteering.myshift_line", [buttons] if buttons else None,
                title=activity.title, when=when(ctx, shift), status=status)


@router.action(CheckIn)
async def check_in_button(ctx: Context, press: CheckIn) -> None:
    signup = await vol.get_signup(ctx.session, press.signup_id)
    if signup is None or signup.resident_id != ctx.resident.id:
        ctx.say("common.button_invalid")
        return
    outcome = await vol.check_in(ctx.session, signup, ctx.now,
                                 timedelta(minutes=settings(ctx).checkin_early_minutes),
                                 by=ctx.resident.id)
    ctx.say(f"volunteering.checkin_{outcome.value}")


@router.action(CheckOut)
async def check_out_button(ctx: Context, press: CheckOut) -> None:
    signup = await vol.get_signup(ctx.session, press.signup_id)
    if signup is None or signup.resident_id != ctx.resident.id:
        ctx.say("common.button_invalid")
        return
    outcome = await vol.check_out(ctx.session, signup, ctx.now)
    ctx.say(f"volunteering.checkout_{outcome.value}")


@router.command("checkin", help_key="volunteering.help_checkin", order=32)
async def check_in_code(ctx: Context) -> None:
    code = ctx.inbound.args.strip()
    if not (code.isdigit() and len(code) == 6):
        ctx.say("volunteering.checkin_usage")
        return
    outcome = await vol.check_in_by_code(
        ctx.session, ctx.resident.id, code, ctx.now,
        timedelta(minutes=settings(ctx).checkin_early_minutes))
    ctx.say(f"volunteering.checkin_{outcome.value}")


# -- reminders -----------------------------------------------------------------------------

async def send_reminders(sessions, services, deliverer) -> None:
    async with sessions() as session, session.begin():
        due = await vol.claim_due_reminders(session, services.clock())
        for item in due:
            recipients = await vol.signup_recipients(session, [item.signup.resident_id])
            for identity_id, lang in recipients[item.signup.resident_id]:
                await push(session, services.texts, Recipient(identity_id, lang),
                           "volunteering.reminder", priority=outbox.Priority.NORMAL,
                           push_kind=PushKind.REMINDER, facts=lambda _t, item=item: {
                               "title": item.activity.title,
                               "time": services.local_iso(item.shift.starts_at)},
                           group="volunteering",
                           dedupe_key=f"vol-rem:{item.reminder_id}:{identity_id}",
                           title=item.activity.title, when=when(services, item.shift),
                           hours=item.hours_before)
    if due and deliverer is not None:
        deliverer.wake()


jobs = [Job("volunteer-reminders", 60, send_reminders)]
