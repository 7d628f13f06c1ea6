"""The staff dashboard in tests: an app serving the web application on a free loopback port,
sign-in links from the chat's /dashboard, and an HTTP client that keeps its cookie and reads
the CSRF token off the page."""

from __future__ import annotations

import re

import aiohttp

from bot.app import build_app
from bot.config import BotSettings, DatabaseSettings, Settings
from bot.messaging.memory import MemoryAdapter
from services.report_cards import file_report
from storage import people, roles_service
from storage.people import resident_by_id
from tests.conftest import DEMO

LINK = re.compile(r"https?://\S+/dashboard/login\?t=[\w.-]+")
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


async def dashboard_app(url: str, tmp_path, *, web_url: str | None = None, live: bool = False,
                        **bot):
    adapter = MemoryAdapter()
    bot.setdefault("flood_burst", 10_000)
    settings = Settings(
        database=DatabaseSettings(DATABASE_URL=url),
        bot=BotSettings(media_dir=tmp_path / "media", web_url=web_url or "http://127.0.0.1",
                        web_host="127.0.0.1", web_port=0, **bot))
    app = await build_app(settings, {adapter.platform: adapter}, territory=DEMO)
    # live: delivery and the jobs run as in production (the browser tests watch them work).
    await app.start(deliver=live, schedule=live)
    base = f"http://127.0.0.1:{app.web.port}"
    if web_url is None:  # links point where the server listens
        app.services.settings.bot.web_url = base
    return app, adapter, base


async def person(app, user: str, role: tuple[str, str | None] | None = None,
                 estate: str = "victoria", lang: str = "en") -> int:
    """A memory-platform person with a home, a language and (optionally) a role."""
    async with app.sessions() as s, s.begin():
        who = await roles_service.find_resident(s, f"memory:{user}", create=True)
        who.language = lang
        who.display_name = user.title()
        home = await people_estate(s, estate)
        who.estate_id = home
        if role is not None:
            await roles_service.change_role(s, f"memory:{user}", role[0], role[1],
                                            actor_id=None, grant=True, create_missing=True)
        return who.id


async def people_estate(session, code: str) -> int:
    from storage.territory import estate_by_code

    return (await estate_by_code(session, code)).id


async def revoke(app, user: str, role: tuple[str, str | None]) -> None:
    async with app.sessions() as s, s.begin():
        await roles_service.change_role(s, f"memory:{user}", role[0], role[1], actor_id=None,
                                        grant=False, create_missing=False)


async def link_for(chat: MemoryAdapter, user: str) -> str:
    await chat.say(user, "/dashboard")
    found = LINK.search(chat.last_text(user))
    assert found, chat.last_text(user)
    return found.group(0)


async def file(app, resident_id: int, category: str, text: str, lat: float, lon: float,
               **kw) -> str:
    """A report filed as the chat files one (routed, numbered, the team's card queued)."""
    async with app.sessions() as s, s.begin():
        resident = await resident_by_id(s, resident_id)
        report = await file_report(s, app.services, resident, category=category,
                                   description=text, latitude=lat, longitude=lon,
                                   exact_point=True, **kw)
        return report.reference


async def make_poll(app, committee: str, question: str, options: list[str], *, author: int,
                    anonymous: bool = True, live: bool = False, votes: tuple[int, ...] = ()
                    ) -> int:
    """A poll of a committee (as /newpoll makes one) and a verified voter per vote, each
    choosing the option at that position."""
    from datetime import timedelta

    from storage import polls
    from storage.audience import Audience
    from storage.people import Resident
    from storage.territory import estate_by_code
    from tests.deliberation_helpers import make_resident

    now = app.services.clock()
    codes = {"victoria": "victoria", "zhonghai": "zhonghai-mingcheng"}
    async with app.sessions() as s, s.begin():
        committee_id = (await estate_by_code(s, codes[committee])).committee_id
        poll = await polls.create(s, polls.PollDraft(
            question, options, False, Audience("committee", committee_id, True), False,
            anonymous, live, now + timedelta(days=2), None, committee_id), author_id=author)
    for i, choice in enumerate(votes):
        voter = await make_resident(app.sessions, "memory", f"voter-{poll.id}-{i}",
                                    estate=codes[committee])
        async with app.sessions() as s, s.begin():
            outcome = await polls.cast(s, poll.id, await s.get(Resident, voter), [choice], now,
                                       ballot_key=app.services.ballot_key)
            assert outcome == polls.Outcome.CAST, outcome
    return poll.id


class Client:
    """A browser stand-in: a cookie jar (loopback IPs allowed) and the last page's CSRF."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                          headers={"Accept-Language": "en"})
        self.csrf: str | None = None
        self.last: aiohttp.ClientResponse | None = None
        self.text = ""

    async def close(self) -> None:
        await self.http.close()

    def _url(self, path: str) -> str:
        return path if path.startswith("http") else self.base + path

    async def get(self, path: str, **kw) -> int:
        async with self.http.get(self._url(path), allow_redirects=False, **kw) as r:
            self.last, self.text = r, await r.text(errors="replace")
        found = CSRF.search(self.text)
        if found:
            self.csrf = found.group(1)
        return r.status

    async def post(self, path: str, data: dict | None = None, *, csrf: bool = True,
                   **kw) -> int:
        body = dict(data or {})
        if csrf and self.csrf:
            body.setdefault("csrf", self.csrf)
        async with self.http.post(self._url(path), data=body, allow_redirects=False,
                                  **kw) as r:
            self.last, self.text = r, await r.text(errors="replace")
        return r.status

    async def post_file(self, path: str, fields: dict, name: str, filename: str,
                        data: bytes, content_type: str = "image/jpeg") -> int:
        """A multipart form (the fix form with its photo), with the page's CSRF token."""
        form = aiohttp.FormData()
        form.add_field("csrf", self.csrf or "")
        for key, value in fields.items():
            form.add_field(key, value)
        form.add_field(name, data, filename=filename, content_type=content_type)
        async with self.http.post(self._url(path), data=form, allow_redirects=False) as r:
            self.last, self.text = r, await r.text(errors="replace")
        return r.status

    async def sign_in(self, link: str) -> int:
        assert await self.get(link) == 200
        token = link.split("t=", 1)[1]
        status = await self.post("/dashboard/login", {"t": token}, csrf=False)
        if status == 303:
            await self.get("/dashboard/")
        return status


__all__ = ["Client", "dashboard_app", "file", "link_for", "make_poll", "people", "person",
           "revoke"]
