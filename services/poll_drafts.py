"""Drafting and publishing a poll or a survey: one rule each for the chat's /newpoll and
/newsurvey (handlers/polls.py, handlers/surveys.py, handlers/drafting.py) and the staff
dashboard's forms (web/dashboard/polls.py, surveys.py). What a question, its options, a quorum,
a title may be; a closing time typed by a person; which areas an author may address; and the
publishing itself (the area still in scope, the closing still ahead, audited).

A problem is the key of the text that explains it, in the feature's namespace ("polls." or
"surveys."), so the chat and the web say the same thing."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from services.notice_time import BadTime, parse_local
from storage import audit, polls, surveys, territory
from storage.access import Scope
from storage.audience import Audience, count

MIN_TEXT = 3
MAX_QUESTION, MAX_OPTION = 300, 60
MAX_QUORUM = 1_000_000
MAX_TITLE, MAX_OPTIONS = 200, 12
MAX_DAYS = 90
MIN_MINUTES = 5  # a poll or survey closing sooner could not reach anyone
AREA_KINDS = ("committee", "estate", "building")
_RELATIVE = re.compile(r"^(\d{1,4})\s*([hd])$", re.IGNORECASE)


# -- polls -------------------------------------------------------------------------------------
def question_problem(text: str) -> str | None:
    """A poll's question: 3 to MAX_QUESTION characters."""
    return None if MIN_TEXT <= len(text) <= MAX_QUESTION else "question_length"


def options_problem(options: list[str]) -> str | None:
    """A poll's options: MIN_OPTIONS..MAX_OPTIONS, each at most MAX_OPTION, all different."""
    if not polls.MIN_OPTIONS <= len(options) <= polls.MAX_OPTIONS:
        return "options_count"
    if any(len(o) > MAX_OPTION for o in options):
        return "option_length"
    if len({o.casefold() for o in options}) != len(options):
        return "options_duplicate"
    return None


def quorum_of(text: str) -> int | None | str:
    """A typed quorum: the number of voters (None for 0: no quorum), or "quorum_invalid"."""
    text = text.strip()
    if not text.isdigit() or not 0 <= int(text) <= MAX_QUORUM:
        return "quorum_invalid"
    return int(text) or None


def poll_problems(question: str, options: list[str], quorum: int | None) -> dict[str, str]:
    """Every problem of a poll's typed parts: field -> key in "polls."."""
    found = {}
    if problem := question_problem(question):
        found["question"] = problem
    if problem := options_problem(options):
        found["options"] = problem
    if quorum is not None and not 0 <= quorum <= MAX_QUORUM:
        found["quorum"] = "quorum_invalid"
    return found


# -- surveys -----------------------------------------------------------------------------------
def title_problem(text: str) -> str | None:
    return None if MIN_TEXT <= len(text) <= MAX_TITLE else "title_length"


def qtext_problem(text: str) -> str | None:
    return None if MIN_TEXT <= len(text) <= MAX_QUESTION else "qtext_length"


def choices_problem(options: list[str]) -> str | None:
    """A survey question's choices: 2..MAX_OPTIONS, each at most MAX_OPTION, all different."""
    if not 2 <= len(options) <= MAX_OPTIONS or any(len(o) > MAX_OPTION for o in options) \
            or len({o.casefold() for o in options}) != len(options):
        return "qoptions_invalid"
    return None


def question_problems(q: surveys.QuestionDraft) -> dict[str, str]:
    """One survey question's problems: "kind" / "text" / "options" -> key in "surveys."."""
    found = {}
    if q.kind not in surveys.KINDS:
        found["kind"] = "kind_invalid"
    if problem := qtext_problem(q.text):
        found["text"] = problem
    if q.kind in ("single", "multiple") and (problem := choices_problem(q.options)):
        found["options"] = problem
    return found


def survey_problems(title: str, questions: list[surveys.QuestionDraft]) -> dict[str, str]:
    """A survey's problems: "title", "questions" (none, or too many) and, per question n
    (from 0), "q{n}.kind" / "q{n}.text" / "q{n}.options" -> key in "surveys."."""
    found = {}
    if problem := title_problem(title):
        found["title"] = problem
    if not questions:
        found["questions"] = "no_questions"
    elif len(questions) > surveys.MAX_QUESTIONS:
        found["questions"] = "too_many"
    for n, q in enumerate(questions):
        found.update({f"q{n}.{k}": v for k, v in question_problems(q).items()})
    return found


def survey_questions_of(drafts: list[surveys.QuestionDraft]) -> list[surveys.QuestionDraft]:
    """The questions as stored: free text and scale carry no options of their own."""
    return [surveys.QuestionDraft(q.kind, q.text,
                                  list(q.options) if q.kind in ("single", "multiple") else [])
            for q in drafts]


