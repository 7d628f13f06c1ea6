"""Volunteer sign-ups in storage: capacity held by the database on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from storage import outbox
from storage import volunteer_hours as vhours
from storage import volunteer_teams as vteams
from storage import volunteering as vol
from storage.db import create_engine, session_factory
from storage.migrate import upgrade_async
from storage.people import Resident, get_or_create_identity
from storage.territory import estate_by_code
from storage.territory_loader import load_territory
from storage.verification import set_home
from tests.conftest import DEMO

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
CUTOFF = timedelta(hours=6)
S = vol.SignupOutcome


def _demo() -> dict:
    return json.loads(DEMO.read_text(encoding="utf-8"))


async def _db(url):
    await upgrade_async(url)
    engine = create_engine(url)
    return engine, session_factory(engine)


async def _residents(sessions, n: int) -> list[int]:
    async with sessions() as s, s.begin():
        rows = [Resident(display_name=f"r{i}") for i in range(n)]
        s.add_all(rows)
        await s.flush()
        return [r.id for r in rows]


async def _activity(sessions, organiser: int, *specs: vol.ShiftSpec) -> list[int]:
    async with sessions() as s, s.begin():
        a = await vol.create_activity(
            s, title="Park clean-up", category="environment", description="bags provided",
            audience="everyone", organiser_id=organiser, shifts=list(specs))
        assert await vol.publish(s, a.id)
        assert not await vol.publish(s, a.id)  # a double tap publishes once
        return [sh.id for sh in await vol.shifts_of(s, a.id)]


def _spec(hours_from_now: float, length: float = 2, capacity: int = 2) -> vol.ShiftSpec:
    start = NOW + timedelta(hours=hours_from_now)
    return vol.ShiftSpec(start, start + timedelta(hours=length), capacity)


async def _sign(sessions, shift_id, rid, now=NOW):
    async with sessions() as s, s.begin():
        return await vol.sign_up(s, shift_id, rid, now)


async def test_capacity_waitlist_cancel_and_promotion(db_url):
    engine, sessions = await _db(db_url)
    try:
        org, a, b, c, d = await _residents(sessions, 5)
        (shift,) = await _activity(sessions, org, _spec(48, capacity=2))
        assert (await _sign(sessions, shift, a)).outcome == S.CONFIRMED
        assert (await _sign(sessions, shift, a)).outcome == S.ALREADY  # double tap
        assert (await _sign(sessions, shift, b)).outcome == S.CONFIRMED
        r = await _sign(sessions, shift, c)
        assert r.outcome == S.WAITLISTED and r.position == 1
        r = await _sign(sessions, shift, d)
        assert r.outcome == S.WAITLISTED and r.position == 2
        again = await _sign(sessions, shift, d)
        assert again.outcome == S.ALREADY and again.position == 2

        async with sessions() as s, s.begin():
            sa = await s.scalar(select(vol.Signup).where(vol.Signup.resident_id == a))
            res = await vol.cancel_signup(s, sa.id, a, NOW, CUTOFF)
            assert res.outcome == vol.CancelOutcome.CANCELLED
            assert [p.resident_id for p in res.promoted] == [c]  # first come, first served
            again = await vol.cancel_signup(s, sa.id, a, NOW, CUTOFF)
            assert again.outcome == vol.CancelOutcome.ALREADY
        async with sessions() as s:
            sh = await s.get(vol.Shift, shift)
            assert (sh.taken, sh.capacity) == (2, 2)
            lines = await vol.roster(s, shift)
            assert [(x.signup.resident_id, x.signup.status, x.position) for x in lines] == [
                (b, "confirmed", None), (c, "confirmed", None), (d, "waitlisted", 1)]
            # The promoted volunteer gets reminders; the one who left has none pending.
            due = await s.scalars(select(vol.Reminder.hours_before).join(
                vol.Signup, vol.Signup.id == vol.Reminder.signup_id).where(
                vol.Signup.resident_id == c, vol.Reminder.status == "pending"))
            assert sorted(due.all()) == [2, 24]
        # Coming back after cancelling puts you at the end of the queue.
        r = await _sign(sessions, shift, a)
        assert r.outcome == S.WAITLISTED and r.position == 2
    finally:
        await engine.dispose()


async def test_overlap_after_start_and_cutoff(db_url):
    engine, sessions = await _db(db_url)
    try:
        org, a = await _residents(sessions, 2)
        soon, first, clash, later = await _activity(
            sessions, org, _spec(48, 2), _spec(49, 2), _spec(50, 1), _spec(3, 1))
        assert (await _sign(sessions, first, a)).outcome == S.CONFIRMED
        r = await _sign(sessions, clash, a)
        assert r.outcome == S.OVERLAP and r.clash.id == first
        assert (await _sign(sessions, later, a)).outcome == S.CONFIRMED  # back to back is fine
        assert (await _sign(sessions, soon, a, NOW + timedelta(hours=3))).outcome == S.STARTED
        assert (await _sign(sessions, soon, a)).outcome == S.CONFIRMED
        async with sessions() as s, s.begin():
            su = await s.scalar(select(vol.Signup).where(vol.Signup.shift_id == soon))
            res = await vol.cancel_signup(s, su.id, a, NOW, CUTOFF)
            assert res.outcome == vol.CancelOutcome.TOO_LATE  # 3 h before, cut-off 6 h
            other = await vol.cancel_signup(s, su.id, org, NOW, CUTOFF)
            assert other.outcome == vol.CancelOutcome.NOT_FOUND  # not theirs
    finally:
        await engine.dispose()


async def test_capacity_below_signups_is_refused_and_raise_promotes(db_url):
    engine, sessions = await _db(db_url)
    try:
        org, *people = await _residents(sessions, 5)
        (shift,) = await _activity(sessions, org, _spec(48, capacity=3))
        for rid in people:
            await _sign(sessions, shift, rid)
        async with sessions() as s, s.begin():
            outcome, taken, promoted = await vol.set_capacity(s, shift, 2, NOW)
            assert (outcome, taken, promoted) == (vol.CapacityOutcome.BELOW_SIGNUPS, 3, [])
            assert (await vol.set_capacity(s, shift, 0, NOW))[0] == vol.CapacityOutcome.INVALID
            outcome, taken, promoted = await vol.set_capacity(s, shift, 4, NOW)
            assert outcome == vol.CapacityOutcome.CHANGED and taken == 4
            assert [p.resident_id for p in promoted] == [people[3]]
        # The CHECK constraint holds even against a careless direct write.
        with pytest.raises(Exception):  # noqa: B017 - IntegrityError's driver subclass varies
            async with sessions() as s, s.begin():
                sh = await s.get(vol.Shift, shift)
                sh.capacity = 1
    finally:
        await engine.dispose()


async def test_cancel_shift_check_in_hours_and_reminders(db_url):
    engine, sessions = await _db(db_url)
    try:
        org, a, b, c = await _residents(sessions, 4)
        gone, kept = await _activity(sessions, org, _spec(30, capacity=1), _spec(72, 3, 5))
        await _sign(sessions, gone, a)
        await _sign(sessions, gone, b)
        await _sign(sessions, kept, a)
        await _sign(sessions, kept, c)
        async with sessions() as s, s.begin():
            told = await vol.cancel_shift(s, gone, NOW)
            assert sorted(x.resident_id for x in told) == [a, b]
            assert await vol.cancel_shift(s, gone, NOW) is None
        # Reminders: nothing due yet; 24 h before `kept` both are due, claimed exactly once.
        async with sessions() as s, s.begin():
            assert await vol.claim_due_reminders(s, NOW) == []
        at = NOW + timedelta(hours=48, minutes=1)
        async with sessions() as s, s.begin():
            due = await vol.claim_due_reminders(s, at)
            assert sorted((d.signup.resident_id, d.hours_before) for d in due) == [
                (a, 24), (c, 24)]
        async with sessions() as s, s.begin():
            assert await vol.claim_due_reminders(s, at) == []
        early = timedelta(minutes=30)
        async with sessions() as s, s.begin():
            su = await s.scalar(select(vol.Signup).where(
                vol.Signup.shift_id == kept, vol.Signup.resident_id == a))
            sh = await s.get(vol.Shift, kept)
            assert await vol.check_in(s, su, NOW, early) == vol.CheckinOutcome.TOO_EARLY
            during = sh.starts_at + timedelta(minutes=10)
            assert await vol.check_in_by_code(s, a, "000000" if sh.checkin_code != "000000"
                                              else "111111", during, early) == \
                vol.CheckinOutcome.NOT_SIGNED_UP
            assert await vol.check_in_by_code(s, a, sh.checkin_code, during, early) == \
                vol.CheckinOutcome.CHECKED_IN
            assert await vol.check_in(s, su, during, early) == vol.CheckinOutcome.ALREADY
            sc = await s.scalar(select(vol.Signup).where(
                vol.Signup.shift_id == kept, vol.Signup.resident_id == c))
            after = sh.ends_at + timedelta(minutes=1)
            assert await vol.check_in(s, sc, after, early) == vol.CheckinOutcome.OVER
            assert await vol.mark_attended(s, sc.id, org, after)
            assert not await vol.mark_attended(s, sc.id, org, after)
        async with sessions() as s:
            # a checked in 10 minutes after the start: 2 h 50 min, once the shift is over.
            assert await vhours.attended(s, a, during) == []
            rows = await vhours.attended(s, a, after)
            assert [round(h, 4) for _, _, h in rows] == [round(170 / 60, 4)]
            # The organiser vouched for c: the whole shift.
            assert [h for _, _, h in await vhours.attended(s, c, after)] == [3.0]
    finally:
        await engine.dispose()


async def test_teams_and_leaderboard(db_url):
    engine, sessions = await _db(db_url)
    try:
        lead, a, b = await _residents(sessions, 3)
        async with sessions() as s, s.begin():
            team = await vteams.create_team(s, "Elderly care team", None, lead)
            assert await vteams.create_team(s, "Elderly care team", None, a) is None
            assert await vteams.join_team(s, team.id, a)
            assert not await vteams.join_team(s, team.id, a)
            assert [t.id for t in await vteams.led_teams(s, lead)] == [team.id]
            assert await vteams.make_lead(s, team.id, a)
            assert not await vteams.make_lead(s, team.id, b)  # not a member
            assert await vteams.leave_team(s, team.id, a)
            assert [(t.name, n) for t, n in await vteams.teams(s)] == [("Elderly care team", 1)]
            await vhours.set_leaderboard(s, a, True)
            await vhours.set_leaderboard(s, a, False)
            assert not await vhours.on_leaderboard(s, a)
    finally:
        await engine.dispose()


async def test_two_residents_race_for_the_last_place(db_url):
    engine, sessions = await _db(db_url)
    try:
        org, *people = await _residents(sessions, 9)
        (shift,) = await _activity(sessions, org, _spec(48, capacity=1))
        results = await asyncio.gather(*[_sign(sessions, shift, rid) for rid in people])
        outcomes = sorted(r.outcome.value for r in results)
        assert outcomes == ["confirmed"] + ["waitlisted"] * 7
        assert sorted(r.position for r in results if r.position) == list(range(1, 8))
    finally:
        await engine.dispose()


async def test_announcement_goes_out_in_batches_once(db_url):
    engine, sessions = await _db(db_url)
    try:
        async with sessions() as s, s.begin():
            await load_territory(s, _demo())
        async with sessions() as s, s.begin():
            home = await estate_by_code(s, "victoria")
            elsewhere = await estate_by_code(s, "zhonghai-mingcheng")
            ids = []
            for i in range(7):
                _, r, _ = await get_or_create_identity(s, "memory", f"u{i}", f"u{i}", None)
                await set_home(s, r, elsewhere.id if i == 6 else home.id)
                ids.append(r.id)
            a = await vol.create_activity(
                s, title="Lanterns", category="culture", description="", audience="estate",
                organiser_id=ids[0], estate_id=home.id, shifts=[_spec(48)])
            await vol.publish(s, a.id)
            assert await vol.audience_size(s, a) == 5
            assert await vol.request_announcement(s, a.id)
            assert not await vol.request_announcement(s, a.id)
        seen = []
        for _ in range(5):
            async with sessions() as s, s.begin():
                claimed = await vol.claim_announcement_batch(s, 2)
                if claimed is None:
                    break
                activity, batch = claimed
                rows = [{"identity_id": iid, "payload": {"text": "x"}, "priority": 90,
                         "group_key": "g", "dedupe_key": f"k:{rid}"} for rid, iid, _ in batch]
                await outbox.enqueue_many(s, rows)
                await outbox.enqueue_many(s, rows)  # a retried batch adds nothing
                seen += [rid for rid, _, _ in batch]
        assert seen == ids[:6]  # the whole estate, in order, once; not the other estate
        async with sessions() as s:
            activity = await s.get(vol.Activity, activity.id)
            assert (activity.announce_state, activity.announced) == ("done", 5)
            assert (await outbox.figures(s, "g"))["pending"] == 6
    finally:
        await engine.dispose()


async def test_hours_only_for_time_served(db_url):
    """An early check-in counts no future time; hours are settled at the shift's end or at a
    check-out, whichever comes first, and nothing is credited before."""
    engine, sessions = await _db(db_url)
    try:
        org, early_bird, leaver, absent = await _residents(sessions, 4)
        (shift_id,) = await _activity(sessions, org, _spec(48, 2, 5))
        for rid in (early_bird, leaver, absent):
            await _sign(sessions, shift_id, rid)
        window = timedelta(minutes=30)
        async with sessions() as s:
            shift = await s.get(vol.Shift, shift_id)
            start, end = shift.starts_at, shift.ends_at

        async def signup_of(s, rid):
            return await s.scalar(select(vol.Signup).where(
                vol.Signup.shift_id == shift_id, vol.Signup.resident_id == rid))

        async def hours(rid, at):
            async with sessions() as s:
                return [h for _, _, h in await vhours.attended(s, rid, at)]

        ten_early = start - timedelta(minutes=10)
        async with sessions() as s, s.begin():
            for rid in (early_bird, leaver):
                assert await vol.check_in(s, await signup_of(s, rid), ten_early, window,
                                          by=rid) == vol.CheckinOutcome.CHECKED_IN
        assert await hours(early_bird, ten_early) == []  # the shift is all in the future
        assert await hours(early_bird, start + timedelta(hours=1)) == []  # still going on
        async with sessions() as s, s.begin():
            su = await signup_of(s, early_bird)
            assert not vol.may_check_out(su, await s.get(vol.Shift, shift_id), end)
            assert await vol.check_out(s, su, end) == vol.CheckoutOutcome.OVER
        assert await hours(early_bird, end) == [2.0]  # not 2 h 10 min

        leaves = end - timedelta(minutes=30)
        async with sessions() as s, s.begin():
            su = await signup_of(s, leaver)
            assert vol.may_check_out(su, await s.get(vol.Shift, shift_id), leaves)
            assert await vol.check_out(s, su, leaves) == vol.CheckoutOutcome.CHECKED_OUT
            assert await vol.check_out(s, su, leaves) == vol.CheckoutOutcome.ALREADY
        assert await hours(leaver, leaves) == [1.5]  # settled at once by the check-out
        assert await hours(leaver, end + timedelta(days=1)) == [1.5]
        async with sessions() as s, s.begin():
            # Signed up but never checked in: nothing to check out of, no hours.
            assert await vol.check_out(s, await signup_of(s, absent), leaves) == \
                vol.CheckoutOutcome.NOT_CHECKED_IN
        assert await hours(absent, end + timedelta(days=1)) == []
    finally:
        await engine.dispose()
