"""Slack incoming webhook: a `text` fallback (notifications, old clients) plus Block Kit `blocks`.

429 answers carry Retry-After; the outbox waits that long before the next attempt. 400/403/404/410
(invalid_payload, action_prohibited, channel_not_found, channel_is_archived) are not retried."""

from __future__ import annotations

from observability.alerting.channels.base import (
    DeliveryError,
    Outgoing,
    body_lines,
    labels_text,
    post,
    response_excerpt,
    title,
)
from observability.settings import Settings

NAME = "slack"
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def escape(text: object) -> str:
    """Text made inert for Slack (its escaping rules: `&`, `<`, `>`), so data from bots or the SDK
    can neither mention a channel (`<!channel>`, `<@U123>`) nor disguise a link (`<https://x|y>`)."""
    return str(text).translate(_ESCAPES)


_EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}


def missing(settings: Settings) -> list[str]:
    need = []
    if not settings.alert_slack_enabled:
        need.append("ALERT_SLACK_ENABLED=true")
    if not settings.alert_slack_webhook_url:
        need.append("ALERT_SLACK_WEBHOOK_URL")
    return need


def render(msg: Outgoing, settings: Settings) -> dict:
    p = msg.payload
    head = escape(title(msg))
    if msg.kind == "resolve":
        emoji = ":white_check_mark:"
    elif msg.kind == "ack":
        emoji = ":eyes:"
    else:
        emoji = _EMOJI.get(msg.severity, ":bell:")
    summary = escape(p.get("message")) if p.get("message") else head
    fields = [
        {"type": "mrkdwn", "text": f"*{k}:*\n{escape(v)}"}
        for k, v in body_lines(msg, settings)
        if k not in ("Summary", "Description", "Console")
    ][:10]  # Slack allows at most 10 fields per section
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": head[:150], "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{emoji} {summary}"[:3000]}},
        {"type": "section", "fields": fields},
    ]
    if p.get("description"):
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": escape(p["description"])[:3000]}]}
        )
    if settings.alert_console_url:
        blocks.append({
            "type": "actions",
            "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open the console"},
                          "url": settings.alert_console_url}],
        })  # fmt: skip
    body = {
        "text": f"{emoji} {head}: {summary} {escape(labels_text(p.get('labels')))}".strip()[:3000],
        "blocks": blocks,
    }
    if settings.alert_slack_channel:
        body["channel"] = settings.alert_slack_channel
    return body


def send(msg: Outgoing, settings: Settings) -> str:
    if missing(settings):
        raise DeliveryError(f"slack is not configured: set {', '.join(missing(settings))}", retryable=False)
    resp = post(
        settings.alert_slack_webhook_url, settings, json_body=render(msg, settings), what="Slack webhook"
    )
    return f"HTTP {resp.status_code} {response_excerpt(resp, 40)}".strip()
