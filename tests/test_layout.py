"""The house's rules, checked on the code itself: the engine never imports a face, and its face is a doctest."""

from __future__ import annotations

import ast
import doctest
from pathlib import Path

import engine

ROOT = Path(__file__).resolve().parents[1]
FACES = ("app", "pages", "api", "streamlit")


def test_no_engine_module_imports_a_face_not_even_inside_a_function():
    offenders = []
    for path in sorted((ROOT / "engine").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] in FACES]
    assert offenders == []


def test_the_package_docstring_runs_as_written():
    failures, tried = doctest.testmod(engine, verbose=False)
    assert tried >= 5 and failures == 0


def test_only_the_typed_session_and_the_widgets_touch_session_state():
    """Pages and the session's other modules go through `app/session.py` (the typed object) and
    `app/widgets.py` (widget keys), never through st.session_state themselves."""
    owners = {ROOT / "app" / "session.py", ROOT / "app" / "widgets.py"}
    offenders = []
    for path in [*sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "app").glob("*.py"))]:
        if path in owners:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "session_state":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every import in a file, relative ones resolved, inside functions too."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append((node.lineno, module, [a.name for a in node.names]))
    return found


# What the faces may take from the server wing beyond `service`: the ids' rules, an exception, the notices, the
# dashboard's address for links, and starting the process's alert worker (`engine.server.alert_worker`).
FACE_ALLOWED = {
    "engine.server.admission": {"ServerBusy", "WAIT_NOTICE", "CANCEL", "serve_defaults", "release_freed_memory"},
    "engine.server.settings": {"SettingsError", "dashboard_link"},
    "engine.server.alert_worker": {"start", "stop"},
    "engine.server.datasets": {"BUILTIN", "valid_id", "dataset_id", "describe", "to_frame", "SERVER"},
}


def test_faces_reach_heavy_work_only_through_the_server_wings_service():
    """A face cannot reserve memory, estimate it or use the run cache by itself: the wing's actions do."""
    offenders = []
    faces = [
        *sorted((ROOT / "app").glob("*.py")),
        *sorted((ROOT / "pages").glob("*.py")),
        *(ROOT / "api").rglob("*.py"),
    ]
    for path in faces:
        for line, module, names in _imports(path):
            where = f"{path.relative_to(ROOT)}:{line} {module}"
            forbidden = module in ("engine.budget", "engine.server.cache", "engine.server.stores")
            if forbidden or (module == "engine.server" and set(names) - {"service", "settings", "alert_worker"}):
                offenders.append(where)
            elif module in FACE_ALLOWED and set(names) - FACE_ALLOWED[module]:
                offenders.append(f"{where} {sorted(set(names) - FACE_ALLOWED[module])}")
    assert offenders == []


def test_the_engines_imports_have_no_circle():
    """Every arrow between the engine's modules points one way (imports inside functions count too)."""
    graph: dict[str, set[str]] = {}
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (ROOT / "engine").rglob("*.py")
    }
    for name, path in modules.items():
        targets = set()
        for _, module, names in _imports(path):
            for candidate in [f"{module}.{n}" for n in names] + [module]:
                if candidate in modules and candidate != name:
                    targets.add(candidate)
                    break
        graph[name] = targets

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo += graph.get(node, ())
        return False

    package_of = {name: name.rsplit(".", 1)[0] for name in modules}
    circles = sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        for b in targets
        if reaches(b, a) and package_of.get(b) != a  # a package's __init__ gathering its own modules is no circle
    )
    assert circles == []


def test_the_engine_parses_expressions_in_one_place_one_thread_at_a_time():
    """CPython 3.11's AST construction is not safe on two threads at once (python/cpython#106905): it gave the
    load test 8 errors in 4,848 requests. Every parse goes through rules.parse_expression's lock."""
    calls = []
    for path in sorted((ROOT / "engine").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            func = node.func if isinstance(node, ast.Call) else None
            if isinstance(func, ast.Attribute) and func.attr == "parse" and ast.unparse(func.value) == "ast":
                calls.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert len(calls) == 1 and calls[0].startswith("engine/rules.py"), calls
