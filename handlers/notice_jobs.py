"""The notices clock: start due notices, fan them out to the outbox, show the sender progress.

Everything is claimed in the database (guarded updates, a lease with a cursor), so a restart or a
second worker neither loses nor doubles a recipient.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from bot.messaging.model import Button, Outbound, PushKind
from bot.payloads import Action
from bot.pushes import Batch, Key, Recipient, push, reader
from bot.router import Router
from bot.scheduler import Job
from storage import audience, notices, outbox
from storage.base import utcnow
from storage.notices import Notice
from storage.people import language_of_identity
from storage.subscriptions import quiet_until

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class EmergencyAnswer(Action, code="nans"):
    """"I am safe" / "I need help" under an emergency notice (answered in notice_answers)."""
    notice_id: int
    answer: Literal["s", "h"]  # safe, help


router = Router()  # answers nothing itself: this module is its jobs


def render_for(services, now: datetime) -> notices.Queue:
    """What a page of recipients receives, each in their language (bot/pushes.py): per-identity
    signed buttons for emergencies, and when (quiet hours push non-urgent notices to their
    end)."""
    tz = services.settings.bot.timezone

    async def queue(session, notice: Notice, page: list[audience.Recipient]) -> int:
        batch = Batch(services.texts)
        priority = (outbox.Priority.URGENT if notice.ignores_preferences
                    else outbox.Priority.BULK)
        sent_at = services.local_iso(notice.scheduled_at)
        for r in page:
            t = batch.reader(Recipient(r.identity_id, r.language))
            buttons: list[list[Button]] = []
            if notice.category == "emergency":
                sign = services.signer.sign
                buttons = [[Button(t("notices.btn_safe"),
                                   sign(r.identity_id, EmergencyAnswer(notice.id, "s"))),
                            Button(t("notices.btn_help"),
                                   sign(r.identity_id, EmergencyAnswer(notice.id, "h")))]]
            not_before = None
            if not notice.ignores_preferences:
                until = quiet_until(now, r.quiet_start, r.quiet_end, tz)
                if until is not None:
                    # `now` may be a test clock; the outbox runs on real time.
                    not_before = utcnow() + (until - now)
            category, text = t(f"notices.cat_{notice.category}"), notices.text_for(notice, t.lang)
            batch.add(r.identity_id, Outbound(
                text=t("notices.push", category=category, text=text),
                buttons=buttons, photo=notice.photo, push=PushKind.NOTICE,
                facts={"title": category, "text": text, "time": sent_at}),
                priority=priority, group=notice.group,
                dedupe_key=notices.recipient_key(notice.id, r.identity_id),
                not_before=not_before)
        return await batch.send(session)

    return queue


async def fan_out(sessions, services, deliverer, *, batch: int | None = None,
                  max_notices: int = 20) -> int:
    """Start due notices and walk unfinished fan-outs; returns how many messages were queued."""
    batch = batch or services.settings.notices.fanout_batch
    queued = 0
    for _ in range(max_notices):
        async with sessions() as session, session.begin():
            await notices.start_due(session, services.clock())
            claim = await notices.claim_fanout(session, services.clock())  # urgent first
        if claim is None:
            break
        notice_id, token = claim
        async with sessions() as session:
            urgent = (await notices.get(session, notice_id)).ignores_preferences
        more = True
        while more:
            now = services.clock()
            async with sessions() as session, session.begin():
                step = await notices.fanout_batch(session, notice_id, token,
                                                  render_for(services, now), now, batch)
                if step is None:  # lease lost or notice cancelled: keep nothing of this page
                    await session.rollback()
                    break
                more, count = step
                queued += count
                if more and not urgent and await notices.urgent_waiting(session, now):
                    # An emergency must not wait behind a 100,000-recipient bulk walk.
                    await notices.release_fanout(session, notice_id, token)
                    more = False
            if deliverer is not None:
                deliverer.wake()
    return queued


async def report_progress(sessions, services, deliverer) -> None:
    """One progress message per notice for its sender, edited in place until all is sent."""
    pushed = False
    async with services.readers() as session:
        if not await notices.needing_progress(session):
            return  # the usual tick: nothing to report, and no write lock taken for it
    async with sessions() as session, session.begin():
        for notice in await notices.needing_progress(session):
            pushed |= await _progress_of(session, services, notice)
    if pushed and deliverer is not None:
        deliverer.wake()


async def _progress_of(session, services, notice: Notice) -> bool:
    figures = await outbox.figures(session, notice.group)
    waiting = figures["pending"] + figures["sending"]
    finished = waiting == 0 and (notice.fanout_done_at is not None
                                 or notice.status == notices.NoticeStatus.CANCELLED)
    to = Recipient(notice.sender_identity_id,
                   await language_of_identity(session, notice.sender_identity_id))
    figures_text = progress_values(notice, figures, finished)
    first_key = f"np{notice.id}:0"
    first = await outbox.by_dedupe_key(session, first_key)
    group = notices.progress_group(notice.id)
    if first is None and notice.status == notices.NoticeStatus.CANCELLED and not notice.recipients:
        notice.progress_done = True  # cancelled before it went out: nothing to report
        return False
    if first is None:
        await push(session, services.texts, to, "notices.progress",
                   priority=outbox.Priority.REPLY, group=group, dedupe_key=first_key,
                   **figures_text)
        notice.progress_done = finished
        return True
    if first.status in (outbox.Status.FAILED, outbox.Status.UNREACHABLE,
                        outbox.Status.CANCELLED):
        notice.progress_done = True  # the sender cannot be told; nothing to edit
        return False
    if first.message_ref is None:
        return False  # the first message is not out yet: nothing to edit
    last = first if notice.progress_seq == 0 else await outbox.by_dedupe_key(
        session, f"np{notice.id}:{notice.progress_seq}")
    if last is not None and last.status in (outbox.Status.PENDING, outbox.Status.SENDING):
        return False  # the previous edit has not gone out: do not pile edits up
    text = reader(services.texts, to)("notices.progress", **figures_text)
    if last is not None and last.payload.get("text") == text:
        notice.progress_done = finished
        return False
    notice.progress_seq += 1
    await push(session, services.texts, to, "notices.progress", edit_of=first.message_ref,
               priority=outbox.Priority.REPLY, group=group,
               dedupe_key=f"np{notice.id}:{notice.progress_seq}", **figures_text)
    notice.progress_done = finished
    return True


def progress_values(notice: Notice, figures: dict[str, int], finished: bool) -> dict:
    """The values of "notices.progress"; the state's word follows the reader's language."""
    state = ("cancelled" if notice.status == notices.NoticeStatus.CANCELLED
             else "done" if finished else "sending")
    return dict(id=notice.id, state=Key(f"notices.state_{state}"),
                sent=figures["sent"], queued=figures["pending"] + figures["sending"],
                failed=figures["failed"], unreachable=figures["unreachable"],
                cancelled=figures["cancelled"], total=notice.recipients)


jobs = [
    Job("notices-fanout", 2, fan_out),
    Job("notices-progress", 3, report_progress),
]
