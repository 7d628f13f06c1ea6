"""bot/pushes.py driven directly, without a chat: the recipient's language is looked up (or
taken), values and button labels follow it, and a push is queued once per dedupe key."""

from __future__ import annotations

import io
import re
import tokenize
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from bot.messaging.model import Button
from bot.pushes import Recipient, language_of, push, translator
from handlers.notice_jobs import fan_out, report_progress
from handlers.poll_ballots import _fanout_step, invitation, results_text
from handlers.volunteering_organise import send_announcements
from services import report_cards as filing
from services.survey_results import push_results, table_chunks
from storage import notices, outbox, polls, surveys
from storage import reports as rep
from storage import volunteering as vol
from storage.audience import Audience
from storage.outbox import OutboxMessage
from storage.people import resident_by_id
from storage.territory import Estate
from tests.notice_support import add_resident

ROOT = Path(__file__).resolve().parent.parent


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


# -- every kind of push reaches each recipient in their language ---------------------------
# Two readers in the same building: one chose English, one chose nothing (the bot's default,
# zh-Hans). Each job or service that pushes is driven directly, without a chat.

async def _readers(s):
    """The two readers' identities, and their estate."""
    en = await add_resident(s, "ann", "victoria", "1", lang="en")
    zh = await add_resident(s, "bo", "victoria", "1", lang=None)
    return en, zh, await s.scalar(select(Estate).where(Estate.code == "victoria"))


def _unsigned(services, identity_id: int, payloads: list[dict]) -> list[dict]:
    """The payloads with each button's signed payload replaced by what it verifies to (for
    this identity: a payload signed for another would verify to None, and fail)."""
    out = [{**p, "buttons": [[[label, services.signer.verify(identity_id, data)]
                              for label, data in row] for row in p.get("buttons") or []]}
           for p in payloads]
    assert all(v is not None for p in out for row in p["buttons"] for _, v in row)
    return out


async def _payloads(app, group: str) -> dict[int, list[dict]]:
    async with app.sessions() as s:
        rows = (await s.scalars(select(OutboxMessage).where(OutboxMessage.group_key == group)
                                .order_by(OutboxMessage.id))).all()
    found: dict[int, list[dict]] = {}
    for r in rows:
        found.setdefault(r.identity_id, []).append(r.payload)
    return found


async def test_notices_and_their_progress_in_each_readers_language(make_app, db_url):
    app, _ = await make_app(db_url)
    texts = app.services.texts
    async with app.sessions() as s, s.begin():
        en, zh, estate = await _readers(s)
        notice = await notices.create_notice(
            s, category="emergency", audience_kind="estate", audience_ids=[estate.id],
            estate_ids=[estate.id], building_ids=None, texts={"zh-Hans": "停水", "en": "No water"},
            sender_identity_id=en.id)
    assert await fan_out(app.sessions, app.services, None) == 2
    got = await _payloads(app, notices.group_of(notice.id))
    assert got[en.id][0]["text"] == "【Emergency】\nNo water"
    assert got[zh.id][0]["text"] == "【紧急通知】\n停水"
    assert [b[0] for b in got[en.id][0]["buttons"][0]] == [
        texts.get("en", "notices.btn_safe"), texts.get("en", "notices.btn_help")]
    assert [b[0] for b in got[zh.id][0]["buttons"][0]] == [
        texts.get("zh-Hans", "notices.btn_safe"), texts.get("zh-Hans", "notices.btn_help")]
    await report_progress(app.sessions, app.services, None)
    (progress,) = (await _payloads(app, notices.progress_group(notice.id)))[en.id]
    assert progress["text"].startswith(f"Notice #{notice.id}: going out…\nSent 0 of 2")


