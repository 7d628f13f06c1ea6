"""The staff dashboard in a real browser: Playwright driving Debian's Chromium (/usr/bin/chromium;
.ci/run installs it when missing). A team member signs in by the chat's link, works a report
from the queue to fixed and the resident is told in chat; a committee member composes and
sends a notice and watches its progress reach done, then composes one with a photo for a
building at a later time and sees it listed as scheduled; another scope's report is refused;
the language switch; sign-out. Screenshots of the main pages go to test-output/dashboard/, with the
queue page's first contentful paint."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.dashboard_support import dashboard_app, file, link_for, make_poll, person

CHROMIUM = Path("/usr/bin/chromium")
OUT = ROOT / "test-output" / "dashboard"
NOTICE_JOBS = ("notices-fanout", "notices-progress")
POLL_JOBS = ("polls",)
FCP_JS = ("() => new Promise(done => new PerformanceObserver(list => {"
          " const e = list.getEntriesByName('first-contentful-paint')[0];"
          " if (e) done(e.startTime); }).observe({type: 'paint', buffered: true}))")


async def _until(check, what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def _jobs(app, names):
    """Some of the features' jobs every half second (the scheduler's others read feeds from
    the network, which tests never reach)."""
    jobs = [job for job in app.jobs if job.id in names]
    assert len(jobs) == len(names)

    async def loop():
        while True:
            for job in jobs:
                await job.run(app.sessions, app.services, app.deliverer)
            await asyncio.sleep(0.5)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def browser():
    if not await asyncio.to_thread(CHROMIUM.exists):
        pytest.fail("the browser tests need Debian's chromium: apt-get install -y chromium "
                    "(.ci/run installs it)")
    from playwright.async_api import async_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(CHROMIUM),
                                            args=["--no-sandbox", "--disable-gpu"])
        try:
            yield chromium
        finally:
            await chromium.close()


async def test_work_a_report_send_a_notice_refuse_another_scope_sign_out(browser, tmp_path,
                                                                        sqlite_url):
    app, chat, base = await dashboard_app(sqlite_url, tmp_path, live=True)
    try:
        ann = await person(app, "ann")
        await person(app, "tia", ("team", "south-joint"))
        await person(app, "cora", ("committee", "victoria"))
        photo = app.services.media.save(_png(), ".png")
        ref = await file(app, ann, "rubbish", "Bins overflowing by gate 2", 30.606, 104.04,
                         photos=(photo,))
        north = await file(app, ann, "rubbish", "Bins in the north", 30.633, 104.04)
        for _ in range(3):
            await file(app, ann, "lighting", "Lamp out", 30.605, 104.045)

        # -- a team member: sign in by link, work the report to fixed --------------------
        page = await (await browser.new_context(locale="en-US")).new_page()
        await page.goto(await link_for(chat, "tia"))
        await page.screenshot(path=OUT / "sign-in.png")
        await page.click("#sign-in")
        await page.wait_for_selector("text=Welcome, Tia")
        await page.screenshot(path=OUT / "home.png")
        await page.click("nav >> text=Reports")
        await page.wait_for_selector("#queue")
        assert ref in await page.inner_text("#queue")
        assert north not in await page.inner_text("#queue")
        assert await page.locator("svg.map circle.report").count() >= 1
        fcp = await page.evaluate(FCP_JS)
        await page.screenshot(path=OUT / "queue.png", full_page=True)
        await page.click(f"#queue >> text={ref}")
        await page.wait_for_selector("#actions")
        assert await page.locator(".photos img").evaluate("img => img.naturalWidth") == 4
        await page.screenshot(path=OUT / "report.png", full_page=True)
        await page.click("#act-ack")
        await page.wait_for_selector("#outcome")
        assert "Done" in await page.inner_text("#outcome")
        assert await page.inner_text("#status") == "acknowledged"
        await page.fill("#fix-note", "Bins emptied and the area swept")
        await page.click("#act-fix")
        await page.wait_for_selector("#outcome")
        assert await page.inner_text("#status") == "fixed"
        assert "Bins emptied" in await page.inner_text("#history")
        await page.screenshot(path=OUT / "report-fixed.png", full_page=True)
        await _until(lambda: any(ref in t and "is now: fixed" in t
                                 for t in chat.texts_to("ann")), "the resident told")
        told = next(t for t in chat.texts_to("ann") if ref in t and "is now: fixed" in t)
        assert "Bins emptied and the area swept" in told

        # -- another scope's report, by an edited URL: refused, nothing shown -----------
        response = await page.goto(f"{base}/dashboard/reports/{north}")
        assert response.status == 404
        assert "Bins in the north" not in await page.content()
        await page.screenshot(path=OUT / "refused.png")
        response = await page.goto(f"{base}/dashboard/notices")
        assert response.status == 403  # a team member has no notices

        # -- the language switch, then sign out --------------------------------------------
        await page.goto(f"{base}/dashboard/reports")
        await page.click("#lang-zh-Hans")
        await page.wait_for_selector("text=报事队列")
        await page.click("#sign-out")
        await page.wait_for_selector("#message")
        # The session (and the language chosen in it) is gone: the browser's language now.
        assert (await page.inner_text("#message")).startswith("You are signed out.")
        response = await page.goto(f"{base}/dashboard/reports")
        assert response.status == 401

        # -- a committee member: compose, preview, send, watch the progress reach done -----
        page = await (await browser.new_context(locale="en-US")).new_page()
        await page.goto(await link_for(chat, "cora"))
        await page.click("#sign-in")
        await page.click("nav >> text=Notices")
        await page.click("#new-notice")
        await page.select_option("#notice-category", "event")
        await page.fill("#notice-text-en", "The community hall is closed on Saturday.")
        await page.fill("#notice-text-zh-Hans", "社区活动室周六关闭。")
        await page.screenshot(path=OUT / "notice-compose.png", full_page=True)
        await page.click("#notice-preview")
        reachable = await page.inner_text("#reachable")
        assert "3 chats reachable now" in reachable, reachable  # ann, tia, cora
        await page.screenshot(path=OUT / "notice-preview.png", full_page=True)
        async with _jobs(app, NOTICE_JOBS):
            await page.click("#notice-send")
            await page.wait_for_selector("#progress")
            await page.screenshot(path=OUT / "notice-progress.png")
            # htmx swaps the fragment in place, every second, until it says done.
            await page.wait_for_selector('#progress[data-done="yes"]', timeout=30_000)
        assert await page.inner_text("#progress-sent") == "3"
        assert await page.inner_text("#progress-waiting") == "0"
        await page.screenshot(path=OUT / "notice-done.png")
        assert "【Event】\nThe community hall is closed on Saturday." in chat.texts_to("ann")

        # -- the same committee member: a poll's turnout, close it, read its results ------
        poll = await make_poll(app, "victoria", "Paint the fence green?", ["Yes", "No"],
                               author=ann, votes=(0, 0, 1))
        await page.click("nav >> text=Polls")
        await page.click(f"#polls >> text={poll}")
        assert await page.locator("#results-hidden").count() == 1
        assert (await page.inner_text("#turnout")).startswith("3 of ")
        async with _jobs(app, POLL_JOBS):
            await page.click("#poll-close")
            await page.wait_for_selector("#outcome")
            for _ in range(100):
                await page.reload()
                if await page.inner_text("#poll-status") == "closed":
                    break
                await asyncio.sleep(0.3)
        assert await page.inner_text("#poll-status") == "closed"
        rows = await page.locator("#results tr").all_inner_texts()
        assert rows[0].split("\t")[0] == "Yes" and "\t2\t" in rows[0], rows
        assert rows[1].split("\t")[0] == "No" and "\t1\t" in rows[1], rows
        await page.screenshot(path=OUT / "poll-results.png", full_page=True)
        async with page.expect_download() as download:
            await page.click("#poll-csv")
        saved = await (await download.value).path()
        assert (await asyncio.to_thread(Path(saved).read_text, encoding="utf-8-sig")
                ).splitlines()[1].startswith("Yes,2,")
        response = await page.goto(f"{base}/dashboard/polls/{poll + 1000}")
        assert response.status == 404

        (OUT / "figures.json").write_text(json.dumps({"queue_first_contentful_paint_ms": fcp}))
        assert fcp is not None and fcp > 0
    finally:
        await app.stop()


async def test_volunteering_open_an_activity_mark_attendance_download_hours(browser, tmp_path,
                                                                          sqlite_url):
    """A committee member opens an activity from the list, its shift's roster, marks a
    volunteer present and downloads the hours CSV for a period."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from storage import volunteering as vol
    from tests.volunteer_desk_support import activity

    app, chat, base = await dashboard_app(sqlite_url, tmp_path)
    try:
        ann = await person(app, "ann")
        bob = await person(app, "bob")
        cora = await person(app, "cora", ("committee", "victoria"))
        ours, (shift,), (ann_signup, _) = await activity(app, cora, "Park clean-up",
                                                         volunteers=(ann, bob))
        app.services.clock.advance(timedelta(hours=5))  # the shift is over
        page = await (await browser.new_context(locale="en-US",
                                                accept_downloads=True)).new_page()
        await page.goto(await link_for(chat, "cora"))
        await page.click("#sign-in")
        await page.click("nav >> text=Volunteering")
        await page.wait_for_selector("#activities")
        await page.screenshot(path=OUT / "volunteering.png", full_page=True)
        await page.click("#activities >> text=Park clean-up")
        await page.wait_for_selector("#shifts")
        assert await page.inner_text(f"#shift-{shift} .taken") == "2"
        await page.screenshot(path=OUT / "volunteering-activity.png", full_page=True)
        await page.click(f"#shift-{shift} .roster-link")
        await page.wait_for_selector("#confirmed")
        assert "Ann" in await page.inner_text("#confirmed")
        await page.click(f"#mark-{ann_signup}")
        await page.wait_for_selector("#outcome")
        assert await page.inner_text("#outcome") == "Marked present."
        assert await page.inner_text("#attended") == "✓ Ann"
        assert "Ann" not in await page.inner_text("#confirmed")
        await page.screenshot(path=OUT / "volunteering-roster.png", full_page=True)

        await page.click("text=‹ Park clean-up")
        await page.click("text=‹ Volunteering")
        now = app.services.clock().astimezone(ZoneInfo(app.services.settings.bot.timezone))
        await page.fill("#hours-from", f"{now - timedelta(days=1):%Y-%m-%d}")
        await page.fill("#hours-to", f"{now:%Y-%m-%d}")
        async with page.expect_download() as download:
            await page.click("#hours-csv")
        got = await download.value
        assert got.suggested_filename.startswith("volunteer-hours-")
        rows = (await asyncio.to_thread(Path(await got.path()).read_text, encoding="utf-8-sig")
                ).splitlines()
        assert rows[0] == "Date,Activity,Shift,Resident number,Name,Hours"
        async with app.services.readers() as s:
            worked = await vol.get_shift(s, shift)
        tz = ZoneInfo(app.services.settings.bot.timezone)
        starts, ends = worked.starts_at.astimezone(tz), worked.ends_at.astimezone(tz)
        assert rows[1] == (f"{starts:%Y-%m-%d},Park clean-up,{starts:%H:%M}–{ends:%H:%M},"
                           f"{ann},Ann,2")
        assert rows[2:] == ["Total,,,,,2"]
    finally:
        await app.stop()


