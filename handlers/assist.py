"""/assist: a committee member or staff member records a vote for a resident who is with them
(door to door, no phone). Find the resident by name, building and unit → one of their open
polls → their answer. The vote goes through the same `storage.polls.cast` as the resident's own
(open poll, area, verification, one vote per resident or household), with `assisted_by`: it
never changes an earlier vote, and is audited (who assisted whom, which poll, when; never the
choice). The resident, when they have a chat identity, is told in their language who recorded a
vote for them, with a "This was not me" button that flags it to the committee.

As on the resident's own ballot, the choice travels only in the signed button payload (a
multiple-choice tick is redrawn without being written down); nothing here names an anonymous
poll's choice in a reply, a push, the dialog state or the audit log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.context import Context
from bot.messaging.model import Button, Outbound
from bot.payloads import Action
from bot.pushes import Recipient
from bot.router import Router
from handlers.polls import AUTHORS, rules
from storage import access, audit, people, polls, surveys, territory
from storage.people import Resident

router = Router()
FIND, TEXT = "assist.find", "assist.text"
MAX_FOUND = 10
_PARTS = re.compile(r"\s*[,，、;；]\s*")


@dataclass(frozen=True)
class PickResident(Action, code="asr"):
    resident_id: int


@dataclass(frozen=True)
class PickPoll(Action, code="asp"):
    resident_id: int
    poll_id: int


@dataclass(frozen=True)
class ToggleOption(Action, code="asm", fresh="vote"):
    """A multiple-choice tick: the choices so far travel only here, as a bit mask."""
    resident_id: int
    poll_id: int
    mask: int


@dataclass(frozen=True)
class VoteFor(Action, code="asv", fresh="vote"):
    resident_id: int
    poll_id: int
    position: int


@dataclass(frozen=True)
class SubmitFor(Action, code="asx", fresh="vote"):
    resident_id: int
    poll_id: int
    mask: int


@dataclass(frozen=True)
class NotMe(Action, code="adp"):
    """The resident's "This was not me" of a vote recorded with help."""
    assisted_id: int


@dataclass(frozen=True)
class NotMeSurvey(Action, code="ads"):
    """The same of answers to a survey recorded with help."""
    response_id: int


@dataclass(frozen=True)
class PickSurvey(Action, code="asq"):
    resident_id: int
    survey_id: int


@dataclass(frozen=True)
class SurveyChoose(Action, code="aqa"):
    resident_id: int
    survey_id: int
    question_id: int
    choice: int


@dataclass(frozen=True)
class SurveyToggle(Action, code="aqm"):
    resident_id: int
    survey_id: int
    question_id: int
    mask: int


@dataclass(frozen=True)
class SurveySubmit(Action, code="aqx"):
    resident_id: int
    survey_id: int
    question_id: int
    mask: int


def _name(resident: Resident) -> str:
    return resident.display_name or f"#{resident.id}"


async def _home(ctx: Context, resident: Resident) -> str:
    estate = await territory.estate(ctx.session, resident.estate_id)
    building = await territory.building_by_id(ctx.session, resident.building_id)
    return ctx.t("assist.home", estate=territory.localized(estate, ctx.lang) if estate else "?",
                 building=building.number if building else "?", unit=resident.unit or "?")


async def _may_assist(ctx: Context, resident: Resident | None) -> bool:
    """Committee members and staff whose scope covers the resident's estate (admins: all)."""
    scope = await ctx.scope()
    return resident is not None and scope.has(*AUTHORS) and scope.covers_estate(
        resident.estate_id)


@router.command("assist", help_key="assist.help", roles=AUTHORS, order=43)
async def start(ctx: Context) -> None:
    ctx.goto(FIND)
    ctx.say("assist.ask_who")


@router.state(FIND)
async def typed_who(ctx: Context) -> None:
    parts = [p for p in _PARTS.split((ctx.inbound.text or "").strip()) if p]
    if len(parts) != 3:
        ctx.refuse("assist.format")
        return
    name, building, unit = parts
    found = await people.residents_at(ctx.session, name, building, unit)
    if not found:
        ctx.refuse("assist.unknown", name=name[:40], building=building[:20], unit=unit[:20])
        return
    mine = [r for r in found if await _may_assist(ctx, r)]
    if not mine:
        ctx.refuse("assist.out_of_scope", name=name[:40])
        return
    ctx.finish()
    rows = [[ctx.button(f"{_name(r)} · {await _home(ctx, r)}", PickResident(r.id))]
            for r in mine[:MAX_FOUND]]
    ctx.say("assist.pick_resident", rows)