async def test_report_cards_and_status_in_each_readers_language(make_app, db_url):
    app, _ = await make_app(db_url)
    services, texts = app.services, app.services.texts
    async with app.sessions() as s, s.begin():
        en, zh, _ = await _readers(s)
        reporter = await resident_by_id(s, zh.resident_id)
        report = await filing.file_report(s, services, reporter, category="other",
                                          description="lift stuck")
        await rep.follow(s, report.id, en.resident_id)
        for who in (en, zh):
            await filing.push_card(s, services, report, who.resident_id,
                                   header_key="reports.card_header_overdue")
        await filing.notify_status(s, services, report, note="on our way")
    got = await _payloads(app, f"report:{report.id}")
    card_en, status_en = got[en.id][-2:]
    card_zh, status_zh = got[zh.id][-2:]
    assert card_en["text"].startswith(texts.get("en", "reports.card_header_overdue"))
    assert card_zh["text"].startswith(texts.get("zh-Hans", "reports.card_header_overdue"))
    assert texts.get("en", "reports.btn_ack") in str(card_en["buttons"])
    assert texts.get("zh-Hans", "reports.btn_ack") in str(card_zh["buttons"])
    assert status_en["text"].startswith(texts.get(
        "en", "reports.update_followed", ref=report.reference,
        category=filing.category_name(services, "en", "other"),
        status=filing.status_label(services, "en", report)))
    assert status_en["text"].endswith(texts.get("en", "reports.update_note", note="on our way"))
    assert status_zh["text"].startswith(texts.get(
        "zh-Hans", "reports.update_yours", ref=report.reference,
        category=filing.category_name(services, "zh-Hans", "other"),
        status=filing.status_label(services, "zh-Hans", report)))
    assert status_en["text"] != status_zh["text"]


async def test_poll_invitations_and_results_in_each_readers_language(make_app, db_url):
    app, _ = await make_app(db_url)
    services, texts = app.services, app.services.texts
    async with app.sessions() as s, s.begin():
        en, zh, estate = await _readers(s)
        poll = await polls.create(s, polls.PollDraft(
            question="Repaint?", options=["yes", "no"], multiple=False,
            audience=Audience("estate", estate.id, False), per_household=False,
            anonymous=False, live_results=False, closes_at=polls.utcnow() + timedelta(hours=1),
            quorum=None, committee_id=estate.committee_id), en.resident_id)
    while await _fanout_step(app.sessions, services, poll.id):
        pass
    invited = await _payloads(app, f"poll:{poll.id}")
    async with app.sessions() as s:
        row, options = await polls.get_poll(s, poll.id), await polls.options_of(s, poll.id)
    for who, lang in ((en, "en"), (zh, "zh-Hans")):
        # Vote buttons carry the second they were signed: compared by what they verify to.
        assert _unsigned(services, who.id, invited[who.id]) == _unsigned(
            services, who.id, [invitation(services, lang, who.id, row, options).to_json()])
    assert invited[en.id] != invited[zh.id]
    async with app.sessions() as s, s.begin():
        assert await polls.close(s, poll.id, polls.utcnow(), ballot_key=None)
    while await _fanout_step(app.sessions, services, poll.id):
        pass
    got = await _payloads(app, f"poll:{poll.id}")
    async with app.sessions() as s:
        row = await polls.get_poll(s, poll.id)
        res = await polls.results(s, row)
    for who, lang in ((en, "en"), (zh, "zh-Hans")):
        result = [p for p in got[who.id] if p not in invited[who.id]]
        assert [p["text"] for p in result] == [results_text(translator(texts, lang), row, res)]
    assert texts.get("en", "polls.results_title").split("{")[0] in got[en.id][-1]["text"]


async def test_survey_results_in_each_readers_language(make_app, db_url):
    app, _ = await make_app(db_url)
    services, texts = app.services, app.services.texts
    async with app.sessions() as s, s.begin():
        en, zh, estate = await _readers(s)
        survey = await surveys.create(
            s, title="Parking", questions=[surveys.QuestionDraft("single", "Enough?",
                                                                 ["yes", "no"])],
            audience=Audience("estate", estate.id, False),
            closes_at=polls.utcnow() + timedelta(days=1), committee_id=estate.committee_id,
            author_id=en.resident_id)
        for who in (en, zh):
            await surveys.response_for(s, survey.id, who.resident_id, create=True)
        await push_results(s, services, survey)
    got = await _payloads(app, f"survey:{survey.id}")
    async with app.sessions() as s:
        row = await surveys.get_survey(s, survey.id)
        results = await surveys.results(s, row)
        started, completed = await surveys.respondents(s, survey.id)
    for who, lang in ((en, "en"), (zh, "zh-Hans")):
        assert [p["text"] for p in got[who.id]] == table_chunks(
            translator(texts, lang), row, results, started, completed)
    assert got[en.id] != got[zh.id]


