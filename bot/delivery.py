"""Sends everything the bot says, pushes and replies alike, at the rate each platform allows.

One path for every message: a lane per chat keeps that chat's messages in order and at most
`per_chat` a second (the next one leaves a full interval after the previous one was answered);
one budget per platform grants sends in priority order (replies first) from a token bucket over
a sliding second, with a bounded number of requests in flight; a send that makes several API
calls (an adapter entering model.API_CALL around each: an upload and the message, a refused
message and the form sent instead) takes a grant for every call. Results are written back as
they come, in group commits, so a crash re-sends at most the requests in flight and the answers not
yet committed (`Deliverer.double_bound`).

A 429 for one chat pauses that chat; 429s for several chats at once mean the bot's own limit,
and pause the whole platform; after any pause sends resume paced, never as a burst. 403 marks
the recipient unreachable; other failures go back to the outbox with a backoff, and nothing
later to the same chat overtakes them.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from bot.messaging.model import API_CALL, Adapter, Outbound, SendResult, SendStatus
from storage import choices, outbox
from storage.base import utcnow

log = logging.getLogger(__name__)

STALE_CLAIM = timedelta(minutes=2)
TAKEOVER_PAUSE = 1.1  # seconds: a budget window, and a chat's interval, with a margin
SENDER_LOCK_KEY = 0x5E17D
HEADROOM = 0.985  # of the platform's rate: arrivals bunch up a little on the way
JITTER = 0.02  # seconds: the platform's "second" is counted over this much longer here
BURST_SECONDS = 0.05  # tokens a bucket may hold: 50 ms of sending
HOLD_SECONDS = 10.0  # a 429 up to this long is waited out in memory, longer ones in the outbox
GLOBAL_FLOOD_CHATS = 3  # 429s for this many chats within a second: the bot's own limit
MIN_FACTOR = 0.7
RECOVERY = 0.05  # of the rate, per second without a global 429
CLAIM_SECONDS = 2.0  # rows claimed ahead: about two seconds of sending
# PostgreSQL: a reply another live worker claimed is answered (or waiting out a 429 of at most
# HOLD_SECONDS) within this; older claims made before this sender started belong to the dead.
RECLAIM_GRACE = timedelta(seconds=15)
FOLLOWS = "follows"  # a row handed back unsent, behind one of its chat that was held back


class RateBudget:
    """One platform's budget: a token bucket for the bot, at most `rate` grants in any sliding
    second, at most `max_inflight` requests outstanding, grants in priority order; and per chat
    the moment its next message may leave."""

    def __init__(self, rate: float, per_chat: float, *, max_inflight: int | None = None,
                 max_chats: int = 50_000) -> None:
        self.rate = rate * HEADROOM
        self.capacity = max(1, math.floor(rate))  # the platform's own count per second
        self.burst = max(1.0, self.rate * BURST_SECONDS)
        self.max_inflight = max_inflight or max(4, math.ceil(rate / 10))
        self.chat_interval = 1.0 / per_chat if per_chat > 0 else 0.0
        self.inflight = 0
        self.factor = 1.0
        self._tokens = 1.0
        self._last = time.monotonic()
        self._paused_until = 0.0
        self._stamps: deque[float] = deque()  # grants
        self._answered: deque[float] = deque()  # answers to them, the last second's
        self._waiters: list[tuple[int, int, asyncio.Future]] = []
        self._seq = itertools.count()
        self._pacer: asyncio.Task | None = None
        self._poke = asyncio.Event()
        self._chats: OrderedDict[str, float] = OrderedDict()
        self._max_chats = max_chats
        self._floods: deque[tuple[float, str]] = deque()
        self.global_pauses = 0

    # -- per chat ---------------------------------------------------------------------------
    def chat_ready_in(self, chat: str) -> float:
        return max(0.0, self._chats.get(chat, 0.0) - time.monotonic())

    def _hold_chat(self, chat: str, until: float) -> None:
        self._chats[chat] = max(self._chats.get(chat, 0.0), until)
        self._chats.move_to_end(chat)
        while len(self._chats) > self._max_chats:
            self._chats.popitem(last=False)

    # -- the bot's budget ------------------------------------------------------------------
    async def acquire(self, priority: int) -> None:
        """Wait for a send slot; lower `priority` values are served first."""
        if not self._waiters and self._wait(time.monotonic()) == 0.0:
            self._grant()  # nobody ahead and a slot free: no future, no turn of the pacer
            return
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), fut))
        if self._pacer is None or self._pacer.done():
            self._pacer = asyncio.create_task(self._pace(), name="send-pacer")
        else:
            self._poke.set()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # granted, then abandoned
                self.inflight -= 1
                self._poke.set()
            raise

    def release(self, chat: str, result: SendResult | None, *, granted: bool = True) -> None:
        """A granted send is over (answered, or abandoned when `result` is None); `granted`:
        its grant is still held (not already given back by `call_answered`)."""
        if granted:
            self.call_answered()
        now = time.monotonic()
        self._hold_chat(chat, now + self.chat_interval)
        if result is not None and result.flood:
            self._flood(chat, result.retry_after, now)
        self._poke.set()

    def call_answered(self) -> None:
        """One granted API call was answered: its place in flight is free, and it counts in
        the platform's last second from now."""
        self.inflight -= 1
        self._answered.append(time.monotonic())
        self._poke.set()

    def pause(self, seconds: float) -> None:
        """Pause every send for `seconds`; then resume paced, from an empty bucket."""
        now = time.monotonic()
        self._paused_until = max(self._paused_until, now + seconds)
        self._tokens = 0.0
        self._last = self._paused_until
        self._poke.set()

    def _flood(self, chat: str, seconds: float, now: float) -> None:
        self._hold_chat(chat, now + seconds)
        floods = self._floods
        floods.append((now, chat))
        while floods and floods[0][0] <= now - 1.0:
            floods.popleft()
        chats = {c for _, c in floods}
        recent = sum(1 for t in self._stamps if t > now - 1.0)
        if len(chats) >= GLOBAL_FLOOD_CHATS and 2 * len(chats) >= recent:
            # Most of the last second's sends refused, across chats: the bot's own limit.
            self.global_pauses += 1
            self.factor = max(MIN_FACTOR, self.factor * 0.9)
            self.pause(seconds)
            floods.clear()

    async def _pace(self) -> None:
        waiters = self._waiters
        while waiters:
            while waiters and waiters[0][2].done():  # given up (a cancelled lane)
                heapq.heappop(waiters)
            if not waiters:
                break
            wait = self._wait(time.monotonic())
            if wait == 0.0:
                _, _, fut = heapq.heappop(waiters)
                self._grant()
                fut.set_result(None)
            elif wait is None:
                self._poke.clear()
                await self._poke.wait()
            else:  # time alone frees the next grant; a new waiter is served then
                await asyncio.sleep(wait)

    def _wait(self, now: float) -> float | None:
        """How long until the next grant: 0.0 now, None until a request is answered."""
        if now >= self._last:
            elapsed = now - self._last
            rate = self.rate * self.factor
            self._tokens = min(self.burst, self._tokens + elapsed * rate)
            self._last = now
            if self.factor < 1.0:
                self.factor = min(1.0, self.factor + RECOVERY * elapsed)
        stamps, answered = self._stamps, self._answered
        while stamps and stamps[0] <= now - 1.0 - JITTER:
            stamps.popleft()
        while answered and answered[0] <= now - 1.0:  # the platform counted it earlier
            answered.popleft()
        # A request reaches the platform somewhere between its grant and its answer, so
        # the platform's count of any second is at most what is on its way now plus what
        # was answered within the last second. Counting grants alone let requests that
        # queued on the way (a busy CPU, 100 in flight at 1,000/s) arrive bunched.
        if now < self._paused_until:
            return self._paused_until - now
        if self.inflight >= self.max_inflight:
            return None
        if self.inflight + len(answered) >= max(1, math.floor(self.capacity * self.factor)):
            return answered[0] + 1.0 - now if answered else None
        if self._tokens < 1.0:
            return (1.0 - self._tokens) / (self.rate * self.factor)
        return 0.0

    def _grant(self) -> None:
        self._tokens -= 1.0
        self._stamps.append(time.monotonic())
        self.inflight += 1

    def close(self) -> None:
        if self._pacer is not None:
            self._pacer.cancel()
        for _, _, fut in self._waiters:
            fut.cancel()
        self._waiters.clear()


