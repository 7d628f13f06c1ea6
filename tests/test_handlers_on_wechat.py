"""The handler tests written for the memory adapter, unchanged, on WeChat: the real WeChat
adapter behind the fake WeChat, every press a number typed back (tests/wechat_chat.py).

Every test of the modules below that builds an app (takes `make_app`) is collected here too,
and this module's `make_app` puts WeChat in place of the memory adapter. The adapter is
registered under the name "memory", the platform the tests' helpers give the people they put
in the database directly (make_resident(..., "memory", ...)); the fake takes every openid for a
follower who just wrote (auto_follow).

The tests that cannot apply on WeChat are listed in NOT_ON_WECHAT, each with the reason, and
skipped with it; everything else runs. The reasons are what WeChat cannot do, not what the
adapter gets wrong: a typed number means the latest prompt's choices only, so a press on an
older message (a double tap, an old card or list, a button pressed after the conversation moved
on) cannot be made; there are no button payloads to forge; no edits in place, toasts, rows of
buttons side by side, files or captions on photos; voice notes are AMR, not Telegram's Ogg;
callbacks are XML (no NUL byte) and carry no display name; and some tests pull the memory
adapter's own levers (deliver, files). The session's summary prints how many ran here
(conftest.py)."""

from __future__ import annotations

import types

import pytest

import tests.test_assist as assist
import tests.test_bad_input as bad_input
import tests.test_ballot_secrecy as ballot_secrecy
import tests.test_cap as cap
import tests.test_demo_newcomer as demo_newcomer
import tests.test_guides as guides
import tests.test_guides_questions as guides_questions
import tests.test_households as households
import tests.test_notices as notices
import tests.test_onboarding as onboarding
import tests.test_polls as polls
import tests.test_proposals as proposals
import tests.test_reports_chat as reports_chat
import tests.test_reports_staff as reports_staff
import tests.test_staff as staff
import tests.test_surveys as surveys
import tests.test_trust as trust
import tests.test_volunteering_chat as volunteering_chat
import tests.test_weather as weather
from bot.app import build_app
from bot.messaging.wechat import WeChatAdapter
from tests.conftest import DEMO, make_settings
from tests.fakes.wechat_server import TEMPLATE_IDS, FakeWeChat
from tests.wechat_chat import WeChatChat

MODULES = (onboarding, demo_newcomer, guides_questions, ballot_secrecy, cap, notices, guides,
           trust, weather, volunteering_chat, polls, households, bad_input, reports_staff,
           reports_chat, assist, proposals, surveys, staff)

OLDER = "presses a button of an older message"
FORGED = "presses a payload the test signed or forged itself; WeChat has no payloads to send"

# Test name (module.name where two modules have one of that name) -> why it cannot apply on
# WeChat. The one place such tests are named.
NOT_ON_WECHAT: dict[str, str] = {
    # notices
    "test_emergency_answers_reach_the_zone_team":
        "reads the buttons' rows (safe and help side by side); WeChat shows a numbered line "
        "per choice, and the test then presses help on the notice after answering safe "
        f"({OLDER})",
    "test_scheduled_notice_edit_cancel_and_fires_once":
        f"{OLDER}: #2 of the /notices list after editing #1, and cancel pressed again",
    "test_subscribe_menu": "the menu is edited in place (edit_of); WeChat has no edits",
    "test_notice_with_photo":
        "a photo with its caption is one message; on WeChat the image and the text are two",
    "test_replies_go_ahead_of_a_bulk_backlog":
        "reads the order the memory adapter was called in across chats; WeChat's sends run "
        "concurrently over HTTP, so their arrival order across chats is not the grant order",
    # guides
    "test_browse_by_topic_and_free_text": f"{FORGED} (a stale guide number)",
    "test_ask_staff_answer_comes_back_once": f"{OLDER}: Ask staff pressed twice",
    "test_question_bad_input_limits_and_no_staff": f"{FORGED} (an unknown topic)",
    "test_free_text_matching_no_guide_is_offered_to_staff":
        f"{OLDER}: the staff offer pressed after /profile",
    # trust
    "test_a_129_character_name_does_not_lock_its_owner_out":
        "a Telegram display name; WeChat's callbacks carry none",
    "test_nul_bytes_in_commands_and_text_are_stripped":
        "XML cannot carry a NUL byte: WeChat never posts one",
    "test_a_location_without_coordinates_is_refused":
        "delivers hand-made updates (the memory adapter's deliver)",
    "test_rotated_key_is_accepted_for_the_grace_period_only":
        f"{OLDER}: the old key's button again after the grace period",
    "test_staff_buttons_on_an_old_report_card_expire":
        f"{OLDER} (an old card's), and reads the toast (notice); WeChat has no toasts",
    # volunteering
    "test_a_revoked_organiser_loses_control_of_their_activities": f"{OLDER}: Publish twice",
    "test_publish_sign_up_waitlist_cancel_promote_remind_check_in_hours":
        f"{OLDER}: Publish twice",
    "test_cancel_shift_tells_everyone_and_overlap_is_refused": f"{OLDER}: Publish twice",
    "test_announcements_follow_event_subscriptions_and_quiet_hours": f"{OLDER}: Publish twice",
    "test_tomorrow_shifts_hours_served_and_a_chinese_roster":
        "reads the CSV roster sent as a file; WeChat's customer-service messages take no files",
    # polls
    "test_named_poll_vote_change_close_and_results":
        f"{OLDER}: the vote changed on the ballot after voting",
    "test_household_and_anonymity": f"{OLDER}: a second vote on the ballot after submitting",
    "test_forged_and_foreign_payloads": FORGED,
    "test_committee_closes_a_poll_early": FORGED,
    # bad input
    "test_duplicate_update_is_handled_once":
        "delivers one hand-made update twice (the memory adapter's deliver); WeChat's retried "
        "callbacks are tested in tests/test_wechat.py",
    "test_forged_and_foreign_button_payloads_are_refused": FORGED,
    # reports
    "test_reassign_duplicate_close_queue": f"{OLDER}: a report of the /queue list after closing "
                                           "another",
    "test_stats_and_csv": "reads the CSV export sent as a file; WeChat's customer-service "
                          "messages take no files",
    "test_report_from_photo_to_rating": f"{FORGED} (a rating)",
    "test_cancel_and_start_from_location": "reads the memory adapter's files",
    "reports_chat.test_bad_inputs_keep_the_draft":
        "sends a Telegram voice note (Ogg, with its length); WeChat's are AMR, measured on "
        "arrival: tests/test_wechat.py",
    # assisted votes, proposals, surveys, staff
    "test_household_poll_dispute_and_results": f"{OLDER}: This was not me, pressed twice",
    "test_proposal_to_agenda_decision_and_done": f"{OLDER}: Support pressed twice",
    "test_adopted_proposal_becomes_an_activity_supporters_first_hours_shown": FORGED,
    "test_survey_of_196_residents": f"{OLDER}: an answer to the survey after it was saved",
    "test_committee_closes_a_survey_early": FORGED,
    "test_invite_pending_and_grant":
        f"{OLDER}: Skip pressed twice (skipping the building skips the unit too)",
}


