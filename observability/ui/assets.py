"""The browser files a console page needs, named so the sign-in form can have the browser fetch
them while the user types (`web_auth`): Streamlit's shell (the scripts, style sheet and fonts its
index.html loads) and the chunks of the elements a page's first content is made of.

Measured with `bench/pages.py` (first visit after sign-in, 2-core machine): the browser spent its
first second fetching the shell's ~60 modules from the console, and fetched the 4.6 MB Plotly
chunk only once the page's first chart had arrived. Streamlit serves them content-hashed with
"immutable, max-age=1 year", so what the sign-in form prefetches is what the page then loads.
No Streamlit import: the files are found beside the installed package.

    prefetch_paths() -> tuple[str, ...]   "/static/..." paths, shell first; () when not found
    prefetch_links() -> str               <link rel="prefetch"> tags for them
    element_chunks() -> tuple[str, ...]   the first-content elements' chunks (not in the shell)

Tried and dropped: the same chunks as modulepreload hints in the page document (a warm load, the
browser's CPU per load and its time to first content did not change measurably: the chunks
already come from the cache; what a warm load spends is the browser drawing the page).
"""

from __future__ import annotations

import html
import importlib.util
import re
from functools import lru_cache
from pathlib import Path

# elements a console page's first screen is drawn with (charts, tables, figures, filters)
FIRST_CONTENT_ELEMENTS = (
    "PlotlyChart", "DataFrame", "Metric", "ButtonGroup", "Multiselect", "Selectbox", "TextInput", "Html",
    "DownloadButton",
)  # fmt: skip
_SHELL_ASSET = re.compile(r"""(?:href|src)="\./(static/[\w./$-]+)\"""")
_NOT_PAGES = (
    "/static",
    "/media",
    "/component",
    "/auth/",
    "/api/",
    "/favicon",
    "/app/static",
    "/oauth2callback",
)
_STATIC_IMPORT = re.compile(r"""(?:from|import)\s*["']\./([\w.$-]+\.js)["']""")


def static_dir() -> Path | None:
    """Streamlit's built frontend (index.html and static/), without importing Streamlit."""
    spec = importlib.util.find_spec("streamlit")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "static"
    return path if (path / "index.html").is_file() else None


def _imports(js_dir: Path, name: str, seen: set[str]) -> None:
    """`name` and every chunk it imports statically (what the browser fetches before running it)."""
    if name in seen or not (js_dir / name).is_file():
        return
    seen.add(name)
    text = (js_dir / name).read_text(encoding="utf-8", errors="replace")
    for dep in _STATIC_IMPORT.findall(text):
        _imports(js_dir, dep, seen)


def _shell(root: Path) -> list[str]:
    return list(dict.fromkeys(_SHELL_ASSET.findall((root / "index.html").read_text(encoding="utf-8"))))


@lru_cache(maxsize=1)
def element_chunks() -> tuple[str, ...]:
    root = static_dir()
    if root is None:
        return ()
    js_dir = root / "static" / "js"
    seen: set[str] = {p.rsplit("/", 1)[-1] for p in _shell(root)}
    chunks: list[str] = []
    for element in FIRST_CONTENT_ELEMENTS:
        for found in sorted(js_dir.glob(f"{element}.*.js")):
            before = set(seen)
            seen.discard(found.name)
            _imports(js_dir, found.name, seen)
            chunks += sorted(seen - before)
    return tuple(f"/static/js/{c}" for c in dict.fromkeys(chunks))


@lru_cache(maxsize=1)
def prefetch_paths() -> tuple[str, ...]:
    root = static_dir()
    return () if root is None else tuple(f"/{p}" for p in _shell(root)) + element_chunks()


def prefetch_links() -> str:
    return "".join(f'<link rel="prefetch" href="{html.escape(p)}" crossorigin>' for p in prefetch_paths())
