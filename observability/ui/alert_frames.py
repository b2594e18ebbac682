"""Read models for the Alerts page: the alerting service's answers as rows and DataFrames, each a
function of `(store, ...)` so the console can cache it (`observability.ui.common.cached_query`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from observability.alerting.model import (
    CHANNELS,
    COMPARISON_SYMBOLS,
    SEVERITIES,
    STATE_RESOLVED,
    AlertNotFound,
)
from observability.alerting.service import AlertingService
from observability.analytics import catalog, sla
from observability.store import Store
from observability.timeutil import utcnow, window_seconds
from observability.ui import nav

SEVERITY_COLORS = {"critical": "#c62828", "warning": "#ef6c00", "info": "#1565c0"}
SEVERITY_MARKDOWN = {"critical": "red", "warning": "orange", "info": "blue"}
STATES = ("pending", "firing", "acknowledged", "resolved")
HISTORY_RANGES = {"24h": 1, "7d": 7, "30d": 30}


def _labels(labels: dict) -> str:
    """An alert's labels as people read them (the handoff step named as such, not as a bot)."""
    return sla.scope_label(labels)


def _matchers(matchers: dict) -> str:
    """A silence's matchers exactly as they match (bot=handoff), so they can be typed again."""
    return ", ".join(f"{k}={v}" for k, v in sorted(matchers.items()))


def active_alerts(store: Store) -> list[dict[str, Any]]:
    """Open alerts (pending included), most severe first, newest first within a severity, each
    with its text labels and its rule's metric family (`metric`, None once the rule is gone).

    The order does not depend on the state, so acknowledging an alert never moves the cards."""
    rank = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    svc = AlertingService(store)
    families = svc.rule_families()  # what `alert_links` links by
    out = []
    for a in svc.active_alerts(include_pending=True):
        a = dict(a)
        a["labels_text"] = _labels(a["labels"])
        a["metric"] = families.get(a["rule_name"])
        out.append(a)
    out.sort(key=lambda d: (rank.get(d["severity"], 9), -d["id"]))
    return out


def stable_order(alerts: list[dict[str, Any]], shown: list[int]) -> tuple[list[dict[str, Any]], list[int]]:
    """`alerts` in the order the operator already sees (`shown`, ids): cards shown before keep their
    places, alerts that opened since go after them. Returns the ordered alerts and the new order.

    Re-sorting under the operator's cursor made a click land on the next alert's button."""
    by_id = {a["id"]: a for a in alerts}
    kept = [by_id[i] for i in shown if i in by_id]
    new = [a for a in alerts if a["id"] not in set(shown)]
    ordered = kept + new
    return ordered, [a["id"] for a in ordered]


def alert_bot(alert: dict[str, Any]) -> str | None:
    """The bot an alert is about (its `bot` label), or None: for alerts without one (system rules
    such as high_system_load, excessive_alert_volume, notification_failures{channel}) and for the
    handoff step (`bot=handoff`), a step between bots with no conversations, LLM calls or live
    conversation of its own, so no bot view of it shows anything."""
    bot = alert["labels"].get("bot")
    return None if not bot or bot == sla.HANDOFF_STEP else bot


# families an alert is about handoffs by, without a `bot=handoff` label (circular_handoff_spike)
HANDOFF_FAMILIES = frozenset({"blocked_handoffs_1h"})
LINK_LEAD = timedelta(minutes=15)  # links open on the window from shortly before the alert opened


def covering_range(ranges: tuple[str, ...], start: datetime | None, now: datetime) -> str:
    """The shortest of a page's Time ranges that reaches back to `start` (the longest if none
    does; the shortest without a start)."""
    if start is not None:
        for r in ranges:
            if window_seconds(r) >= (now - start).total_seconds():
                return r
        return ranges[-1]
    return ranges[0]


# rule metric families the worker computes over ALERT_METRIC_WINDOW_S (`alerting.inputs`)
WINDOWED_FAMILIES = frozenset({
    "error_rate", "cache_hit_rate", "response_time_p95", "failure_rate", "sla_p95_ratio", "rate_limit_error_rate",
    "response_time", "system_load", "ai_confidence", "safety_score",
})  # fmt: skip


