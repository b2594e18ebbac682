"""Work the console does once at server start (`app.py`, in a background thread), so the first
visitor does not pay for it.

Measured with `bench/pages.py` (a first page run in a freshly started server): without this, the
first run of a page paid for what nothing had loaded yet: scikit-learn with SciPy for the TF-IDF of
topic drift and reply suggestions (two thirds of a first Conversation quality run in a profile),
Alembic behind the store's `migrate()` (the pages now call `ensure_migrated()`, one query when the
schema is current), and every page's own modules.

    warm_up()   import what pages load lazily and open (and migrate) the store once; never raises:
                a store that is down at start is reported by the pages as before
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import time

from observability.settings import get_settings
from observability.store import Store

log = logging.getLogger(__name__)

# imported inside functions on a page's first run (heavy: seconds on a loaded 2-core machine)
LAZY_IMPORTS = (
    "sklearn.feature_extraction.text",  # analytics.conversation_analytics, control.suggestions
    "sklearn.metrics.pairwise",
    "alembic.config",  # Store.migrate
    "alembic.command",
    "plotly.graph_objects",
    "plotly.express",
)
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


def warm_up() -> float:
    """Import and open what a first page run needs; returns the seconds it took."""
    t0 = time.perf_counter()
    try:
        _import_all()
    except Exception:  # noqa: BLE001 - a page that needs it reports the error when it runs
        log.exception("console warm-up: an import failed")
    try:
        store = Store.from_url(get_settings().database_url)
        try:
            store.ensure_migrated()
        finally:
            store.dispose()
    except Exception as exc:  # noqa: BLE001 - the pages say what is wrong with the store
        log.warning("console warm-up: could not open the store: %s", exc)
    elapsed = time.perf_counter() - t0
    log.info("console warm-up took %.1f s", elapsed)
    return elapsed
