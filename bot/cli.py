"""`python -m bot`: run the bot, chat in the terminal, migrate, load territory, manage roles."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from pathlib import Path

from pydantic import ValidationError

from bot.config import Settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run on every configured platform (Telegram, WeChat), "
                                     "else chat here")
    run.add_argument("--workers", type=int, default=None, metavar="N",
                     help="serve with N processes on one PostgreSQL (BOT_WORKERS; needs "
                          "Telegram's webhook when Telegram is served)")
    sub.add_parser("web", help="serve only the web application (the staff dashboard, Open311) "
                               "on BOT_WEB_HOST:BOT_WEB_PORT, beside a bot run elsewhere")
    chat = sub.add_parser("chat", help="chat with the bot in this terminal")
    chat.add_argument("--as", dest="user", default="resident", help="act as this user id")
    chat.add_argument("--lang", default="zh-hans", help="language hint of the user")
    db = sub.add_parser("db", help="database")
    db.add_argument("action", choices=["upgrade"])
    terr = sub.add_parser("territory", help="territory data")
    terr.add_argument("action", choices=["load"])
    terr.add_argument("file", type=Path)
    admin = sub.add_parser("admin", help="roles")
    admin.add_argument("action", choices=["grant", "revoke", "list"])
    admin.add_argument("user", nargs="?", help="telegram:12345, terminal:alice or #12")
    admin.add_argument("role", nargs="?", choices=["admin", "staff", "committee", "team"])
    admin.add_argument("scope", nargs="?", help="station, committee or team code")
    o311 = sub.add_parser("open311", help="Open311 GeoReport v2 API keys")
    o311_sub = o311.add_subparsers(dest="open311_cmd", required=True)
    key = o311_sub.add_parser("key", help="create, revoke or list API keys")
    key.add_argument("action", choices=["create", "revoke", "list"])
    key.add_argument("id", nargs="?", type=int, help="the key's number (revoke)")
    key.add_argument("--scope", help="station:CODE or team:CODE (create)")
    key.add_argument("--label", help="who the key is for, e.g. 'city work orders' (create)")
    wechat = sub.add_parser("wechat", help="WeChat Official Account")
    wechat.add_argument("action", choices=["menu"],
                        help="menu: create the custom menu (报事 / 通知 / 参与: 志愿, 议事)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:  # one clear line per bad setting, no traceback
        for err in exc.errors():
            where = ".".join(str(part) for part in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            print(f"settings error ({exc.title}{' ' + where if where else ''}): {msg}",
                  file=sys.stderr)
        return 2
    # The terminal chat shares the screen with the log: only warnings there.
    from bot.messaging.platforms import PLATFORMS

    served = [p for p in PLATFORMS if p.configured(settings)] if args.cmd == "run" else []
    if args.cmd == "run" and "BOT_WORKER_INDEX" not in os.environ:
        workers = args.workers if args.workers is not None else settings.bot.workers
        if workers > 1:
            from bot.workers import supervise, why_not

            problem = why_not(settings, served, workers)
            if problem:
                print(f"error: {problem}", file=sys.stderr)
                return 2
            logging.basicConfig(level=logging.INFO,
                                format="%(asctime)s %(levelname)s %(name)s: %(message)s")
            return supervise(settings, workers)
    serving = bool(served)
    logging.basicConfig(level=logging.INFO if serving else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # aiogram writes a line for every update handled: at 200,000 residents that is noise, and
    # formatting it costs a sizeable share of an update's time. Failures are logged by dispatch.
    logging.getLogger("aiogram.event").setLevel(logging.WARNING)
    if args.cmd == "db":
        from storage.migrate import upgrade

        upgrade(settings.database.url)
        print("database at head")
        return 0
    # Ctrl-C while starting (migrations, the territory) ends the process at once: every write
    # is in a transaction, so this is a crash that changes nothing. The chat and the bot
    # install their own, polite handler once they are up.
    previous = signal.signal(signal.SIGINT, _leave_now)
    try:
        return asyncio.run(_async_main(args, settings, served))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping: no traceback either
        print(file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)


def _leave_now(signum, frame) -> None:
    sys.stderr.write("\n")
    sys.stderr.flush()
    os._exit(130)


async def _async_main(args, settings: Settings, served: list) -> int:
    if args.cmd == "territory":
        from bot.app import load_territory_file
        from storage.db import create_engine, session_factory
        from storage.migrate import upgrade_async

        await upgrade_async(settings.database.url)
        engine = create_engine(settings.database.url)
        try:
            counts = await load_territory_file(session_factory(engine), args.file)
        finally:
            await engine.dispose()
        print(" ".join(f"{k}={v}" for k, v in counts.items()))
        return 0
    if args.cmd == "admin":
        return await _admin(args, settings)
    if args.cmd == "wechat":
        return await _wechat_menu(settings)
    if args.cmd == "open311":
        return await _open311_key(args, settings)
    if args.cmd == "web":
        return await _web_only(settings)
    if served:
        return await _serve(settings, served)
    return await _chat(settings, getattr(args, "user", "resident"), getattr(args, "lang", "zh-hans"),
                       demo_dashboard=args.cmd == "run")


async def _admin(args, settings: Settings) -> int:
    from storage import roles_service
    from storage.db import create_engine, session_factory

    territory = await _territory_if_empty(settings)  # roles are scoped to its stations/teams
    engine = create_engine(settings.database.url)
    sessions = session_factory(engine)
    try:
        if territory is not None and not await asyncio.to_thread(Path(territory).is_file):
            if args.action != "list":
                print(f"error: the database has no territory yet and {territory} "
                      "(BOT_TERRITORY_FILE) is not there; load one first with "
                      "`python -m bot territory load FILE`")
                return 2
        elif territory is not None:
            from bot.app import load_territory_file

            await load_territory_file(sessions, territory)
            print(f"territory loaded from {territory} (the database had none)")
        async with sessions() as session, session.begin():
            if args.action == "list":
                lines = await roles_service.describe_roles(session)
                for line in lines:
                    print(line)
                if not lines:
                    print("no roles granted yet; grant one with e.g. "
                          "`python -m bot admin grant terminal:NAME staff sxs-station` "
                          "(terminal:NAME is who `python -m bot chat --as NAME` is)")
                return 0
            if not args.user or not args.role:
                print("usage: admin grant|revoke USER ROLE [SCOPE]")
                return 2
            try:
                changed = await roles_service.change_role(
                    session, args.user, args.role, args.scope, actor_id=None,
                    grant=args.action == "grant", create_missing=True)
            except roles_service.RoleError as exc:
                print(f"error: {exc}")
                return 2
            print(("granted" if args.action == "grant" else "revoked") if changed
                  else "unchanged")
            return 0
    finally:
        await engine.dispose()


async def _open311_key(args, settings: Settings) -> int:
    """API keys of the Open311 API: shown once when created, kept hashed; every change audited."""
    from storage import audit, open311
    from storage.base import utcnow
    from storage.db import create_engine, session_factory

    territory = await _territory_if_empty(settings)  # keys are scoped to its stations/teams
    engine = create_engine(settings.database.url)
    sessions = session_factory(engine)
    try:
        if territory is not None and await asyncio.to_thread(Path(territory).is_file):
            from bot.app import load_territory_file

            await load_territory_file(sessions, territory)
        async with sessions() as session, session.begin():
            if args.action == "list":
                rows = await open311.keys(session)
                for key, scope in rows:
                    state = (f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at
                             else "active")
                    print(f"#{key.id} {key.hint}… {scope} {key.label!r} "
                          f"created {key.created_at:%Y-%m-%d %H:%M} {state}")
                if not rows:
                    print("no keys yet; create one with "
                          "`python -m bot open311 key create --scope station:CODE --label NAME`")
                return 0
            if args.action == "revoke":
                if args.id is None:
                    print("usage: open311 key revoke ID (the number `open311 key list` shows)")
                    return 2
                if not await open311.revoke_key(session, args.id, utcnow()):
                    print(f"error: no active key #{args.id}")
                    return 2
                await audit.record(session, None, "open311.key_revoke", f"#{args.id}", by="cli")
                print(f"revoked #{args.id}")
                return 0
            kind, _, code = (args.scope or "").partition(":")
            if not code or not args.label:
                print("usage: open311 key create --scope station:CODE|team:CODE --label NAME")
                return 2
            try:
                key, token = await open311.create_key(session, args.label.strip()[:80], kind,
                                                      code, utcnow())
            except open311.KeyError_ as exc:
                print(f"error: {exc}")
                return 2
            await audit.record(session, None, "open311.key_create", f"#{key.id}", by="cli",
                               scope=args.scope, label=key.label)
        print(f"created #{key.id} for {args.scope} ({key.label}); the key (shown only now):")
        print(token)
        return 0
    finally:
        await engine.dispose()


async def _wechat_menu(settings: Settings) -> int:
    """The account's custom menu, through menu/create (it replaces the menu there)."""
    from aiohttp import ClientError

    from bot.messaging.wechat import MENU, WeChatAdapter, WeChatError, run_with

    wechat = getattr(settings, "wechat")  # noqa: B009 - set from PLATFORMS at run time
    if not wechat.configured:
        print("error: set WECHAT_APP_ID, WECHAT_APP_SECRET and WECHAT_TOKEN first",
              file=sys.stderr)
        return 2
    adapter = WeChatAdapter.from_settings(wechat)
    try:
        await run_with(adapter, adapter.create_menu)
    except (WeChatError, ClientError, OSError) as exc:
        print(f"error: WeChat refused the menu: {exc}", file=sys.stderr)
        return 2
    print("menu created: " + " | ".join(
        name if isinstance(what, str) else f"{name} ({', '.join(n for n, _ in what)})"
        for name, what in MENU))
    return 0


