"""A conversation declared in one place: its dialog state, its typed draft, its steps in order
with what each one asks and what it takes, and "back".

    poll = Conversation(router, "poll.draft", PollForm, PollAnswer,
                        steps=("question", "options", ...), texts=POLL_TEXTS)

    @poll.asks("question")
    async def _(ctx, d: PollForm) -> None: ...              # the prompt (again after "back")

    @poll.takes("question")
    async def _(ctx, d: PollForm, text: str) -> Go: ...     # a typed answer

    @poll.takes_press("area")
    async def _(ctx, d: PollForm, press: PollAnswer) -> Go: ...   # a pressed choice

A step's handler changes the draft it is given and says where to go: `NEXT` (the step after it
in order), another step's name, `STAY` (it already said what is wrong; the step stays and so
does the draft as it was) or `KEEP` (the step stays, with what the handler added to the draft). A handler that ends the conversation calls `ctx.finish()`.

The draft is a dataclass of JSON values kept in the dialog state (storage/dialog.py), so it
survives a restart and reaches another worker; `/cancel` and the expiry (`BOT_DRAFT_TTL_HOURS`)
are the dispatcher's, for every conversation. "Back" (`/back`, or the word in either language)
returns to the step before with the draft as it was when that step was asked.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, Union, get_args, get_origin, get_type_hints

from bot.messaging.model import Kind
from bot.payloads import Action

if TYPE_CHECKING:
    from bot.context import Context
    from bot.router import Router

D = TypeVar("D")
A = TypeVar("A", bound=Action)
NEXT = "\x00next"  # go on to the step declared after this one
STAY = None  # the step said what is wrong: stay, keep the draft as it was
KEEP = "\x00keep"  # stay at the step (not asked again) with what the handler changed kept
Go = str | None
# The trail is bounded: a survey's questions loop through the same steps.
MAX_TRAIL = 40


@dataclass(frozen=True)
class StepAnswer(Action, abstract=True):
    """A choice pressed at one step of a conversation: the step it was drawn for and its value
    (two parts at most, e.g. an area's kind and id). Each conversation declares its own code."""

    step: str
    value: str = ""
    more: str = ""

    def pack(self) -> list[str]:
        # As the string-action versions drew them: "area:c:3", "preview:1", "question".
        packed = super().pack()
        while len(packed) > 1 and packed[-1] == "":
            packed.pop()
        return packed


@dataclass(frozen=True)
class ConversationTexts:
    """The keys a conversation answers with when input does not fit the step."""

    stale: str  # a press drawn for another step (an older prompt)
    press_button: str  # text typed where a step wants a press
    type_please: str  # a press or a photo where a step wants text


Ask = Callable[[Any, Any], Awaitable[None]]
Take = Callable[[Any, Any, Any], Awaitable[Go]]


@dataclass
class _Step:
    ask: Ask | None = None
    text: Take | None = None
    press: Take | None = None
    media: Take | None = None


class Conversation(Generic[D]):
    def __init__(self, router: Router, state: str, draft: type[D], answer: type[StepAnswer],
                 *, steps: tuple[str, ...], texts: ConversationTexts,
                 legacy_states: dict[str, str] | None = None) -> None:
        if not dataclasses.is_dataclass(draft):
            raise TypeError(f"a draft is a dataclass, not {draft!r}")
        self.state, self.draft_type, self.answer, self.texts = state, draft, answer, texts
        self.order = steps
        self._steps = {name: _Step() for name in steps}
        self._router = router
        router.state(state)(self._input)
        router.action(answer)(self._pressed)
        router.conversations[state] = self
        # Dialog states an older version wrote (a state per step, the draft's fields flat):
        # a draft begun before an upgrade is continued at its step.
        self.legacy_states = dict(legacy_states or {})
        for old, step in self.legacy_states.items():
            if step not in self._steps:
                raise ValueError(f"{self.state} has no step {step!r}")
            router.state(old)(self._legacy_input)
            router.conversations[old] = self  # /back reaches a draft left there too

    # -- declaring ---------------------------------------------------------------------------
    def _register(self, name: str, slot: str) -> Callable[[Any], Any]:
        if name not in self._steps:
            raise ValueError(f"{self.state} has no step {name!r}")

        def register(fn: Any) -> Any:
            setattr(self._steps[name], slot, fn)
            return fn
        return register

    def asks(self, *names: str) -> Callable[[Callable[[Context, D], Awaitable[None]]], Any]:
        def register(fn: Any) -> Any:
            for name in names:
                self._register(name, "ask")(fn)
            return fn
        return register

    def takes(self, name: str) -> Callable[[Callable[[Context, D, str], Awaitable[Go]]], Any]:
        return self._register(name, "text")

    def takes_press(self, name: str) -> Callable[[Callable[[Any, D, Any], Awaitable[Go]]], Any]:
        return self._register(name, "press")

    def takes_media(self, name: str) -> Callable[[Callable[[Context, D, Kind], Awaitable[Go]]],
                                                    Any]:
        return self._register(name, "media")

    def takes_action(self, kind: type[A], *steps: str) -> Callable[
            [Callable[[Any, D, A], Awaitable[Go]]], Any]:
        """A typed action (bot/payloads.py) pressed at one of `steps` (its own fields, rather
        than a StepAnswer's step and value); pressed at another step it is stale."""
        for name in steps:
            if name not in self._steps:
                raise ValueError(f"{self.state} has no step {name!r}")

        def register(fn: Callable[[Any, D, A], Awaitable[Go]]) -> Any:
            async def run(ctx: Context, press: A) -> None:
                self.adopt(ctx)
                if ctx.state != self.state or ctx.data.get("step") not in steps:
                    ctx.say(self.texts.stale)
                    return
                d, step = self._current(ctx)
                if d is not None and step is not None:
                    await self._run(ctx, d, fn(ctx, d, press))

            self._router.action(kind)(run)
            return fn
        return register

    def unasked(self) -> list[str]:
        """Steps declared without a prompt (a test asserts there are none)."""
        return [name for name, step in self._steps.items() if step.ask is None]

    # -- running -----------------------------------------------------------------------------
    async def start(self, ctx: Context, draft: D, step: str | None = None) -> None:
        ctx.goto(self.state, step=step or self.order[0], draft=_dump(draft), trail=[])
        await self._ask(ctx, draft)

    def draft(self, ctx: Context) -> D | None:
        """The draft of the person's conversation, when they are in this one."""
        if ctx.state != self.state:
            return None
        return _load(self.draft_type, _draft_data(ctx.data))

    def step(self, ctx: Context) -> str | None:
        return ctx.data.get("step") if ctx.state == self.state else None

    def button(self, ctx: Context, label: str, step: str, value: object = "",
               more: object = "") -> Any:
        """A choice of `step` for this person."""
        return ctx.button(label, self.answer(step, _text(value), _text(more)))

    async def back(self, ctx: Context) -> None:
        self.adopt(ctx)
        trail = list(ctx.data.get("trail") or [])
        if not trail:
            ctx.say("common.back_at_start")
            d = self.draft(ctx)
            if d is not None:
                await self._ask(ctx, d)
            return
        step, before = trail.pop()
        d = _load(self.draft_type, before)
        if d is None or step not in self._steps:
            ctx.say("common.back_at_start")
            return
        ctx.goto(self.state, step=step, draft=before, trail=trail)
        await self._ask(ctx, d)

    # -- what the dispatcher calls -----------------------------------------------------------
    def adopt(self, ctx: Context) -> None:
        """Take over a draft an older version left in one of its per-step states."""
        step = self.legacy_states.get(ctx.state or "")
        if step is not None:
            ctx.goto(self.state, step=step, draft=_draft_data(ctx.data), trail=[])

    async def _legacy_input(self, ctx: Context) -> None:
        self.adopt(ctx)
        await self._input(ctx)

    async def _input(self, ctx: Context) -> None:
        inbound = ctx.inbound
        if inbound.kind == Kind.TEXT and ctx.typed("common.back_word"):
            await self.back(ctx)
            return
        d, step = self._current(ctx)
        if d is None or step is None:
            return
        if inbound.kind == Kind.TEXT:
            take = step.text
            if take is None:
                ctx.refuse(self.texts.press_button)
                return
            await self._run(ctx, d, take(ctx, d, inbound.text or ""))
            return
        if step.media is None:
            ctx.refuse(self.texts.type_please)
            return
        await self._run(ctx, d, step.media(ctx, d, inbound.kind))

    async def _pressed(self, ctx: Context, press: StepAnswer) -> None:
        self.adopt(ctx)
        if ctx.state != self.state or press.step != ctx.data.get("step"):
            ctx.say(self.texts.stale)
            return
        d, step = self._current(ctx)
        if d is None or step is None:
            return
        if step.press is None:
            ctx.refuse(self.texts.type_please)
            return
        await self._run(ctx, d, step.press(ctx, d, press))

    def _current(self, ctx: Context) -> tuple[D | None, _Step | None]:
        d = self.draft(ctx)
        step = self._steps.get(ctx.data.get("step", ""))
        if d is None or step is None:
            # A draft this version cannot read (written by an older one): dropped, said once.
            ctx.finish()
            ctx.say("common.draft_unreadable")
            return None, None
        return d, step

    async def _run(self, ctx: Context, d: D, handled: Awaitable[Go]) -> None:
        """A step's handler (not yet started), then where it said to go."""
        said = len(ctx.replies)  # what the handler says comes after these
        await self._after(ctx, d, await handled, said)

    async def _after(self, ctx: Context, d: D, go: Go, said: int) -> None:
        if ctx.state != self.state:
            return  # the handler ended the conversation (or started another)
        if go is STAY or go == KEEP:
            # The step stays, and so does its prompt: what the handler said without buttons
            # ("I don't know that audience") is a note about the answer, and on a platform
            # without buttons a number typed next still picks from the prompt's choices.
            for out in ctx.replies[said:]:
                if not out.buttons:
                    out.keeps_choices = True
            if go == KEEP:
                ctx.remember(draft=_dump(d))
            return
        await self._move(ctx, d, go, _draft_data(ctx.data))

    async def _move(self, ctx: Context, d: D, to: str, before: dict[str, Any]) -> None:
        here = ctx.data.get("step", "")
        if to == NEXT:
            to = self.order[self.order.index(here) + 1]
        if to not in self._steps:
            raise ValueError(f"{self.state} has no step {to!r}")
        trail = list(ctx.data.get("trail") or [])
        if to != here:  # the same step asked again is not a step to go back to
            trail = [*trail, [here, before]][-MAX_TRAIL:]
        ctx.goto(self.state, step=to, draft=_dump(d), trail=trail)
        await self._ask(ctx, d)

    async def _ask(self, ctx: Context, d: D) -> None:
        step = self._steps[ctx.data["step"]]
        if step.ask is None:
            raise RuntimeError(f"{self.state}: step {ctx.data['step']!r} has no prompt")
        await step.ask(ctx, d)
        if ctx.state == self.state:
            ctx.remember(draft=_dump(d))  # a prompt may note what it showed


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _draft_data(data: dict[str, Any]) -> dict[str, Any]:
    """The draft within the dialog state; a draft of the older flat layout (fields beside
    "step") still reads."""
    inner = data.get("draft")
    if isinstance(inner, dict):
        return inner
    return {k: v for k, v in data.items() if k not in ("step", "trail")}


def _dump(d: Any) -> dict[str, Any]:
    return dataclasses.asdict(d)


_HINTS: dict[type, dict[str, Any]] = {}


def _load(kind: type[D], data: dict[str, Any]) -> D | None:
    """The draft `data` holds, or None when it does not fit the dataclass's fields."""
    hints = _HINTS.get(kind)
    if hints is None:
        hints = _HINTS[kind] = get_type_hints(kind)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(kind):  # type: ignore[arg-type]
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                return None
            continue
        if not _fits(hints[f.name], data[f.name]):
            return None
        values[f.name] = data[f.name]
    return kind(**values)


def _fits(kind: Any, value: Any) -> bool:
    origin = get_origin(kind)
    if origin in (Union, types.UnionType):
        return any(_fits(k, value) for k in get_args(kind))
    if kind is type(None):
        return value is None
    if kind is Any:
        return True
    if origin is list:
        (item,) = get_args(kind) or (Any,)
        return isinstance(value, list) and all(_fits(item, v) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(kind, type):
        return isinstance(value, kind)
    return True
