"""The direction of imports, read from the source: handlers -> bot (framework) and storage;
web (the HTTP features, beside handlers) -> bot, services and storage, never handlers;
bot -> storage; storage -> nothing of ours above it. Only the composition root (bot/app.py)
names the features (handlers and web). No module imports itself back through others (no cycles).

Every `import` counts, at module level or inside a function: a deferred import is still a
dependency, and hiding one in a function is how cycles were kept before. One exception, named
below: bot.context types the Services the composition root builds with the features' classes,
importing their names under `if TYPE_CHECKING:` only (never run); anywhere else, and for any
other layer, such an import counts like the rest."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "services", "storage", "handlers", "web")
COMPOSITION_ROOT = {"bot.app"}
# Module -> layers whose names it may import for type checking only (`if TYPE_CHECKING:`).
TYPE_NAMES_ONLY = {"bot.context": {"services"}}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The import nodes inside `if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`) blocks."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
                (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
                or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")):
            for inner in node.body:
                found.update(id(n) for n in ast.walk(inner)
                             if isinstance(n, ast.Import | ast.ImportFrom))
    return found


def _imports(path: Path, modules: dict[str, Path]) -> tuple[set[str], set[str]]:
    """Our modules (and third-party top-level names) that `path` imports: (those it imports
    when it runs, those it names for type checking only)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = _type_checking_only(tree)
    runs: set[str] = set()
    names: set[str] = set()
    for node in ast.walk(tree):
        targets = names if id(node) in typing_only else runs
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from handlers import polls` imports the module handlers.polls.
            subs = {f"{node.module}.{a.name}" for a in node.names
                    if f"{node.module}.{a.name}" in modules}
            targets.update(subs if len(subs) == len(node.names) else {node.module, *subs})
    return runs, names


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    modules = _modules()
    ours, external = {}, {}
    for name, path in modules.items():
        runs, names = _imports(path, modules)
        exempt = TYPE_NAMES_ONLY.get(name, set())
        targets = runs | {t for t in names if _layer(t) not in exempt}
        ours[name] = {t for t in targets if t in modules and t != name}
        external[name] = {t.split(".")[0] for t in targets if t.split(".")[0] not in PACKAGES}
    return ours, external


def _layer(module: str) -> str:
    return module.split(".")[0]


def test_no_import_runs_upward():
    graph, _ = _graph()
    allowed = {"handlers": {"handlers", "services", "bot", "storage"},
               "web": {"web", "services", "bot", "storage"},
               "services": {"services", "storage", "bot"}, "bot": {"bot", "storage"},
               "storage": {"storage"}}
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items() for target in targets
        if _layer(target) not in allowed[_layer(module)] and module not in COMPOSITION_ROOT
    )
    assert upward == []


def test_no_import_cycle():
    graph, _ = _graph()
    cycles: list[list[str]] = []
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert cycles == []


def test_no_handler_imports_sqlalchemy():
    """Handlers hold no SQL: queries and writes live in storage/ (or services/)."""
    _, external = _graph()
    with_sql = sorted(m for m, names in external.items()
                      if _layer(m) == "handlers" and "sqlalchemy" in names)
    assert with_sql == [], "SQL in a handler: put it in storage"


# Handlers call one storage/service function; they do not drive the ORM session themselves.
SESSION_METHODS = frozenset({"get", "execute", "scalars", "scalar", "add", "add_all", "flush",
                             "refresh", "delete", "merge"})
# Module -> direct session calls it still makes. Counts may only go down: move the call into
# storage/ (or services/) and lower the number here; a module at zero leaves the list. Empty
# now (94 calls in 15 modules were moved out): a new handler call fails the test.
SESSION_CALLS_STILL_IN_HANDLERS: dict[str, int] = {}


def _ends_in_session(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id.endswith("session")
    if isinstance(node, ast.Attribute):
        return node.attr.endswith("session")
    return False


def _session_calls() -> dict[str, list[int]]:
    """Handler module -> line numbers of `<...session>.get/execute/add/...(...)` calls."""
    found: dict[str, list[int]] = {}
    for name, path in _modules().items():
        if _layer(name) not in ("handlers", "web"):  # web features, like handlers, call storage
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        lines = sorted(node.lineno for node in ast.walk(tree)
                       if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                       and node.func.attr in SESSION_METHODS
                       and _ends_in_session(node.func.value))
        if lines:
            found[name] = lines
    return found


def test_handlers_make_no_new_session_calls():
    """No handler drives the session more than listed, and the list is exact (lower it when
    a call moves to storage, so it cannot grow back unnoticed)."""
    actual = {name: len(lines) for name, lines in _session_calls().items()}
    grown = sorted(f"{name}: {count} session calls (lines {_session_calls()[name]}), "
                   f"{SESSION_CALLS_STILL_IN_HANDLERS.get(name, 0)} allowed"
                   for name, count in actual.items()
                   if count > SESSION_CALLS_STILL_IN_HANDLERS.get(name, 0))
    assert grown == [], "a handler calls the session: put the query in storage"
    stale = sorted(f"{name}: listed {listed}, has {actual.get(name, 0)}"
                   for name, listed in SESSION_CALLS_STILL_IN_HANDLERS.items()
                   if listed > actual.get(name, 0))
    assert stale == [], "lower SESSION_CALLS_STILL_IN_HANDLERS to the actual counts"


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The walk is not blind: a storage module importing a handler is caught."""
    import tests.test_layers as layers

    fake = tmp_path
    for package in PACKAGES:
        (fake / package).mkdir()
        (fake / package / "__init__.py").write_text("")
    (fake / "handlers" / "polls.py").write_text("from storage import polls\n")
    (fake / "storage" / "polls.py").write_text("def f():\n    from handlers import polls\n")
    monkeypatch.setattr(layers, "ROOT", fake)
    graph, _ = layers._graph()
    assert graph["storage.polls"] == {"handlers.polls"}
    try:
        layers.test_no_import_runs_upward()
    except AssertionError:
        pass
    else:
        raise AssertionError("an upward import went unnoticed")
    try:
        layers.test_no_import_cycle()
    except AssertionError:
        pass
    else:
        raise AssertionError("a cycle went unnoticed")


def test_the_checker_sees_sql_in_a_handler(tmp_path, monkeypatch):
    """A handler importing SQLAlchemy, even inside a function, is caught."""
    import tests.test_layers as layers

    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "handlers" / "polls.py").write_text(
        "async def f(session):\n    from sqlalchemy import select\n")
    monkeypatch.setattr(layers, "ROOT", tmp_path)
    try:
        layers.test_no_handler_imports_sqlalchemy()
    except AssertionError:
        pass
    else:
        raise AssertionError("SQL in a handler went unnoticed")


def test_the_checker_counts_type_only_imports_outside_the_exception(tmp_path, monkeypatch):
    """`if TYPE_CHECKING:` spares bot.context's names of services only: the same import in
    another bot module, one of a handler, or one that runs, is upward."""
    import tests.test_layers as layers

    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "services" / "guides.py").write_text("")
    (tmp_path / "handlers" / "polls.py").write_text("")
    (tmp_path / "bot" / "context.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from services import guides\n")
    monkeypatch.setattr(layers, "ROOT", tmp_path)
    layers.test_no_import_runs_upward()  # the exception itself passes
    for name, text in (
            ("context.py", "import typing\nif typing.TYPE_CHECKING:\n    import handlers.polls\n"),
            ("context.py", "from services import guides\n"),
            ("dispatch.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                            "    from services import guides\n")):
        (tmp_path / "bot" / name).write_text(text)
        try:
            layers.test_no_import_runs_upward()
        except AssertionError:
            pass
        else:
            raise AssertionError(f"an upward import in bot/{name} went unnoticed: {text!r}")
        (tmp_path / "bot" / name).write_text("")


def test_the_checker_sees_a_session_call_in_a_handler(tmp_path, monkeypatch):
    """`ctx.session.get(...)` or `session.execute(...)` in a handler is counted; a listed count
    above the actual one is caught too."""
    import tests.test_layers as layers

    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "handlers" / "polls.py").write_text(
        "async def f(ctx, session, rows):\n"
        "    await ctx.session.get(Poll, 1)\n"
        "    await session.execute(query)\n"
        "    ctx.db_session.add_all(rows)\n"
        "    rows.get(1)\n"  # not a session
        "    await polls.get(ctx.session, 1)\n")  # a storage function taking the session
    monkeypatch.setattr(layers, "ROOT", tmp_path)
    assert layers._session_calls() == {"handlers.polls": [2, 3, 4]}
    for listed in ({}, {"handlers.polls": 2}, {"handlers.polls": 4}):
        monkeypatch.setattr(layers, "SESSION_CALLS_STILL_IN_HANDLERS", listed)
        try:
            layers.test_handlers_make_no_new_session_calls()
        except AssertionError:
            pass
        else:
            raise AssertionError(f"session calls against {listed} went unnoticed")
    monkeypatch.setattr(layers, "SESSION_CALLS_STILL_IN_HANDLERS", {"handlers.polls": 3})
    layers.test_handlers_make_no_new_session_calls()


def test_the_checker_sees_web_importing_a_handler_and_a_session_call_in_web(tmp_path,
                                                                          monkeypatch):
    """web/ stands beside handlers/: importing a handler is upward, and its session calls are
    counted as a handler's are."""
    import tests.test_layers as layers

    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "handlers" / "reports.py").write_text("")
    (tmp_path / "web" / "api.py").write_text(
        "async def f(session):\n    from handlers import reports\n"
        "    await session.execute(q)\n")
    monkeypatch.setattr(layers, "ROOT", tmp_path)
    assert layers._graph()[0]["web.api"] == {"handlers.reports"}
    assert layers._session_calls() == {"web.api": [3]}
    try:
        layers.test_no_import_runs_upward()
    except AssertionError:
        pass
    else:
        raise AssertionError("web importing a handler went unnoticed")