async def _territory_if_empty(settings: Settings) -> Path | None:
    """The demo territory is loaded on a database that has none yet."""
    from sqlalchemy import func, select

    from storage.db import create_engine, session_factory
    from storage.migrate import upgrade_async
    from storage.territory import Estate

    await upgrade_async(settings.database.url)
    engine = create_engine(settings.database.url)
    try:
        async with session_factory(engine)() as session:
            count = await session.scalar(select(func.count()).select_from(Estate))
    finally:
        await engine.dispose()
    return settings.bot.territory_file if not count else None


async def _prepare_database(settings: Settings) -> None:
    """Migrations, and the demo territory on a database that has none. Processes starting
    together take turns: one migrates and loads, the next finds it done."""
    from bot.app import load_territory_file
    from storage.db import create_engine, session_factory
    from storage.migrate import exclusive_startup

    async with exclusive_startup(settings.database.url):
        territory = await _territory_if_empty(settings)
        if territory is not None:
            engine = create_engine(settings.database.url)
            try:
                await load_territory_file(session_factory(engine), territory)
            finally:
                await engine.dispose()


async def _until_signalled(app, *, started=lambda: None, **start: bool) -> int:
    """Start `app`, then run until SIGINT or SIGTERM, then stop it."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await app.start(**start)
    _settle_heap()
    started()
    try:
        await stop.wait()
    finally:
        await app.stop()
    return 0


# Objects allocated, net, between young collections (CPython's default: 700), and young
# collections per older one (default 10, 10).
GC_THRESHOLDS = (50_000, 20, 20)


def _settle_heap() -> None:
    """Once started, what start-up built (half a million objects: models, compiled statements,
    content, the territory) lives as long as the process: frozen out of the cyclic collector,
    and young collections made rarer. Left as it was, the collector walked that heap again and
    again, 10 % of the process's time under load (bench/updates_per_second.py: 1.5 s of 14 s
    in gc callbacks; updates/s of `python -m bot run` 300-356 before, 410-440 after)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _serve(settings: Settings, served: list) -> int:
    """Every configured platform in one process, on one database, until SIGINT or SIGTERM."""
    from bot.app import build_app

    adapters = {platform.name: platform.build(settings) for platform in served}
    await _prepare_database(settings)
    app = await build_app(settings, adapters, migrate=False)

    def started() -> None:
        for platform in served:
            detail = platform.describe(settings)
            logging.getLogger("bot").info("running on %s%s", platform.title or platform.name,
                                          f" ({detail})" if detail else "")
    return await _until_signalled(app, started=started)