async def test_volunteering_announcements_in_each_readers_language(make_app, db_url):
    app, _ = await make_app(db_url)
    services, texts = app.services, app.services.texts
    async with app.sessions() as s, s.begin():
        organiser = await add_resident(s, "org", "victoria", "1", lang="en")
        en, zh, estate = await _readers(s)
        start = services.clock() + timedelta(days=2)
        activity = await vol.create_activity(
            s, title="Lanterns", category="culture", description="", audience="estate",
            organiser_id=organiser.resident_id, estate_id=estate.id,
            shifts=[vol.ShiftSpec(start, start + timedelta(hours=2), 5)])
        await vol.publish(s, activity.id)
        assert await vol.request_announcement(s, activity.id)
    await send_announcements(app.sessions, services, None)
    got = await _payloads(app, f"vol-ann:{activity.id}")
    assert organiser.id not in got  # the organiser is not told of their own activity
    for who, lang in ((en, "en"), (zh, "zh-Hans")):
        (payload,) = got[who.id]
        category = texts.get(lang, "volunteering.cat_culture")
        assert payload["text"].startswith(texts.get(lang, "volunteering.announcement",
                                                    title="Lanterns", category=category,
                                                    when=payload["text"][-16:])[:20])
        assert category in payload["text"]
        assert payload["buttons"][0][0][0] == texts.get(lang, "volunteering.see_activity")
    assert got[en.id][0]["text"] != got[zh.id][0]["text"]


# -- nothing outside bot/pushes.py renders a push by hand -------------------------------------

HAND_RENDERED = (
    # picking the recipient's language: theirs, else the bot's default
    re.compile(r"\.language\s+or\b"),
    re.compile(r"\blang\s+or\s+default\b"),
    re.compile(r"settings\.bot\.default_language"),
    # writing a push to the outbox past bot/pushes.py
    re.compile(r"\benqueue(_many)?\("),
)
# The mechanism itself, the outbox it writes to, the language of the person writing to us
# (dispatch: replies are in the writer's language) and where the default is set (the app).
ALLOWED = {"bot/pushes.py", "storage/outbox.py", "bot/dispatch.py", "bot/app.py"}


def hand_rendered(source: str) -> list[str]:
    """The lines of `source` whose code (comments left out) renders a push by hand."""
    lines = source.splitlines()
    code = list(lines)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            code[row - 1] = code[row - 1][:col]
    return [line.strip() for line, c in zip(lines, code, strict=True)
            if any(p.search(c) for p in HAND_RENDERED)]


def test_no_push_is_rendered_by_hand():
    found = {}
    for package in ("bot", "handlers", "services", "storage"):
        for path in (ROOT / package).rglob("*.py"):
            name = path.relative_to(ROOT).as_posix()
            if name in ALLOWED or "migrations" in path.parts:
                continue
            if lines := hand_rendered(path.read_text(encoding="utf-8")):
                found[name] = lines
    assert found == {}


def test_the_checker_sees_a_push_rendered_by_hand():
    old = '''
    lang = resident.language or services.settings.bot.default_language
    await outbox.enqueue(session, ident.id, Outbound(text=texts.get(lang, "k")).to_json())
    rows.append(payload)  # outbox.enqueue_many(session, rows) in a comment is fine
    await outbox.enqueue_many(session, rows)
'''
    assert hand_rendered(old) == [
        "lang = resident.language or services.settings.bot.default_language",
        'await outbox.enqueue(session, ident.id, Outbound(text=texts.get(lang, "k")).to_json())',
        "await outbox.enqueue_many(session, rows)"]
