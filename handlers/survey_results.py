"""A survey's results: a table of percentages per question (two decimals, half up), a CSV export,
and, for the committee only, the free-text answers."""

from __future__ import annotations

import csv
import io

from bot.messaging.model import Outbound
from bot.pushes import translator
from storage import surveys

MAX_MESSAGE = 3500


def table(t, survey: surveys.Survey, results: list[surveys.QuestionResult], started: int,
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


def table_chunks(t, survey: surveys.Survey, results: list[surveys.QuestionResult], started: int,
                 completed: int, assisted: int = 0) -> list[str]:
    """The table in messages short enough for any platform."""
    return _chunks(table(t, survey, results, started, completed, assisted).split("\n"))


def csv_bytes(t, results: list[surveys.QuestionResult]) -> bytes:
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


async def results_reply(session, services, lang: str, survey: surveys.Survey, *,
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
