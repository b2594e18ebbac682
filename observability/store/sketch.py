"""A mergeable latency sketch with bounded relative error (the DDSketch idea).

Values fall into logarithmic buckets `ceil(log(x) / log(gamma))` with gamma = (1 + a) / (1 - a);
every value in bucket i is within relative error `a` of `2 * gamma**i / (gamma + 1)`. Sketches merge
by adding counts, so per-minute rollups combine exactly into hours, days and weeks, and a 7-day
percentile reads a few hundred rows instead of millions.

Bucket indexes are computed in SQL at rollup time (`sqlhelpers.bucket_sql_expr`) so the rollup step never pulls
raw rows into Python.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
LOG_GAMMA = math.log(GAMMA)
MIN_VALUE = 1e-3  # 1 µs in milliseconds; smaller values share the lowest bucket


def bucket_of(value: float) -> int:
    return math.ceil(math.log(max(value, MIN_VALUE)) / LOG_GAMMA)


def bucket_value(index: int) -> float:
    return 2.0 * GAMMA**index / (GAMMA + 1.0)


class Sketch:
    """Counts per bucket index; `quantile` interpolates linearly between order statistics."""

    __slots__ = ("counts",)

    def __init__(self, counts: Mapping[int, int] | None = None) -> None:
        self.counts: dict[int, int] = dict(counts or {})

    @classmethod
    def from_values(cls, values: Iterable[float]) -> "Sketch":
        arr = np.asarray(list(values), dtype=float)
        if arr.size == 0:
            return cls()
        idx = np.ceil(np.log(np.maximum(arr, MIN_VALUE)) / LOG_GAMMA).astype(np.int64)
        keys, counts = np.unique(idx, return_counts=True)
        return cls(dict(zip(keys.tolist(), counts.tolist(), strict=True)))

    def to_json(self) -> dict[str, int]:
        return {str(k): v for k, v in self.counts.items()}

    def merge(self, other: "Sketch | Mapping[str, int]") -> "Sketch":
        items = other.counts.items() if isinstance(other, Sketch) else other.items()
        c = self.counts
        for k, v in items:
            k = int(k)
            c[k] = c.get(k, 0) + int(v)
        return self

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    def quantiles(self, qs: Iterable[float]) -> list[float | None]:
        """Quantiles for q in [0, 1], as numpy.percentile's linear method would give (±1%)."""
        n = self.count
        qs = list(qs)
        if n == 0:
            return [None for _ in qs]
        keys = sorted(self.counts)
        cum = np.cumsum([self.counts[k] for k in keys])
        values = [bucket_value(k) for k in keys]

        def order_stat(rank: int) -> float:  # 0-based rank
            return values[int(np.searchsorted(cum, rank + 1))]

        out: list[float | None] = []
        for q in qs:
            r = q * (n - 1)
            lo = math.floor(r)
            hi = min(lo + 1, n - 1)
            a, b = order_stat(lo), order_stat(hi)
            out.append(a + (r - lo) * (b - a))
        return out

    def quantile(self, q: float) -> float | None:
        return self.quantiles([q])[0]


def merge_all(sketches: Iterable[Mapping[str, int] | Sketch | None]) -> Sketch:
    total = Sketch()
    for s in sketches:
        if s:
            total.merge(s)
    return total