class _Calls:
    """The API calls of one send, each against the platform's budget (model.API_CALL): the
    first takes the grant the send was given, every further one waits for a grant of its own,
    in the send's priority. Each grant is given back as its call is answered, so a send never
    holds two (two sends waiting for a second grant each could otherwise hold every place in
    flight)."""

    __slots__ = ("budget", "priority", "held", "calls")

    def __init__(self, budget: RateBudget, priority: int) -> None:
        self.budget, self.priority = budget, priority
        self.held = True  # the send's own grant, not yet used by a call
        self.calls = 0

    @asynccontextmanager
    async def call(self) -> AsyncIterator[None]:
        if not self.held:
            await self.budget.acquire(self.priority)
            self.held = True
        self.calls += 1
        try:
            yield
        finally:
            self.held = False
            self.budget.call_answered()


@dataclass(eq=False)
class _Prompt:
    shown: bool = False  # a message of it was shown: the next ones number on


@dataclass(eq=False)
class _Item:
    platform: str
    chat_id: str
    identity_id: int | None
    out: Outbound
    priority: int
    row: outbox.Claimed | None = None  # None: never written down (edits, ballot ticks)
    counted: bool = False  # claimed from the outbox by the background sender
    holds: int = 0  # 429s waited out in memory
    seq: int = 0
    prompt: _Prompt | None = None  # the reply it is part of, numbered as one prompt
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class _Lane:
    __slots__ = ("busy", "items", "task")

    def __init__(self) -> None:
        self.items: list[_Item] = []
        self.task: asyncio.Task | None = None
        self.busy = False  # the first item is with the platform


