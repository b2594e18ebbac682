"""Notification channels. Each module has `NAME`, `missing(settings) -> [what to set]` and
`send(Outgoing, settings) -> receipt`, raising `DeliveryError` (retryable or not)."""

from __future__ import annotations

from types import ModuleType

from observability.alerting.channels import email, opsgenie, pagerduty, slack, webhook
from observability.alerting.channels.base import DeliveryError, Outgoing
from observability.settings import Settings

REGISTRY: dict[str, ModuleType] = {m.NAME: m for m in (email, slack, webhook, pagerduty, opsgenie)}
# Channels that keep state at the peer: acknowledging or resolving here is forwarded to them.
STATEFUL = ("pagerduty", "opsgenie")
# Channels that are told when an alert resolves (Alertmanager's send_resolved defaults).
SEND_RESOLVED = ("webhook", "pagerduty", "opsgenie")

__all__ = [
    "REGISTRY",
    "STATEFUL",
    "SEND_RESOLVED",
    "DeliveryError",
    "Outgoing",
    "configured",
    "missing",
    "send",
]


def missing(name: str, settings: Settings) -> list[str]:
    return REGISTRY[name].missing(settings)


def configured(name: str, settings: Settings) -> bool:
    return name in REGISTRY and not REGISTRY[name].missing(settings)


def configured_channels(settings: Settings) -> list[str]:
    return [n for n in REGISTRY if configured(n, settings)]


def send(msg: Outgoing, settings: Settings) -> str:
    return REGISTRY[msg.channel].send(msg, settings)
