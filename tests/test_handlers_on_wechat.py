"""The handler tests written for the memory adapter, unchanged, on WeChat: the real WeChat
adapter behind the fake WeChat, every press a number typed back (tests/wechat_chat.py).

Each module below is imported whole; this module's `make_app` replaces the memory adapter by
WeChat for its tests. The adapter is registered under the name "memory", the platform the
tests' helpers give the people they put in the database directly (make_resident(..., "memory",
...)); the fake takes every openid for a follower who just wrote (auto_follow).

The other handler modules do not pass unchanged on WeChat, for what WeChat cannot do rather
than for the adapter: forged or raw payloads (WeChat has no payloads), edits in place (a
ballot's ticks; WeChat sends a new message), a press on a message older than the latest prompt
(a number means the latest prompt's choices only), a photo with its caption (two messages on
WeChat), Telegram-style voice notes (WeChat's are AMR), and the memory adapter's own levers
(blocked, flood_next, deliver)."""

from __future__ import annotations

import pytest

import tests.test_ballot_secrecy as ballot_secrecy
import tests.test_cap as cap
import tests.test_demo_newcomer as demo_newcomer
import tests.test_guides_questions as guides_questions
import tests.test_onboarding as onboarding
from bot.app import build_app
from bot.messaging.wechat import WeChatAdapter
from tests.conftest import DEMO, make_settings
from tests.fakes.wechat_server import TEMPLATE_IDS, FakeWeChat
from tests.wechat_chat import WeChatChat

for _module in (onboarding, demo_newcomer, guides_questions, ballot_secrecy, cap):
    globals().update({name: test for name, test in vars(_module).items()
                      if name.startswith("test_") and callable(test)})


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
