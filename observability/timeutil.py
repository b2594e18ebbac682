"""Time at the edges: the store keeps naive UTC; callers may pass aware or naive datetimes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1)


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
