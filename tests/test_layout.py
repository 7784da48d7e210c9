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


def test_pages_talk_to_the_state_module_never_to_session_state():
    offenders = []
    for path in [*sorted((ROOT / "pages").glob("*.py")), ROOT / "app" / "main.py"]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "session_state":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