async def _resident(ctx: Context, resident_id: int) -> Resident | None:
    resident = await people.resident_by_id(ctx.session, resident_id)
    if resident is None:
        ctx.say("common.button_invalid")
        return None
    if not await _may_assist(ctx, resident):
        ctx.say("assist.out_of_scope", name=_name(resident))
        return None
    return resident


@router.action(PickResident)
async def resident_chosen(ctx: Context, press: PickResident) -> None:
    resident = await _resident(ctx, press.resident_id)
    if resident is None:
        return
    found = await polls.open_for(ctx.session, resident)
    rows = [[ctx.button(f"#{p.id} {p.question[:40]}", PickPoll(resident.id, p.id))]
            for p in found]
    rows += [[ctx.button(ctx.t("assist.survey_button", number=s.id, title=s.title[:40]),
                         PickSurvey(resident.id, s.id))]
             for s in await surveys.open_for(ctx.session, resident)][:10]
    if not rows:
        ctx.say("assist.no_open_poll", name=_name(resident))
        return
    ctx.say("assist.pick_poll", rows, name=_name(resident))


async def _refused(ctx: Context, poll: polls.Poll, resident: Resident) -> bool:
    """Said why the resident cannot vote now, exactly as for their own vote; True if so."""
    refused = await polls.may_vote(ctx.session, poll, resident, ctx.now)
    if refused is None and await polls.has_voted(ctx.session, poll, resident):
        refused = polls.Outcome.HOUSEHOLD if poll.per_household else polls.Outcome.ALREADY
    if refused is not None:
        ctx.say(f"assist.refused_{refused.value}", name=_name(resident), number=poll.id)
        return True
    return False


def _ballot(ctx: Context, resident: Resident, poll: polls.Poll,
            options: list[polls.PollOption], mask: int = 0, edit_of: str | None = None
            ) -> Outbound:
    listing = "\n".join(f"{o.position + 1}. {o.label}" for o in options)
    text = ctx.t("assist.ballot", name=_name(resident), number=poll.id, question=poll.question,
                 options=listing, rules=rules(ctx.t, poll.multiple, poll.anonymous,
                                              poll.per_household, poll.live_results))
    rows: list[list[Button]] = []
    for o in options:
        if poll.multiple:
            mark = "☑" if mask >> o.position & 1 else "☐"
            rows.append([ctx.button(f"{mark} {o.position + 1}. {o.label}", ToggleOption(
                resident.id, poll.id, mask ^ (1 << o.position)))])
        else:
            rows.append([ctx.button(f"{o.position + 1}. {o.label}",
                                    VoteFor(resident.id, poll.id, o.position))])
    if poll.multiple:
        rows.append([ctx.button(ctx.t("assist.submit"), SubmitFor(resident.id, poll.id, mask))])
    return Outbound(text=text, buttons=rows, edit_of=edit_of)


async def _target(ctx: Context, resident_id: int, poll_id: int
                  ) -> tuple[Resident, polls.Poll] | None:
    """(resident, poll) of an assist button, rights checked now."""
    resident = await people.resident_by_id(ctx.session, resident_id)
    poll = await polls.get_poll(ctx.session, poll_id)
    if resident is None or poll is None:
        ctx.say("common.button_invalid")
        return None
    if not await _may_assist(ctx, resident):
        ctx.say("assist.out_of_scope", name=_name(resident))
        return None
    return resident, poll


@router.action(PickPoll)
async def poll_chosen(ctx: Context, press: PickPoll) -> None:
    target = await _target(ctx, press.resident_id, press.poll_id)
    if target is None:
        return
    resident, poll = target
    if await _refused(ctx, poll, resident):
        return
    ctx.replies.append(_ballot(ctx, resident, poll, await polls.options_of(ctx.session, poll.id)))


@router.action(ToggleOption)
async def toggle(ctx: Context, press: ToggleOption) -> None:
    target = await _target(ctx, press.resident_id, press.poll_id)
    if target is None:
        return
    resident, poll = target
    if not poll.multiple or press.mask < 0:
        ctx.say("common.button_invalid")
        return
    options = await polls.options_of(ctx.session, poll.id)
    if press.mask >= 1 << len(options):
        ctx.say("assist.refused_bad_choice", name=_name(resident), number=poll.id)
        return
    redraw = _ballot(ctx, resident, poll, options, press.mask, edit_of=ctx.inbound.message_ref)
    redraw.ephemeral = True  # a choice in the making: never written down
    ctx.replies.append(redraw)


