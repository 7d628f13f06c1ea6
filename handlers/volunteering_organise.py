"""Organisers: /newactivity (a conversation ending in a preview), publish and announce; /roster
per shift with attendance, check-in code, CSV export, capacity and cancellation."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.context import Context
from bot.conversation import KEEP, NEXT, STAY, Conversation, ConversationTexts, Go, StepAnswer
from bot.messaging.model import Button, Kind
from bot.payloads import Action
from bot.pushes import Batch, Key, Recipient
from bot.router import Router
from bot.scheduler import Job
from handlers.text_lists import split_items
from handlers.volunteering import (
    ShowActivity,
    category_name,
    local,
    place_name,
    reminder_hours,
    tell,
    tell_promoted,
    when,
)
from services import volunteer_organising as organising
from services import volunteer_rosters as rosters_rule
from services.typed_time import TIME, BadTime, parse_local
from storage import audit, outbox, proposals, subscriptions, territory
from storage import volunteer_teams as vteams
from storage import volunteering as vol
from storage.base import clip, reread
from storage.people import RoleKind

router = Router()

CAPACITY = "vol.capacity"
STEPS = ("title", "category", "place", "description", "shifts", "audience")
# The states of the version before the declared conversation, one per step.
LEGACY = {f"vol.{step}": step for step in STEPS}
TEXTS = ConversationTexts(stale="volunteering.step_over",
                          press_button="volunteering.press_a_button",
                          type_please="volunteering.expect_text")
MAX_TITLE, MAX_DESCRIPTION = organising.MAX_TITLE, organising.MAX_DESCRIPTION
MAX_SHIFTS = organising.MAX_SHIFTS
ROSTER_BUTTONS = 20
ANNOUNCE_BATCH = 1000
STAFF = (RoleKind.ADMIN, RoleKind.STAFF, RoleKind.COMMITTEE)
# The start is whatever the notice time reader takes ("2026-12-05 09:00", "明天 20:00",
# "tomorrow 20:00", "18:30"), then "-END PLACES [SKILLS]".
_SHIFT = re.compile(rf"^(.+?)\s*[-–~至到]\s*{TIME}\s+(\d{{1,4}})(?:\s+(.+))?$")


@dataclass(frozen=True)
class PickCategory(Action, code="vnc"):
    category: str = ""  # one of storage.volunteering.CATEGORIES; anything else: the step is over


@dataclass(frozen=True)
class PickPlace(Action, code="vnp"):
    estate_id: int


@dataclass(frozen=True)
class ShiftsDone(Action, code="vnd"):
    pass


@dataclass(frozen=True)
class PickAudience(Action, code="vna"):
    audience: str = ""  # one of those _audiences offers; anything else: the step is over


@dataclass(frozen=True)
class Publish(Action, code="vpub"):
    activity_id: int
    announce: bool = False


@dataclass(frozen=True)
class Discard(Action, code="vdis"):
    activity_id: int


@dataclass(frozen=True)
class RecruitForProposal(Action, code="vfp"):
    """Drawn by handlers/proposals.py under an adopted proposal."""
    proposal_id: int


@dataclass(frozen=True)
class ShowRoster(Action, code="vros"):
    shift_id: int


@dataclass(frozen=True)
class MarkAttended(Action, code="vatt", fresh="staff"):
    signup_id: int


@dataclass(frozen=True)
class ExportCsv(Action, code="vcsv"):
    shift_id: int


@dataclass(frozen=True)
class AskCapacity(Action, code="vcap", fresh="staff"):
    shift_id: int


@dataclass(frozen=True)
class ConfirmCancelShift(Action, code="vcsh"):
    shift_id: int


@dataclass(frozen=True)
class CancelShift(Action, code="vcsy", fresh="staff"):
    shift_id: int


@dataclass
class ActivityForm:
    """An activity being drafted (/newactivity, or from an adopted proposal)."""

    title: str = ""
    category: str = ""
    estate_id: int | None = None
    latitude: float | None = None  # a shared point, when the place was shared
    longitude: float | None = None
    description: str = ""
    shifts: list[list] = field(default_factory=list)  # [starts ISO, ends ISO, places, skills]
    proposal_id: int | None = None  # carrying out an adopted proposal ...
    proposal_committee: int | None = None  # ... within its committee's area


@dataclass(frozen=True)
class _ActivityAnswer(StepAnswer, code="vstep"):
    pass  # every choice of this conversation is one of the typed actions above


activity_form = Conversation(router, "vol.draft", ActivityForm, _ActivityAnswer, steps=STEPS,
                             texts=TEXTS, legacy_states=LEGACY)


async def may_organise(ctx: Context) -> bool:
    """Staff and committee members organise; so do leads of a volunteer team."""
    scope = await ctx.scope()
    return scope.has(*STAFF) or await ctx.fact(
        "leads_a_team", lambda: vteams.leads_any(ctx.session, ctx.resident.id))


async def may_manage(ctx: Context, activity: vol.Activity) -> bool:
    """Asked at every roster action, from the roles held now (a revoked organiser loses it):
    services.volunteer_rosters' rule, the dashboard's too."""
    return await rosters_rule.may_manage(ctx.session, await ctx.scope(), ctx.resident.id,
                                         activity)


async def _allowed_estates(ctx: Context, d: ActivityForm) -> list[territory.Estate]:
    return await organising.allowed_estates(ctx.session, await ctx.scope(),
                                            ctx.resident.estate_id, d.proposal_committee)


# -- /newactivity --------------------------------------------------------------------------

@router.command("newactivity", help_key="volunteering.help_newactivity", order=40,
                visible=may_organise)
async def new_activity(ctx: Context) -> None:
    if not await may_organise(ctx):
        ctx.say("common.not_allowed")
        return
    await activity_form.start(ctx, ActivityForm())


@activity_form.asks("title")
async def ask_title(ctx: Context, d: ActivityForm) -> None:
    ctx.say("volunteering.ask_title", limit=MAX_TITLE)


@activity_form.takes("title")
async def title_typed(ctx: Context, d: ActivityForm, text: str) -> Go:
    if len(text) > MAX_TITLE:
        ctx.say("volunteering.title_too_long", limit=MAX_TITLE, length=len(text))
        return STAY
    d.title = text
    return NEXT


@activity_form.asks("category")
async def ask_category(ctx: Context, d: ActivityForm) -> None:
    buttons = [[ctx.button(category_name(ctx, c), PickCategory(c))] for c in vol.CATEGORIES]
    ctx.say("volunteering.ask_category", buttons)


@activity_form.takes("category")
async def category_typed(ctx: Context, d: ActivityForm, text: str) -> Go:
    ctx.refuse("volunteering.press_a_button")
    return "category"


@activity_form.takes_action(PickCategory, "category")
async def category_chosen(ctx: Context, d: ActivityForm, press: PickCategory) -> Go:
    if press.category not in vol.CATEGORIES:
        ctx.say("volunteering.step_over")
        return STAY
    d.category = press.category
    return NEXT


@activity_form.asks("place")
async def ask_place(ctx: Context, d: ActivityForm) -> None:
    buttons = [[ctx.button(territory.localized(e, ctx.lang), PickPlace(e.id))]
               for e in (await _allowed_estates(ctx, d))[:10]]
    ctx.reply(ctx.t("volunteering.ask_place"), buttons,
              request_location=ctx.t("volunteering.share_point"))


@activity_form.takes_action(PickPlace, "place")
async def place_chosen(ctx: Context, d: ActivityForm, press: PickPlace) -> Go:
    if press.estate_id not in {e.id for e in await _allowed_estates(ctx, d)}:
        ctx.say("common.not_allowed")
        return STAY
    d.estate_id, d.latitude, d.longitude = press.estate_id, None, None
    return await _after_place(ctx, d)


@activity_form.takes_media("place")
async def place_shared(ctx: Context, d: ActivityForm, kind: Kind) -> Go:
    inbound = ctx.inbound
    if kind != Kind.LOCATION:
        ctx.say("volunteering.place_unknown")
        return "place"
    place = ctx.services.geo.locate(inbound.latitude, inbound.longitude)
    if not place.inside or (d.proposal_committee and place.estate_id not in
                            {e.id for e in await _allowed_estates(ctx, d)}):
        ctx.say("volunteering.point_outside")
        return STAY
    d.estate_id, d.latitude, d.longitude = place.estate_id, inbound.latitude, inbound.longitude
    return await _after_place(ctx, d)


@activity_form.takes("place")
async def place_typed(ctx: Context, d: ActivityForm, text: str) -> Go:
    allowed = {e.id for e in await _allowed_estates(ctx, d)}
    for estate_id, score in ctx.services.geo.match_estate(text):
        if score >= 80 and estate_id in allowed:
            d.estate_id, d.latitude, d.longitude = estate_id, None, None
            return await _after_place(ctx, d)
    ctx.say("volunteering.place_unknown")
    return "place"


async def _after_place(ctx: Context, d: ActivityForm) -> Go:
    if d.shifts:
        # Back here to change the place: the rest is already given.
        return await _to_audience(ctx, d)
    if d.proposal_id:
        return "shifts"  # the description is the proposal's
    return "description"


@activity_form.asks("description")
async def ask_description(ctx: Context, d: ActivityForm) -> None:
    ctx.say("volunteering.ask_description", limit=MAX_DESCRIPTION)


@activity_form.takes("description")
async def description_typed(ctx: Context, d: ActivityForm, text: str) -> Go:
    if len(text) > MAX_DESCRIPTION:
        ctx.say("volunteering.description_too_long", limit=MAX_DESCRIPTION, length=len(text))
        return STAY
    d.description, d.shifts = text, []
    return "shifts"


def parse_shift(line: str, tz: ZoneInfo, now: datetime) -> vol.ShiftSpec | str:
    """A typed shift ("2026-12-05 09:00-11:00 10 first aid", "明天 20:00-22:00 6"), or the
    key of what is wrong."""
    match = _SHIFT.match(line.replace("：", ":").strip())
    if not match:
        return "shift_format"
    h2, m2, cap = (int(g) for g in match.groups()[1:4])
    skills = (match.group(5) or "").strip()
    try:
        start = parse_local(match.group(1), now, tz.key)
    except BadTime:
        # Shaped like a date ("2026-02-30"), it names a day that does not exist.
        return "shift_bad_date" if re.search(r"\d[-/.]\d", match.group(1)) else "shift_format"
    try:
        end = start.replace(hour=h2, minute=m2)
    except ValueError:
        return "shift_bad_date"
    return organising.check_shift(start, end, cap, skills, now)


@activity_form.asks("shifts")
async def ask_shifts(ctx: Context, d: ActivityForm) -> None:
    ctx.say("volunteering.ask_shifts")


@activity_form.takes("shifts")
async def shifts_typed(ctx: Context, d: ActivityForm, text: str) -> Go:
    tz = ZoneInfo(ctx.services.settings.bot.timezone)
    shifts = list(d.shifts)
    errors = []
    for line in split_items(text, commas=False):
        parsed = parse_shift(line, tz, ctx.now)
        if isinstance(parsed, str):
            errors.append(ctx.t(f"volunteering.{parsed}", line=line.strip()[:60],
                                max=vol.MAX_CAPACITY))
            continue
        if len(shifts) >= MAX_SHIFTS:
            errors.append(ctx.t("volunteering.too_many_shifts", limit=MAX_SHIFTS))
            break
        shifts.append([parsed.starts_at.isoformat(), parsed.ends_at.isoformat(),
                       parsed.capacity, parsed.skills])
    d.shifts = shifts
    if errors:
        ctx.reply("\n".join(errors))
    if shifts:
        listed = "\n".join(
            f"{i + 1}. {_fmt_spec(ctx, s)}" for i, s in enumerate(shifts))
        ctx.say("volunteering.shifts_so_far", [[ctx.button(ctx.t("volunteering.shifts_done"),
                                                           ShiftsDone())]], shifts=listed)
    else:
        ctx.say("volunteering.ask_shifts")
    return KEEP  # more shifts may follow, until "done"


def _fmt_spec(ctx: Context, spec: list) -> str:
    start, end = (local(ctx, datetime.fromisoformat(x)) for x in spec[:2])
    skills = f" · {spec[3]}" if spec[3] else ""
    return f"{start:%Y-%m-%d %H:%M}–{end:%H:%M} × {spec[2]}{skills}"


@activity_form.takes_action(ShiftsDone, "shifts")
async def shifts_done(ctx: Context, d: ActivityForm, press: ShiftsDone) -> Go:
    if not d.shifts:
        ctx.say("volunteering.step_over")
        return STAY
    return await _to_audience(ctx, d)


async def _audiences(ctx: Context, d: ActivityForm) -> list[str]:
    return organising.audiences(await ctx.scope(), d.estate_id)


async def _to_audience(ctx: Context, d: ActivityForm) -> Go:
    if not await _audiences(ctx, d):
        # Nobody to publish to from this place: choose another, keeping everything else.
        ctx.say("volunteering.no_audience")
        return "place"
    return "audience"


@activity_form.asks("audience")
async def ask_audience(ctx: Context, d: ActivityForm) -> None:
    ctx.say("volunteering.ask_audience", [
        [ctx.button(ctx.t(f"volunteering.audience_{a}"), PickAudience(a))]
        for a in await _audiences(ctx, d)])


@activity_form.takes("audience")
async def audience_typed(ctx: Context, d: ActivityForm, text: str) -> Go:
    ctx.refuse("volunteering.press_a_button")
    return "audience"


@activity_form.takes_action(PickAudience, "audience")
async def audience_chosen(ctx: Context, d: ActivityForm, press: PickAudience) -> Go:
    audience = press.audience
    if audience not in await _audiences(ctx, d):
        ctx.say("volunteering.step_over")
        return STAY
    scope = await ctx.scope()
    committee_id = None
    if not d.estate_id and len(scope.committee_ids) == 1:
        committee_id = next(iter(scope.committee_ids))
    activity = await vol.create_activity(
        ctx.session, title=d.title, category=d.category, description=d.description,
        audience=audience, organiser_id=ctx.resident.id, estate_id=d.estate_id,
        latitude=d.latitude, longitude=d.longitude, committee_id=committee_id,
        proposal_id=d.proposal_id,
        shifts=[vol.ShiftSpec(datetime.fromisoformat(a), datetime.fromisoformat(b), c, s)
                for a, b, c, s in d.shifts])
    ctx.finish()
    if activity.proposal_id:
        ctx.say("volunteering.preview_for_proposal", number=activity.proposal_id)
    ctx.say("volunteering.preview", [
        [ctx.button(ctx.t("volunteering.publish"), Publish(activity.id, False)),
         ctx.button(ctx.t("volunteering.publish_announce"), Publish(activity.id, True))],
        [ctx.button(ctx.t("volunteering.discard"), Discard(activity.id))]],
        title=activity.title, category=category_name(ctx, activity.category),
        place=await place_name(ctx, activity), description=activity.description,
        audience=ctx.t(f"volunteering.audience_{audience}"),
        shifts="\n".join(_fmt_spec(ctx, s) for s in d.shifts))
    return STAY


@router.action(Publish)
async def publish(ctx: Context, press: Publish) -> None:
    activity = await vol.get_activity(ctx.session, press.activity_id)
    if activity is None or not await may_manage(ctx, activity):
        ctx.say("common.not_allowed")
        return
    published = await organising.publish(ctx.session, ctx.resident.id, activity,
                                         press.announce)
    if published == "already":
        ctx.say("volunteering.already_published")
        return
    if activity.proposal_id:
        invited = await invite_supporters(ctx, activity)
        ctx.say("volunteering.supporters_invited", number=activity.proposal_id, invited=invited)
    if published == "announcing":
        ctx.say("volunteering.published_announcing", title=activity.title,
                audience=await vol.audience_size(ctx.session, activity))
        return
    ctx.say("volunteering.published", title=activity.title)


# -- an adopted proposal becomes an activity ------------------------------------------------

@router.action(RecruitForProposal)
async def recruit_for_proposal(ctx: Context, press: RecruitForProposal) -> None:
    """"Recruit volunteers for this": an activity draft with the proposal's title, area and
    description; the organiser adds the category, the place within that area and the shifts."""
    p = await proposals.get(ctx.session, press.proposal_id)
    scope = await ctx.scope()
    if p is None:
        ctx.say("common.button_invalid")
        return
    if not await may_organise(ctx) or not (scope.everything or
                                           p.committee_id in scope.committee_ids):
        ctx.say("common.not_allowed")
        return
    if p.status != proposals.Status.ADOPTED:
        ctx.say("volunteering.proposal_not_adopted", number=p.id)
        return
    if await vol.activity_for_proposal(ctx.session, p.id) is not None:
        ctx.say("volunteering.proposal_has_activity", number=p.id)
        return
    d = ActivityForm(title=clip(p.title, MAX_TITLE), description=clip(p.body, MAX_DESCRIPTION),
                     proposal_id=p.id, proposal_committee=p.committee_id)
    ctx.say("volunteering.from_proposal", number=p.id, title=d.title)
    await activity_form.start(ctx, d, "category")


async def invite_supporters(ctx: Context, activity: vol.Activity) -> int:
    """The proposal's proposer and supporters hear of the activity first: queued as the
    activity is published, ahead of (and at a higher priority than) the announcement, with
    the announcement's dedupe key, so the announcement does not reach them a second time."""
    p = await proposals.get(ctx.session, activity.proposal_id)
    if p is None:
        return 0
    people_ids = [p.author_id, *await proposals.supporters_of(ctx.session, p.id)]
    first = min(s.starts_at for s in await vol.shifts_of(ctx.session, activity.id))
    invited = 0
    sign = ctx.services.signer.sign
    for rid, identity_id, lang in await vol.one_identity_of(ctx.session, people_ids):
        if rid == activity.organiser_id:
            continue

        def buttons(t, identity_id=identity_id):
            return [[Button(t("volunteering.see_activity"),
                            sign(identity_id, ShowActivity(activity.id)))]]

        await ctx.tell(Recipient(identity_id, lang), "volunteering.proposal_invite",
                       buttons=buttons, dedupe_key=f"vol-ann:{activity.id}:{rid}",
                       number=p.id, proposal=p.title, title=activity.title,
                       when=f"{local(ctx, first):%Y-%m-%d %H:%M}")
        invited += 1
    await audit.record(ctx.session, ctx.resident.id, "volunteering.proposal_invites",
                       f"activity:{activity.id}", proposal=p.id, invited=invited)
    return invited


