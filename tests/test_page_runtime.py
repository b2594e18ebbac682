"""The console's Streamlit runtime settings, which decide what every page run costs beyond the page
itself: no full garbage collection after each run (it held the GIL while the page's last elements
waited to be sent) and no "magic" (the page scripts were parsed and rewritten in Python again
whenever the last session had closed). bench/NOTES.md has the before and after."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE_SCRIPTS = [ROOT / "Home.py", *sorted((ROOT / "pages").glob("*.py"))]


def test_the_console_runs_pages_without_a_collection_after_each_run_and_without_magic() -> None:
    """As `streamlit run app.py` reads them from the project's .streamlit/config.toml."""
    script = (
        "from streamlit import config\n"
        "config.get_config_options(force_reparse=True)\n"
        "print(config.get_option('runner.postScriptGC'), config.get_option('runner.magicEnabled'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["False", "False"]


def _magic_expressions(path: Path) -> list[int]:
    """Lines of statements that Streamlit's magic would have written to the page: bare expressions
    other than calls and docstrings."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if not isinstance(body, list):
                continue
            for i, stmt in enumerate(body):
                if not isinstance(stmt, ast.Expr) or isinstance(stmt.value, (ast.Call, ast.Await, ast.Yield)):
                    continue
                is_docstring = (
                    i == 0
                    and isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                    and isinstance(stmt.value, ast.Constant)
                    and isinstance(stmt.value.value, str)
                )
                if not is_docstring:
                    found.append(stmt.lineno)
    return found


def test_no_page_relies_on_magic() -> None:
    """With magic off a bare expression shows nothing: every page writes with st.* calls."""
    assert len(PAGE_SCRIPTS) > 10
    assert {p.name: _magic_expressions(p) for p in PAGE_SCRIPTS if _magic_expressions(p)} == {}


def test_the_magic_check_finds_a_bare_expression(tmp_path: Path) -> None:
    page = tmp_path / "page.py"
    page.write_text('"""Doc."""\nimport streamlit as st\ntotal = 3\ntotal\nst.write(total)\n')
    assert _magic_expressions(page) == [4]
