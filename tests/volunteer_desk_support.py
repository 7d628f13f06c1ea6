"""Volunteering for the dashboard's tests: a published activity with shifts, signed up for as the
chat's "Sign up" button does, and the clock moved past the shifts."""

from __future__ import annotations

from datetime import timedelta

from storage import volunteering as vol
from storage.territory import estate_by_code


async def activity(app, organiser: int, title: str, *, estate: str = "victoria",
                   shifts: tuple[tuple[float, float, int], ...] = ((2, 4, 2),),
                   volunteers: tuple[int, ...] = ()) -> tuple[int, list[int], list[int]]:
    """(activity id, shift ids, sign-up ids): shifts as (starts in hours, ends in hours,
    places) from now; every volunteer signs up for the first shift, in order (confirmed while
    places last, then on the waitlist)."""
    now = app.services.clock()
    async with app.sessions() as s, s.begin():
        place = await estate_by_code(s, estate)
        made = await vol.create_activity(
            s, title=title, category="environment", description="Bring gloves.",
            audience="estate", organiser_id=organiser, estate_id=place.id,
            shifts=[vol.ShiftSpec(now + timedelta(hours=a), now + timedelta(hours=b), c)
                    for a, b, c in shifts])
        assert await vol.publish(s, made.id)
        shift_ids = [x.id for x in await vol.shifts_of(s, made.id)]
    signups = []
    for resident_id in volunteers:
        async with app.sessions() as s, s.begin():
            done = await vol.sign_up(s, shift_ids[0], resident_id, now)
            assert done.signup is not None, done.outcome
            signups.append(done.signup.id)
    return made.id, shift_ids, signups
