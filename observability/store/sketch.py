"""A mergeable latency sketch with bounded relative error (the DDSketch idea).

Values fall into logarithmic buckets `ceil(log(x) / log(gamma))` with gamma = (1 + a) / (1 - a);
every value in bucket i is within relative error `a` of `2 * gamma**i / (gamma + 1)`. Sketches merge
by adding counts, so per-minute rollups combine exactly into hours, days and weeks, and a 7-day
percentile reads a few hundred rows instead of millions.

Bucket indexes are computed in SQL at rollup time (`sqlhelpers.bucket_sql_expr`) so the rollup step never pulls
raw rows into Python.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

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


def _parse_sketch(value: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(value, str):
        value = json.loads(value)
    if not value:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    keys = np.fromiter((int(k) for k in value), np.int64, len(value))
    counts = np.fromiter(value.values(), np.int64, len(value))
    return keys, counts


_SKETCH_TEXT = str.maketrans({"{": " ", "}": " ", '"': " ", ":": " ", ",": " "})


def parse_sketches_flat(values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Many stored sketches at once: all their (bucket index, count) pairs in one pair of arrays,
    and how many pairs each sketch has. Their JSON texts are joined and read as one array of
    numbers, several times faster than `json.loads` and a conversion per sketch (a new process
    reads thousands of them for a week's hourly chart)."""
    if values and all(isinstance(v, str) for v in values):
        sizes = np.fromiter((v.count(":") for v in values), np.int64, len(values))
        flat = np.fromstring(" ".join(values).translate(_SKETCH_TEXT), dtype=np.int64, sep=" ")
        if len(flat) == 2 * int(sizes.sum()):  # else not the flat {"bucket": count} shape: read it as JSON
            return flat[0::2], flat[1::2], sizes
    parts = [_parse_sketch(v) for v in values]
    sizes = np.fromiter((len(k) for k, _ in parts), np.int64, len(parts))
    if not parts:
        return np.empty(0, np.int64), np.empty(0, np.int64), sizes
    return np.concatenate([k for k, _ in parts]), np.concatenate([c for _, c in parts]), sizes


def parse_sketches(values: Sequence[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    """`parse_sketches_flat`, one (bucket indexes, counts) pair of arrays per sketch."""
    if not values:
        return []
    keys, counts, sizes = parse_sketches_flat(values)
    cuts = np.cumsum(sizes)[:-1]
    return list(zip(np.split(keys, cuts), np.split(counts, cuts), strict=True))
