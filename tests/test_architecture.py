"""The import rules of DESIGN section 3, read from the source with `ast`.

This test imports nothing of the project and needs no Streamlit: it parses every module of
`observability/`, every page (`pages/*.py`) and the entry scripts, and checks which way imports run:
pages → `ui` → services → `store` → contract.

How an import is counted:
- `import a.b.c` imports module `a.b.c`; `from a.b import c` imports `a.b.c` when `c` is a submodule
  (a file or package on disk), else `a.b`; relative imports are resolved against the file's package;
  `importlib.import_module("a.b")` with a literal name counts like `import a.b`.
- An import is *module-level* when it runs while the module is imported: at the top, in a class
  body, or under `if`/`try` there. Imports inside a function are *lazy*. Imports under
  `if TYPE_CHECKING:` never run and are ignored.
- The SDK rule counts module-level imports only (a bot pays for those on `import
  observability.sdk`); lazily, the SDK may load the store, which its direct-to-SQL path needs when
  there is no Redis, and nothing else. The cycle check counts module-level imports only. Every other
  rule counts lazy imports too: a boundary crossed inside a function is still crossed.
- Importing `observability` itself (the package root, which only re-exports lazily) is neutral.

Each failure names the file, the line and the rule it breaks.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = "observability"

CONTRACT = frozenset(
    f"{PKG}.{m}"
    for m in (
        "settings",
        "events",
        "keys",
        "timeutil",
        "conversation_state",
        "redis_client",
        "redaction",
        "telemetry",
        "localfiles",
        "outages",
    )
)
SUBPACKAGES = ("sdk", "store", "analytics", "auth", "control", "alerting", "worker", "ui", "demo", "api")
# the documented `python -m observability.<x>` entry points that forward to a subpackage
SHIMS = {f"{PKG}.simulate": "demo", f"{PKG}.bootstrap": "demo", f"{PKG}.users": "auth"}

# part -> the parts it may import (itself always allowed), DESIGN section 3 and issue 10
MAY_IMPORT: dict[str, frozenset[str]] = {
    "contract": frozenset({"contract"}),
    "sdk": frozenset({"contract"}),  # module level; lazily also "store" (see SDK_LAZY)
    "store": frozenset({"contract"}),
    "analytics": frozenset({"contract", "store", "auth"}),  # auth: permission checks and the audit writer
    "auth": frozenset({"contract", "store"}),
    "control": frozenset({"contract", "store", "auth"}),
    "alerting": frozenset({"contract", "store", "analytics", "auth"}),
    # the HTTP API: what ui may import (the services), never ui, the pages or the worker
    "api": frozenset({"contract", "store", "analytics", "auth", "control", "alerting"}),
}
SDK_LAZY = frozenset({"contract", "store"})
PAGE_FORBIDDEN = ("sqlalchemy", "redis")


# ---- reading the code -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    file: str  # relative to the project root
    line: int
    importer: str  # dotted module name ("pages.alerts", "Home" for entry scripts)
    target: str  # dotted module name imported
    module_level: bool

    def where(self) -> str:
        return f"{self.file}:{self.line}"


class Project:
    """The modules of a source tree (the real one, or a small one a self-test writes)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, Path] = {}  # module name -> file
        self.packages: set[str] = set()
        for path in sorted((root / PKG).rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
                self.packages.add(".".join(parts))
            self.files[".".join(parts)] = path
        self.pages = {f"pages.{p.stem}": p for p in sorted((root / "pages").glob("*.py"))}
        self.scripts = {p.stem: p for p in (root / "Home.py", root / "app.py") if p.exists()}
        self.imports: list[Import] = []
        for name, path in {**self.files, **self.pages, **self.scripts}.items():
            self.imports.extend(self._read(name, path))

    def is_module(self, name: str) -> bool:
        return name in self.files

    def _resolve_from(self, importer: str, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        package = importer if importer in self.packages else importer.rpartition(".")[0]
        base = package.split(".")
        if node.level > 1:
            base = base[: -(node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def _read(self, importer: str, path: Path) -> Iterator[Import]:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        rel = str(path.relative_to(self.root))

        def visit(node: ast.AST, module_level: bool) -> Iterator[Import]:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and _is_type_checking(child.test):
                    yield from (i for n in child.orelse for i in visit_one(n, module_level))
                    continue
                yield from visit_one(child, module_level)

        def visit_one(node: ast.AST, module_level: bool) -> Iterator[Import]:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(rel, node.lineno, importer, alias.name, module_level)
            elif isinstance(node, ast.ImportFrom):
                base = self._resolve_from(importer, node)
                for alias in node.names:
                    sub = f"{base}.{alias.name}" if base else alias.name
                    target = sub if self.is_module(sub) else base
                    yield Import(rel, node.lineno, importer, target, module_level)
            elif (
                isinstance(node, ast.Call)
                and _is_import_module(node.func)
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                yield Import(rel, node.lineno, importer, node.args[0].value, module_level)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from visit(node, False)
            else:
                yield from visit(node, module_level)

        yield from visit(tree, True)

    # ---- which part a module belongs to ----
    def part(self, module: str) -> str | None:
        if module in CONTRACT:
            return "contract"
        parts = module.split(".")
        if parts[0] == "pages" or module in self.scripts:
            return "page"
        if parts[0] != PKG:
            return None  # third party or standard library
        if len(parts) == 1:
            return "root"
        if parts[1] in SUBPACKAGES:
            return parts[1]
        if module in SHIMS:
            return "shim"
        return "toplevel"  # a top-level module that is neither a contract nor a shim


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_import_module(func: ast.expr) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id in ("import_module", "__import__")
    )


def _top(name: str) -> str:
    return name.split(".")[0]


# ---- the rules --------------------------------------------------------------------------------------


def boundary_violations(project: Project) -> list[str]:
    """Contract, SDK, store, analytics, auth, control and alerting import only what section 3 allows."""
    out = []
    for imp in project.imports:
        src = project.part(imp.importer)
        dst = project.part(imp.target)
        if src not in MAY_IMPORT or dst in (None, "root", src):
            continue
        if src == "sdk" and not imp.module_level:
            if dst not in SDK_LAZY:
                out.append(f"{imp.where()}: imports {imp.target} (inside a function); rule: the SDK loads "
                           f"only the store lazily, besides the contract modules")  # fmt: skip
            continue
        if dst not in MAY_IMPORT[src]:
            level = "at module level" if imp.module_level else "inside a function"
            if src == "contract":
                rule = "the contract modules import only other contract modules"
            else:
                others = "".join(f", `{p}/`" for p in sorted(MAY_IMPORT[src] - {"contract"}))
                rule = f"`{src}/` imports only itself, the contract modules{others}"
            out.append(f"{imp.where()}: imports {imp.target} ({dst}) {level}; rule: {rule}")
    return out


def streamlit_violations(project: Project) -> list[str]:
    """Nothing under observability/ except ui/ imports Streamlit (pages and entry scripts may)."""
    return [
        f"{imp.where()}: imports {imp.target}; rule: only observability/ui/ (and the pages) import Streamlit"
        for imp in project.imports
        if _top(imp.target) == "streamlit" and project.part(imp.importer) not in ("ui", "page")
    ]


def page_violations(project: Project) -> list[str]:
    """No page and no entry script imports SQLAlchemy or redis: pages go through `ui` and services."""
    return [
        f"{imp.where()}: imports {imp.target}; rule: pages import neither sqlalchemy nor redis"
        for imp in project.imports
        if project.part(imp.importer) == "page" and _top(imp.target) in PAGE_FORBIDDEN
    ]


def worker_violations(project: Project) -> list[str]:
    """The worker imports no page and not observability.ui."""
    return [
        f"{imp.where()}: imports {imp.target}; rule: the worker imports no page and not observability.ui"
        for imp in project.imports
        if project.part(imp.importer) == "worker" and project.part(imp.target) in ("page", "ui")
    ]


def demo_violations(project: Project) -> list[str]:
    """Only demo/ itself and the documented shims (observability.simulate, .bootstrap) import demo/."""
    allowed = {name for name, part in SHIMS.items() if part == "demo"}
    return [
        f"{imp.where()}: imports {imp.target}; rule: nothing imports observability.demo except the "
        f"observability.simulate / observability.bootstrap shims"
        for imp in project.imports
        if project.part(imp.target) == "demo"
        and project.part(imp.importer) != "demo"
        and imp.importer not in allowed
    ]


def unknown_module_violations(project: Project) -> list[str]:
    """Code imports modules of the package where they live, not through the old alias paths."""
    return [
        f"{imp.where()}: imports {imp.target}, which is no module on disk; rule: import a module from "
        f"its home (the old top-level paths are aliases for users' code only)"
        for imp in project.imports
        if _top(imp.target) == PKG and imp.target != PKG and not project.is_module(imp.target)
    ]


def cycles(project: Project) -> list[str]:
    """Strongly connected components of the module-level import graph inside observability/."""
    edges: dict[str, dict[str, Import]] = {m: {} for m in project.files}
    for imp in project.imports:
        if imp.module_level and imp.importer in edges and imp.target in edges and imp.target != imp.importer:
            edges[imp.importer].setdefault(imp.target, imp)

    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan (recursive: fine for a package of this size)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strongconnect(v)

    out = []
    for comp in components:
        members = set(comp)
        lines = [f"{imp.where()}: {a} imports {b}" for a in comp for b, imp in sorted(edges[a].items())
                 if b in members]  # fmt: skip
        out.append(
            f"import cycle between {', '.join(comp)} (module-level imports):\n    " + "\n    ".join(lines)
        )
    return out


RULES = {
    "boundaries": boundary_violations,
    "streamlit only in ui": streamlit_violations,
    "pages use no sqlalchemy or redis": page_violations,
    "worker imports no page or ui": worker_violations,
    "demo only from its shims": demo_violations,
    "no old alias paths": unknown_module_violations,
    "no import cycles": cycles,
}


@pytest.fixture(scope="module")
def project() -> Project:
    return Project(ROOT)


def test_the_reader_sees_every_part(project: Project) -> None:
    """Guards against a rule passing because it read nothing."""
    parts = {project.part(m) for m in project.files}
    assert {"contract", "sdk", "store", "analytics", "auth", "control", "alerting", "worker", "ui"} <= parts
    assert CONTRACT <= set(project.files), sorted(CONTRACT - set(project.files))
    assert project.pages and "Home" in project.scripts
    assert any(project.part(i.importer) == "page" and _top(i.target) == "streamlit" for i in project.imports)


@pytest.mark.parametrize("rule", list(RULES))
def test_import_rule(project: Project, rule: str) -> None:
    violations = RULES[rule](project)
    assert not violations, f"{rule}: {len(violations)} violation(s)\n" + "\n".join(violations)


# ---- the rules catch what they should (a small tree with one breach of each) -----------------------

BROKEN = {
    "observability/__init__.py": "",
    "observability/settings.py": "from observability.store import schema\n",
    "observability/keys.py": "from . import settings\n",
    "observability/sdk/__init__.py": "from observability.sdk.client import Client\n",
    "observability/sdk/client.py": """
        from typing import TYPE_CHECKING
        from observability import keys
        import observability.store.database
        if TYPE_CHECKING:
            from observability.alerting import service
        class Client:
            def sql(self):
                from observability.store import database
                import observability.control
    """,
    "observability/store/__init__.py": "",
    "observability/store/database.py": "import sqlalchemy\nfrom observability.analytics import perf\n",
    "observability/analytics/__init__.py": "",
    "observability/analytics/perf.py": "from ..store import database\nimport streamlit as st\n",
    "observability/worker/__init__.py": "",
    "observability/worker/run.py": "from observability.ui import helpers\nfrom observability.performance import x\n",
    "observability/ui/__init__.py": "",
    "observability/ui/helpers.py": "import streamlit\nfrom observability.demo import sim\n",
    "observability/demo/__init__.py": "",
    "observability/demo/sim.py": "from observability.store import database\n",
    "observability/simulate.py": "from observability.demo.sim import main\n",
    "pages/overview.py": "import streamlit as st\nimport sqlalchemy as sa\nfrom redis.asyncio import Redis\n",
    "Home.py": "import streamlit as st\n",
}


def test_the_rules_catch_each_kind_of_breach(tmp_path: Path) -> None:
    for rel, text in BROKEN.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    p = Project(tmp_path)
    found = {rule: "\n".join(check(p)) for rule, check in RULES.items()}

    b = found["boundaries"]
    assert "observability/settings.py:1: imports observability.store.schema" not in b  # no such module
    assert "observability/settings.py:1: imports observability.store (store) at module level" in b
    assert "observability/keys.py" not in b, "a contract module may import another"
    assert "observability/sdk/client.py:4: imports observability.store.database" in b
    assert "client.py:6" not in b, "TYPE_CHECKING imports never run"
    assert "client.py:9" not in b, "the SDK may load the store lazily"
    assert "observability/sdk/client.py:10: imports observability.control (inside a function)" in b
    assert "observability/store/database.py:2: imports observability.analytics.perf (analytics)" in b
    assert "observability/analytics/perf.py:1" not in b, "a relative import of the store is allowed"
    assert found["streamlit only in ui"].splitlines() == [
        "observability/analytics/perf.py:2: imports streamlit; rule: only observability/ui/ (and the pages) "
        "import Streamlit"
    ]
    pages = found["pages use no sqlalchemy or redis"]
    assert (
        "pages/overview.py:2: imports sqlalchemy" in pages
        and "pages/overview.py:3: imports redis.asyncio" in pages
    )
    assert found["worker imports no page or ui"].startswith(
        "observability/worker/run.py:1: imports observability.ui"
    )
    assert (
        found["demo only from its shims"]
        .splitlines()[0]
        .startswith("observability/ui/helpers.py:2: imports observability.demo")
    )
    assert "simulate.py" not in found["demo only from its shims"]
    assert "observability/worker/run.py:2: imports observability.performance" in found["no old alias paths"]
    cycle = found["no import cycles"]
    assert "observability.analytics.perf, observability.store.database" in cycle
    assert (
        "observability/store/database.py:2: observability.store.database imports observability.analytics.perf"
        in cycle
    )
