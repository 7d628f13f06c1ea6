"""Filing a report and telling people about it: shared by the resident conversation, the staff
actions (in chat and on the staff dashboard), the escalation job, and other features (an
emergency notice's "I need help"). A service, not a handler: the web features use it too.

Everything here works on a session and the services, so callers outside a conversation can use
it; every push goes through the outbox, in the recipient's own language.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

if TYPE_CHECKING:
    from bot.context import Services

from dataclasses import dataclass
from typing import Literal

from bot.messaging.model import Button, Outbound, PushKind
from bot.payloads import Action
from bot.pushes import Batch, Recipient
from services import report_filing as filing
from storage import open311, outbox, territory
from storage import reports as rep
from storage.access import Scope, scope_of
from storage.base import must_get, utcnow
from storage.people import Resident, identities_of

STAFF_ACTIONS = {  # StaffAction's step -> the status it moves to
    "a": rep.Status.ACKNOWLEDGED,
    "p": rep.Status.IN_PROGRESS,
}
MAP_URL = "https://uri.amap.com/marker?position={lon:.6f},{lat:.6f}"


# -- buttons drawn here, answered by handlers/reports.py and handlers/report_staff.py ------

@dataclass(frozen=True)
class ConfirmFixed(Action, code="rcf"):
    """The reporter's answer to "is it really fixed?" (handlers/reports.py)."""
    report_id: int
    fixed: bool


@dataclass(frozen=True)
class StaffAction(Action, code="rs", fresh="staff"):
    """A button on a report's card (handlers/report_staff.py): acknowledge, in progress,
    fixed, not ours (reassign), duplicate, close."""
    report_id: int
    step: Literal["a", "p", "f", "r", "d", "c"]


# -- content -------------------------------------------------------------------------------

def t(services: Services, lang: str, key: str, **values: object) -> str:
    return services.texts.get(lang, key, **values)


def status_label(services: Services, lang: str, report: rep.Report) -> str:
    label = t(services, lang, f"reports.status_{report.status}")
    if report.status == rep.Status.CLOSED and report.close_reason:
        label += t(services, lang, "reports.reason_suffix",
                   reason=t(services, lang, f"reports.reason_{report.close_reason}"))
    return label


def category_name(services: Services, lang: str, key: str) -> str:
    cat = services.catalog.get(key)
    return cat.name(lang) if cat else key


# -- who may do what -----------------------------------------------------------------------

def may_act(scope: Scope, report: rep.Report) -> bool:
    """Members of the report's team, and station staff and admins covering its estate."""
    if scope.everything or (report.team_id is not None and report.team_id in scope.team_ids):
        return True
    if "staff" not in scope.kinds:
        return False
    return report.estate_id in scope.estate_ids if report.estate_id else bool(scope.station_ids)


# -- filing --------------------------------------------------------------------------------

async def file_report(session: AsyncSession, services: Services, resident: Resident, *, category: str,
                      description: str, latitude: float | None = None,
                      longitude: float | None = None, exact_point: bool = False,
                      estate_id: int | None = None, building_id: int | None = None,
                      photos: tuple[str, ...] = (), voice: str | None = None,
                      voice_duration: int | None = None, urgent: bool = False,
                      reason: dict | None = None) -> rep.Report:
    """Route, number and store a report (services.report_filing), then send its card to the
    team."""
    report = await filing.file(
        session, services, resident.id, category=category, description=description,
        latitude=latitude, longitude=longitude, exact_point=exact_point, estate_id=estate_id,
        building_id=building_id, photos=photos, voice=voice, voice_duration=voice_duration,
        urgent=urgent, reason=reason)
    await send_card_to_team(session, services, report, reason="new")
    return report


async def file_urgent_report(session: AsyncSession, services: Services, resident: Resident, *, category: str,
                             description: str, reason: dict | None = None) -> rep.Report:
    """An urgent report for a resident at their home (e.g. "I need help" on an emergency
    notice): routed by their estate, the team told at once. The caller replies to the resident
    and wakes delivery (in a handler: `ctx.pushed = True`)."""
    estate = await territory.estate(session, resident.estate_id)
    return await file_report(
        session, services, resident, category=category, description=description,
        latitude=estate.latitude if estate else None,
        longitude=estate.longitude if estate else None, exact_point=False,
        estate_id=resident.estate_id, building_id=resident.building_id, urgent=True,
        reason=reason)


# -- the card ------------------------------------------------------------------------------