async def send_announcements(sessions, services, deliverer, *, batches: int = 20) -> None:
    """Event notices to each activity's audience, a batch per transaction: bulk priority,
    at most once per resident (the dedupe key), resumable after a restart (the cursor)."""
    queued = 0
    for _ in range(batches):
        async with sessions() as session, session.begin():
            claimed = await vol.claim_announcement_batch(session, ANNOUNCE_BATCH)
            if claimed is None:
                break
            activity, recipients = claimed
            first = min(s.starts_at for s in await vol.shifts_of(session, activity.id))
            quiet = await subscriptions.quiet_hours_of(session, [r for r, _, _ in recipients])
            now, tz = services.clock(), services.settings.bot.timezone
            pushes = Batch(services.texts)
            for rid, identity_id, lang in recipients:
                if rid == activity.organiser_id:
                    continue

                def see(t, identity_id=identity_id, activity_id=activity.id):
                    return [[Button(t("volunteering.see_activity"),
                                    services.signer.sign(identity_id, ShowActivity(activity_id)))]]
                pushes.tell(Recipient(identity_id, lang), "volunteering.announcement",
                            buttons=see, priority=outbox.Priority.BULK,
                            group=f"vol-ann:{activity.id}",
                            dedupe_key=f"vol-ann:{activity.id}:{rid}",
                            not_before=subscriptions.quiet_until(
                                now, *quiet.get(rid, (None, None)), tz) or now,
                            title=activity.title,
                            category=Key(f"volunteering.cat_{activity.category}"),
                            when=f"{local(services, first):%Y-%m-%d %H:%M}")
            queued += len(pushes.rows)
            await pushes.send(session)
    if queued and deliverer is not None:
        deliverer.wake()


