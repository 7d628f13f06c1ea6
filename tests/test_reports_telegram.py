"""A report end to end through aiogram and the fake Bot API: a resident files with a voice note,
a photo and a location; the lighting crew gets the card, acknowledges and fixes; the resident
hears each step and rates; a neighbour is offered the same report and follows it."""

from __future__ import annotations

import re

from storage import roles_service
from tests.fakes.telegram_server import FakeTelegram
from tests.report_helpers import jpeg_with_gps
from tests.test_telegram_e2e import _button, _start

ANN, BOB, CREW = 5001, 5002, 6001


async def _press(fake, uid, label, entry, **kw):
    fake.push_callback(uid, _button(fake, entry, label), message_id=entry["message_id"], **kw)


async def test_report_through_telegram(tmp_path):
    fake = FakeTelegram()
    await fake.start()
    app = None
    try:
        app = await _start(tmp_path, fake)
        async with app.sessions() as s, s.begin():
            await roles_service.change_role(s, f"telegram:{CREW}", "team", "lighting-roads",
                                            actor_id=None, grant=True, create_missing=True)
        en = {"language_code": "en"}

        fake.push_message(ANN, "/report", **en)
        ask = await fake.wait_for_text(ANN, "What kind of problem")
        mark = len(fake.sent)
        await _press(fake, ANN, "Street lighting", ask, **en)
        await fake.wait_for_text(ANN, "send a voice note", since=mark)

        mark = len(fake.sent)
        fake.push_voice(ANN, b"OggS\x00voice-bytes", duration=0, **en)
        await fake.wait_for_text(ANN, "empty (0 seconds)", since=mark)
        fake.push_voice(ANN, b"OggS\x00voice-bytes", duration=4, **en)
        await fake.wait_for_text(ANN, "Voice note saved (4 s)", since=mark)
        await fake.wait_for_text(ANN, "Send up to 3 photos", since=mark)

        mark = len(fake.sent)
        fake.push_photo(ANN, jpeg_with_gps(), **en)
        saved = await fake.wait_for_text(ANN, "Photo 1 of 3 saved.", since=mark)
        mark = len(fake.sent)
        await _press(fake, ANN, "Done with photos", saved, **en)
        await fake.wait_for_text(ANN, "Where is it?", since=mark)

        mark = len(fake.sent)
        fake.push_location(ANN, 31.23, 121.47, **en)
        await fake.wait_for_text(ANN, "outside our sub-district", since=mark)
        fake.push_location(ANN, 30.6330, 104.0400, **en)
        summary = await fake.wait_for_text(ANN, "Please check your report", since=mark)
        assert "(voice note, 4 s)" in summary["text"] and "Photos: 1" in summary["text"]
        mark = len(fake.sent)
        await _press(fake, ANN, "✅ File the report", summary, **en)
        filed = await fake.wait_for_text(ANN, "Your report is filed", since=mark)
        ref = re.search(r"Z-\d{4}-\d{5}", filed["text"]).group(0)
        assert "Street lighting and roads crew" in filed["text"]

        # The crew's card: text with buttons, the photo and the voice note.
        card = await fake.wait_for_text(CREW, ref, timeout=10)
        assert [t for t, _ in fake.buttons(card)][:2] == ["受理", "处理中"]
        await fake.wait_for(lambda e: e["chat_id"] == CREW and e["method"] == "sendPhoto",
                            timeout=10)
        await fake.wait_for(lambda e: e["chat_id"] == CREW and e["method"] == "sendVoice",
                            timeout=10)

        mark = len(fake.sent)
        await _press(fake, CREW, "受理", card)
        await fake.wait_for_text(CREW, "已受理", since=mark)
        await fake.wait_for_text(ANN, f"Your report {ref} (Street lighting) is now: acknowledged",
                                 since=mark, timeout=10)

        # A neighbour reports the same lamp and is offered the open report.
        fake.push_message(BOB, "/report", **en)
        ask = await fake.wait_for_text(BOB, "What kind of problem")
        await _press(fake, BOB, "Street lighting", ask, **en)
        await fake.wait_for_text(BOB, "send a voice note")
        fake.push_message(BOB, "The lamp by the gate is out", **en)
        photos = await fake.wait_for_text(BOB, "Send up to 3 photos")
        await _press(fake, BOB, "No photos", photos, **en)
        await fake.wait_for_text(BOB, "Where is it?")
        fake.push_location(BOB, 30.6332, 104.0402, **en)
        offer = await fake.wait_for_text(BOB, "Is it one of these?")
        mark = len(fake.sent)
        await _press(fake, BOB, f"Yes, it is {ref}", offer, **en)
        await fake.wait_for_text(BOB, f"You now follow {ref}", since=mark)

        mark = len(fake.sent)
        await _press(fake, CREW, "已解决", card)
        await fake.wait_for_text(CREW, "请输入给报告人的简短说明", since=mark)
        fake.push_message(CREW, "已更换灯泡")
        fixed = await fake.wait_for_text(ANN, "Is it fixed?", since=mark, timeout=10)
        assert "Note: 已更换灯泡" in fixed["text"]
        await fake.wait_for_text(BOB, f"A report you follow, {ref}", since=mark, timeout=10)

        mark = len(fake.sent)
        await _press(fake, ANN, "Yes, it is fixed", fixed, **en)
        rating = await fake.wait_for_text(ANN, "How would you rate", since=mark)
        await _press(fake, ANN, "5", rating, **en)
        await fake.wait_for_text(ANN, f"Thank you for rating {ref} with 5.", since=mark)
        assert not any("Reporter" in (e["text"] or "") for e in fake.messages_to(BOB))
        assert not fake.internal_errors
    finally:
        if app is not None:
            await app.stop()
        await fake.stop()
