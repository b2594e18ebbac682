"""Rules in the store: the shipped defaults, the built-in system rules, and reading/writing rows.

`seed_default_rules(store)` inserts the 7 default rules of `data/alert_rules.json`, the threshold
rules of `ALERT_THRESHOLDS_CONFIG` and the system rules below, each once: the names seeded are
remembered in `control_state['alerting.seeded_rules']`, so a rule an admin deleted is not brought
back by the next worker start.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from observability.alerting import audit
from observability.alerting.model import (
    CUSTOM_METRIC_FAMILY,
    MANAGED_CHANNELS,
    MANAGED_CUSTOM,
    MANAGED_THRESHOLDS,
    MANAGED_VOLUME,
    METRICS,
    AlertRule,
    parse_metric,
    validate_rule,
)
from observability.alerting.thresholds import comparison, rule_name, threshold_rule
from observability.analytics.thresholds import ThresholdsError, load_thresholds
from observability.settings import Settings, get_settings
from observability.store import Store, schema
from observability.timeutil import utcnow

log = logging.getLogger(__name__)

SEEDED_KEY = "alerting.seeded_rules"
VOLUME_RULE = "excessive_alert_volume"
CHANNEL_RULE = "notification_channel_failing"
CUSTOM_RULE = "custom_metric_threshold"
# Alerts of these rules do not count towards the alert volume (they describe alerting itself).
META_RULES = frozenset({VOLUME_RULE, CHANNEL_RULE})

SYSTEM_RULES: tuple[AlertRule, ...] = (
    AlertRule(
        name=CUSTOM_RULE,
        metric=CUSTOM_METRIC_FAMILY,
        threshold=0.0,
        severity="warning",
        cooldown_s=300.0,
        channels=("slack",),
        description="A recorded metric crossed the threshold_warning / threshold_critical of its metadata",
        builtin=True,
        managed_by=MANAGED_CUSTOM,
    ),
    AlertRule(
        name=VOLUME_RULE,
        metric="alerts_fired_1h",
        comparison="gt",
        threshold=20.0,
        severity="warning",
        cooldown_s=1800.0,
        channels=("email", "slack"),
        description="Excessive alert volume: more than 20 alerts fired in the last hour; review thresholds",
        builtin=True,
        managed_by=MANAGED_VOLUME,
    ),
    AlertRule(
        name=CHANNEL_RULE,
        metric="notification_failures",
        comparison="gte",
        threshold=3.0,
        severity="critical",
        cooldown_s=900.0,
        channels=("email", "slack", "webhook"),
        description="A notification channel keeps failing (3 or more failed attempts since its last success)",
        builtin=True,
        managed_by=MANAGED_CHANNELS,
    ),
)


def row_to_rule(row: Any) -> AlertRule:
    m = row._mapping
    channels = m["channels"]
    if isinstance(channels, str):
        channels = json.loads(channels)
    return AlertRule(
        name=m["name"],
        metric=m["metric"],
        comparison=m["comparison"],
        threshold=float(m["threshold"]),
        severity=m["severity"],
        cooldown_s=float(m["cooldown_s"]),
        channels=tuple(channels or ()),
        description=m["description"] or "",
        enabled=bool(m["enabled"]),
        for_s=float(m["for_s"] or 0.0),
        keep_firing_for_s=None if m["keep_firing_for_s"] is None else float(m["keep_firing_for_s"]),
        critical_threshold=None if m["critical_threshold"] is None else float(m["critical_threshold"]),
        builtin=bool(m["builtin"]),
        managed_by=m["managed_by"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        updated_by=m["updated_by"],
    )


def rule_values(rule: AlertRule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "metric": rule.metric,
        "comparison": rule.comparison,
        "threshold": rule.threshold,
        "critical_threshold": rule.critical_threshold,
        "severity": rule.severity,
        "cooldown_s": rule.cooldown_s,
        "channels": list(rule.channels),
        "description": rule.description,
        "enabled": rule.enabled,
        "for_s": rule.for_s,
        "keep_firing_for_s": rule.keep_firing_for_s,
        "builtin": rule.builtin,
        "managed_by": rule.managed_by,
    }


def get_rule(conn: sa.Connection, name: str, *, lock: bool = False) -> AlertRule | None:
    q = sa.select(schema.alert_rules).where(schema.alert_rules.c.name == name)
    if lock:
        q = q.with_for_update()
    row = conn.execute(q).first()
    return row_to_rule(row) if row else None


def all_rules(conn: sa.Connection) -> list[AlertRule]:
    rows = conn.execute(sa.select(schema.alert_rules).order_by(schema.alert_rules.c.name)).all()
    return [row_to_rule(r) for r in rows]


def load_rules_file(
    path: Path | str, *, default_for_s: float = 0.0
) -> tuple[list[AlertRule], dict[str, float]]:
    """The default rules and the per-bot SLA P95 targets of `data/alert_rules.json`.

    A rule on a sampled metric (a rate or percentile over the window's events, `MetricInfo.sampled`)
    that sets no `for_s` gets `default_for_s` (ALERT_DEFAULT_FOR_S): a few chance failures among a
    few dozen events break a 5% threshold for a minute or two, a real incident lasts longer."""
    raw = json.loads(Path(path).read_text())
    rules = []
    for item in raw.get("rules", []):
        data = {**item, "builtin": True}
        info = METRICS.get(parse_metric(str(item.get("metric", "")))[0])
        if "for_s" not in data and info is not None and info.sampled and default_for_s > 0:
            data["for_s"] = default_for_s
        rules.append(validate_rule(data))
    targets = {str(k): float(v) for k, v in (raw.get("sla_p95_targets_ms") or {}).items()}
    return rules, targets


_targets_cache: dict[Path, tuple[float, dict[str, float]]] = {}


def sla_targets(settings: Settings) -> dict[str, float]:
    """Per-bot P95 targets in ms (cached until the file changes); empty if the file is unreadable."""
    path = Path(settings.alert_rules_file)
    try:
        mtime = path.stat().st_mtime
        hit = _targets_cache.get(path)
        if hit and hit[0] == mtime:
            return hit[1]
        _, targets = load_rules_file(path)
    except (OSError, ValueError) as exc:
        log.warning("alert rules file %s unreadable: %s", path, exc)
        return {}
    _targets_cache[path] = (mtime, targets)
    return targets


def default_rules(settings: Settings) -> list[AlertRule]:
    """Every rule the system ships: the file's 7 defaults, threshold rules and system rules."""
    rules, _ = load_rules_file(settings.alert_rules_file, default_for_s=settings.alert_default_for_s)
    try:
        pairs = load_thresholds(settings.alert_thresholds_config)
    except ThresholdsError as exc:
        log.error("%s", exc)
        pairs = {}
    rules.extend(threshold_rule(p, settings.alert_default_for_s) for p in pairs.values())
    rules.extend(SYSTEM_RULES)
    return rules


def insert_rule(conn: sa.Connection, store: Store, rule: AlertRule, now: datetime, actor: str | None) -> bool:
    stmt = store.insert(schema.alert_rules).values(
        **rule_values(rule), created_at=now, updated_at=now, updated_by=actor
    )
    stmt = stmt.on_conflict_do_nothing(index_elements=["name"]).returning(schema.alert_rules.c.name)
    return conn.execute(stmt).first() is not None  # (rowcount is -1 for upserts on psycopg)


def seed_default_rules(
    store: Store, settings: Settings | None = None, *, now: datetime | None = None
) -> list[str]:
    """Insert each shipped rule once (safe to call from every process); returns the names added."""
    settings = settings or get_settings()
    now = now or utcnow()
    rules = default_rules(settings)
    cs = schema.control_state
    added: list[str] = []
    with store.begin() as conn:
        row = conn.execute(sa.select(cs.c.value).where(cs.c.key == SEEDED_KEY).with_for_update()).first()
        value = row[0] if row else None
        if isinstance(value, str):
            value = json.loads(value)
        seeded = set((value or {}).get("names", []))
        todo = [r for r in rules if r.name not in seeded]
        if not todo:
            return []
        for rule in todo:
            if insert_rule(conn, store, rule, now, "seed"):
                added.append(rule.name)
        names = sorted(seeded | {r.name for r in todo})
        stmt = store.insert(cs).values(
            key=SEEDED_KEY, value={"names": names}, updated_by="seed", updated_at=now
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"], set_={"value": stmt.excluded.value, "updated_at": now}
        )
        conn.execute(stmt)
    if added:
        log.info("seeded alert rules: %s", ", ".join(added))
    return added


def sync_threshold_rules(store: Store, settings: Settings, now: datetime) -> list[str]:
    """Keep built-in threshold rules equal to ALERT_THRESHOLDS_CONFIG; returns rules changed."""
    try:
        pairs = load_thresholds(settings.alert_thresholds_config)
    except ThresholdsError as exc:
        log.error("%s", exc)
        return []
    t = schema.alert_rules
    changed: list[str] = []
    with store.connect() as conn:
        rows = {
            r.name: r
            for r in conn.execute(
                sa.select(t.c.name, t.c.metric, t.c.threshold, t.c.critical_threshold, t.c.comparison).where(
                    t.c.managed_by == MANAGED_THRESHOLDS
                )
            )
        }
    for pair in pairs.values():
        name, cmp = rule_name(pair), comparison(pair)
        row = rows.get(name)
        if row is None:
            continue  # not seeded yet, or deleted on purpose
        if (row.threshold, row.critical_threshold, row.comparison, row.metric) == (
            pair.warning, pair.critical, cmp, pair.metric,
        ):  # fmt: skip
            continue
        with store.begin() as conn:
            conn.execute(
                sa.update(t)
                .where(t.c.name == name)
                .values(
                    threshold=pair.warning,
                    critical_threshold=pair.critical,
                    comparison=cmp,
                    metric=pair.metric,
                    updated_at=now,
                    updated_by="thresholds_config",
                )  # fmt: skip
            )
        changed.append(name)
    return changed


def metric_recorded(conn: sa.Connection, name: str) -> bool:
    """Whether a metric of this name was ever recorded in `system_metrics` (a custom metric)."""
    sm = schema.system_metrics
    return conn.execute(sa.select(sa.literal(1)).where(sm.c.metric_name == name).limit(1)).first() is not None


def bootstrap_default_rules(ctx: Any) -> str:
    """Bootstrap step (`observability.demo.bootstrap.STEPS`): seed the shipped rules once."""
    added = seed_default_rules(ctx.store, ctx.settings)
    upgraded = upgrade_threshold_rules_for(ctx.store, ctx.settings)
    done = f"seeded {len(added)} alert rule(s)" if added else "alert rules already seeded"
    return done + (f"; {len(upgraded)} threshold rule(s) given their `for`" if upgraded else "")


FOR_UPGRADE_KEY = "alerting.threshold_rules_for_s"  # marks a store whose threshold rules got their `for`


def upgrade_threshold_rules_for(
    store: Store, settings: Settings, *, now: datetime | None = None
) -> list[str]:
    """Give the threshold rules of a store seeded before they waited (`for_s` 0) the shipped
    `for` (ALERT_DEFAULT_FOR_S), once per store; returns the rules changed.

    Without it, an old store keeps paging on one busy second (`high_system_load` fired critical
    within seconds of a worker starting). A rule whose `for_s` a user set (an `alert_rule.updated`
    event that changed it) is left as the user wants it; enabling or disabling is no such edit."""
    default = float(settings.alert_default_for_s)
    now = now or utcnow()
    t, cs, ae = schema.alert_rules, schema.control_state, schema.activity_events
    with store.begin() as conn:
        mark = store.insert(cs).values(key=FOR_UPGRADE_KEY, value={"for_s": default}, updated_by="upgrade",
                                       updated_at=now)  # fmt: skip
        mark = mark.on_conflict_do_nothing(index_elements=["key"]).returning(cs.c.key)
        if conn.execute(mark).first() is None:
            return []  # done before (or by another process right now)
        if default <= 0:
            return []
        stale = set(conn.execute(
            sa.select(t.c.name).where(t.c.managed_by == MANAGED_THRESHOLDS, t.c.for_s == 0)
        ).scalars())  # fmt: skip
        if not stale:
            return []
        for (meta,) in conn.execute(sa.select(ae.c.metadata).where(ae.c.event_type == "alert_rule.updated")):
            meta = json.loads(meta) if isinstance(meta, str) else (meta or {})
            if "for_s" in (meta.get("changes") or {}):
                stale.discard(meta.get("rule"))
        todo = sorted(stale)
        if todo:
            conn.execute(
                sa.update(t).where(t.c.name.in_(todo), t.c.for_s == 0)
                .values(for_s=default, updated_at=now, updated_by="upgrade")
            )  # fmt: skip
            audit.activity(conn, now, "alert_rule.upgraded",
                           f"Threshold rules now wait {default:.0f} s before firing: {', '.join(todo)}",
                           description="Seeded before threshold rules had a `for` (ALERT_DEFAULT_FOR_S)",
                           metadata={"rules": todo, "for_s": default})  # fmt: skip
    if todo:
        log.info(
            "threshold rules %s now wait %.0f s before firing (seeded with for_s=0)", ", ".join(todo), default
        )
    return todo
