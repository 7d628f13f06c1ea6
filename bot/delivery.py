"""Drains the outbox through the adapters at the rate each platform allows.

A loop with a budget, never recursion: claim a batch, wait for a slot in the global and the
per-chat budget, send, record the result. 429 pauses the whole sender for `retry_after`; 403
marks the recipient unreachable; other failures back off and are retried a bounded number of
times. Rows are claimed in the database, so a crash leaves nothing lost, and rows already
marked sent are never sent again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.messaging.model import Adapter, Outbound, SendResult, SendStatus
from storage import outbox
from storage.base import utcnow

log = logging.getLogger(__name__)

STALE_CLAIM = timedelta(minutes=2)
HEADROOM = 0.95  # of the platform's rate, kept so direct replies are not starved
SENDER_LOCK_KEY = 0x5E17D
ROUND_SECONDS = 2.0
MIN_FACTOR = 0.7
RECOVERY = 0.05  # of the rate, per second without a 429: from the floor back to full in 6 s


class RateBudget:
    """Spaces sends evenly: at most `rate` a second overall (also in any sliding second) and
    `per_chat` a second per chat; after a 429 it aims a little lower and eases back up."""

    def __init__(self, rate: float, per_chat: float, max_chats: int = 50_000) -> None:
        self.rate = rate
        self.interval = 1.0 / rate
        self.chat_interval = 1.0 / per_chat if per_chat > 0 else 0.0
        self._next = 0.0
        self._paused_until = 0.0
        self._span = max(1.0, 1.0 / rate)
        self._capacity = max(1, int(rate * self._span))
        self._window: deque[float] = deque()
        self._factor = 1.0  # share of `rate` aimed at; lowered by 429s
        self._eased_at = time.monotonic()
        self._chats: OrderedDict[str, float] = OrderedDict()
        self._max_chats = max_chats

    def pause(self, seconds: float) -> None:
        """A 429: wait as told, and aim lower for a while (the platform measures arrivals,
        which network and server jitter bunch up), recovering slowly while sends succeed."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
        self._factor = max(MIN_FACTOR, self._factor * 0.9)
        self._eased_at = self._paused_until

    def chat_ready_in(self, chat: str) -> float:
        return max(0.0, self._chats.get(chat, 0.0) - time.monotonic())

    def reserve_chat(self, chat: str) -> None:
        self._chats[chat] = time.monotonic() + self.chat_interval
        self._chats.move_to_end(chat)
        while len(self._chats) > self._max_chats:
            self._chats.popitem(last=False)

    async def slot(self) -> None:
        now = time.monotonic()
        start = max(now, self._next, self._paused_until)
        self._next = start + self.interval / self._factor
        if start > now:
            await asyncio.sleep(start - now)
        # Sends that overslept (a busy event loop) would leave together and exceed the
        # platform's per-second window: never more than `rate` in any sliding window.
        while True:
            now = time.monotonic()
            stamps = self._window
            while stamps and stamps[0] <= now - self._span:
                stamps.popleft()
            capacity = max(1, int(self._capacity * self._factor))
            wait = max(self._paused_until - now,
                       stamps[0] + self._span - now if len(stamps) >= capacity else 0.0)
            if wait <= 0:
                stamps.append(now)
                if self._factor < 1.0:
                    self._factor = min(1.0, self._factor + RECOVERY * max(0.0, now - self._eased_at))
                self._eased_at = max(self._eased_at, now)
                return
            await asyncio.sleep(wait)


