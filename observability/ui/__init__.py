"""Streamlit helpers shared by every console page (the only part of `observability` that imports
Streamlit). Pages import from `observability.ui.common` (store, user, guards, layout, filters,
CSV, caching) and `observability.ui.nav` (the page registry)."""