def held(alert: dict[str, Any]) -> bool:
    """Held back by a silence, an inhibition or the rule's cooldown: the Alerts page's Held figure
    and its cards' notes. An alert whose condition cleared is not held but resolving."""
    return bool(alert["suppressed_by"] or alert["silenced_by"]) and not alert["clear_since"]


# families computed from bot responses (bot_interactions): AI performance shows them per bot
RESPONSE_FAMILIES = frozenset({"error_rate", "cache_hit_rate", "response_time_p95"})


def measured_as(rule_metric: str) -> str | None:
    """What an alert's figure is, for its card: the catalog's name and formula for the rule's
    metric and the window it is judged over. Bot health shows the operations' cache hit rate over
    its own window; `low_cache_hit_rate` watches bot responses over 5 minutes: a card said
    "cache_hit_rate is 0.0%" and nothing else."""
    entry = catalog.for_alert(rule_metric)
    if entry is None:
        return None
    label = entry.label.removesuffix(" now").removesuffix(" (alert window)")
    if label[1:2].islower():  # "Response cache hit rate" reads "the response ...", "AI confidence" stays
        label = label[0].lower() + label[1:]
    window = f", over the last {sla.alert_window_s() / 60:g} min" if rule_metric in WINDOWED_FAMILIES else ""
    return f"{rule_metric} is the {label}: {entry.formula}{window}"