class Deliverer:
    def __init__(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        adapters: dict[str, Adapter],
        *,
        max_attempts: int = 6,
        max_inflight: int | None = None,
        batch: int = 500,
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.adapters = adapters
        self.max_attempts = max_attempts
        self.batch = batch
        self.budgets = {
            name: RateBudget(a.limits.per_second, a.limits.per_chat_per_second,
                             max_inflight=max_inflight)
            for name, a in adapters.items()
        }
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._seq = itertools.count()
        self._queued = 0  # claimed rows not yet answered
        self._progress = asyncio.Event()
        self._results: list[tuple[_Item, SendResult]] = []
        self._writer: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        self._leading = False  # this process holds the sender lease (see leads())
        self.started_at: datetime = utcnow()
        self.sent = 0
        self.retried = 0
        self.limited = 0  # sends answered 429 (retry after)
        self.api_calls = 0  # calls made by sends (one, or each one an adapter counted)

    @property
    def double_bound(self) -> int:
        """Messages a crash may send twice: requests in flight, plus answers not yet written
        (those that arrived during one commit, at most another window)."""
        return 2 * max((b.max_inflight for b in self.budgets.values()), default=0)

    def wake(self) -> None:
        self._wake.set()

    def _shares_a_budget(self) -> bool:
        """Several processes may send for this platform: PostgreSQL, all chats served."""
        return self.engine.dialect.name == "postgresql" and self._serves_all()

    def leads(self) -> bool:
        """This process sends for the bot and runs its scheduled jobs: it holds the sender
        lease (PostgreSQL, several workers), or there is no other to share them with."""
        return self._leading or not self._shares_a_budget()

    def sends_replies(self) -> bool:
        """Replies of the updates handled here are sent from here, right after the commit:
        unless several processes share the bot's budget (PostgreSQL). Then every worker, the
        lease holder too, leaves them in the outbox for the holder's sender, which claims them
        in the order they were written: one budget, and no reply overtaking an earlier one to
        the same chat written by another worker. (A process running no sender at all, a
        one-off or a test, sends its own.)"""
        return self._task is None or not self._shares_a_budget()

    def start(self) -> None:
        self._stop.clear()
        self._closing = False
        self.started_at = utcnow()
        self._task = asyncio.create_task(self.run(), name="deliverer")

    async def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self._abandon_lanes()
        await self.flush()
        for budget in self.budgets.values():
            budget.close()

    # -- the background sender: claims due rows, keeps about two seconds of sending queued --
    async def run(self) -> None:
        try:
            async with _SenderLease(self.engine, shared=self._serves_all()) as lease:
                recovered: outbox.Scope | None = None
                while not self._stop.is_set():
                    if not await lease.held():
                        await self._sleep(2.0)
                        continue
                    if not self._leading:
                        self._leading = True
                        await lease.listen(self.wake)
                        if self._shares_a_budget():
                            # The sender before (maybe killed a moment ago) may have sent in
                            # the last second, to the bot's limit and to some chat: nothing
                            # goes out until a whole window has passed, so neither the
                            # platform's rate nor a chat's 1/s is broken at the hand-over.
                            await _wait(self._stop, TAKEOVER_PAUSE)  # not cut short by a wake
                    scope = self.scope()
                    if scope != recovered:  # at start, and for chats newly served
                        await self._recover(scope, first=recovered is None)
                        recovered = scope
                    try:
                        claimed = await self._claim_more()
                    except Exception:
                        log.exception("claiming from the outbox failed")
                        claimed = -1
                    if claimed == 0:
                        await self._sleep(1.0)
                    elif claimed < 0:
                        await self._sleep(2.0)
        except asyncio.CancelledError:
            # The process is going down hard: nothing more is sent or written, as in a crash.
            for lane in list(self._lanes.values()):
                if lane.task is not None:
                    lane.task.cancel()
            raise
        finally:
            self._leading = False

    async def _recover(self, scope: outbox.Scope, *, first: bool = True) -> None:
        """Rows left "sending" by a sender that died are resumed now, not minutes later.

        Pushes are claimed only by the lease holder, so those claimed before this sender began
        holding it belong to the dead at once. On PostgreSQL a reply may be on its way from
        another live worker (the one that handled its update): replies get a grace period."""
        grace = RECLAIM_GRACE if self.engine.dialect.name == "postgresql" else timedelta(0)
        async with self.sessions() as session, session.begin():
            resumed = 0
            if grace and first and self._serves_all():
                resumed += await outbox.reclaim_stale(session, timedelta(0), scope=scope,
                                                      pushes_only=True)
            resumed += await outbox.reclaim_stale(session, grace, claimed_before=self.started_at,
                                                  scope=scope)
        if resumed:
            log.info("resumed %d messages left in flight by a stopped sender", resumed)

    def scope(self) -> outbox.Scope:
        """What this process delivers: its adapters' platforms, and of each the chats it serves
        (read at every claim: a terminal window may switch person)."""
        return {name: a.chats for name, a in self.adapters.items()}

    def _serves_all(self) -> bool:
        return any(a.chats is None for a in self.adapters.values())

    def _claim_size(self) -> int:
        rate = max((b.rate for b in self.budgets.values()), default=self.batch)
        return max(10, min(self.batch, int(rate * CLAIM_SECONDS)))

    async def _claim_more(self) -> int:
        """Top the queue up; the number claimed, or wait for room when it is full."""
        size = self._claim_size()
        room = size - self._queued
        if room < size // 2:
            self._progress.clear()
            await _wait(self._progress, 1.0)
            return 1
        async with self.sessions() as session, session.begin():
            await outbox.reclaim_stale(session, STALE_CLAIM)
            claimed = await outbox.claim(session, room, scope=self.scope())
        self._submit_rows(claimed)
        return len(claimed)

    async def _sleep(self, seconds: float) -> None:
        await _wait(self._wake, seconds)
        self._wake.clear()

    async def drain_once(self) -> bool:
        """Claim one batch, send it and write the results; False when nothing was due."""
        async with self.sessions() as session, session.begin():
            await outbox.reclaim_stale(session, STALE_CLAIM)
            claimed = await outbox.claim(session, self._claim_size(), scope=self.scope())
        if not claimed:
            return False
        await asyncio.gather(*(item.done for item in self._submit_rows(claimed)))
        await self.flush()
        return True

    # -- replies: sent at once by the process that handled the update ---------------------
    async def send_replies(self, platform: str, chat_id: str, identity_id: int | None,
                           replies: list[tuple[Outbound, int | None]]) -> None:
        """Send one update's replies in order, through the same lane and budget as pushes;
        `(outbound, row id)`, the id of its outbox row when it was written down."""
        items, prompt = [], _Prompt()
        for out, row_id in replies:
            row = None if row_id is None or identity_id is None else outbox.Claimed(
                row_id, identity_id, platform, chat_id, {}, 1, int(outbox.Priority.REPLY), None)
            items.append(_Item(platform, chat_id, identity_id, out,
                               int(outbox.Priority.REPLY), row, prompt=prompt))
        if not items:
            return
        lane = self._submit(items, here=True)
        if lane is not None:
            # The chat had no lane: this task runs it until its own replies are answered, then
            # hands whatever came after to a task. A lane task started for each update, and
            # the futures awaited across it, cost 2 to 4 % of the bot's CPU per update.
            await self._run_lane((platform, chat_id), lane, until=items[-1].done)
        if not all(item.done.done() for item in items):
            await asyncio.gather(*(item.done for item in items))

    # -- lanes --------------------------------------------------------------------------------
    def _submit_rows(self, rows: list[outbox.Claimed]) -> list[_Item]:
        items = [_Item(r.platform, r.chat_id, r.identity_id, Outbound.from_json(r.payload),
                       r.priority, r, counted=True) for r in rows]
        self._queued += len(items)
        self._submit(items)
        return items

    def _submit(self, items: list[_Item], *, here: bool = False) -> _Lane | None:
        """Queue `items` in their chats' lanes; with `here`, a lane that had no task is
        returned for the caller to run, instead of starting one."""
        run_here = None
        for item in items:
            item.seq = next(self._seq)
            key = (item.platform, item.chat_id)
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = _Lane()
            # In priority order, after anything of the same priority already waiting.
            pos = len(lane.items)
            while pos > 1 and (lane.items[pos - 1].priority, lane.items[pos - 1].seq) > (
                    item.priority, item.seq):
                pos -= 1
            lane.items.insert(pos, item)
            if lane.task is None:
                if here:
                    lane.task = asyncio.current_task()
                    run_here = lane
                else:
                    lane.task = asyncio.create_task(self._run_lane(key, lane))
        return run_here

    async def _run_lane(self, key: tuple[str, str], lane: _Lane,
                        until: asyncio.Future | None = None) -> None:
        """Send the lane's messages in order; run by a caller's task (`until` the future of
        its last message), once that is answered the rest go on in a task of the lane's own."""
        platform, chat = key
        adapter = self.adapters.get(platform)
        budget = self.budgets.get(platform)
        try:
            while lane.items and not self._closing:
                if until is not None and until.done():
                    break
                item = lane.items[0]
                if adapter is None or budget is None:
                    lane.items.pop(0)
                    self._finish(item, SendResult(SendStatus.FAILED, error="no adapter"))
                    continue
                if adapter.chats is not None and chat not in adapter.chats:
                    # Claimed just before the adapter stopped serving this chat (a terminal
                    # window switched person): back to the outbox unsent, for its own window.
                    for rest in lane.items:
                        self._finish(rest, SendResult(SendStatus.RETRY, error=FOLLOWS))
                    lane.items.clear()
                    break
                wait = budget.chat_ready_in(chat)
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                await budget.acquire(item.priority)
                result = None
                lane.busy = True
                calls = _Calls(budget, item.priority)
                metered = API_CALL.set(calls.call)
                try:
                    if (not adapter.capabilities.buttons and item.identity_id is not None
                            and item.out.number_from is None):  # not again on a retry
                        await self._number_choices(item)
                    result = await adapter.send(chat, item.out)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # an adapter bug must not stop the sender
                    log.exception("send failed")
                    result = SendResult(SendStatus.RETRY, retry_after=5, error=repr(exc))
                finally:
                    API_CALL.reset(metered)
                    budget.release(chat, result, granted=calls.held)
                    self.api_calls += max(1, calls.calls)
                if result.flood:
                    self.limited += 1
                lane.busy = False
                if result.flood and result.retry_after <= HOLD_SECONDS and item.holds < 5:
                    item.holds += 1
                    item.out.answer_callback = None  # answered with the refused attempt
                    continue  # the chat (or the bot) waits; this message stays first
                lane.items.pop(0)
                self._finish(item, result)
                if result.status == SendStatus.UNREACHABLE and not result.for_now:
                    for rest in lane.items:  # marked with the identity in the outbox
                        self._finish(rest, result, written=True)
                    lane.items.clear()
                elif result.status == SendStatus.RETRY and lane.items:
                    # Held back: the rest of this chat waits in the outbox behind it.
                    for rest in lane.items:
                        self._finish(rest, SendResult(SendStatus.RETRY, error=FOLLOWS))
                    lane.items.clear()
        finally:
            if self._lanes.get(key) is lane and not lane.items:
                del self._lanes[key]
            elif self._lanes.get(key) is lane:
                lane.task = None  # cancelled: its rows stay claimed until recovered
        if until is not None and lane.items and lane.task is None and not self._closing \
                and self._lanes.get(key) is lane:
            lane.task = asyncio.create_task(self._run_lane(key, lane))

    async def _number_choices(self, item: _Item) -> None:
        """A platform without buttons shows them as numbers: what the numbers mean is written
        before the message is shown, so a number typed right after it finds them. The
        messages of one reply are one prompt, numbered on (two /pending items: 1-2, 3-4)."""
        prompt = item.prompt
        if item.identity_id is None:  # a flood warning or an error note: no prompt to keep
            return
        async with self.sessions() as session, session.begin():
            item.out.number_from = await choices.remember(
                session, item.identity_id, item.out, extend=prompt is not None and prompt.shown)
        if prompt is not None and choices.shows_something(item.out):
            prompt.shown = True

    def _finish(self, item: _Item, result: SendResult, *, written: bool = False) -> None:
        if item.counted:
            item.counted = False
            self._queued -= 1
        if item.row is not None:
            if not written:
                self._results.append((item, result))
                if self._writer is None or self._writer.done():
                    self._writer = asyncio.create_task(self._write_loop(), name="outbox-writer")
        elif result.status != SendStatus.SENT:
            log.warning("reply to %s not sent: %s %s", item.chat_id, result.status, result.error)
        if result.status == SendStatus.SENT:
            self.sent += 1
        self._progress.set()
        if not item.done.done():
            item.done.set_result(result)

    async def _abandon_lanes(self) -> None:
        """A polite stop: lanes end after their current send; unsent rows go back to pending
        (one still with the platform stays claimed: the next start resumes it)."""
        self._closing = True
        lanes = list(self._lanes.values())
        tasks = [lane.task for lane in lanes if lane.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=2.0)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        rows = [i.row.id for lane in lanes
                for n, i in enumerate(lane.items) if i.row is not None and not (n == 0 and lane.busy)]
        for lane in lanes:
            for item in lane.items:
                if not item.done.done():
                    item.done.cancel()
        self._lanes.clear()
        if rows:
            async with self.sessions() as session, session.begin():
                await outbox.release(session, rows)

    # -- writing results back: group commits, as the answers come ----------------------------
    async def _write_loop(self) -> None:
        failures = 0
        while self._results:
            batch, self._results = self._results, []
            try:
                async with self.sessions() as session, session.begin():
                    await self._write(session, batch)
                failures = 0
            except Exception:
                failures += 1
                if self._stop.is_set() and failures >= 3:
                    # Stopping with the database gone: the rows stay claimed, and the next
                    # start resumes them (these few may then arrive twice).
                    log.exception("giving up writing %d delivery results at shutdown",
                                  len(batch) + len(self._results))
                    self._results.clear()
                    break
                log.exception("writing %d delivery results failed; retrying", len(batch))
                self._results[:0] = batch
                await asyncio.sleep(1.0)

    async def flush(self) -> None:
        """Wait until every answer so far is written."""
        while self._results or (self._writer is not None and not self._writer.done()):
            if self._writer is None or self._writer.done():
                self._writer = asyncio.create_task(self._write_loop(), name="outbox-writer")
            await asyncio.shield(self._writer)

    async def _write(self, session: AsyncSession, batch: list[tuple[_Item, SendResult]]) -> None:
        written = [(i.row, r) for i, r in batch if i.row is not None]  # only rows are queued
        sent = [(row.id, r.message_ref, row.group_key) for row, r in written
                if r.status == SendStatus.SENT]
        await outbox.mark_sent_many(session, sent)
        held: dict[int, datetime] = {}  # identity -> nothing of theirs leaves before
        for row, result in written:
            if result.status == SendStatus.SENT:
                continue
            if result.status == SendStatus.UNREACHABLE and result.for_now:
                await outbox.mark_unreachable_now(session, row.id, result.error)
            elif result.status == SendStatus.UNREACHABLE:
                await outbox.mark_unreachable(session, row.identity_id, row.id)
            elif result.error == FOLLOWS:  # never attempted: waits behind the one held back
                await outbox.mark_retry(session, row.id, held.get(row.identity_id, utcnow()),
                                        None, count_attempt=False)
            elif result.status == SendStatus.RETRY and (
                    result.flood or row.attempts < self.max_attempts):
                self.retried += 1
                delay = result.retry_after if result.flood else max(
                    result.retry_after, min(300.0, 2.0 ** row.attempts))
                at = utcnow() + timedelta(seconds=delay)
                held[row.identity_id] = max(at, held.get(row.identity_id, at))
                await outbox.mark_retry(session, row.id, at, result.error,
                                        count_attempt=not result.flood)
            else:
                await outbox.mark_failed(session, row.id, result.error)
        for identity_id, at in held.items():
            await outbox.push_back(session, identity_id, at)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Until `event` is set or `seconds` pass. Not `asyncio.wait_for`: on Python 3.11 a task
    cancelled while wait_for's timeout fires can hang in it for good (the killed-sender test
    did, now and then); `asyncio.timeout` has no inner task to lose the cancellation in."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        pass