@router.action(VoteFor)
async def vote_single(ctx: Context, press: VoteFor) -> None:
    target = await _target(ctx, press.resident_id, press.poll_id)
    if target is not None and press.position < 0:
        ctx.say("common.button_invalid")
    elif target is not None:
        await _cast(ctx, *target, [press.position])


@router.action(SubmitFor)
async def submit(ctx: Context, press: SubmitFor) -> None:
    target = await _target(ctx, press.resident_id, press.poll_id)
    if target is None:
        return
    resident, poll = target
    mask = press.mask
    if mask < 0:
        ctx.say("common.button_invalid")
        return
    if mask == 0:
        ctx.say("polls.choose_one")
        return
    positions = [i for i in range(polls.MAX_OPTIONS + 1) if mask >> i & 1]
    if mask >= 1 << (polls.MAX_OPTIONS + 1):
        positions.append(polls.MAX_OPTIONS + 1)  # certainly not an option: refused below
    await _cast(ctx, resident, poll, positions)


async def _cast(ctx: Context, resident: Resident, poll: polls.Poll, positions: list[int]
                ) -> None:
    outcome = await polls.cast(ctx.session, poll.id, resident, positions, ctx.now,
                               ballot_key=ctx.services.ballot_key, assisted_by=ctx.resident.id)
    if outcome != polls.Outcome.CAST:
        ctx.say(f"assist.refused_{outcome.value}", name=_name(resident), number=poll.id)
        return
    assisted = await polls.assisted_vote(ctx.session, poll.id, resident.id)
    assert assisted is not None  # written by cast with the participation
    # Who, for whom, which poll, when (the entry's time): never the choice.
    await audit.record(ctx.session, ctx.resident.id, "poll.assisted_vote", f"poll:{poll.id}",
                       resident=resident.id, assisted=assisted.id)
    when = ctx.services.local_time(ctx.now)
    if poll.anonymous:
        ctx.say("assist.voted_anonymous", name=_name(resident), number=poll.id)
        key, choice = "assist.told_anonymous", ""
    else:
        labels = {o.position: o.label for o in await polls.options_of(ctx.session, poll.id)}
        choice = ", ".join(f"{p + 1}. {labels[p]}" for p in sorted(positions))
        ctx.say("assist.voted_named", name=_name(resident), number=poll.id, choice=choice)
        key = "assist.told_named"
    sign = ctx.services.signer.sign
    for identity_id, lang in await people.reachable_identities(ctx.session, [resident.id]):
        def buttons(t, identity_id=identity_id):
            return [[Button(t("assist.not_me"), sign(identity_id, NotMe(assisted.id)))]]

        await ctx.tell(Recipient(identity_id, lang), key, buttons=buttons,
                       dedupe_key=f"assist:{assisted.id}:{identity_id}", number=poll.id,
                       question=poll.question, helper=_name(ctx.resident), when=when,
                       choice=choice)


@router.action(NotMe)
async def dispute(ctx: Context, press: NotMe) -> None:
    """The resident says "This was not me" of an assisted vote: flagged once, the committee
    told."""
    assisted = await polls.get_assisted(ctx.session, press.assisted_id)
    if assisted is None or assisted.resident_id != ctx.resident.id:
        ctx.say("common.button_invalid")
        return
    if not await polls.dispute(ctx.session, assisted.id, ctx.resident.id, ctx.now):
        ctx.say("assist.dispute_already")
        return
    poll = await polls.get_poll(ctx.session, assisted.poll_id)
    await audit.record(ctx.session, ctx.resident.id, "poll.assisted_dispute",
                       f"poll:{assisted.poll_id}", assisted=assisted.id,
                       assistant=assisted.assistant_id)
    ctx.say("assist.dispute_recorded", number=assisted.poll_id)
    await _flag(ctx, "assist.dispute_flag", assisted.assistant_id, assisted.at,
                number=assisted.poll_id, question=poll.question if poll else "")


@router.action(NotMeSurvey)
async def dispute_survey(ctx: Context, press: NotMeSurvey) -> None:
    """The same for answers to a survey recorded with help."""
    response = await surveys.get_response(ctx.session, press.response_id)
    if response is None or response.resident_id != ctx.resident.id \
            or response.assisted_by is None:
        ctx.say("common.button_invalid")
        return
    if not await surveys.dispute(ctx.session, response.id, ctx.resident.id, ctx.now):
        ctx.say("assist.dispute_already")
        return
    survey = await surveys.get_survey(ctx.session, response.survey_id)
    await audit.record(ctx.session, ctx.resident.id, "survey.assisted_dispute",
                       f"survey:{response.survey_id}", response=response.id,
                       assistant=response.assisted_by)
    ctx.say("assist.survey_dispute_recorded", number=response.survey_id)
    await _flag(ctx, "assist.survey_dispute_flag", response.assisted_by, response.started_at,
                number=response.survey_id, title=survey.title if survey else "")


