"""The terminal chat through its stdin/stdout, the CLI as an operator runs it, and the texts."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from bot.app import build_app
from bot.i18n import LANGUAGES, Texts
from bot.messaging.terminal import TerminalAdapter
from tests.conftest import DEMO, ROOT, make_settings


async def test_terminal_chat_numbered_choices(sqlite_url, tmp_path):
    stdin = io.StringIO("/start\n2\n中海\n1\n/skip\n/quit\n")
    stdout = io.StringIO()
    adapter = TerminalAdapter("tess", stdin=stdin, stdout=stdout)
    app = await build_app(make_settings(sqlite_url, tmp_path), {"terminal": adapter},
                          territory=DEMO, flood_guard=False)
    await app.start(deliver=False, schedule=False)
    try:
        await adapter.finished.wait()
    finally:
        await app.stop()
    out = stdout.getvalue()
    assert "[1] 中文" in out and "[2] English" in out
    assert "Language set to English." in out
    assert "Do you live in Zhonghai Mingcheng?" in out
    assert "pick or type your building number" in out
    assert "There is no /skip command." in out


def _cli(*args, db):
    env = {**os.environ, "DATABASE_URL": db}
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_commands(tmp_path):
    db = f"sqlite+aiosqlite:///{tmp_path}/cli.sqlite3"
    help_ = _cli("--help", db=db)
    assert help_.returncode == 0
    for word in ("run", "chat", "db", "territory", "admin"):
        assert word in help_.stdout
    assert _cli("db", "upgrade", db=db).stdout.strip() == "database at head"
    empty = _cli("admin", "list", db=db)
    assert empty.returncode == 0 and "no roles granted yet" in empty.stdout, empty.stderr
    assert "admin grant terminal:NAME" in empty.stdout
    loaded = _cli("territory", "load", str(DEMO), db=db)
    assert "estates=4" in loaded.stdout, loaded.stderr
    granted = _cli("admin", "grant", "telegram:42", "staff", "sxs-station", db=db)
    assert granted.stdout.strip() == "granted", granted.stderr
    bad = _cli("admin", "grant", "telegram:42", "staff", "nowhere", db=db)
    assert bad.returncode == 2 and "unknown_scope" in bad.stdout
    listed = _cli("admin", "list", db=db)
    assert "telegram:42" in listed.stdout and "staff sxs-station" in listed.stdout
    chat = subprocess.run([sys.executable, "-m", "bot", "chat", "--as", "cli"], cwd=ROOT,
                          env={**os.environ, "DATABASE_URL": db}, input="/help\n/quit\n",
                          capture_output=True, text=True, timeout=120)
    assert "/profile" in chat.stdout


def test_admin_grant_on_a_brand_new_database_loads_the_territory(tmp_path):
    """`admin grant … staff CODE` first thing on a new database: the demo territory is loaded
    (it failed with unknown_scope until a chat or run had loaded it)."""
    db = f"sqlite+aiosqlite:///{tmp_path}/new.sqlite3"
    granted = _cli("admin", "grant", "telegram:42", "staff", "sxs-station", db=db)
    assert granted.returncode == 0, granted.stdout + granted.stderr
    assert granted.stdout.strip().splitlines()[-1] == "granted"
    assert "territory loaded" in granted.stdout
    # Started elsewhere than the project folder, the demo territory is still found.
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/other.sqlite3"}
    elsewhere = subprocess.run([sys.executable, "-m", "bot", "admin", "grant", "telegram:42",
                                "staff", "sxs-station"], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=120)
    assert elsewhere.returncode == 0, elsewhere.stdout + elsewhere.stderr
    # A territory file that is not there: it says how to load one.
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/third.sqlite3",
           "BOT_TERRITORY_FILE": str(tmp_path / "missing.json")}
    lost = subprocess.run([sys.executable, "-m", "bot", "admin", "grant", "telegram:42",
                           "staff", "sxs-station"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert lost.returncode == 2 and "territory load FILE" in lost.stdout


def test_every_text_exists_in_both_languages():
    texts = Texts()
    keys = {lang: set(texts.catalogs[lang]) for lang in LANGUAGES}
    assert keys["zh-Hans"] == keys["en"], keys["zh-Hans"] ^ keys["en"]
    assert len(keys["en"]) > 50


def test_handlers_import_no_platform_library():
    for folder in ("handlers", "storage"):
        for path in (ROOT / folder).rglob("*.py"):
            source = path.read_text(encoding="utf-8")
            assert "import aiogram" not in source and "from aiogram" not in source, path
            if folder == "storage":
                assert "from handlers" not in source, path