def alert_links(alert: dict[str, Any], now: datetime | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """Where an operator goes from an alert: (label, page stem, query params), each a view that
    shows what the alert is about, over a window reaching back to shortly before it opened.

    - about a bot: Bot health (over that window), Conversations and LLM calls filtered to that bot;
    - about the handoff step (`bot=handoff`) or handoffs (`alert["metric"]` in HANDOFF_FAMILIES):
      Bot health filtered to the step (its SLA rows; on the step only) and the handoffs by route
      on Conversation quality, labelled "handoff step" as on the card, never the bot views (the
      step has no conversations or LLM calls: they said "No conversations match.");
    - about a notification channel, or the number of alerts fired: the Alerts page's Channels or
      History tab;
    - anything else (a rule over every bot, a recorded metric): the LLM calls made since it opened.

    The LLM calls link lists failures first when the alert is about errors. `alert["metric"]` is the
    rule's metric family (`active_alerts` adds it)."""
    now = now or utcnow()
    labels = alert["labels"]
    family = alert.get("metric")
    since = alert["fired_at"] or alert["pending_since"] or alert.get("created_at")
    start = since - LINK_LEAD if since else None
    health = covering_range(nav.page_ranges("bot_health"), start, now)
    if labels.get("bot") == sla.HANDOFF_STEP or family in HANDOFF_FAMILIES:
        out: list[tuple[str, str, dict[str, Any]]] = []
        if labels.get("bot") == sla.HANDOFF_STEP:
            out.append(
                (
                    f"Bot health of the {sla.STEP_LABEL}",
                    "bot_health",
                    {"bot": sla.STEP_LABEL, "range": health},
                )
            )
        window = covering_range(nav.page_ranges("conversation_quality"), start, now)
        out.append(
            (
                f"Handoffs by route, last {window}",
                "conversation_quality",
                {"tab": "Handoffs", "range": window},
            )
        )
        return out
    if "channel" in labels or family == "notification_failures":
        return [
            (f"Channels: delivery via {labels.get('channel', 'each channel')}", "alerts", {"tab": "Channels"})
        ]
    if family == "alerts_fired_1h":
        return [("Alerts fired, in History", "alerts", {"tab": "History", "h_range": "24h"})]
    bot = alert_bot(alert)
    errors = "error" in alert["rule_name"] or "rate_limit" in alert["rule_name"]
    out = []
    if bot and family in RESPONSE_FAMILIES:  # the page that shows this very figure comes first
        perf = covering_range(nav.page_ranges("ai_performance"), start, now)
        out.append(
            (f"AI performance of {bot}: its bot responses", "ai_performance", {"bot": bot, "range": perf})
        )
    if bot:
        out.append((f"Bot health of {bot}", "bot_health", {"bot": bot, "range": health}))
        out.append((f"Conversations of {bot}", "conversations", {"bot": bot}))
    from_ = start.strftime("%Y-%m-%dT%H:%M") if start else None
    out.append(
        ("Its LLM calls", "llm_calls", {"bot": bot, "from": from_, "status": "error" if errors else None})
    )
    return out


def trouble_of_bot(store: Store, bot: str) -> dict[str, Any] | None:
    """The live conversation of `bot` most in trouble (Needs attention's ranking), or None: an alert
    about a bot leads straight to the conversation an operator most likely has to take over."""
    from observability.analytics.attention import needs_attention

    rows = needs_attention(store, limit=1, bots=[bot])
    return rows[0] if rows else None


def escalation_question(store: Store, alert: dict[str, Any]) -> dict[str, Any]:
    """What the confirmation before a manual escalation says (`AlertingService.escalation_preview`):
    `question`, `paged` (who is notified, or that nobody is), `notes` (channels not configured, so
    skipped, and channels whose last delivery failed, with the error), and `done` for the toast.
    Plain text: the page escapes it (errors come from peers)."""
    p = AlertingService(store).escalation_preview(alert["id"])
    level = p["level"]
    if level is None:
        return {
            "question": f"Alert #{alert['id']} is at the highest level.",
            "paged": "",
            "notes": [],
            "done": "",
        }
    tried, skipped, failing = p["tried"], p["not_configured"], p["failing"]
    question = f"Escalate alert #{alert['id']} to level {level}?"
    working = [c for c in tried if c not in failing]
    if tried and not working:  # every channel it goes to is failing: "people get paged" would not hold
        paged = (f"It is sent now to {', '.join(tried)}, even if the alert is silenced, but every one of "
                 "them is failing: nobody may be paged.")  # fmt: skip
        done = f"Alert #{alert['id']} escalated to level {level}: sent to {', '.join(tried)} (failing)"
    elif tried:
        paged = f"It is sent now to {', '.join(tried)}, even if the alert is silenced: people get paged."
        done = f"Alert #{alert['id']} escalated to level {level}: sent to {', '.join(tried)}"
    else:
        paged = (f"None of the channels of level {level} ({', '.join(p['channels']) or 'none'}) is configured: "
                 f"nobody is notified, the alert only moves to level {level}.")  # fmt: skip
        done = f"Alert #{alert['id']} moved to level {level}: no configured channel, nobody notified"
    notes = []
    if skipped and tried:
        notes.append(f"Not configured, so not sent: {', '.join(skipped)} (see the Channels tab).")
    for channel, error in failing.items():
        notes.append(f"{channel} is failing, this may not arrive: its last delivery failed ({error}).")
    return {"question": question, "paged": paged, "notes": notes, "done": done}


def alert_whereabouts(store: Store, alert_id: int) -> tuple[str, bool]:
    """Where an alert a link or a timeline names is, in plain words, for when the list on screen
    does not hold it (a pending alert that inhibited others and cleared without firing is in no
    list); and whether History lists it (it fired). Text from labels is the page's to escape."""
    svc = AlertingService(store)
    try:
        a = svc.get_alert(int(alert_id))
    except AlertNotFound:
        if int(alert_id) > svc.highest_alert_id():
            return (f"There is no alert #{alert_id}: no alert with that number has been raised.", False)
        return (f"There is no alert #{alert_id}: an alert that was pending and cleared without firing is "
                "dropped, not kept (while pending it may have held back the notifications of alerts it "
                "explained).", False)  # fmt: skip
    labels = _labels(a["labels"])
    what = f"Alert #{a['id']} ({a['rule_name']}{', ' + labels if labels else ''}, {a['severity']})"
    since = a["pending_since"] or a["created_at"]
    if a["fired_at"] is None:
        return (f"{what} has not fired: pending since {since:%Y-%m-%d %H:%M:%S} UTC, its condition holding "
                "until the rule's `for` has passed; it fires then, or is dropped if it clears first. While "
                "pending it holds back the notifications of the alerts it explains; History lists alerts "
                "that fired.", False)  # fmt: skip
    if a["state"] == STATE_RESOLVED:
        by = a["resolved_by"] or "the worker"
        return (f"{what} fired at {a['fired_at']:%Y-%m-%d %H:%M:%S} UTC and was resolved at "
                f"{a['resolved_at']:%Y-%m-%d %H:%M:%S} UTC by {by}.", True)  # fmt: skip
    return f"{what} is {a['state']} (fired at {a['fired_at']:%Y-%m-%d %H:%M:%S} UTC).", True


def alert_timeline(store: Store, alert_id: int) -> pd.DataFrame:
    rows = []
    for e in AlertingService(store).alert_timeline(alert_id):
        d = e["detail"]
        parts = []
        for key in ("level", "channels", "channel", "notification", "reason", "note", "severity", "error", "receipt",
                    "not_configured", "retry_at", "next_escalation_at"):  # fmt: skip
            value = d.get(key)
            if value not in (None, [], "", False):
                parts.append(f"{key}: {', '.join(map(str, value)) if isinstance(value, list) else value}")
        rows.append({"time (UTC)": e["ts"], "event": e["kind"].replace("_", " "), "by": e["actor"] or "",
                     "detail": "; ".join(parts)})  # fmt: skip
    return pd.DataFrame(rows, columns=["time (UTC)", "event", "by", "detail"])


def alert_history(
    store: Store, window: str = "7d", states: tuple = (), severities: tuple = (), rule: str | None = None,
    bot: str | None = None, limit: int = 500,
) -> pd.DataFrame:  # fmt: skip
    since = utcnow() - timedelta(days=HISTORY_RANGES.get(window, 7))
    rows = AlertingService(store).alert_history(
        {
            "since": since,
            "state": list(states),
            "severity": list(severities),
            "rule_name": rule,
            "bot": bot,
            "limit": limit,
        }  # fmt: skip
    )
    out = []
    for a in rows:
        ack = (
            (a["acknowledged_at"] - a["fired_at"]).total_seconds() / 60
            if a["acknowledged_at"] and a["fired_at"]
            else None
        )
        end = a["resolved_at"]
        out.append({
            "id": a["id"], "rule": a["rule_name"], "labels": _labels(a["labels"]), "severity": a["severity"],
            "state": a["state"], "fired (UTC)": a["fired_at"], "level": a["escalation_level"],
            "acknowledged by": a["acknowledged_by"] or "", "minutes to ack": None if ack is None else round(ack, 1),
            "resolved by": a["resolved_by"] or "", "resolved (UTC)": end,
            "minutes open": round(((end or utcnow()) - a["fired_at"]).total_seconds() / 60, 1) if a["fired_at"] else None,
            "message": a["message"],
        })  # fmt: skip
    columns = ["id", "rule", "labels", "severity", "state", "fired (UTC)", "level", "acknowledged by",
               "minutes to ack", "resolved by", "resolved (UTC)", "minutes open", "message"]  # fmt: skip
    return pd.DataFrame(out, columns=columns)


def alert_counts(store: Store, hours: int = 24, per_day: bool = False) -> pd.DataFrame:
    """Alerts fired per hour (or per day: a 30-day chart of 720 hourly bars reads as noise) and
    severity over the last `hours`; the bucket's start is in the "hour" column either way."""
    rows = AlertingService(store).alert_counts(hours=hours)
    df = pd.DataFrame(rows, columns=["hour", "severity", "alerts"])
    if per_day and not df.empty:
        df = df.assign(hour=pd.to_datetime(df["hour"]).dt.floor("D"))
        df = df.groupby(["hour", "severity"], as_index=False)["alerts"].sum()
    return df


def rules(store: Store) -> pd.DataFrame:
    out = []
    for r in AlertingService(store).list_rules():
        out.append({
            "enabled": r.enabled, "name": r.name, "severity": r.severity, "condition": r.condition_text(),
            "for (s)": r.for_s, "keep firing (s)": r.keep_firing_for_s, "cooldown (s)": r.cooldown_s,
            "channels": ", ".join(r.channels), "description": r.description,
            "kind": {None: "custom" if not r.builtin else "default"}.get(r.managed_by, f"built-in ({r.managed_by})"),
            "updated by": r.updated_by or "", "updated (UTC)": r.updated_at,
        })  # fmt: skip
    return pd.DataFrame(out)


def rule_form_defaults(store: Store, name: str) -> dict[str, Any]:
    r = AlertingService(store).get_rule(name)
    d = r.to_dict()
    d["comparison_symbol"] = COMPARISON_SYMBOLS[r.comparison]
    d["managed_by"] = r.managed_by
    d["thresholds_from"] = thresholds_source(r.managed_by)
    return d


def thresholds_source(managed_by: str | None) -> str | None:
    """Where a built-in rule's metric and thresholds come from (they are read-only in the console),
    or None for a rule whose thresholds the console edits."""
    from observability.alerting.model import MANAGED_CUSTOM, MANAGED_THRESHOLDS
    from observability.settings import PROJECT_ROOT, get_settings

    if managed_by == MANAGED_THRESHOLDS:
        path = get_settings().alert_thresholds_config
        try:
            shown = path.resolve().relative_to(PROJECT_ROOT)
        except ValueError:
            shown = path
        return f"the thresholds file `{shown}` (ALERT_THRESHOLDS_CONFIG)"
    if managed_by == MANAGED_CUSTOM:
        return "each custom metric's threshold_warning / threshold_critical metadata"
    if managed_by is not None:
        return "the system (a built-in rule)"
    return None


def silences(store: Store) -> pd.DataFrame:
    rows = AlertingService(store).list_silences()
    out = [{"id": s["id"], "active": s["active"], "rule": s["rule_name"] or "any rule", "matchers": _matchers(s["matchers"]),
            "starts (UTC)": s["starts_at"], "ends (UTC)": s["ends_at"], "reason": s["reason"],
            "created by": s["created_by"]} for s in rows]  # fmt: skip
    return pd.DataFrame(out, columns=["id", "active", "rule", "matchers", "starts (UTC)", "ends (UTC)", "reason",
                                      "created by"])  # fmt: skip


def channels(store: Store) -> list[dict[str, Any]]:
    """Each channel's configuration and delivery state (`delivery.channel_status`)."""
    return AlertingService(store).channel_status()


def failing_channels(store: Store) -> list[dict[str, Any]]:
    """The configured channels whose last delivery attempt failed, with the (scrubbed) error: a
    setup that can never send shows as failing, not as "configured"."""
    return [c for c in channels(store) if c["state"] == "failing"]


def duration_bounds() -> dict[str, Any]:
    """The service's bounds and defaults, for the forms' help texts (the service enforces them):
    the silence bounds in minutes, as the forms ask, the longest being the one enforced
    (`ALERT_SILENCE_MAX_S`, not the 30 days of `MAX_SILENCE_S`), with its text ("7 days")."""
    from observability.alerting import model
    from observability.alerting.silences import longest_silence_s
    from observability.settings import get_settings

    longest = longest_silence_s(get_settings())
    return {"for_s": model.MAX_FOR_S, "cooldown_s": model.MAX_COOLDOWN_S,
            "keep_firing_for_s": model.MAX_KEEP_FIRING_S, "silence_min": model.MIN_SILENCE_S / 60,
            "silence_max": longest / 60, "silence_max_text": model.human_duration(longest),
            "default_cooldown_s": model.DEFAULT_COOLDOWN_S, "default_for_s": model.DEFAULT_FOR_S}  # fmt: skip


def options() -> dict[str, Any]:
    """Choices for the page's forms."""
    from observability.alerting.model import COMPARISONS, METRICS

    return {
        "severities": list(SEVERITIES), "channels": list(CHANNELS), "comparisons": list(COMPARISONS),
        "metrics": sorted(METRICS), "symbols": COMPARISON_SYMBOLS,
        "metric_help": {m.name: f"{m.description} ({m.unit}{', per bot' if m.scoped else ''})" for m in METRICS.values()},
    }  # fmt: skip