async def _flag(ctx: Context, key: str, assistant_id: int, at, **values: object) -> None:
    """Tell the committee of the resident's estate (or its station's staff) of a dispute."""
    helper = await people.resident_by_id(ctx.session, assistant_id)
    council = await access.council_of_estate(ctx.session, ctx.resident.estate_id)
    estate = await territory.estate(ctx.session, ctx.resident.estate_id)
    building = await territory.building_by_id(ctx.session, ctx.resident.building_id)
    for identity_id, lang in await people.reachable_identities(ctx.session, council):
        await ctx.tell(Recipient(identity_id, lang), key,
                       dedupe_key=f"{key}:{values['number']}:{ctx.resident.id}:{identity_id}",
                       name=_name(ctx.resident),
                       estate=lambda lang: territory.localized(estate, lang) if estate else "?",
                       building=building.number if building else "?",
                       unit=ctx.resident.unit or "?", helper=_name(helper) if helper else "?",
                       when=ctx.services.local_time(at), **values)


# -- surveys -----------------------------------------------------------------------------------
# Answers recorded with help make a response marked `assisted_by`; the same rule as the
# resident's own answers (surveys.may_answer); a response the resident started themselves is
# not continued by a helper, and an assisted one not by the resident.

async def _survey_target(ctx: Context, resident_id: int, survey_id: int
                         ) -> tuple[Resident, surveys.Survey] | None:
    resident = await people.resident_by_id(ctx.session, resident_id)
    survey = await surveys.get_survey(ctx.session, survey_id)
    if resident is None or survey is None:
        ctx.say("common.button_invalid")
        return None
    if not await _may_assist(ctx, resident):
        ctx.say("assist.out_of_scope", name=_name(resident))
        return None
    return resident, survey


async def _survey_refused(ctx: Context, survey: surveys.Survey, resident: Resident
                          ) -> surveys.SurveyResponse | None | bool:
    """False when refused (said why); else the assisted response so far (None: none yet)."""
    reason = await surveys.may_answer(ctx.session, survey, resident, ctx.now)
    if reason is not None:
        ctx.say(f"assist.survey_refused_{reason}", name=_name(resident), number=survey.id)
        return False
    response = await surveys.response_for(ctx.session, survey.id, resident.id, create=False)
    if response is not None and (response.assisted_by is None or response.completed_at):
        ctx.say("assist.survey_already", name=_name(resident), number=survey.id)
        return False
    return response


@router.action(PickSurvey)
async def survey_chosen(ctx: Context, press: PickSurvey) -> None:
    target = await _survey_target(ctx, press.resident_id, press.survey_id)
    if target is None:
        return
    resident, survey = target
    response = await _survey_refused(ctx, survey, resident)
    if response is not False:
        await _survey_next(ctx, resident, survey, response or None)


async def _survey_next(ctx: Context, resident: Resident, survey: surveys.Survey,
                       response: surveys.SurveyResponse | None) -> None:
    questions = await surveys.questions_of(ctx.session, survey.id)
    q = questions[0] if response is None else await surveys.next_question(ctx.session, response)
    if q is None:
        ctx.finish()
        ctx.say("assist.survey_done", name=_name(resident), number=survey.id)
        return
    ctx.reply(*_survey_question(ctx, resident, survey, q, len(questions), 0))


def _survey_question(ctx: Context, resident: Resident, survey: surveys.Survey,
                     q: surveys.SurveyQuestion, total: int, mask: int
                     ) -> tuple[str, list[list[Button]]]:
    text = ctx.t("assist.survey_question", name=_name(resident), number=survey.id,
                 title=survey.title, n=q.position + 1, total=total, text=q.text)
    rows: list[list[Button]] = []
    if q.kind == "text":
        ctx.goto(TEXT, resident=resident.id, survey=survey.id, question=q.id)
        return text + "\n" + ctx.t("surveys.type_answer", limit=surveys.MAX_TEXT_ANSWER), rows
    if ctx.state == TEXT:
        ctx.finish()  # a button question follows a typed one
    choices, ids = q.choices(), (resident.id, survey.id, q.id)
    if q.kind == "scale":
        rows.append([ctx.button(c, SurveyChoose(*ids, i)) for i, c in enumerate(choices)])
        text += "\n" + ctx.t("surveys.scale_hint")
    elif q.kind == "single":
        rows = [[ctx.button(c, SurveyChoose(*ids, i))] for i, c in enumerate(choices)]
    else:
        rows = [[ctx.button(("☑ " if mask >> i & 1 else "☐ ") + c,
                            SurveyToggle(*ids, mask ^ (1 << i)))] for i, c in enumerate(choices)]
        rows.append([ctx.button(ctx.t("assist.submit"), SurveySubmit(*ids, mask))])
    return text, rows


