"""Surveys: several questions answered one after another, each answer saved as it is given so a
resident can stop and resume. Responses are named (the committee reads free-text answers)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.audience import Audience, percent, refusal
from storage.base import Base, affected, by_id, utcnow
from storage.people import Resident

KINDS = ("single", "multiple", "scale", "text")
SCALE = (1, 2, 3, 4, 5)
MAX_QUESTIONS = 20
MAX_TEXT_ANSWER = 500


class Survey(Base):
    __tablename__ = "surveys"
    id: Mapped[int] = mapped_column(primary_key=True)
    committee_id: Mapped[int | None] = mapped_column(ForeignKey("committees.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("residents.id"))
    title: Mapped[str] = mapped_column(String(200))
    area_kind: Mapped[str] = mapped_column(String(12))
    area_id: Mapped[int]
    verified_only: Mapped[bool] = mapped_column(default=True)
    closes_at: Mapped[datetime] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(10), default="open", index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]
    invited_upto: Mapped[int] = mapped_column(default=0)
    invites_done: Mapped[bool] = mapped_column(default=False)

    @property
    def audience(self) -> Audience:
        return Audience(self.area_kind, self.area_id, self.verified_only)


class SurveyQuestion(Base):
    __tablename__ = "survey_questions"
    __table_args__ = (UniqueConstraint("survey_id", "position"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id"), index=True)
    position: Mapped[int]
    kind: Mapped[str] = mapped_column(String(10))
    text: Mapped[str] = mapped_column(String(300))
    options: Mapped[list] = mapped_column(default=list)

    def choices(self) -> list[str]:
        return [str(n) for n in SCALE] if self.kind == "scale" else list(self.options)


class SurveyResponse(Base):
    __tablename__ = "survey_responses"
    __table_args__ = (UniqueConstraint("survey_id", "resident_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id"), index=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
    # Recorded with help (`/assist`): by whom, and when the resident said it was not them.
    assisted_by: Mapped[int | None] = mapped_column(ForeignKey("residents.id"))
    disputed_at: Mapped[datetime | None]


class SurveyAnswer(Base):
    __tablename__ = "survey_answers"
    response_id: Mapped[int] = mapped_column(ForeignKey("survey_responses.id"), primary_key=True)
    question_id: Mapped[int] = mapped_column(ForeignKey("survey_questions.id"), primary_key=True,
                                             index=True)
    choices: Mapped[list] = mapped_column(default=list)  # option positions (scale: value - 1)
    text: Mapped[str | None] = mapped_column(Text)


@dataclass(frozen=True)
class QuestionDraft:
    kind: str
    text: str
    options: list[str]


async def create(session: AsyncSession, *, title: str, questions: list[QuestionDraft],
                 audience: Audience, closes_at: datetime, committee_id: int | None,
                 author_id: int) -> Survey:
    if not questions or len(questions) > MAX_QUESTIONS:
        raise ValueError("a survey has 1 to 20 questions")
    survey = Survey(title=title, area_kind=audience.kind, area_id=audience.area_id,
                    verified_only=audience.verified_only, closes_at=closes_at,
                    committee_id=committee_id, author_id=author_id)
    session.add(survey)
    await session.flush()
    for position, q in enumerate(questions):
        session.add(SurveyQuestion(survey_id=survey.id, position=position, kind=q.kind,
                                   text=q.text, options=list(q.options)))
    await session.flush()
    return survey


async def get_survey(session: AsyncSession, survey_id: int | None) -> Survey | None:
    return await by_id(session, Survey, survey_id)


async def get_question(session: AsyncSession, question_id: int | None) -> SurveyQuestion | None:
    return await by_id(session, SurveyQuestion, question_id)


async def questions_of(session: AsyncSession, survey_id: int) -> list[SurveyQuestion]:
    rows = await session.scalars(select(SurveyQuestion).where(
        SurveyQuestion.survey_id == survey_id).order_by(SurveyQuestion.position))
    return list(rows.all())


async def may_answer(session: AsyncSession, survey: Survey, resident: Resident,
                     now: datetime) -> str | None:
    """Why the resident cannot answer this survey now (a text key suffix: "closed" or the
    audience's refusal), or None. The one rule for their own answers and assisted ones."""
    if survey.status != "open" or survey.closes_at <= now:
        return "closed"
    return await refusal(session, survey.audience, resident)


async def response_for(session: AsyncSession, survey_id: int, resident_id: int, *,
                       create: bool, assisted_by: int | None = None) -> SurveyResponse | None:
    """The resident's one response (created when asked); `assisted_by` marks a new one as
    recorded with help."""
    row = await session.scalar(select(SurveyResponse).where(
        SurveyResponse.survey_id == survey_id, SurveyResponse.resident_id == resident_id))
    if row is not None or not create:
        return row
    try:
        async with session.begin_nested():
            row = SurveyResponse(survey_id=survey_id, resident_id=resident_id,
                                 assisted_by=assisted_by)
            session.add(row)
            await session.flush()
    except IntegrityError:  # a second tap raced us: the first one's response is the one
        row = await session.scalar(select(SurveyResponse).where(
            SurveyResponse.survey_id == survey_id, SurveyResponse.resident_id == resident_id))
    return row


async def next_question(session: AsyncSession, response: SurveyResponse) -> SurveyQuestion | None:
    answered = select(SurveyAnswer.question_id).where(SurveyAnswer.response_id == response.id)
    return await session.scalar(
        select(SurveyQuestion).where(SurveyQuestion.survey_id == response.survey_id,
                                     SurveyQuestion.id.not_in(answered))
        .order_by(SurveyQuestion.position).limit(1))


def valid_answer(question: SurveyQuestion, choices: list[int], text: str | None) -> bool:
    if question.kind == "text":
        return bool(text) and len(text or "") <= MAX_TEXT_ANSWER and not choices
    count = len(question.choices())
    if not choices or len(set(choices)) != len(choices) or text:
        return False
    if question.kind != "multiple" and len(choices) != 1:
        return False
    return all(0 <= c < count for c in choices)


async def answer(session: AsyncSession, response: SurveyResponse, question: SurveyQuestion,
                 choices: list[int], text: str | None, now: datetime) -> bool:
    """Save one answer; False when it was already answered (a double tap) or is not valid."""
    if question.survey_id != response.survey_id or not valid_answer(question, choices, text):
        return False
    if await session.get(SurveyAnswer, (response.id, question.id)) is not None:
        return False  # a double tap; the primary key below still decides a true race
    try:
        async with session.begin_nested():
            session.add(SurveyAnswer(response_id=response.id, question_id=question.id,
                                     choices=sorted(choices), text=text))
            await session.flush()
    except IntegrityError:
        return False
    if await next_question(session, response) is None:
        await session.execute(update(SurveyResponse).where(
            SurveyResponse.id == response.id, SurveyResponse.completed_at.is_(None))
            .values(completed_at=now).execution_options(synchronize_session=False))
    return True


@dataclass(frozen=True)
class QuestionResult:
    question: SurveyQuestion
    answered: int
    counts: list[int]  # per choice
    percents: list  # Decimal per choice, of those who answered the question
    texts: list[str]


async def results(session: AsyncSession, survey: Survey) -> list[QuestionResult]:
    out = []
    for q in await questions_of(session, survey.id):
        rows = (await session.execute(select(SurveyAnswer.choices, SurveyAnswer.text).where(
            SurveyAnswer.question_id == q.id).order_by(SurveyAnswer.response_id))).all()
        counts = [0] * len(q.choices())
        texts = []
        for choices, text in rows:
            for c in choices:
                counts[c] += 1
            if text:
                texts.append(text)
        answered = len(rows)
        out.append(QuestionResult(q, answered, counts, [percent(c, answered) for c in counts],
                                  texts))
    return out


async def respondents(session: AsyncSession, survey_id: int) -> tuple[int, int]:
    started = await session.scalar(select(func.count()).select_from(SurveyResponse).where(
        SurveyResponse.survey_id == survey_id)) or 0
    completed = await session.scalar(select(func.count()).select_from(SurveyResponse).where(
        SurveyResponse.survey_id == survey_id, SurveyResponse.completed_at.is_not(None))) or 0
    return started, completed


async def assisted_count(session: AsyncSession, survey_id: int) -> int:
    return await session.scalar(select(func.count()).select_from(SurveyResponse).where(
        SurveyResponse.survey_id == survey_id, SurveyResponse.assisted_by.is_not(None))) or 0


async def get_response(session: AsyncSession, response_id: int | None) -> SurveyResponse | None:
    return await by_id(session, SurveyResponse, response_id)


async def dispute(session: AsyncSession, response_id: int, resident_id: int,
                  now: datetime) -> bool:
    """The resident says answers recorded for them with help were not theirs: flagged once."""
    done = await session.execute(update(SurveyResponse).where(
        SurveyResponse.id == response_id, SurveyResponse.resident_id == resident_id,
        SurveyResponse.assisted_by.is_not(None), SurveyResponse.disputed_at.is_(None))
        .values(disputed_at=now).execution_options(synchronize_session=False))
    return affected(done) == 1


async def respondent_identities(session: AsyncSession, survey_id: int
                                ) -> list[tuple[int, str | None]]:
    """Reachable identities (and language) of everyone who answered at least one question."""
    from storage.people import Identity, Resident

    rows = await session.execute(
        select(Identity.id, Resident.language)
        .join(Resident, Resident.id == Identity.resident_id)
        .join(SurveyResponse, SurveyResponse.resident_id == Resident.id)
        .where(SurveyResponse.survey_id == survey_id, Identity.unreachable_at.is_(None))
        .order_by(Identity.id))
    return [(iid, lang) for iid, lang in rows.all()]


async def close_due(session: AsyncSession, now: datetime) -> list[int]:
    """Close every survey past its time; the guarded update makes each close happen once."""
    ids = list((await session.scalars(select(Survey.id).where(
        Survey.status == "open", Survey.closes_at <= now).limit(50))).all())
    closed = []
    for survey_id in ids:
        done = await session.execute(update(Survey).where(
            Survey.id == survey_id, Survey.status == "open").values(
            status="closed", closed_at=now).execution_options(synchronize_session=False))
        if affected(done) == 1:
            closed.append(survey_id)
    return closed


async def close_now(session: AsyncSession, survey_id: int, now: datetime) -> bool:
    """Close an open survey before its time (its committee decided); True only for the one
    call that closed it, so the results go out once even if the clock closes it too."""
    done = await session.execute(update(Survey).where(
        Survey.id == survey_id, Survey.status == "open").values(
        status="closed", closed_at=now).execution_options(synchronize_session=False))
    return affected(done) == 1


async def advance_invites(session: AsyncSession, survey_id: int, old: int,
                          new: int | None) -> bool:
    values = {"invites_done": True} if new is None else {"invited_upto": new}
    moved = await session.execute(update(Survey).where(
        Survey.id == survey_id, Survey.invited_upto == old, Survey.invites_done.is_(False))
        .values(**values).execution_options(synchronize_session=False))
    return affected(moved) == 1


async def pending_invites(session: AsyncSession) -> list[Survey]:
    rows = await session.scalars(select(Survey).where(
        Survey.status == "open", Survey.invites_done.is_(False)).order_by(Survey.id).limit(20))
    return list(rows.all())


async def listed(session: AsyncSession, *, committee_ids: set[int] | None,
                 status: str | None = None, limit: int = 10) -> list[Survey]:
    q = select(Survey).order_by(Survey.id.desc()).limit(limit)
    if committee_ids is not None:
        q = q.where(Survey.committee_id.in_(committee_ids))
    if status:
        q = q.where(Survey.status == status)
    return list((await session.scalars(q)).all())


async def open_for(session: AsyncSession, resident: Resident, limit: int = 50) -> list[Survey]:
    """Open surveys whose area includes this resident (verification checked when answering)."""
    found = []
    for survey in await listed(session, committee_ids=None, status="open", limit=limit):
        if await refusal(session, Audience(survey.area_kind, survey.area_id, False),
                         resident) is None:
            found.append(survey)
    return found