async def card_text(session: AsyncSession, services: Services, report: rep.Report, lang: str, *,
                    show_reporter: bool, header_key: str | None = None) -> str:
    lines = []
    if header_key:
        lines.append(t(services, lang, header_key))
    if report.urgent:
        lines.append(t(services, lang, "reports.card_urgent"))
    lines.append(t(services, lang, "reports.card_title", ref=report.reference,
                   category=category_name(services, lang, report.category)))
    lines.append(t(services, lang, "reports.card_status", status=status_label(services, lang,
                                                                              report)))
    place = await place_text(session, services, report, lang)
    lines.append(t(services, lang, "reports.card_place", place=place))
    if report.latitude is not None and report.exact_point:
        lines.append(MAP_URL.format(lat=report.latitude, lon=report.longitude))
    if report.reason:
        lines.append(t(services, lang, "reports.card_description",
                       text=reason_text(services, lang, report.reason)))
    elif report.description:
        lines.append(t(services, lang, "reports.card_description", text=report.description))
    else:  # described only by a voice note: say so, in the reader's language
        voice = next((m for m in await rep.media_of(session, report.id) if m.kind == "voice"),
                     None)
        if voice is not None:
            lines.append(t(services, lang, "reports.card_description", text=t(
                services, lang, "reports.voice_note", seconds=voice.duration or 0)))
    if report.team_id:
        team = await territory.team(session, report.team_id)
        lines.append(t(services, lang, "reports.card_team", team=territory.localized(team, lang)))
    lines.append(t(services, lang, "reports.card_due", ack=services.local_time(report.ack_due_at),
                   fix=services.local_time(report.fix_due_at)))
    if show_reporter:
        person = await must_get(session, Resident, report.reporter_id)
        name, phone = person.display_name or f"#{person.id}", person.phone or "-"
        sub = await open311.first_submission(session, report.id)
        if sub is not None:  # filed through the API: the contact that came with it
            contact = sub.contact or {}
            given = " ".join(v for v in (contact.get("first_name"), contact.get("last_name")) if v)
            name = t(services, lang, "reports.card_via_api", name=given or "-", client=name)
            phone = " / ".join(v for v in (contact.get("phone"), contact.get("email")) if v) or "-"
        lines.append(t(services, lang, "reports.card_reporter", name=name, phone=phone))
    return "\n".join(lines)


def reason_text(services: Services, lang: str, reason: dict) -> str:
    """A generated report's reason in the reader's language: `reports.reason_code_<code>`
    filled with the reason's other values."""
    missing = t(services, lang, "reports.reason_not_given")
    values = {k: missing if v is None else v for k, v in reason.items() if k != "code"}
    text = t(services, lang, f"reports.reason_code_{reason['code']}", **values)
    if reason.get("need"):  # what kind of help, chosen from buttons by the resident
        text += "\n" + t(services, lang, "reports.reason_need",
                         need=t(services, lang, f"reports.need_{reason['need']}"))
    return text


async def place_text(session: AsyncSession, services: Services, report: rep.Report, lang: str) -> str:
    parts = []
    if report.estate_id:
        estate = await territory.estate(session, report.estate_id)
        parts.append(territory.localized(estate, lang))
        if report.building_id:
            building = await must_get(session, territory.Building, report.building_id)
            parts.append(t(services, lang, "reports.building", number=building.number))
    if report.zone_id:
        zone = await territory.zone(session, report.zone_id)
        parts.append(territory.localized(zone, lang))
    if report.latitude is not None and report.exact_point:
        parts.append(f"{report.latitude:.5f}, {report.longitude:.5f}")
    return " · ".join(parts) or t(services, lang, "reports.place_unknown")


def staff_buttons(services: Services, identity_id: int, report: rep.Report, lang: str
                  ) -> list[list[Button]]:
    if report.status not in [s.value for s in rep.OPEN]:
        return []

    def b(key: str, action: Action) -> Button:
        return Button(t(services, lang, key), services.signer.sign(identity_id, action))

    rid = report.id
    # Only the steps this status can take: an acknowledged report offers no "acknowledge",
    # one in progress neither (a press of either would only say it moved on).
    steps = [b(key, action) for key, action, to in (
        ("reports.btn_ack", StaffAction(rid, "a"), rep.Status.ACKNOWLEDGED),
        ("reports.btn_progress", StaffAction(rid, "p"), rep.Status.IN_PROGRESS))
        if rep.can_become(report.status, to)]
    return [
        *([steps] if steps else []),
        [b("reports.btn_fixed", StaffAction(rid, "f")),
         b("reports.btn_not_ours", StaffAction(rid, "r"))],
        [b("reports.btn_duplicate", StaffAction(rid, "d")),
         b("reports.btn_close", StaffAction(rid, "c"))],
    ]