async def _survey_answer(ctx: Context, resident: Resident, survey: surveys.Survey,
                         question_id: int, choices: list[int], text: str | None) -> None:
    response = await _survey_refused(ctx, survey, resident)
    if response is False:
        ctx.finish()
        return
    question = await surveys.get_question(ctx.session, question_id)
    if question is None or question.survey_id != survey.id:
        ctx.say("common.button_invalid")
        return
    if not surveys.valid_answer(question, choices, text):
        ctx.refuse("surveys.answer_invalid", limit=surveys.MAX_TEXT_ANSWER)
        return
    created = response is None
    row = await surveys.response_for(ctx.session, survey.id, resident.id, create=True,
                                     assisted_by=ctx.resident.id)
    if row is None or row.assisted_by is None:  # the resident began themselves meanwhile
        ctx.say("assist.survey_already", name=_name(resident), number=survey.id)
        return
    if not await surveys.answer(ctx.session, row, question, choices, text, ctx.now):
        ctx.say("surveys.already_answered")
    if created:
        await audit.record(ctx.session, ctx.resident.id, "survey.assisted_answer",
                           f"survey:{survey.id}", resident=resident.id, response=row.id)
        sign = ctx.services.signer.sign
        for identity_id, lang in await people.reachable_identities(ctx.session, [resident.id]):
            def buttons(t, identity_id=identity_id):
                return [[Button(t("assist.not_me"), sign(identity_id, NotMeSurvey(row.id)))]]

            await ctx.tell(Recipient(identity_id, lang), "assist.survey_told", buttons=buttons,
                           dedupe_key=f"assist-survey:{row.id}:{identity_id}", number=survey.id,
                           title=survey.title, helper=_name(ctx.resident),
                           when=ctx.services.local_time(ctx.now))
    await _survey_next(ctx, resident, survey, row)


@router.action(SurveyChoose)
async def survey_choose(ctx: Context, press: SurveyChoose) -> None:
    target = await _survey_target(ctx, press.resident_id, press.survey_id)
    if target is not None and press.choice < 0:
        ctx.say("common.button_invalid")
    elif target is not None:
        await _survey_answer(ctx, *target, press.question_id, [press.choice], None)


@router.action(SurveyToggle)
async def survey_toggle(ctx: Context, press: SurveyToggle) -> None:
    target = await _survey_target(ctx, press.resident_id, press.survey_id)
    if target is None:
        return
    resident, survey = target
    mask = press.mask
    q = await surveys.get_question(ctx.session, press.question_id)
    if q is None or q.survey_id != survey.id or q.kind != "multiple" \
            or not 0 <= mask < 1 << len(q.options):
        ctx.say("common.button_invalid")
        return
    total = len(await surveys.questions_of(ctx.session, survey.id))
    text, rows = _survey_question(ctx, resident, survey, q, total, mask)
    ctx.reply(text, rows, edit_of=ctx.inbound.message_ref)


@router.action(SurveySubmit)
async def survey_submit(ctx: Context, press: SurveySubmit) -> None:
    target = await _survey_target(ctx, press.resident_id, press.survey_id)
    if target is None:
        return
    resident, survey = target
    mask = press.mask
    if mask <= 0 or mask >= 1 << 12:
        ctx.say("polls.choose_one" if mask == 0 else "common.button_invalid")
        return
    await _survey_answer(ctx, resident, survey, press.question_id,
                         [i for i in range(12) if mask >> i & 1], None)


@router.state(TEXT)
async def survey_typed(ctx: Context) -> None:
    text = ctx.inbound.text or ""
    resident = await people.resident_by_id(ctx.session, ctx.data.get("resident"))
    survey = await surveys.get_survey(ctx.session, ctx.data.get("survey"))
    if resident is None or survey is None or not await _may_assist(ctx, resident):
        ctx.finish()
        ctx.say("common.not_allowed")
        return
    if not text:
        ctx.refuse("surveys.answer_invalid", limit=surveys.MAX_TEXT_ANSWER)
        return
    await _survey_answer(ctx, resident, survey, ctx.data["question"], [], text)
