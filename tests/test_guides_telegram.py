"""The guide question → staff answer loop end to end, through aiogram and the fake Bot API."""

from __future__ import annotations

from tests.fakes.telegram_server import FakeTelegram
from tests.notice_support import add_resident
from tests.test_telegram_e2e import _button, _start


async def test_question_to_staff_and_answer_back(tmp_path):
    from storage import roles_service

    fake = FakeTelegram()
    await fake.start()
    app = None
    try:
        app = await _start(tmp_path, fake)
        resident, staff = 5005, 6006
        async with app.sessions() as s, s.begin():
            await add_resident(s, str(resident), "zhonghai-mingcheng", platform="telegram")
            await roles_service.change_role(s, f"telegram:{staff}", "staff", "sxs-station",
                                            actor_id=None, grant=True, create_missing=True)

        fake.push_message(resident, "how do I register my residence", language_code="en")
        found = await fake.wait_for_text(resident, "may help")
        assert [t for t, _ in fake.buttons(found)] == ["Getting a residence permit",
                                                       "Temporary residence registration"]

        mark = len(fake.sent)
        fake.push_message(resident, "/guide can I keep chickens on my balcony",
                          language_code="en")
        offer = await fake.wait_for_text(resident, "I found no guide", since=mark)
        fake.push_callback(resident, _button(fake, offer, "💬 Ask staff"),
                           message_id=offer["message_id"], language_code="en")
        await fake.wait_for_text(resident, "sent to community staff", since=mark)

        question = await fake.wait_for_text(staff, "居民提问（中海名城）")
        assert "can I keep chickens on my balcony" in question["text"]
        mark = len(fake.sent)
        fake.push_callback(staff, _button(fake, question, "回复"),
                           message_id=question["message_id"])
        await fake.wait_for_text(staff, "请输入给居民的回复", since=mark)
        fake.push_message(staff, "Poultry is not allowed in residential buildings.")
        await fake.wait_for_text(staff, "回复已发送给居民", since=mark)
        answer = await fake.wait_for_text(resident, "Community staff answered", since=mark)
        assert answer["text"].endswith("Poultry is not allowed in residential buildings.")

        mark = len(fake.sent)
        fake.push_callback(staff, _button(fake, question, "回复"),
                           message_id=question["message_id"])
        await fake.wait_for_text(staff, "已经有工作人员回复过了", since=mark)
        assert not fake.internal_errors
    finally:
        if app is not None:
            await app.stop()
        await fake.stop()