@router.action(Discard)
async def discard(ctx: Context, press: Discard) -> None:
    activity = await vol.get_activity(ctx.session, press.activity_id)
    if activity is None or activity.organiser_id != ctx.resident.id:
        ctx.say("common.not_allowed")
        return
    ctx.say("volunteering.discarded" if await vol.discard_draft(ctx.session, activity.id)
            else "volunteering.already_published")


# -- /roster -------------------------------------------------------------------------------

@router.command("roster", help_key="volunteering.help_roster", order=41, visible=may_organise)
async def rosters(ctx: Context) -> None:
    rows = await rosters_rule.managed_shifts(ctx.session, await ctx.scope(), ctx.resident.id,
                                             ctx.now - timedelta(days=1))
    if not rows:
        ctx.say("volunteering.no_rosters")
        return
    ctx.say("volunteering.roster_pick", [
        [ctx.button(f"{a.title[:24]} · {local(ctx, s.starts_at):%m-%d %H:%M} "
                    f"({s.taken}/{s.capacity})", ShowRoster(s.id))] for s, a in rows[:30]])


async def _managed_shift(ctx: Context, shift_id: int
                        ) -> tuple[vol.Shift, vol.Activity] | None:
    shift = await vol.get_shift(ctx.session, shift_id)
    activity = await vol.get_activity(ctx.session, shift.activity_id) if shift else None
    if activity is None or not await may_manage(ctx, activity):
        ctx.say("common.not_allowed")
        return None
    return shift, activity


