"""bot/pushes.py driven directly, without a chat: the recipient's language is looked up (or
taken), values and button labels follow it, and a push is queued once per dedupe key."""

from __future__ import annotations

from sqlalchemy import select

from bot.messaging.model import Button
from bot.pushes import Recipient, language_of, push
from storage import outbox
from storage.outbox import OutboxMessage
from tests.notice_support import add_resident


async def test_a_push_is_rendered_in_the_recipients_language(make_app, db_url):
    app, _ = await make_app(db_url)
    texts = app.services.texts
    async with app.sessions() as s, s.begin():
        en = await add_resident(s, "ann", "victoria", lang="en")
        unset = await add_resident(s, "bo", "victoria", lang=None)
        assert await language_of(s, texts, en.id) == "en"
        assert await language_of(s, texts, unset.id) == "zh-Hans"  # the bot's default

        def no_phone(lang: str) -> str:
            return texts.get(lang, "notices.no_phone")

        def start(t):
            return [[Button(t("surveys.start"), "payload")]]

        for to in (en.id, unset.id):  # looked up from the identity
            assert await push(s, texts, to, "notices.help_alert_no_home", buttons=start,
                              priority=outbox.Priority.URGENT, group="g",
                              dedupe_key=f"k{to}", id=7, name="Ann", phone=no_phone)
        # A known language is taken as given, whatever the person's own.
        assert await push(s, texts, Recipient(unset.id, "en"), "verify.you_approved",
                          dedupe_key="known")
        assert not await push(s, texts, en.id, "verify.you_approved", dedupe_key="known")
    async with app.sessions() as s:
        rows = (await s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all()
    assert [(r.identity_id, r.priority, r.group_key) for r in rows] == [
        (en.id, int(outbox.Priority.URGENT), "g"), (unset.id, int(outbox.Priority.URGENT), "g"),
        (unset.id, int(outbox.Priority.NORMAL), None)]
    assert rows[0].payload["text"] == ("🆘 HELP requested (notice #7)\nAnn, phone no phone\n"
                                       "No home on record.")
    assert rows[0].payload["buttons"] == [[["Start", "payload"]]]
    assert rows[1].payload["text"] == "🆘 居民求助（通知 #7）\nAnn，电话 未留电话\n没有登记住址。"
    assert rows[1].payload["buttons"] == [[["开始", "payload"]]]
    assert rows[2].payload == {"text": texts.get("en", "verify.you_approved")}
    assert rows[2].payload["text"] != texts.get("zh-Hans", "verify.you_approved")