def _copy(test: types.FunctionType, reason: str | None) -> types.FunctionType:
    """The test as a function of this module's, its marks its own: a skip added here does not
    skip the test in its module."""
    copy = types.FunctionType(test.__code__, test.__globals__, test.__name__,
                              test.__defaults__, test.__closure__)
    copy.__dict__.update(test.__dict__)
    copy.__kwdefaults__ = test.__kwdefaults__
    copy.__qualname__ = test.__qualname__
    marks = list(getattr(test, "pytestmark", []))
    if reason is not None:
        marks.append(pytest.mark.skip(reason=f"not on WeChat: {reason}"))
    copy.pytestmark = marks  # type: ignore[attr-defined]
    return copy


COLLECTED: list[str] = []  # the names in NOT_ON_WECHAT's terms
for _module in MODULES:
    _short = _module.__name__.removeprefix("tests.test_")
    for _name, _test in vars(_module).items():
        if not (_name.startswith("test_") and isinstance(_test, types.FunctionType)):
            continue
        if "make_app" not in _test.__code__.co_varnames[:_test.__code__.co_argcount]:
            continue
        _key, _as = _name, _name
        if _name in globals():  # another module's test of that name came first
            _key, _as = f"{_short}.{_name}", f"{_name}__{_short}"
        globals()[_as] = _copy(_test, NOT_ON_WECHAT.get(_key))
        COLLECTED.append(_key)
    # Fixtures of the module's own (weather's fake Open-Meteo).
    globals().update({n: f for n, f in vars(_module).items()
                      if hasattr(f, "_fixture_function_marker") and n not in globals()})


def test_every_test_not_on_wechat_exists_and_says_why():
    assert sorted(set(NOT_ON_WECHAT) - set(COLLECTED)) == []
    assert all(len(reason) > 20 for reason in NOT_ON_WECHAT.values())


@pytest.fixture
async def make_app(tmp_path):
    """As conftest's, with WeChat in place of the memory adapter."""
    fake = FakeWeChat(auto_follow=True)
    await fake.start()
    apps = []

    async def build(url: str, adapter=None, *, territory=True, deliver=False, **bot):
        wechat = WeChatAdapter(fake.app_id, fake.app_secret, fake.token,
                               api_base=fake.base_url, host="127.0.0.1", port=0,
                               templates=TEMPLATE_IDS, per_second=1000,
                               per_chat_per_second=1000, platform="memory")
        bot.setdefault("flood_burst", 10_000)
        app = await build_app(make_settings(url, tmp_path, **bot), {"memory": wechat},
                              territory=DEMO if territory else None)
        await app.start(deliver=deliver, schedule=False)
        fake.callback_url = f"http://127.0.0.1:{wechat.bound_port}/wechat"
        apps.append(app)
        return app, WeChatChat(fake, wechat)

    yield build
    for app in apps:
        await app.stop()
    await fake.stop()
