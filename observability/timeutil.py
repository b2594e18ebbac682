"""Time at the edges, and the one definition of a time window.

The store keeps naive UTC; callers may pass aware or naive datetimes, and `resolve_now` turns
either into the store's form. Every service accepts the same windows (`Window`): the source
documents' names "1h", "24h", "7d" (and any "<number><s|m|h|d>", such as "6h" or "30d"), a
`timedelta`, or a plain number in the unit its parameter names (`window_seconds=`,
`window_minutes=`), so the console, the worker and a user's script mean the same span by the same
word. A contract module: it imports nothing of the package.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1)

Window = str | int | float | timedelta
WINDOWS: dict[str, int] = {"1h": 3600, "24h": 86_400, "7d": 604_800}  # the source document's windows
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def utcnow() -> datetime:
    """Naive UTC now, the store's representation."""
    return datetime.now(UTC).replace(tzinfo=None)


def to_naive_utc(value: datetime | None) -> datetime | None:
    """Aware datetimes are converted to UTC; naive ones are taken as UTC already."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def resolve_now(now: datetime | None) -> datetime:
    """`now` as naive UTC (aware values are converted), or the current time when None: what every
    `now=` parameter of the services accepts."""
    return to_naive_utc(now) if now is not None else utcnow()


def from_epoch(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def to_epoch(value: datetime) -> float:
    value = to_naive_utc(value)
    return (value - EPOCH).total_seconds()


def floor_minute(value: datetime) -> datetime:
    return value.replace(second=0, microsecond=0)


def floor_hour(value: datetime) -> datetime:
    return value.replace(minute=0, second=0, microsecond=0)


def floor_day(value: datetime) -> datetime:
    """Midnight (UTC for the store's naive values) of the day holding `value`."""
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


def as_aware(value: datetime | None) -> datetime | None:
    """For display and APIs: a naive UTC value made explicit."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def window_seconds(window: Window, *, unit_s: float = 1.0) -> float:
    """The length of a window in seconds: '1h' | '24h' | '7d', any '<number><s|m|h|d>' (such as
    '15m' or '30d'), a `timedelta`, or a plain number of `unit_s`-second units (seconds by default;
    `unit_s=60` where a parameter counts minutes). Anything else, or a length that is not positive,
    is a ValueError."""
    if isinstance(window, timedelta):
        seconds = window.total_seconds()
    elif isinstance(window, (int, float)) and not isinstance(window, bool):
        seconds = float(window) * unit_s
    elif isinstance(window, str) and (m := _DURATION.match(window)):
        seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    else:
        raise ValueError(
            f"window must be one of {sorted(WINDOWS)}, like '15m' or '30d', a timedelta or a number, "
            f"got {window!r}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"window must be a positive length of time, got {window!r}")
    return seconds


def window_bounds(window: Window | None, now: datetime | None = None) -> tuple[datetime, datetime]:
    """[start, end) of a window (seconds when a number) ending at `now`; `None` means everything up
    to now."""
    end = resolve_now(now)
    if window is None:
        return EPOCH, end
    return end - timedelta(seconds=window_seconds(window)), end
