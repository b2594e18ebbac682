"""Work the console does once at server start (`app.py`, in a background thread), so the first
visitor does not pay for it.

Measured with `bench/pages.py` (a first page run in a freshly started server): without this, the
first run of a page paid for what nothing had loaded yet: Alembic behind the store's `migrate()`
(the pages now call `ensure_migrated()`, one query when the schema is current), Plotly, and every
page's own modules. scikit-learn with SciPy (the TF-IDF of topic drift and reply suggestions, about
1.8 s of imports on a 2-core machine) is imported last, once no page run has been in progress for
`QUIET_S`: imported first, it held the GIL through the first visitor's page run, which ended
0.2-0.3 s later on every page, none of which needs it to draw its first screen. After each round
of imports what they created is frozen out of the garbage collector's reach, so that a full
collection (Python's own; Streamlit's after every run is off in .streamlit/config.toml) stays cheap.

    warm_up()            import what pages load lazily and open (and migrate) the store once; never
                         raises: a store that is down at start is reported by the pages as before
    page_run()           the router's context around each page run, so the idle imports wait for a pause
    freeze_long_lived()  collect, then freeze what is alive (gc.freeze)
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import pkgutil
import threading
import time
from collections.abc import Callable, Iterator

from observability.settings import get_settings
from observability.store import Store

log = logging.getLogger(__name__)

# imported inside functions on a page's first run (heavy: seconds on a loaded 2-core machine)
LAZY_IMPORTS = (
    "alembic.config",  # Store.migrate
    "alembic.command",
    "plotly.graph_objects",
    "plotly.express",
)
# imported inside functions that no page's first screen calls: when the console is idle
IDLE_IMPORTS = (
    "sklearn.feature_extraction.text",  # analytics.conversation_analytics, control.suggestions
    "sklearn.metrics.pairwise",
)
QUIET_S = 3.0  # the idle imports wait until no page run has been in progress for this long...
QUIET_MAX_S = 60.0  # ...but no longer than this after the rest of the warm-up

_last_page_run = 0.0  # time.monotonic() when the latest page run started or ended
_running = 0  # page runs in progress
_lock = threading.Lock()
# the packages the pages draw from: every module imported once here
PAGE_PACKAGES = (
    "observability.ui",
    "observability.analytics",
    "observability.control",
    "observability.alerting",
)


def _import_all() -> None:
    # st.cache_data checks its parameters when a module decorates a function; before the server's
    # runtime exists that check logs "No runtime found" once per cached function: noise here
    quiet = logging.getLogger("streamlit.runtime.caching.cache_data_api")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        _import_modules()
    finally:
        quiet.setLevel(level)


def _import_modules() -> None:
    for name in LAZY_IMPORTS:
        importlib.import_module(name)
    for pkg_name in PAGE_PACKAGES:
        pkg = importlib.import_module(pkg_name)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg_name}."):
            if info.name != __name__:
                importlib.import_module(info.name)


@contextlib.contextmanager
def page_run(now: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """Around a page run (the router's): the idle imports wait until no run is in progress and
    none has ended or started for `QUIET_S`, so they run while the user reads, not while a page
    is drawn."""
    global _last_page_run, _running
    with _lock:
        _running += 1
        _last_page_run = now()
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            _last_page_run = now()


def last_page_run() -> float:
    """`time.monotonic()` when the latest page run started or ended (0.0: none yet)."""
    return _last_page_run


def runs_in_progress() -> int:
    """Page runs started and not yet ended."""
    return _running


def wait_for_quiet(
    quiet_s: float = QUIET_S,
    max_s: float = QUIET_MAX_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> bool:
    """Return once no page run has been in progress for `quiet_s`, or after `max_s` at most; True
    when it was quiet. Polls: a background thread's wait, not a page's."""
    deadline = clock() + max_s
    while True:
        now = clock()
        with _lock:
            quiet_for = 0.0 if _running else now - _last_page_run
        if quiet_for >= quiet_s:
            return True
        if now >= deadline:
            return False
        sleep(min(quiet_s - quiet_for, deadline - now, 0.5))


def _import_idle() -> None:
    for name in IDLE_IMPORTS:
        importlib.import_module(name)


def _open_store() -> None:
    """Open (and migrate) the store once; its objects are gone when this returns, before the freeze."""
    try:
        store = Store.from_url(get_settings().database_url)
        try:
            store.ensure_migrated()
        finally:
            store.dispose()
    except Exception as exc:  # noqa: BLE001 - the pages say what is wrong with the store
        log.warning("console warm-up: could not open the store: %s", exc)


def freeze_long_lived() -> None:
    """Move every object alive now (modules, classes, the import-time state of pandas, plotly and
    scikit-learn: about 250,000 objects) out of the garbage collector's reach. A full collection
    walks every tracked object while holding the GIL: 0.15-0.35 s here, which stalled the page
    being sent whenever one ran; after this it walks only what pages created since."""
    gc.collect()
    gc.freeze()


def warm_up(quiet_s: float = QUIET_S, max_s: float = QUIET_MAX_S) -> float:
    """Import and open what a first page run needs, then, in a pause, what later runs need; returns
    the seconds it took."""
    t0 = time.perf_counter()
    try:
        _import_all()
    except Exception:  # noqa: BLE001 - a page that needs it reports the error when it runs
        log.exception("console warm-up: an import failed")
    _open_store()
    freeze_long_lived()
    wait_for_quiet(quiet_s, max_s)
    try:
        _import_idle()
    except Exception:  # noqa: BLE001 - the page that needs it reports the error when it runs
        log.exception("console warm-up: an import failed")
    freeze_long_lived()
    elapsed = time.perf_counter() - t0
    log.info("console warm-up took %.1f s", elapsed)
    return elapsed