async def card_outbounds(session: AsyncSession, services: Services, report: rep.Report,
                         identity_id: int, lang: str, *, show_reporter: bool,
                         header_key: str | None = None) -> list[Outbound]:
    """The card: text with the action buttons, then its photos and voice note."""
    outs = [Outbound(text=await card_text(session, services, report, lang,
                                          show_reporter=show_reporter, header_key=header_key),
                     buttons=staff_buttons(services, identity_id, report, lang))]
    for media in await rep.media_of(session, report.id):
        path = str(services.media.path(media.path))
        if media.kind == "photo":
            outs.append(Outbound(photo=path, text=t(services, lang, "reports.card_photo_caption",
                                                    ref=report.reference)))
        elif media.kind == "voice":
            outs.append(Outbound(voice=path, text=t(services, lang, "reports.card_voice_caption",
                                                    ref=report.reference,
                                                    seconds=media.duration or 0)))
    return outs


async def push_card(session: AsyncSession, services: Services, report: rep.Report,
                    resident_id: int, *, header_key: str | None = None,
                    priority: outbox.Priority | None = None) -> int:
    person = await must_get(session, Resident, resident_id)
    show = may_act(await scope_of(session, resident_id), report)
    batch = Batch(services.texts)
    for ident in await identities_of(session, resident_id):
        lang = batch.reader(Recipient(ident.id, person.language)).lang
        batch.add(ident.id, await card_outbounds(session, services, report, ident.id, lang,
                                                 show_reporter=show, header_key=header_key),
                  priority=priority or (outbox.Priority.URGENT if report.urgent
                                        else outbox.Priority.NORMAL),
                  group=f"report:{report.id}")
    return await batch.send(session)


async def send_card_to_team(session: AsyncSession, services: Services, report: rep.Report, *, reason: str) -> int:
    """The team's members get the card; a team nobody has joined yet falls to station staff."""
    members = await rep.team_members(session, report.team_id)
    if not members:
        members = await rep.station_staff_for(session, report.estate_id)
    header = {"new": None, "reopened": "reports.card_header_reopened",
              "reassigned": "reports.card_header_reassigned",
              "updated": "reports.card_header_updated"}.get(reason)
    sent = 0
    for resident_id in members:
        sent += await push_card(session, services, report, resident_id, header_key=header)
    return sent


# -- telling the reporter and followers ----------------------------------------------------

async def notify_status(session: AsyncSession, services: Services, report: rep.Report, *, note: str | None = None,
                        photo: str | None = None, include_reporter: bool = True) -> int:
    """The new status, to the reporter and every follower; on fixed, the reporter is asked
    whether it really is."""
    sent = 0
    people = [(report.reporter_id, True)] if include_reporter else []
    people += [(rid, False) for rid in await rep.followers(session, report.id)]
    batch = Batch(services.texts)
    changed_at = services.local_iso(utcnow())
    for resident_id, is_reporter in people:
        person = await must_get(session, Resident, resident_id)
        key = "reports.update_yours" if is_reporter else "reports.update_followed"
        for ident in await identities_of(session, resident_id):
            t = batch.reader(Recipient(ident.id, person.language))
            facts = {"ref": report.reference,
                     "category": category_name(services, t.lang, report.category),
                     "status": status_label(services, t.lang, report), "time": changed_at,
                     "note": note or ""}
            text = t(key, ref=facts["ref"], category=facts["category"], status=facts["status"])
            if note:
                text += "\n" + t("reports.update_note", note=note)
            if is_reporter and report.status == rep.Status.FIXED:
                out = Outbound(text=text + "\n\n" + t("reports.ask_fixed"), buttons=[[
                    Button(t("reports.btn_fixed_yes"),
                           services.signer.sign(ident.id, ConfirmFixed(report.id, True))),
                    Button(t("reports.btn_fixed_no"),
                           services.signer.sign(ident.id, ConfirmFixed(report.id, False)))]])
            else:
                out = Outbound(text=text)
            out.push, out.facts = PushKind.REPORT_STATUS, facts
            batch.add(ident.id, out, group=f"report:{report.id}",
                      dedupe_key=f"report:{report.id}:v{report.version}:{ident.id}")
            if photo:
                batch.add(ident.id, Outbound(
                    photo=str(services.media.path(photo)),
                    text=t("reports.card_photo_caption", ref=report.reference)),
                    group=f"report:{report.id}")
            sent += 1
    await batch.send(session)
    return sent