class Deliverer:
    def __init__(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        adapters: dict[str, Adapter],
        *,
        max_attempts: int = 6,
        concurrency: int | None = None,
        batch: int = 500,
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.adapters = adapters
        self.max_attempts = max_attempts
        # Enough requests in flight to fill the budget at ~100 ms a round trip.
        top = max((a.limits.per_second for a in adapters.values()), default=30.0)
        self.concurrency = concurrency or max(32, int(top * 0.1))
        self.batch = batch
        self.budgets = {
            name: RateBudget(a.limits.per_second * HEADROOM, a.limits.per_chat_per_second)
            for name, a in adapters.items()
        }
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.sent = 0
        self.retried = 0

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self.run(), name="deliverer")

    async def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def run(self) -> None:
        async with _SenderLease(self.engine) as lease:
            recovered = False
            while not self._stop.is_set():
                if not await lease.held():
                    await self._sleep(2.0)
                    continue
                if not recovered:
                    # Holding the lease means no other sender is alive: claims still marked
                    # "sending" were left by one that died, so resume them now, not minutes later.
                    async with self.sessions() as session, session.begin():
                        resumed = await outbox.reclaim_stale(session, timedelta(0))
                    if resumed:
                        log.info("resumed %d messages left in flight by a stopped sender",
                                 resumed)
                    recovered = True
                try:
                    worked = await self.drain_once()
                except Exception:
                    log.exception("delivery round failed")
                    worked = False
                if not worked:
                    await self._sleep(1.0)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass
        self._wake.clear()

    def _round_size(self) -> int:
        """About two seconds of sending: a reply or an emergency queued behind a bulk batch
        waits at most that long, since each claim takes the highest priority first."""
        rate = max((b.rate for b in self.budgets.values()), default=self.batch)
        return max(10, min(self.batch, int(rate * ROUND_SECONDS)))

    async def drain_once(self) -> bool:
        """Claim and send one batch; False when nothing was due."""
        async with self.sessions() as session, session.begin():
            await outbox.reclaim_stale(session, STALE_CLAIM)
            claimed = await outbox.claim(session, self._round_size())
        if not claimed:
            return False
        sem = asyncio.Semaphore(self.concurrency)
        results: list[tuple[outbox.Claimed, SendResult, float]] = []

        async def one(item: outbox.Claimed) -> None:
            adapter = self.adapters.get(item.platform)
            if adapter is None:
                results.append((item, SendResult(SendStatus.FAILED, error="no adapter"), 0))
                return
            budget = self.budgets[item.platform]
            wait = budget.chat_ready_in(item.chat_id)
            if wait > 0:
                # Not this chat's turn yet: hand it back rather than hold a sending slot.
                results.append((item, SendResult(SendStatus.RETRY, retry_after=wait), -1))
                return
            budget.reserve_chat(item.chat_id)
            async with sem:
                await budget.slot()
                try:
                    result = await adapter.send(item.chat_id, Outbound.from_json(item.payload))
                except Exception as exc:  # an adapter bug must not stop the sender
                    log.exception("send failed")
                    result = SendResult(SendStatus.RETRY, retry_after=5, error=repr(exc))
                if result.flood:
                    budget.pause(result.retry_after)
            results.append((item, result, 0))

        await asyncio.gather(*(one(item) for item in claimed))
        async with self.sessions() as session, session.begin():
            sent = [(item.id, result.message_ref) for item, result, _ in results
                    if result.status == SendStatus.SENT]
            self.sent += len(sent)
            await outbox.mark_sent_many(session, sent)
            for item, result, flag in results:
                if result.status != SendStatus.SENT:
                    await self._record(session, item, result, requeue_only=flag < 0)
        return True

    async def _record(self, session: AsyncSession, item: outbox.Claimed, result: SendResult,
                      *, requeue_only: bool) -> None:
        if result.status == SendStatus.SENT:
            self.sent += 1
            await outbox.mark_sent(session, item.id, result.message_ref)
        elif result.status == SendStatus.UNREACHABLE:
            await outbox.mark_unreachable(session, item.identity_id, item.id)
        elif result.status == SendStatus.RETRY and (
            requeue_only or result.flood or item.attempts < self.max_attempts
        ):
            self.retried += 1
            flood = requeue_only or result.flood
            delay = result.retry_after if flood else max(
                result.retry_after, min(300.0, 2.0 ** item.attempts))
            await outbox.mark_retry(session, item.id, utcnow() + timedelta(seconds=delay),
                                    result.error, count_attempt=not flood)
        else:
            await outbox.mark_failed(session, item.id, result.error)


class _SenderLease:
    """On PostgreSQL one process at a time holds the bot's sending budget (an advisory lock
    on a connection kept open); SQLite has one writer anyway."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._conn = None
        self._held = engine.dialect.name != "postgresql"

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

    async def __aexit__(self, *exc) -> None:
        if self._conn is not None:
            if self._held:
                await self._conn.execute(text("SELECT pg_advisory_unlock(:k)"),
                                         {"k": SENDER_LOCK_KEY})
                await self._conn.commit()
            await self._conn.close()