def _png() -> bytes:
    """A 4x3 PNG (the browser decodes it: naturalWidth 4)."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


async def test_compose_a_notice_with_a_photo_and_a_schedule(browser, tmp_path, sqlite_url):
    """A committee member composes a notice with a photo for one building, at a later time:
    the preview says when, the list shows it scheduled with its cancel button, and its page
    its photo; nothing has gone to the resident."""
    from storage.people import resident_by_id
    from storage.territory import building, estate_by_code
    from tests.report_helpers import jpeg_with_gps

    app, chat, base = await dashboard_app(sqlite_url, tmp_path)
    try:
        ann = await person(app, "ann")
        await person(app, "cora", ("committee", "victoria"))
        async with app.sessions() as s, s.begin():
            estate = await estate_by_code(s, "victoria")
            who = await resident_by_id(s, ann)
            who.building_id = (await building(s, estate.id, "2")).id
        photo = tmp_path / "notice.jpg"
        await asyncio.to_thread(photo.write_bytes, jpeg_with_gps(size=(320, 200)))
        page = await (await browser.new_context(locale="en-US")).new_page()
        await page.goto(await link_for(chat, "cora"))
        await page.click("#sign-in")
        await page.click("nav >> text=Notices")
        await page.click("#new-notice")
        await page.select_option("#notice-category", "convenience")
        await page.select_option("#notice-audience", f"building:{estate.id}")
        await page.fill("#notice-building", "2")
        await page.fill("#notice-text-en", "Water is off in building 2 tomorrow morning.")
        await page.set_input_files("#notice-photo", str(photo))
        await page.fill("#notice-when", "tomorrow 08:00")
        await page.screenshot(path=OUT / "notice-compose-scheduled.png", full_page=True)
        await page.click("#notice-preview")
        assert "1 chat reachable now" in await page.inner_text("#reachable")
        assert "tomorrow at 08:00" in await page.inner_text("#notice-at")
        assert await page.locator("#notice-photo-kept").count() == 1
        await page.click("#notice-send")
        await page.wait_for_selector("#notice-photo-img")
        assert await page.evaluate(
            "() => document.querySelector('#notice-photo-img').naturalWidth") == 320
        await page.click("text=‹ Notices")
        row = page.locator("#notices tbody tr").first
        assert await row.get_attribute("data-status") == "scheduled"
        assert "scheduled" in await row.inner_text()
        assert await row.locator("button", has_text="Cancel notice").count() == 1
        await page.screenshot(path=OUT / "notices-scheduled.png", full_page=True)
        assert not any("Water is off" in t for t in chat.texts_to("ann"))
    finally:
        await app.stop()


async def test_create_a_poll_preview_publish_see_it_listed(browser, tmp_path, sqlite_url):
    """A committee member fills in the new-poll form (a refusal first, said beside its field),
    previews it with who can vote, publishes it and finds it in the list; the poll's resident
    is invited in chat."""
    from bot.scheduler import run_jobs_once
    from tests.deliberation_helpers import make_resident
    from tests.report_helpers import drain

    app, chat, base = await dashboard_app(sqlite_url, tmp_path)
    try:
        await person(app, "cora", ("committee", "victoria"))
        await make_resident(app.sessions, "memory", "amy")
        page = await (await browser.new_context(locale="en-US")).new_page()
        await page.goto(await link_for(chat, "cora"))
        await page.click("#sign-in")
        await page.click("nav >> text=Polls")
        await page.click("#new-poll-link")
        await page.fill("#poll-question", "Plant trees by the gate?")
        await page.fill("#poll-options", "Yes\nNo")
        await page.select_option("#poll-area", label="Victoria Garden")
        await page.check("#poll-verified")
        await page.fill("#poll-closes", "in a while")
        await page.click("#poll-preview")
        await page.wait_for_selector("#error-closes")
        assert "could not read that time" in await page.inner_text("#error-closes")
        assert await page.input_value("#poll-question") == "Plant trees by the gate?"
        await page.fill("#poll-closes", "3d")
        await page.screenshot(path=OUT / "poll-new.png", full_page=True)
        await page.click("#poll-preview")
        await page.wait_for_selector("#poll-ballot")
        assert "Plant trees by the gate?" in await page.inner_text("#poll-ballot")
        assert await page.inner_text("#poll-eligible") == "1 resident now"
        await page.screenshot(path=OUT / "poll-preview.png", full_page=True)
        await page.click("#poll-publish")
        await page.wait_for_selector("#outcome")
        assert "being invited" in await page.inner_text("#outcome")
        await page.click("text=‹ Polls")
        await page.wait_for_selector("#polls")
        assert "Plant trees by the gate?" in await page.inner_text("#polls")
        await page.screenshot(path=OUT / "poll-listed.png", full_page=True)
        await run_jobs_once(app.sessions, app.services, app.deliverer, app.jobs)
        await drain(app)
        assert any("Plant trees by the gate?" in t for t in chat.texts_to("amy"))
    finally:
        await app.stop()


def test_no_cdn_in_templates():
    """Everything the pages load is served from here: no external script, style or font."""
    templates = ROOT / "web" / "dashboard" / "templates"
    for path in templates.glob("*.html"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r'(src|href)="(https?:)?//', text), path.name


async def test_approve_a_verification_and_revoke_a_role(browser, tmp_path, sqlite_url):
    """An admin approves a resident waiting for verification (the resident is told in chat)
    and revokes a staff member's role on the roles page; the staff member's open dashboard
    refuses their next page."""
    from tests.dashboard_people_support import asks, role_id

    app, chat, base = await dashboard_app(sqlite_url, tmp_path, live=True)
    try:
        await person(app, "ada", ("admin", None))
        await person(app, "sam", ("staff", "sxs-station"))
        _, request_id = await asks(app, "pia")
        sam_role = await role_id(app, "sam", "staff")

        staff = await (await browser.new_context(locale="en-US")).new_page()
        await staff.goto(await link_for(chat, "sam"))
        await staff.click("#sign-in")
        await staff.click("#nav-people")
        await staff.wait_for_selector(f"#request-{request_id}")
        assert await staff.locator("#tab-roles").count() == 0  # roles are the admins'

        page = await (await browser.new_context(locale="en-US")).new_page()
        await page.goto(await link_for(chat, "ada"))
        await page.click("#sign-in")
        await page.click("#nav-people")
        await page.wait_for_selector("#pending")
        assert "Pia (#" in await page.inner_text(f"#request-{request_id}")
        await page.screenshot(path=OUT / "verifications.png", full_page=True)
        await page.click(f"#approve-{request_id}")
        await page.wait_for_selector("#outcome")
        assert await page.inner_text("#outcome") == \
            "Approved; the resident has been told in chat."
        assert await page.locator(f"#request-{request_id}").count() == 0
        await _until(lambda: "You are now a verified resident." in chat.texts_to("pia"),
                     "the resident told")

        await page.click("#tab-roles")
        await page.wait_for_selector(f"#role-{sam_role}")
        await page.screenshot(path=OUT / "roles.png", full_page=True)
        await page.click(f"#revoke-{sam_role}")
        await page.wait_for_selector("#outcome")
        assert (await page.inner_text("#outcome")).startswith("Revoked")
        assert await page.locator(f"#role-{sam_role}").count() == 0
        await page.screenshot(path=OUT / "roles-revoked.png", full_page=True)

        response = await staff.reload()
        assert response.status == 401
        assert "Send /dashboard to the bot" in await staff.inner_text("#message")

        await page.click("#tab-audit")
        await page.fill("#audit-action", "role.revoke")
        await page.click("#audit-apply")
        await page.wait_for_selector("#audit")
        assert "role.revoke" in await page.inner_text("#audit")
        await page.screenshot(path=OUT / "audit.png", full_page=True)
    finally:
        await app.stop()