@router.action(ShowRoster)
async def show_roster(ctx: Context, press: ShowRoster) -> None:
    found = await _managed_shift(ctx, press.shift_id)
    if found:
        await render_roster(ctx, *found)


async def render_roster(ctx: Context, shift: vol.Shift, activity: vol.Activity) -> None:
    lines = await vol.roster(ctx.session, shift.id)
    confirmed = [x for x in lines if x.signup.status == vol.SignupStatus.CONFIRMED.value]
    attended = [x for x in lines if x.signup.status == vol.SignupStatus.ATTENDED.value]
    waiting = [x for x in lines if x.signup.status == vol.SignupStatus.WAITLISTED.value]
    none = ctx.t("volunteering.nobody")
    buttons = [[ctx.button(ctx.t("volunteering.mark_attended", name=x.name[:20]),
                           MarkAttended(x.signup.id))] for x in confirmed[:ROSTER_BUTTONS]]
    if shift.status == vol.ShiftStatus.OPEN.value:
        buttons.append([ctx.button(ctx.t("volunteering.csv_button"), ExportCsv(shift.id)),
                        ctx.button(ctx.t("volunteering.capacity_button"), AskCapacity(shift.id))])
        buttons.append([ctx.button(ctx.t("volunteering.cancel_shift_button"),
                                   ConfirmCancelShift(shift.id))])
    ctx.say("volunteering.roster", buttons, title=activity.title, when=when(ctx, shift),
            taken=shift.taken, capacity=shift.capacity, code=shift.checkin_code,
            status=ctx.t(f"volunteering.shift_status_{shift.status}"),
            confirmed="\n".join(f"• {x.name}" for x in confirmed) or none,
            attended="\n".join(f"✓ {x.name}" for x in attended) or none,
            waiting="\n".join(f"{x.position}. {x.name}" for x in waiting) or none)


