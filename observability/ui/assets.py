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
    EarlyChartCode                        ASGI middleware: on the pages drawn with charts first,
                                          the page document starts Plotly's code as soon as the
                                          page's first element is drawn (see the class)
    DirectConnection                      ASGI middleware: every page document names the server's
                                          address, so the front end connects without a probe

Tried and dropped: the same chunks as modulepreload hints in the page document (a warm load, the
browser's CPU per load and its time to first content did not change measurably: the chunks
already come from the cache; what a warm load spends is the browser drawing the page).
"""

from __future__ import annotations

import html
import importlib.util
import json
import re
from functools import lru_cache
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


@lru_cache(maxsize=8)
def element_chunk(element: str) -> str | None:
    """The "static/js/..." path of an element's own chunk (e.g. "PlotlyChart"); None when
    Streamlit's build has none by that name."""
    root = static_dir()
    found = sorted((root / "static" / "js").glob(f"{element}.*.js")) if root is not None else []
    return f"static/js/{found[0].name}" if found else None


# Runs in the page document (Streamlit's index.html). Waits for the page's first element to be drawn,
# i.e. for the session to be up and the page's run under way, so that it holds up neither the front
# end's start nor its WebSocket; then imports the chunk Streamlit itself imports at the first chart. The
# browser runs a module once per document, so the chart then finds it loaded.
_EARLY_CHART_SCRIPT = """<script type="module">
const pages = %(pages)s, chunk = %(chunk)s;
if (pages.includes(location.pathname.replace(/^.*\//, ""))) {
  const start = () => setTimeout(() => import(chunk).catch(() => undefined), 0);
  const seen = () => document.querySelector('[data-testid="stElementContainer"]');
  const watch = new MutationObserver(() => { if (seen()) { watch.disconnect(); start(); } });
  watch.observe(document.documentElement, { childList: true, subtree: true });
}
</script>"""


def early_chart_script(pages: tuple[str, ...]) -> bytes:
    """The script `EarlyChartCode` adds (b"" when Streamlit's build has no Plotly chunk)."""
    chunk = element_chunk("PlotlyChart")
    if chunk is None or not pages:
        return b""
    return (
        _EARLY_CHART_SCRIPT % {"pages": json.dumps(list(pages)), "chunk": json.dumps(f"./{chunk}")}
    ).encode()


class _DocumentScript:
    """ASGI middleware adding `script` to the head of the Streamlit page documents it `applies` to
    (nothing when the script is empty). The document is asked for uncompressed (8 kB) so the script
    can be added; every other response passes untouched."""

    def __init__(self, app: ASGIApp, script: bytes) -> None:
        self.app, self.script = app, script

    def applies(self, scope: Scope) -> bool:
        return _page_document(scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.script or not self.applies(scope):
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope.get("headers", []) if k != b"accept-encoding"]
        start: dict = {}
        body: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body"):
                return
            await _send_with(self.script, start, b"".join(body), send)

        await self.app({**scope, "headers": headers}, receive, capture)


class EarlyChartCode(_DocumentScript):
    """On the pages whose first screen is drawn with Plotly charts, Streamlit's page document starts
    loading Plotly's code once the page's first element is drawn, instead of when the first chart
    arrives at the end of the page's run.

    Why: on the first page a browser opens (after signing in), running the 4.7 MB Plotly chunk for
    the first time takes about 0.75 s of the browser's main thread on a 2-core machine, and began
    only after the page's queries had run and its chart had arrived; started here, it overlaps the
    page's run on the server (`bench/NOTES.md`). `pages` are URL paths' last segments ("" for the
    home page)."""

    def __init__(self, app: ASGIApp, pages: tuple[str, ...] = ()) -> None:
        super().__init__(app, early_chart_script(pages))


# Streamlit's front end finds its server by trying the page's own path first: at /cost_tracking it
# asks /cost_tracking/_stcore/health, gets a 404, waits its 100 ms minimum retry delay and only then
# asks /_stcore/health. Told where the server is (`window.__streamlit.BACKEND_BASE_URL`, its setting
# for an app served from elsewhere), it asks there at once. A page's address is the server's base
# plus the page's name, so the base is the address's directory: "/" here, "/console/" under
# `server.baseUrlPath`, "/obs/" behind a proxy that strips a prefix the console never sees. A
# classic script, so it runs before the deferred module that reads the setting; a value set by
# someone else is kept.
DIRECT_CONNECTION_SCRIPT = b"""<script>
window.__streamlit = window.__streamlit || { BACKEND_BASE_URL: new URL(".", location.href).href };
</script>"""


class DirectConnection(_DocumentScript):
    """The document of each console page (its address ends with the page's name: `pages`, the URL
    paths' last segments) tells Streamlit's front end where its server is, so that a page opened by
    its address (a reload, a link, the page after signing in) connects without first probing the
    page's own path. The home page's document is left alone: its address is the server's base,
    which the front end tries first anyway.

    Why: the probe's 404 and Streamlit's 100 ms retry delay came before the WebSocket on every load
    of a page other than Overview, 0.1-0.25 s of each (`bench/NOTES.md`)."""

    def __init__(self, app: ASGIApp, pages: tuple[str, ...] = ()) -> None:
        super().__init__(app, DIRECT_CONNECTION_SCRIPT)
        self.pages = frozenset(p for p in pages if p)

    def applies(self, scope: Scope) -> bool:
        return _page_document(scope) and scope["path"].rsplit("/", 1)[-1] in self.pages


def _page_document(scope: Scope) -> bool:
    if scope["type"] != "http" or scope.get("method") != "GET":
        return False
    path = scope.get("path", "/")
    last = path.rsplit("/", 1)[-1]
    return not (path.startswith(_NOT_PAGES) or "/_stcore/" in path or "." in last)


async def _send_with(script: bytes, start: dict, body: bytes, send: Send) -> None:
    headers = list(start.get("headers", []))
    html_doc = any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers)
    plain = not any(k.lower() == b"content-encoding" for k, _ in headers)
    if start.get("status") == 200 and html_doc and plain and b"</head>" in body:
        body = body.replace(b"</head>", script + b"</head>", 1)
        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": body})