class _SenderLease:
    """On PostgreSQL one process at a time claims the outbox's pushes (an advisory lock on a
    connection kept open); SQLite has one writer anyway. Replies are sent by the process that
    handled the update, lease or not. A process whose adapters each serve only some chats (a
    terminal window: its own person) needs no lease: it claims only those chats' rows, and its
    sends are not counted against a platform's limits."""

    def __init__(self, engine: AsyncEngine, *, shared: bool = True) -> None:
        self.engine = engine
        self._conn: AsyncConnection | None = None
        self._held = engine.dialect.name != "postgresql" or not shared

    async def __aenter__(self) -> _SenderLease:
        if not self._held:
            self._conn = await self.engine.connect()
        return self

    async def held(self) -> bool:
        if not self._held and self._conn is not None:
            got = await self._conn.scalar(text("SELECT pg_try_advisory_lock(:k)"),
                                          {"k": SENDER_LOCK_KEY})
            await self._conn.commit()
            self._held = bool(got)
        return self._held

    async def listen(self, wake: Callable[[], None]) -> None:
        """While held on PostgreSQL: wake the sender whenever a transaction queued something
        (outbox.notify), such as another worker's replies."""
        if self._conn is None:
            return
        raw = await self._conn.get_raw_connection()
        driver = raw.driver_connection  # asyncpg's connection
        if driver is not None:
            await driver.add_listener(outbox.WAKE_CHANNEL, lambda *_: wake())

    async def __aexit__(self, *exc) -> None:
        if self._conn is None:
            return
        try:
            if self._held:
                await self._conn.execute(text("SELECT pg_advisory_unlock(:k)"),
                                         {"k": SENDER_LOCK_KEY})
                await self._conn.commit()
            await self._conn.close()
        except DBAPIError:
            # The connection is gone (the server closed it): so is the lock it held.
            log.warning("sender lease connection lost before release")
            await self._conn.invalidate()