@router.action(MarkAttended)
async def mark_attended(ctx: Context, press: MarkAttended) -> None:
    early = timedelta(minutes=ctx.services.settings.volunteering.checkin_early_minutes)
    marked = await rosters_rule.mark_attended(ctx.session, await ctx.scope(), ctx.resident.id,
                                              press.signup_id, ctx.now, early)
    if marked.found is None:
        ctx.say("common.not_allowed")
        return
    if marked.outcome == "too_early":
        ctx.say("volunteering.attendance_too_early")
        return
    ctx.say("volunteering.attendance_marked" if marked.outcome == "marked"
            else "volunteering.attendance_unchanged")
    shift = await reread(ctx.session, marked.found.shift)
    await render_roster(ctx, shift, marked.found.activity)


@router.action(ExportCsv)
async def export_csv(ctx: Context, press: ExportCsv) -> None:
    found = await _managed_shift(ctx, press.shift_id)
    if not found:
        return
    shift, activity = found
    body = await rosters_rule.export_roster(
        ctx.session, ctx.t, ZoneInfo(ctx.services.settings.bot.timezone), ctx.resident.id,
        shift.id)
    rel = await asyncio.to_thread(ctx.services.media.save, body, ".csv")
    ctx.reply(ctx.t("volunteering.csv_caption", title=activity.title, when=when(ctx, shift)),
              document=str(ctx.services.media.path(rel)),
              document_name=f"roster-{shift.id}-{local(ctx, shift.starts_at):%Y%m%d}.csv")


