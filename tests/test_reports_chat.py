"""Residents report problems in chat; teams work them; the loop closes with a rating."""

from __future__ import annotations

import re

from PIL import Image
from sqlalchemy import select

from bot.messaging.model import Kind, MediaRef
from storage import audit
from storage import reports as rep
from tests.report_helpers import drain as _drain
from tests.report_helpers import english_resident, grant, identity_id, jpeg_with_gps


async def test_report_from_photo_to_rating(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    await grant(app, "crew", "team", "lighting-roads")
    await grant(app, "joe", "team", "south-joint")
    await english_resident(chat, "ann")
    assert "/report — report a problem" in chat.last_text("ann")  # in /help
    assert "/queue" not in chat.last_text("ann")
    await english_resident(chat, "bob", "Victoria Garden")
    await english_resident(chat, "crew", "Victoria Garden")

    await chat.say("ann", "/report")
    assert "What kind of problem" in chat.last_text("ann")
    await chat.say("ann", "street light broken")
    assert "Send up to 3 photos" in chat.last_text("ann")
    await chat.send_media("ann", Kind.PHOTO, jpeg_with_gps())
    assert chat.last_text("ann") == "Photo 1 of 3 saved."
    await chat.press("ann", "Done with photos")
    assert "Where is it?" in chat.last_text("ann")
    await chat.share_location("ann", 30.6330, 104.0400)
    assert "Please check your report" in chat.last_text("ann")
    assert "Street lighting" in chat.last_text("ann")
    await chat.press("ann", "File the report")
    filed = chat.last_text("ann")
    ref = re.search(r"Z-\d{4}-\d{5}", filed).group(0)
    assert "Street lighting and roads crew" in filed
    assert "Expected to be fixed by" in filed

    async with app.sessions() as s:
        report = await rep.by_reference(s, ref)
        media = await rep.media_of(s, report.id)
    assert report.status == "new" and report.category == "lighting"
    assert [m.kind for m in media] == ["photo"]
    with Image.open(app.services.media.path(media[0].path)) as img:
        assert not img.getexif(), "location metadata must be stripped"

    # The lighting crew gets the card with the reporter's name; the photo follows.
    await _drain(app)
    card = [s.out for s in chat.sent if s.chat_id == "crew" and ref in s.out.text][0]
    assert "Status: new" in card.text and "Reporter:" in card.text
    assert any(s.chat_id == "crew" and s.out.photo for s in chat.sent)
    assert not any(s.chat_id == "joe" for s in chat.sent)

    # A neighbour reports the same light; they are offered ann's report and follow it.
    await chat.say("bob", "/report")
    await chat.press("bob", "Street lighting")
    await chat.say("bob", "The lamp at the gate is dark")
    await chat.press("bob", "No photos")
    await chat.share_location("bob", 30.6331, 104.0402)
    assert "Is it one of these?" in chat.last_text("bob")
    await chat.press("bob", f"Yes, it is {ref}")
    assert f"You now follow {ref}" in chat.last_text("bob")

    # Someone of another team is refused, even holding a validly signed button.
    async with app.sessions() as s:
        rid = (await rep.by_reference(s, ref)).id
    joe = await identity_id(app, "memory", "joe")
    await chat.press("joe", app.services.signer.sign(joe, "rs", rid, "a"), raw=True)
    assert "属于其他队伍" in chat.last_text("joe")

    await chat.press("crew", "Acknowledge")
    assert chat.last_text("crew") == f"Report {ref} is now: acknowledged. The reporter has been told."
    await _drain(app)
    assert chat.last_text("ann") == f"Your report {ref} (Street lighting) is now: acknowledged."
    assert chat.last_text("bob") == (
        f"A report you follow, {ref} (Street lighting), is now: acknowledged.")

    await chat.press("crew", "Fixed")
    assert "Type a short note" in chat.last_text("crew")
    await chat.say("crew", "Replaced the bulb")
    await _drain(app)
    assert "is now: fixed" in chat.last_text("ann") and "Is it fixed?" in chat.last_text("ann")
    assert "Note: Replaced the bulb" in chat.last_text("ann")
    assert "Reporter" not in "".join(chat.texts_to("bob"))

    # Not fixed: back in the queue.
    await chat.press("ann", "No, still broken")
    assert f"Report {ref} is reopened" in chat.last_text("ann")
    await _drain(app)
    assert "Reopened" in chat.last_text("crew") or any(
        "Reopened" in t for t in chat.texts_to("crew")[-3:])
    await chat.say("crew", "/queue")
    assert ref in chat.last_text("crew")

    await chat.press("crew", "Fixed")
    await chat.press("crew", "Mark fixed without a note")
    await _drain(app)
    await chat.press("ann", "Yes, it is fixed")
    assert "How would you rate" in chat.last_text("ann")
    await chat.press("ann", "4")
    assert chat.last_text("ann") == f"Thank you for rating {ref} with 4."
    await chat.press("ann", "5")
    assert chat.last_text("ann") == "This report has already been rated."
    await chat.press("ann", "No, still broken")
    assert "You already said" in chat.last_text("ann")

    # A button on a report that has moved on changes nothing.
    await chat.press("crew", "Acknowledge")
    assert "has moved on" in chat.last_text("crew")

    async with app.sessions() as s:
        report = await rep.by_reference(s, ref)
        events = await rep.events_of(s, report.id)
        actions = {e.action for e in await audit.recent(s)}
    assert report.status == "fixed" and report.rating == 4 and report.reopen_count == 1
    assert [e.to_status for e in events if e.kind == "status"] == [
        "new", "acknowledged", "fixed", "reopened", "fixed"]
    assert {"report.ack", "report.fix"} <= actions

    await chat.say("ann", "/myreports")
    assert ref in chat.last_text("ann") and "fixed" in chat.last_text("ann")
    await chat.say("bob", "/myreports")
    assert "(following)" in chat.last_text("bob")


async def test_bad_inputs_keep_the_draft(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    await english_resident(chat, "cat")
    await chat.say("cat", "/report")
    await chat.say("cat", "asdfgh qwerty")
    assert "could not tell" in chat.texts_to("cat")[-2]
    await chat.say("cat", "垃圾")  # a bare name (a sentence would be the description too)
    assert "Rubbish" in chat.last_text("cat")  # named once, by the next question
    assert "Rubbish" not in chat.texts_to("cat")[-2]
    assert "describe the problem in text" in chat.last_text("cat")
    await chat.send_media("cat", Kind.VOICE, b"", duration=0, mime_type="audio/ogg")
    assert "empty (0 seconds)" in chat.last_text("cat")
    await chat.say("cat", "x" * 1001)
    assert "too long (1001 characters; at most 1000)" in chat.last_text("cat")
    await chat.say("cat", "Bins overflowing for three days")
    assert "Send up to 3 photos" in chat.last_text("cat")
    await chat.send_media("cat", Kind.PHOTO, b"x" * (11 * 1024 * 1024))
    assert "too large" in chat.last_text("cat")
    await chat.send_media("cat", Kind.DOCUMENT, b"%PDF-1.4", mime_type="application/pdf",
                          file_name="a.pdf")
    assert "cannot use that file" in chat.last_text("cat")
    await chat.send_media("cat", Kind.PHOTO, b"not an image at all")
    assert "cannot use that file" in chat.last_text("cat")
    await chat.press("cat", "No photos")
    await chat.share_location("cat", 31.2, 121.5)  # Shanghai
    assert "outside our sub-district" in chat.last_text("cat")
    await chat.say("cat", "nowhere-ville 123")
    assert "could not find" in chat.last_text("cat")
    await chat.say("cat", "Victoria building 4")
    assert "Place: Victoria Garden building 4." in chat.texts_to("cat")[-2]
    await chat.press("cat", "Change place")
    await chat.press("cat", "At my home")
    assert "Please check your report" in chat.last_text("cat")
    await chat.press("cat", "Change description")
    await chat.send_media("cat", Kind.VOICE, b"OggS-voice", duration=7, mime_type="audio/ogg")
    assert "Voice note saved (7 s)" in chat.texts_to("cat")[-2]
    summary = chat.last_text("cat")
    assert "(voice note, 7 s)" in summary and "Rubbish" in summary
    assert "Zhonghai Mingcheng" in summary

    # A restart of the bot keeps the half-filled report.
    adapter = chat
    await app.stop()
    app2, chat2 = await make_app(sqlite_url, adapter)
    await chat2.press("cat", "File the report")
    assert "Your report is filed" in chat2.last_text("cat")
    async with app2.sessions() as s:
        row = await s.scalar(select(rep.Report).order_by(rep.Report.id.desc()))
        media = await rep.media_of(s, row.id)
    assert row.category == "rubbish" and row.estate_id is not None and not row.exact_point
    assert [(m.kind, m.duration) for m in media] == [("voice", 7)]
    # The team's card says the description is a voice note (it showed no description line).
    from services.report_cards import card_text

    async with app2.sessions() as s:
        for lang, line in (("en", "Description: (voice note, 7 s)"),
                           ("zh-Hans", "描述：（语音，7秒）")):
            card = await card_text(s, app2.services, row, lang, show_reporter=False)
            assert line in card.splitlines(), card
    # The draft is gone: its buttons now say so.
    await chat2.press("cat", "Change place")
    assert "no report in progress" in chat2.last_text("cat")


async def test_cancel_and_start_from_location(make_app, sqlite_url):
    app, chat = await make_app(sqlite_url)
    await english_resident(chat, "dan")
    await chat.share_location("dan", 30.6195, 104.044)
    assert "What kind of problem" in chat.last_text("dan")
    await chat.say("dan", "pothole")
    await chat.say("dan", "Deep hole near building 2")
    await chat.press("dan", "No photos")
    summary = chat.last_text("dan")
    assert "Roads and pavements" in summary and "Shenxianshu Compound" in summary
    await chat.press("dan", "Cancel report")
    assert "cancelled" in chat.last_text("dan")
    async with app.sessions() as s:
        assert await s.scalar(select(rep.Report.id)) is None
    await chat.send_media("dan", Kind.PHOTO, jpeg_with_gps())
    assert "What kind of problem" in chat.last_text("dan")
    assert any("Photo 1 of 3" in t for t in chat.texts_to("dan")[-3:])
    await chat.say("dan", "/cancel")
    # A photo with a caption: the caption is the description and names the category.
    chat.files["captioned"] = jpeg_with_gps()
    await chat.deliver(chat._inbound("dan", Kind.PHOTO, text="路灯坏了，晚上很黑",
                                     media=MediaRef(platform_id="captioned", size=100)))
    assert "Send up to 3 photos of the problem (1 so far)" in chat.last_text("dan")
    await chat.press("dan", "Done with photos")
    await chat.press("dan", "At my home")
    summary = chat.last_text("dan")
    assert "Street lighting" in summary and "路灯坏了，晚上很黑" in summary


async def test_a_typed_category_is_named_once(make_app, sqlite_url):
    """A category typed by name is confirmed once: by the question that follows it."""
    app, chat = await make_app(sqlite_url)
    await chat.say("li", "/start")
    await chat.press("li", "中文")
    await chat.say("li", "/cancel")
    await chat.say("li", "/report")
    chat.clear()
    await chat.say("li", "路灯")
    said = "\n".join(chat.texts_to("li"))
    assert said.count("类别：路灯照明") == 1, said
    assert "请用文字" in chat.last_text("li")
    # A sentence is the description as well: the category is said, then the next step.
    await chat.say("li", "/cancel")
    await chat.say("li", "/report")
    chat.clear()
    await chat.say("li", "楼下的路灯坏了好几天")
    said = "\n".join(chat.texts_to("li"))
    assert said.count("类别：路灯照明") == 1, said
    # Short, yet a sentence: "路灯不亮" is the description too; an English name is not.
    for typed, kept in (("路灯不亮", True), ("Street lighting", False), ("灯", False)):
        await chat.say("li", "/cancel")
        await chat.say("li", "/report")
        await chat.say("li", typed)
        assert ("请用文字" not in chat.last_text("li")) is kept, (typed, chat.last_text("li"))


async def test_the_same_problem_nearby_is_looked_up_once_per_message(make_app, sqlite_url):
    """Sharing the place of a problem already reported nearby: one look for it, by the step
    that decides to ask and the question itself together (it was two), and the question
    lists the report found."""
    from sqlalchemy import event

    from tests.report_helpers import file_report

    app, chat = await make_app(sqlite_url)
    await english_resident(chat, "ann")
    await english_resident(chat, "eve")
    ref = await file_report(chat, "ann", "Rubbish and cleanliness", "Bins full", 30.606, 104.04)
    await chat.say("eve", "/report")
    await chat.press("eve", "Rubbish and cleanliness")
    await chat.say("eve", "Bins overflowing")
    await chat.press("eve", "No photos")
    looks = []

    def seen(conn, cursor, statement, parameters, context, many) -> None:
        if statement.lstrip().startswith("SELECT") and "reports.latitude BETWEEN" in statement:
            looks.append(statement)

    event.listen(app.engine.sync_engine, "before_cursor_execute", seen)
    try:
        await chat.share_location("eve", 30.6061, 104.0401)
    finally:
        event.remove(app.engine.sync_engine, "before_cursor_execute", seen)
    assert "Is it one of these?" in chat.last_text("eve") and ref in chat.last_text("eve")
    assert len(looks) == 1
