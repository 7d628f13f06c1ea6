"""`python -m bot run --workers N`: N processes serving one bot on one PostgreSQL.

Each worker is a whole `python -m bot run` (its own event loop, engine, adapters, deliverer),
sharing with the others only the database and the ports (SO_REUSEPORT: the kernel spreads
incoming connections, Telegram's webhook calls, WeChat's callbacks, web requests, over them).
What must hold across workers is held by the database: one person's updates one at a time (an
advisory lock per person), one sender for the bot's one budget and its scheduled jobs (the
sender lease), each update once (processed-updates table). This supervisor only starts them,
starts again one that died, and stops them all on SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from typing import Any

from storage.db import is_sqlite

log = logging.getLogger(__name__)

RESTART_DELAY = 1.0  # seconds before a worker that died is started again
STOP_WAIT = 20.0  # seconds a worker has to stop politely before it is killed


def why_not(settings: Any, served: list, workers: int) -> str | None:
    """Why N workers cannot serve these settings, or None."""
    if is_sqlite(settings.database.url):
        return (f"{workers} workers need PostgreSQL (DATABASE_URL); SQLite serves one "
                "process")
    if not served:
        return "workers serve platforms: configure Telegram (TELEGRAM_BOT_TOKEN) or WeChat"
    if any(p.name == "telegram" for p in served) and not settings.webhook.url:
        return ("several workers cannot share Telegram's long polling: set BOT_WEBHOOK_URL "
                "(the webhook, whose port the workers share)")
    return None


def worker_env(settings: Any, workers: int) -> dict[str, str]:
    env = dict(os.environ, BOT_WORKERS=str(workers))
    if not settings.webhook.secret:
        # Every worker must check the same secret: one made up here, for all of them.
        env["BOT_WEBHOOK_SECRET"] = secrets.token_urlsafe(32)
    return env


def supervise(settings: Any, workers: int) -> int:
    env = worker_env(settings, workers)
    stopping = False

    def start(index: int) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "bot", "run"],
                                env=dict(env, BOT_WORKER_INDEX=str(index)))
        log.info("worker %d started (pid %d)", index, proc.pid)
        return proc

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    procs = {i: start(i) for i in range(workers)}
    died: dict[int, float] = {}
    while not stopping:
        time.sleep(0.2)
        for index, proc in procs.items():
            if proc.poll() is not None and index not in died:
                log.warning("worker %d (pid %d) ended with %s; starting it again",
                            index, proc.pid, proc.returncode)
                died[index] = time.monotonic()
        for index, at in list(died.items()):
            if not stopping and time.monotonic() - at >= RESTART_DELAY:
                procs[index] = start(index)
                del died[index]
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT
    for proc in procs.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.info("all workers stopped")
    return 0