@router.action(AskCapacity)
async def ask_capacity(ctx: Context, press: AskCapacity) -> None:
    found = await _managed_shift(ctx, press.shift_id)
    if found:
        ctx.goto(CAPACITY, shift_id=found[0].id)
        ctx.say("volunteering.ask_capacity", taken=found[0].taken, capacity=found[0].capacity)


@router.state(CAPACITY)
async def capacity_typed(ctx: Context) -> None:
    text = (ctx.inbound.text or "").strip()
    if not text.isdigit():
        ctx.say("volunteering.capacity_not_number", max=vol.MAX_CAPACITY)
        return
    shift = await vol.get_shift(ctx.session, ctx.data.get("shift_id", -1))
    activity = await vol.get_activity(ctx.session, shift.activity_id) if shift else None
    if activity is None or not await may_manage(ctx, activity):
        ctx.finish()
        ctx.say("common.not_allowed")
        return
    outcome, taken, promoted = await vol.set_capacity(ctx.session, shift.id, int(text), ctx.now,
                                                      reminder_hours(ctx))
    if outcome == vol.CapacityOutcome.INVALID:
        ctx.say("volunteering.capacity_not_number", max=vol.MAX_CAPACITY)
        return
    if outcome == vol.CapacityOutcome.BELOW_SIGNUPS:
        ctx.say("volunteering.capacity_below", taken=taken, asked=int(text))
        return
    ctx.finish()
    await audit.record(ctx.session, ctx.resident.id, "volunteering.capacity",
                       f"shift:{shift.id}", capacity=int(text))
    ctx.say("volunteering.capacity_changed", capacity=int(text), promoted=len(promoted))
    await tell_promoted(ctx, promoted)


