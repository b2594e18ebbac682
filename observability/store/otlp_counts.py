"""OTLP spans per instrumentation scope and outcome, kept in the store so every worker adds to them
and the console (which runs in another process than the receiver) can show them.

The receiver counts in memory and adds its counts here at most once a second (`add`), so an
instrumentation whose spans are all ignored or rejected is visible on the Admin page, not only on
one worker's `/metrics`. A worker that dies loses at most its last second of counts, never spans.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from observability.store import Store, schema
from observability.timeutil import utcnow

OUTCOMES = ("received", "stored", "merged", "ignored", "rejected")


@dataclass(frozen=True)
class ScopeSpans:
    """The spans of one instrumentation scope since the store was made, summed over every worker."""

    scope: str
    received: int
    stored: int
    merged: int
    ignored: int
    rejected: int
    ignored_genai: int  # ignored although GenAI-looking (`ignored:no_model`): a convention not read
    last_seen: object


def add(store: Store, counts: Mapping[tuple[str, str], int]) -> None:
    """Add (scope, outcome) -> spans to the totals, in one statement."""
    now = utcnow()
    rows = [{"scope": s[:200], "outcome": o[:60], "spans": n, "updated_at": now}
            for (s, o), n in sorted(counts.items()) if n]  # fmt: skip
    if not rows:
        return
    t = schema.otlp_scope_spans
    stmt = store.insert(t).values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=["scope", "outcome"],
        set_={"spans": t.c.spans + stmt.excluded.spans, "updated_at": stmt.excluded.updated_at},
    )
    with store.begin() as conn:
        conn.execute(stmt)


def by_scope(store: Store) -> list[ScopeSpans]:
    """One row per scope, most received first."""
    t = schema.otlp_scope_spans
    with store.connect() as conn:
        rows = conn.execute(sa.select(t.c.scope, t.c.outcome, t.c.spans, t.c.updated_at)).all()
    scopes: dict[str, dict] = {}
    for scope, outcome, spans, updated in rows:
        d = scopes.setdefault(scope, {"last_seen": updated})
        d[outcome] = spans
        d["last_seen"] = max(d["last_seen"], updated)
    out = [ScopeSpans(scope, *(int(d.get(o, 0)) for o in OUTCOMES), int(d.get("ignored:no_model", 0)),
                      d["last_seen"]) for scope, d in scopes.items()]  # fmt: skip
    return sorted(out, key=lambda s: (-s.received, s.scope))
