"""What every channel shares: the outgoing message, the error that says whether to retry, HTTP
posting with timeouts and status classification, and the human-readable text of an alert."""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from observability.analytics import sla
from observability.redaction import scrub
from observability.settings import Settings

USER_AGENT = "bot-operations-console-alerting/1"


class DeliveryError(Exception):
    """A send that did not succeed. `retryable` False means retrying cannot help (HTTP 400, bad
    configuration); `retry_after` is the peer's requested wait in seconds (429 Retry-After).
    The message is stored (outbox, alert timeline, activity feed), shown and logged, so it is
    scrubbed here, once: URLs keep only scheme and host, tokens are masked."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None) -> None:
        super().__init__(scrub(message))
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class Outgoing:
    """One notification to send: an outbox row (or a test) and the alert snapshot it carries."""

    key: str  # stable across retries: webhook-id, e-mail Message-ID
    channel: str
    kind: str  # trigger | ack | resolve | test
    level: int
    payload: dict

    @property
    def severity(self) -> str:
        return self.payload.get("severity") or "warning"

    @property
    def rule(self) -> str:
        return self.payload.get("rule") or "alert"


def labels_text(labels: dict | None) -> str:
    if not labels:
        return ""
    return f"({sla.scope_label(labels)})"


def title(msg: Outgoing) -> str:
    p = msg.payload
    if msg.kind == "test":
        return "[TEST] Test notification from the bot operations console"
    name = f"{msg.rule} {labels_text(p.get('labels'))}".strip()
    if msg.kind == "resolve":
        return f"[RESOLVED] {name}"
    if msg.kind == "ack":
        return f"[ACKNOWLEDGED] {name} by {p.get('acknowledged_by') or 'an operator'}"
    text = f"[{msg.severity.upper()}] {name}"
    if msg.level >= 2:
        text += f" - escalation level {msg.level}"
    return text


def body_lines(msg: Outgoing, settings: Settings) -> list[tuple[str, str]]:
    p = msg.payload
    rows = [
        ("Alert", f"#{p.get('alert_id')}" if p.get("alert_id") is not None else "test"),
        ("Rule", msg.rule),
        ("Severity", msg.severity),
        ("Summary", p.get("message") or ""),
    ]
    if p.get("description"):
        rows.append(("Description", p["description"]))
    if p.get("value_text"):
        rows.append(("Value", f"{p['value_text']} (threshold {p.get('threshold_text')})"))
    if p.get("labels"):
        rows.append(("Labels", ", ".join(f"{k}={v}" for k, v in sorted(p["labels"].items()))))
    if p.get("fired_at"):
        rows.append(("Fired at", f"{p['fired_at']} UTC"))
    if msg.kind == "trigger":
        rows.append(("Escalation level", str(msg.level)))
    if p.get("acknowledged_by"):
        rows.append(("Acknowledged by", p["acknowledged_by"]))
    if p.get("resolved_by"):
        rows.append(("Resolved by", p["resolved_by"]))
    if settings.alert_console_url:
        rows.append(("Console", settings.alert_console_url))
    return rows


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def response_excerpt(resp: requests.Response, limit: int = 300) -> str:
    """The start of a peer's answer, fit to be stored and shown: one line, truncated, scrubbed."""
    return scrub((resp.text or "")[: limit * 4].strip().replace("\n", " ").replace("\r", " "))[:limit]


def post(
    url: str,
    settings: Settings,
    *,
    json_body: Any = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    what: str = "request",
) -> requests.Response:
    """POST with the configured timeout; raises DeliveryError classified by status.

    2xx is success. 429, 408 and 5xx are retried (honouring Retry-After); other 4xx are not:
    the request itself is wrong and sending it again cannot help. Redirects are not followed (they
    would carry custom headers and the payload to another host) and are a permanent failure.
    """
    hdrs = {"User-Agent": USER_AGENT, **(headers or {})}
    started = time.monotonic()
    try:
        resp = requests.post(
            url,
            json=json_body,
            data=data,
            headers=hdrs,
            timeout=settings.alert_http_timeout_s,
            allow_redirects=False,  # a redirect would carry our headers and payload to another host
        )
    except requests.Timeout as exc:
        raise DeliveryError(f"{what}: timed out after {time.monotonic() - started:.1f}s") from exc
    except requests.RequestException as exc:
        raise DeliveryError(f"{what}: {type(exc).__name__}: {exc}") from exc
    if 200 <= resp.status_code < 300:
        return resp
    detail = response_excerpt(resp, 300)
    if resp.is_redirect or 300 <= resp.status_code < 400:
        raise DeliveryError(f"{what}: HTTP {resp.status_code} redirect not followed", retryable=False)
    message = f"{what}: HTTP {resp.status_code} {detail}".strip()
    if resp.status_code == 429 or resp.status_code == 408 or resp.status_code >= 500:
        raise DeliveryError(message, retry_after=parse_retry_after(resp.headers.get("Retry-After")))
    raise DeliveryError(message, retryable=False)
