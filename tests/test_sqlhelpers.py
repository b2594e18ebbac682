"""The shared SQL helpers: exact percentiles per group in SQL equal numpy's (both stores), flag
counts, time buckets, and the window words the pages show."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from observability.analytics.window import chart_granularity, source_note
from observability.store import Store, schema
from observability.store.ingest import write_batch
from observability.store.sqlhelpers import (
    as_datetime,
    count_false,
    count_true,
    epoch_bucket,
    exact_percentiles,
    group_percentiles,
    trunc_expr,
)
from observability.timeutil import to_epoch

NOW = datetime(2026, 3, 10, 12, 34, 56)


@pytest.fixture
def interactions(store: Store) -> tuple[Store, dict[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    values = {
        "lead_bot": rng.lognormal(6, 1, 101),
        "buyer_bot": rng.lognormal(5, 0.5, 2),
        "seller_bot": [42.0],
    }
    events = [["interaction", uuid.uuid4().hex, to_epoch(NOW - timedelta(seconds=i + 1)), bot, float(v), i % 3 > 0,
               i % 2 == 0, None]
              for bot, vals in values.items() for i, v in enumerate(vals)]  # fmt: skip
    write_batch(store, events)
    return store, {k: np.asarray(v) for k, v in values.items()}


def test_group_percentiles_equal_numpy(interactions: tuple[Store, dict[str, np.ndarray]]) -> None:
    store, values = interactions
    t = schema.bot_interactions
    qs = (0.0, 0.5, 0.95, 0.99, 1.0)
    with store.connect() as conn:
        got = group_percentiles(store, conn, t, t.c.duration_ms, [t.c.bot], sa.true(), qs)
        overall = group_percentiles(store, conn, t, t.c.duration_ms, [], sa.true(), qs)
        none = group_percentiles(store, conn, t, t.c.duration_ms, [], t.c.bot == "nobody", qs)
    assert set(got) == {(b,) for b in values}
    for bot, vals in values.items():
        assert got[(bot,)] == pytest.approx(np.percentile(vals, [q * 100 for q in qs]), rel=1e-12)
    every = np.concatenate(list(values.values()))
    assert overall[()] == pytest.approx(np.percentile(every, [q * 100 for q in qs]), rel=1e-12)
    assert none == {}
    assert exact_percentiles([], (0.5,)) == [None]
    assert exact_percentiles([1.0, 2.0, 3.0, 4.0]) == pytest.approx([2.5, 3.85, 3.97])


def test_counts_and_buckets(interactions: tuple[Store, dict[str, np.ndarray]]) -> None:
    store, values = interactions
    t = schema.bot_interactions
    n = sum(len(v) for v in values.values())
    with store.connect() as conn:
        ok, failed = conn.execute(sa.select(count_true(t.c.success), count_false(t.c.success))).one()
        zero = conn.execute(sa.select(count_true(t.c.success)).where(t.c.bot == "nobody")).scalar()
        minutes = conn.execute(sa.select(trunc_expr(store, t.c.ts, "minute")).distinct()).scalars().all()
        epochs = conn.execute(sa.select(epoch_bucket(store, t.c.ts, 3600)).distinct()).scalars().all()
    assert ok + failed == n and failed == sum(len(range(0, len(v), 3)) for v in values.values()) and zero == 0
    assert {as_datetime(m) for m in minutes} == {
        NOW.replace(second=0) - timedelta(minutes=i) for i in range(2)
    }
    assert sorted(int(e) for e in epochs) == [int(to_epoch(NOW.replace(minute=0, second=0)))]
    with pytest.raises(ValueError):
        trunc_expr(store, t.c.ts, "week")


def test_window_words() -> None:
    assert [chart_granularity(w) for w in ("1h", "6h", "24h", "7d", "30d")] == ["minute", "minute", "hour", "hour",
                                                                              "day"]  # fmt: skip
    assert source_note("1h").startswith("exact") and "within 1%" in source_note("24h")