async def _web_only(settings: Settings) -> int:
    """The web application alone, on the bot's database: what staff do there reaches residents
    through the outbox, which the bot's own process (`python -m bot run`) sends and whose jobs
    it runs; this process sends nothing and runs no job."""
    from bot.app import build_app

    if not settings.bot.web_url:
        host = "127.0.0.1" if settings.bot.web_host in ("0.0.0.0", "::") else settings.bot.web_host
        settings.bot.web_url = f"http://{host}:{settings.bot.web_port}"
    url = f"{settings.bot.web_url.rstrip('/')}/dashboard/"
    await _prepare_database(settings)
    app = await build_app(settings, {}, migrate=False)
    texts = app.services.texts

    def started() -> None:
        print(texts.get(texts.default, "terminal.web_only", url=url), flush=True)
    return await _until_signalled(app, started=started, deliver=False, schedule=False)


async def _chat(settings: Settings, user: str, lang: str, *, demo_dashboard: bool = False) -> int:
    from sqlalchemy import select

    from bot.app import build_app
    from bot.messaging.terminal import TerminalAdapter
    from storage import choices
    from storage.people import Identity, Resident

    adapter = TerminalAdapter(user, language=lang)
    territory = await _territory_if_empty(settings)
    if demo_dashboard and not settings.bot.web_url:
        # `make run` on this machine: the staff dashboard on loopback, for the demo admin.
        settings.bot.web_host = "127.0.0.1"
        settings.bot.web_url = f"http://127.0.0.1:{settings.bot.web_port}"
    # One person at a keyboard (or a script piping lines in): no flood guard.
    app = await build_app(settings, {"terminal": adapter}, migrate=False, territory=territory,
                          flood_guard=False)

    async def language_of(name: str) -> str | None:
        async with app.sessions() as session:
            return await session.scalar(
                select(Resident.language).join(Identity, Identity.resident_id == Resident.id)
                .where(Identity.platform == adapter.platform,
                       Identity.platform_user_id == name))

    async def choices_of(name: str) -> list[str]:
        async with app.sessions() as session:
            return [label for label, _ in await choices.current_for(
                session, adapter.platform, name)]

    adapter.texts = app.services.texts
    adapter.language_of, adapter.choices_of = language_of, choices_of
    adapter.on_switch = app.deliverer.wake
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)  # Ctrl-C: leave at once, quietly
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    if demo_dashboard and app.web is not None:
        from bot.app import open_demo_dashboard

        await open_demo_dashboard(app, adapter)
    await app.start()
    finished = asyncio.create_task(adapter.finished.wait())
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([finished, stopped], return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            print()  # the prompt's line ends; the shell starts on a fresh one
    finally:
        finished.cancel()
        stopped.cancel()
        loop.remove_signal_handler(signal.SIGINT)  # a second Ctrl-C while stopping: at once
        await app.stop()
    return 0
