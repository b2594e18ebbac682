"""Reading a page's markdown source as a person reads the page."""

from __future__ import annotations

import re


def shown(source: object) -> str:
    """`source` with markdown's backslash escapes dropped: pages escape data and service messages
    (ui.md_escape) so they show as text, and a test compares what is read, not the escapes."""
    return re.sub(r"\\(.)", r"\1", str(source))
