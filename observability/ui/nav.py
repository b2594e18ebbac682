"""The console's page registry: which page files exist, their titles, icons, sections and the
permission (an `observability.auth.PERMISSIONS` action) a role needs to see them.

`pages_for_role(role)` is pure (no Streamlit), so the role -> pages rules are unit-testable;
Home.py turns its result into `st.navigation`, keeping only files present on disk
(`existing_pages_for_role`), so a page another engineer has not written yet cannot break the app.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from observability.auth import role_can
from observability.settings import PROJECT_ROOT

VIEW = "dashboards.view"


@dataclass(frozen=True)
class PageSpec:
    path: str  # relative to the project root (where Home.py lives)
    title: str
    icon: str  # Streamlit material icon
    action: str  # permission needed to see the page
    section: str
    charts: bool = False  # its first screen is drawn with Plotly charts (`assets.EarlyChartCode`)
    # its Time range choices (`?range=`), for pages that links open on a window (an alert's): a
    # range the page does not offer falls back to its default, so a link must pick one of these
    ranges: tuple[str, ...] = ()

    @property
    def url_path(self) -> str:
        return Path(self.path).stem


# Order matters: sections appear in the order of their first page.
PAGES: tuple[PageSpec, ...] = (
    PageSpec("pages/live_monitoring.py", "Live monitoring", ":material/monitoring:", VIEW, "Monitoring", charts=True),
    PageSpec("pages/bot_health.py", "Bot health", ":material/monitor_heart:", VIEW, "Monitoring", charts=True,
             ranges=("1h", "24h", "7d")),
    PageSpec("pages/ai_performance.py", "AI performance", ":material/speed:", VIEW, "Monitoring", charts=True,
             ranges=("1h", "6h", "24h")),
    PageSpec("pages/llm_calls.py", "LLM calls", ":material/list_alt:", VIEW, "Monitoring"),
    PageSpec("pages/activity_feed.py", "Activity feed", ":material/dynamic_feed:", VIEW, "Monitoring", charts=True),
    PageSpec("pages/alerts.py", "Alerts and rules", ":material/notifications_active:", VIEW, "Monitoring"),
    PageSpec("pages/token_analytics.py", "Token analytics", ":material/token:", VIEW, "Spend", charts=True),
    PageSpec("pages/cost_tracking.py", "Cost tracking", ":material/payments:", VIEW, "Spend", charts=True),
    PageSpec("pages/conversation_quality.py", "Conversation quality", ":material/forum:", VIEW, "Conversations", charts=True,
             ranges=("1h", "6h", "24h", "7d")),
    PageSpec("pages/conversations.py", "Conversations", ":material/support_agent:", VIEW, "Conversations"),
    PageSpec("pages/emergency.py", "Emergency controls", ":material/emergency_home:", "conversations.stop", "Control"),
    PageSpec("pages/admin.py", "Admin", ":material/admin_panel_settings:", "users.manage", "Control"),
)  # fmt: skip

OVERVIEW_TITLE = "Overview"
OVERVIEW_CHARTS = True  # the overview's first screen has charts too
OVERVIEW_ICON = ":material/dashboard:"


def pages_for_role(role: str | None) -> list[PageSpec]:
    """The registered pages a role may see, in registry order (no role: none)."""
    if not role:
        return []
    return [p for p in PAGES if role_can(role, p.action)]


def existing_pages_for_role(role: str | None, root: Path = PROJECT_ROOT) -> list[PageSpec]:
    """pages_for_role, keeping only page files that exist under `root`."""
    return [p for p in pages_for_role(role) if (root / p.path).is_file()]


def sections(pages: list[PageSpec]) -> dict[str, list[PageSpec]]:
    """Group pages by section, keeping the registry order."""
    out: dict[str, list[PageSpec]] = {}
    for p in pages:
        out.setdefault(p.section, []).append(p)
    return out


def page_by_name(name: str) -> PageSpec | None:
    """Look a page up by its file stem, e.g. "cost_tracking"."""
    return next((p for p in PAGES if p.url_path == name), None)


def page_ranges(name: str) -> tuple[str, ...]:
    """The Time range choices of page `name` (its file stem), as the page offers them."""
    spec = page_by_name(name)
    if spec is None or not spec.ranges:
        raise KeyError(f"no page {name!r} with time ranges in the registry")
    return spec.ranges


def page_paths() -> tuple[str, ...]:
    """Every registered page's URL path (its last segment; the home page's is "")."""
    return ("",) + tuple(p.url_path for p in PAGES)


def chart_page_paths() -> tuple[str, ...]:
    """The URL paths (last segment; "" for the overview) of the pages drawn with charts first."""
    return ("",) * OVERVIEW_CHARTS + tuple(p.url_path for p in PAGES if p.charts)