# -- shared ------------------------------------------------------------------------------------
def parse_closing(text: str, now: datetime, tz_name: str) -> datetime | str:
    """A closing time (`48h`, `3d`, or any moment the time reader takes: `2026-12-01
    20:00`, `明天 20:00`, `18:30` (tomorrow once past)), or the key of what is wrong:
    "closes_invalid", "closes_past" (or sooner than MIN_MINUTES), "closes_too_far"."""
    text = text.strip()
    if m := _RELATIVE.match(text):
        amount, unit = int(m.group(1)), m.group(2).lower()
        at = now + (timedelta(hours=amount) if unit == "h" else timedelta(days=amount))
    else:
        try:
            at = parse_local(text, now, tz_name).astimezone(now.tzinfo)
        except BadTime:
            return "closes_invalid"
    if at <= now + timedelta(minutes=MIN_MINUTES):
        return "closes_past"
    if at > now + timedelta(days=MAX_DAYS):
        return "closes_too_far"
    return at


async def may_address(scope: Scope, session: AsyncSession, kind: str,
                      area_id: int | None) -> bool:
    """Admins any area; others a committee they belong to, an estate their roles cover, or a
    building of such an estate."""
    if kind not in AREA_KINDS or area_id is None:
        return False
    if scope.everything:
        return True
    if kind == "committee":
        return area_id in scope.committee_ids
    if kind == "estate":
        return scope.covers_estate(area_id)
    b = await territory.building_by_id(session, area_id)
    return b is not None and scope.covers_estate(b.estate_id)


async def area_exists(session: AsyncSession, kind: str, area_id: int) -> bool:
    if kind == "committee":
        return any(c.id == area_id for c in await territory.committees(session))
    if kind == "estate":
        return any(e.id == area_id for e in await territory.estates(session))
    return await territory.building_by_id(session, area_id) is not None


async def committee_of(session: AsyncSession, kind: str, area_id: int | None) -> int | None:
    if area_id is None:
        return None
    return await territory.committee_id_of_area(session, kind, area_id)


Refusal = Literal["not_allowed", "closes_past", "invalid"]


@dataclass(frozen=True)
class PollSpec:
    """A poll as drafted, before it belongs to a committee (publish_poll finds it)."""

    question: str
    options: list[str]
    multiple: bool
    audience: Audience
    per_household: bool
    anonymous: bool
    live_results: bool
    closes_at: datetime
    quorum: int | None

    def draft(self, committee_id: int | None) -> polls.PollDraft:
        return polls.PollDraft(
            question=self.question, options=list(self.options), multiple=self.multiple,
            audience=self.audience, per_household=self.per_household,
            anonymous=self.anonymous, live_results=self.live_results,
            closes_at=self.closes_at, quorum=self.quorum, committee_id=committee_id)


def rules(t: Callable[..., str], multiple: bool, anonymous: bool, per_household: bool,
          live: bool) -> str:
    """The rule lines a ballot (and its preview, in chat and on the web) shows."""
    parts = [t("polls.rule_multiple" if multiple else "polls.rule_single"),
             t("polls.rule_anonymous" if anonymous else "polls.rule_named"),
             t("polls.rule_household" if per_household else "polls.rule_resident"),
             t("polls.rule_live" if live else "polls.rule_hidden")]
    return "\n".join(parts)


async def eligible(session: AsyncSession, audience: Audience, per_household: bool) -> int:
    """Who could vote now (residents, or households): the preview's figure."""
    return await count(session, audience, per_household=per_household)


async def publish_poll(session: AsyncSession, scope: Scope, spec: PollSpec, author_id: int,
                       now: datetime) -> polls.Poll | Refusal:
    """The poll, created and audited ("poll.create"); the polls job then invites the eligible
    residents. Refused when the area is no longer the author's (roles change while a draft
    waits), its closing time has passed meanwhile, or a part is not valid."""
    if poll_problems(spec.question, spec.options, spec.quorum):
        return "invalid"
    if not await may_address(scope, session, spec.audience.kind, spec.audience.area_id):
        return "not_allowed"
    if spec.closes_at <= now:
        return "closes_past"
    committee_id = await committee_of(session, spec.audience.kind, spec.audience.area_id)
    created = await polls.create(session, spec.draft(committee_id), author_id)
    await audit.record(session, author_id, "poll.create", f"poll:{created.id}",
                       area=f"{created.area_kind}:{created.area_id}",
                       anonymous=created.anonymous, per_household=created.per_household)
    return created


async def publish_survey(session: AsyncSession, scope: Scope, *, title: str,
                         questions: list[surveys.QuestionDraft], audience: Audience,
                         closes_at: datetime, author_id: int,
                         now: datetime) -> surveys.Survey | Refusal:
    """The survey, created and audited ("survey.create"); the surveys job then invites the
    eligible residents. Refused as publish_poll is."""
    if survey_problems(title, questions):
        return "invalid"
    if not await may_address(scope, session, audience.kind, audience.area_id):
        return "not_allowed"
    if closes_at <= now:
        return "closes_past"
    survey = await surveys.create(
        session, title=title, questions=survey_questions_of(questions), audience=audience,
        closes_at=closes_at, committee_id=await committee_of(session, audience.kind,
                                                              audience.area_id),
        author_id=author_id)
    await audit.record(session, author_id, "survey.create", f"survey:{survey.id}",
                       area=f"{survey.area_kind}:{survey.area_id}")
    return survey
