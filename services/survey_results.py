"""A survey's results: a table of percentages per question (two decimals, half up), a CSV export,
and, for the committee only, the free-text answers; what closing a survey tells people, and
closing one early. Shared by the chat (handlers/surveys.py) and the staff dashboard."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from bot.messaging.model import Outbound
from bot.pushes import Batch, Recipient, push, translator
from services import poll_rules
from storage import audit, outbox, surveys
from storage.access import Scope
from storage.base import reread
from storage.people import identities_of, resident_by_id

if TYPE_CHECKING:
    from bot.context import Services

Translate = Callable[..., str]  # a reader's text lookup (bot/pushes.py)

MAX_MESSAGE = 3500


def table(t: Translate, survey: surveys.Survey, results: list[surveys.QuestionResult], started: int,
          completed: int, assisted: int = 0) -> str:
    lines = [t("surveys.results_title", number=survey.id, title=survey.title,
               started=started, completed=completed)]
    if assisted:
        lines.append(t("surveys.results_assisted", assisted=assisted))
    for r in results:
        q = r.question
        lines.append("")
        lines.append(t("surveys.results_question", n=q.position + 1, text=q.text,
                       answered=r.answered))
        if q.kind == "text":
            lines.append(t("surveys.results_text_count", count=len(r.texts)))
            continue
        for label, count, pct in zip(q.choices(), r.counts, r.percents, strict=True):
            lines.append(f"  {label} | {count} | {pct}%")
    return "\n".join(lines)


def table_chunks(t: Translate, survey: surveys.Survey, results: list[surveys.QuestionResult], started: int,
                 completed: int, assisted: int = 0) -> list[str]:
    """The table in messages short enough for any platform."""
    return _chunks(table(t, survey, results, started, completed, assisted).split("\n"))


def csv_bytes(t: Translate, results: list[surveys.QuestionResult]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([t("surveys.csv_question"), t("surveys.csv_text"), t("surveys.csv_choice"),
                     t("surveys.csv_count"), t("surveys.csv_percent"), t("surveys.csv_answered")])
    for r in results:
        q = r.question
        if q.kind == "text":
            writer.writerow([q.position + 1, q.text, "", len(r.texts), "", r.answered])
            continue
        for label, count, pct in zip(q.choices(), r.counts, r.percents, strict=True):
            writer.writerow([q.position + 1, q.text, label, count, f"{pct}", r.answered])
    # A byte-order mark so spreadsheet programs read the Chinese text as UTF-8.
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _chunks(lines: list[str]) -> list[str]:
    chunks, current = [], ""
    for line in lines:
        if current and len(current) + len(line) + 1 > MAX_MESSAGE:
            chunks.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if current:
        chunks.append(current)
    return chunks


async def results_reply(session: AsyncSession, services: Services, lang: str, survey: surveys.Survey, *,
                        with_texts: bool) -> list[Outbound]:
    t = translator(services.texts, lang)
    results = await surveys.results(session, survey)
    started, completed = await surveys.respondents(session, survey.id)
    assisted = await surveys.assisted_count(session, survey.id)
    replies = [Outbound(text=chunk)
               for chunk in table_chunks(t, survey, results, started, completed, assisted)]
    path = services.media.path(services.media.save(csv_bytes(t, results), ".csv"))
    replies.append(Outbound(text=t("surveys.csv_caption", number=survey.id), document=str(path),
                            document_name=f"survey-{survey.id}.csv"))
    if with_texts:
        for r in results:
            if r.question.kind != "text" or not r.texts:
                continue
            lines = [t("surveys.free_texts", n=r.question.position + 1, text=r.question.text)]
            lines += [f"- {text}" for text in r.texts]
            replies += [Outbound(text=chunk) for chunk in _chunks(lines)]
    return replies


async def announce_closed(session: AsyncSession, services: Services, survey: surveys.Survey) -> None:
    """The author hears the survey closed and everyone who answered gets the results: the
    same whether the clock closed it or the committee did."""
    author = await resident_by_id(session, survey.author_id)
    language = author.language if author else None
    for ident in await identities_of(session, survey.author_id):
        await push(session, services.texts, Recipient(ident.id, language),
                   "surveys.closed_author", dedupe_key=f"survey:{survey.id}:closed:{ident.id}",
                   number=survey.id)
    await push_results(session, services, survey)


async def push_results(session: AsyncSession, services: Services, survey: surveys.Survey) -> None:
    """Everyone who answered hears the results table at close (free text stays with the
    committee), in their language; one bulk insert, once per identity and chunk."""
    results = await surveys.results(session, survey)
    started, completed = await surveys.respondents(session, survey.id)
    assisted = await surveys.assisted_count(session, survey.id)
    chunks: dict[str, list[str]] = {}  # rendered once per language
    pushes = Batch(services.texts)
    for identity_id, lang in await surveys.respondent_identities(session, survey.id):
        t = pushes.reader(Recipient(identity_id, lang))
        if t.lang not in chunks:
            chunks[t.lang] = table_chunks(t, survey, results, started, completed, assisted)
        for n, chunk in enumerate(chunks[t.lang]):
            pushes.add(identity_id, Outbound(text=chunk), priority=outbox.Priority.BULK,
                       group=f"survey:{survey.id}",
                       dedupe_key=f"survey:{survey.id}:res:{identity_id}:{n}")
    await pushes.send(session)


Closed = Literal["done", "unknown", "not_allowed", "already_closed"]


async def close_early(session: AsyncSession, services: Services, scope: Scope, actor_id: int,
                      survey_id: int, now: datetime) -> Closed:
    """Close an open survey now, by one who runs it (services.poll_rules.runs): audited; its
    author hears it closed and everyone who answered gets the results."""
    survey = await surveys.get_survey(session, survey_id)
    if survey is None:
        return "unknown"
    if not poll_rules.runs(scope, survey.committee_id):
        return "not_allowed"
    if survey.status != "open" or not await surveys.close_now(session, survey.id, now):
        return "already_closed"
    await audit.record(session, actor_id, "survey.close", f"survey:{survey.id}", early=True)
    await announce_closed(session, services, await reread(session, survey))
    return "done"
