"""A survey answer's rules: who may answer, and an answer taken whole (who runs a survey is
services/poll_rules.py's, as for polls). The chat (handlers/surveys.py) and the web call
these."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from storage import surveys
from storage.people import Resident


async def survey_refusal(session: AsyncSession, survey: surveys.Survey, resident: Resident,
                         now: datetime) -> str | None:
    """Why the resident may not answer (a text key suffix: closed, the audience's refusal,
    or "assisted": answers recorded with help are disputed, not continued), or None."""
    return (await _refusal(session, survey, resident, now))[0]


async def _refusal(session: AsyncSession, survey: surveys.Survey, resident: Resident,
                   now: datetime) -> tuple[str | None, surveys.SurveyResponse | None]:
    """The refusal, and the resident's response when they have one (read once)."""
    reason = await surveys.may_answer(session, survey, resident, now)
    if reason is not None:
        return reason, None
    response = await surveys.response_for(session, survey.id, resident.id, create=False)
    if response is not None and response.assisted_by is not None:
        return "assisted", response
    return None, response


async def answer_survey(session: AsyncSession, survey: surveys.Survey, resident: Resident,
                        question_id: int, choices: list[int], text: str | None,
                        now: datetime) -> str:
    """One of the resident's own answers, checked whole: "saved", "already" (a double tap),
    "invalid" (not an answer to that question), "unknown" (not this survey's question), or
    why they may not answer."""
    reason, response = await _refusal(session, survey, resident, now)
    if reason is not None:
        return reason
    question = await surveys.get_question(session, question_id)
    if question is None or question.survey_id != survey.id:
        return "unknown"
    if not surveys.valid_answer(question, choices, text):
        return "invalid"
    response = response or await surveys.response_for(session, survey.id, resident.id,
                                                      create=True)
    if response is None or not await surveys.answer(session, response, question, choices,
                                                    text, now):
        return "already"
    return "saved"