@router.action(ConfirmCancelShift)
async def confirm_cancel_shift(ctx: Context, press: ConfirmCancelShift) -> None:
    found = await _managed_shift(ctx, press.shift_id)
    if found:
        shift, activity = found
        ctx.say("volunteering.cancel_shift_confirm", [[
            ctx.button(ctx.t("volunteering.cancel_shift_yes"), CancelShift(shift.id)),
            ctx.button(ctx.t("common.no"), ShowRoster(shift.id))]],
            title=activity.title, when=when(ctx, shift), taken=shift.taken)


@router.action(CancelShift)
async def cancel_shift(ctx: Context, press: CancelShift) -> None:
    found = await _managed_shift(ctx, press.shift_id)
    if not found:
        return
    shift, activity = found
    affected = await vol.cancel_shift(ctx.session, shift.id, ctx.now)
    if affected is None:
        ctx.say("volunteering.shift_already_cancelled")
        return
    await audit.record(ctx.session, ctx.resident.id, "volunteering.cancel_shift",
                       f"shift:{shift.id}", told=len(affected))
    await tell(ctx, [s.resident_id for s in affected], "volunteering.shift_cancelled",
               dedupe=f"vol-cx:{shift.id}", title=activity.title, when=when(ctx, shift))
    ctx.say("volunteering.shift_cancelled_done", told=len(affected))


jobs = [Job("volunteer-announcements", 10, send_announcements)]
