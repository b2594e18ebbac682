"""SQLAlchemy Core schema: every table of DESIGN section 4.

All timestamps are naive UTC (`DateTime` without zone) so SQLite and PostgreSQL compare them the
same way; conversion happens at the edges (`observability.timeutil`).

Raw event tables have a composite primary key (event id, ts): the id alone makes re-delivered
events collide (exactly-once rows from at-least-once delivery), and having `ts` in the key lets
PostgreSQL partition those tables by day.
"""

from __future__ import annotations

import re

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

# ---------------------------------------------------------------------------------------------
# Raw events (written in bulk by ingest; dedup by id)
# ---------------------------------------------------------------------------------------------

llm_calls = Table(
    "llm_calls",
    metadata,
    Column("trace_id", String(64), primary_key=True),
    Column("ts", DateTime, primary_key=True),
    Column("bot", String(64)),
    Column("agent", String(100)),
    Column("decision_type", String(100)),
    Column("model", String(200), nullable=False),
    Column("provider", String(100), nullable=False),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("cache_read_tokens", Integer, nullable=False, server_default="0"),
    Column("cache_write_tokens", Integer, nullable=False, server_default="0"),
    Column("latency_ms", Float, nullable=False),
    Column("cache_hit", Boolean, nullable=False, server_default=text("false")),
    Column("cost_usd", Float, nullable=False, server_default="0"),
    Column("cost_saved_usd", Float, nullable=False, server_default="0"),
    Column("price_known", Boolean, nullable=False, server_default=text("true")),
    # a price above OTLP_COST_CEILING_USD: kept here, out of spend (cost_usd 0, price_known false)
    Column("cost_flagged_usd", Float),
    Column("conversation_id", String(100)),
    Column("success", Boolean, nullable=False, server_default=text("true")),
    Column("error_type", String(100)),
    # the error as the client named it (exception.type, error.type, HTTP status), error_type normalised
    Column("error_raw", String(200)),
    Index("ix_llm_calls_bot_ts", "bot", "ts"),
    Index(
        "ix_llm_calls_ts", "ts", postgresql_using="brin"
    ),  # appended in time order: tiny, cheap to maintain
    Index("ix_llm_calls_model_ts", "model", "ts"),
    Index("ix_llm_calls_conversation", "conversation_id"),
    # the calls explorer pages newest/oldest first by keyset on (ts, trace_id)
    Index("ix_llm_calls_ts_trace", "ts", "trace_id"),
    # an agent's most expensive calls in a window (cost anomalies: cost above mean + z * sd)
    Index("ix_llm_calls_agent_cost", "agent", "cost_usd", "ts"),
    # calls the price table did not know (priced 0 and flagged): the cost page lists them cheaply
    Index(
        "ix_llm_calls_unpriced",
        "ts",
        postgresql_where=text("price_known = false"),
        postgresql_include=["model", "provider", "input_tokens", "output_tokens", "cost_usd"],
        sqlite_where=text("price_known = 0"),
    ),
)

bot_operations = Table(
    "bot_operations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("ts", DateTime, primary_key=True),
    Column("bot", String(64), nullable=False),
    Column("operation", String(100), nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("success", Boolean, nullable=False, server_default=text("true")),
    Column("cache_hit", Boolean, nullable=False, server_default=text("false")),
    Column("error_type", String(100)),
    Index("ix_bot_operations_bot_ts", "bot", "ts"),
    Index(
        "ix_bot_operations_ts", "ts", postgresql_using="brin"
    ),  # appended in time order: tiny, cheap to maintain
)

bot_interactions = Table(
    "bot_interactions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("ts", DateTime, primary_key=True),
    Column("bot", String(64), nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("success", Boolean, nullable=False, server_default=text("true")),
    Column("cache_hit", Boolean, nullable=False, server_default=text("false")),
    Column("error_type", String(100)),
    Index("ix_bot_interactions_bot_ts", "bot", "ts"),
    Index(
        "ix_bot_interactions_ts", "ts", postgresql_using="brin"
    ),  # appended in time order: tiny, cheap to maintain
)

handoffs = Table(
    "handoffs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("ts", DateTime, primary_key=True),
    Column("source", String(64), nullable=False),
    Column("target", String(64), nullable=False),
    Column("success", Boolean, nullable=False, server_default=text("true")),
    Column("duration_ms", Float, nullable=False, server_default="0"),
    Column("blocked", Boolean, nullable=False, server_default=text("false")),
    Column("reason", String(500)),
    Column("conversation_id", String(100)),  # when the bot said (record_handoff(conversation_id=...))
    Index("ix_handoffs_ts", "ts", postgresql_using="brin"),
    Index(
        "ix_handoffs_conversation_ts", "conversation_id", "ts"
    ),  # a conversation's timeline  # appended in time order: tiny, cheap to maintain
)

messages = Table(
    "messages",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("ts", DateTime, primary_key=True),
    Column("conversation_id", String(100), nullable=False),
    Column("role", String(16), nullable=False),  # user | bot | operator
    Column("text", Text, nullable=False),
    Column("bot", String(64)),
    Column("account_id", String(100)),
    Column("author", String(100)),  # operator user name for operator messages
    Index("ix_messages_conversation_ts", "conversation_id", "ts"),
    Index("ix_messages_ts", "ts"),
)

system_metrics = Table(
    "system_metrics",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("ts", DateTime, primary_key=True),
    Column("metric_name", String(100), nullable=False),
    Column("metric_type", String(50), nullable=False, server_default="gauge"),
    Column("value", Float, nullable=False),
    Column("account_id", String(100)),
    Column("conversation_id", String(100)),
    Column("user_id", String(100)),
    Column("metadata", JSON),
    Index("ix_system_metrics_name_ts", "metric_name", "ts"),
    Index(
        "ix_system_metrics_ts", "ts", postgresql_using="brin"
    ),  # appended in time order: tiny, cheap to maintain
)

activity_events = Table(
    "activity_events",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("ts", DateTime, primary_key=True),
    Column("event_type", String(100), nullable=False),
    Column("title", String(200), nullable=False),
    Column("description", Text),
    Column("severity", String(20), nullable=False, server_default="low"),
    Column("category", String(50), nullable=False, server_default="system"),
    Column("account_id", String(100)),
    Column("conversation_id", String(100)),
    Column("user_id", String(100)),
    Column("metadata", JSON),
    Index("ix_activity_events_ts", "ts"),
    Index("ix_activity_events_account_ts", "account_id", "ts"),
    Index("ix_activity_events_conversation_ts", "conversation_id", "ts"),  # a conversation's timeline
)

# Mark-as-read per user (the source document's `read_by_users`), one row per (event, user) so
# marking never rewrites the event row.
activity_reads = Table(
    "activity_reads",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("user_name", String(100), primary_key=True),
    Column("read_at", DateTime, nullable=False),
)

# ---------------------------------------------------------------------------------------------
# Entities
# ---------------------------------------------------------------------------------------------

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("name", String(200)),
    Column("vip", Boolean, nullable=False, server_default=text("false")),
    Column("updated_at", DateTime, nullable=False),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("account_id", String(100)),
    Column("bot", String(64)),
    Column("state", String(16), nullable=False, server_default="ai"),  # ai | human | stopped
    Column("operator", String(100)),
    Column("control_reason", Text),
    Column("control_priority", String(20)),
    Column("control_since", DateTime),
    Column("ai_handoff_instructions", Text),
    Column("started_at", DateTime, nullable=False),
    Column("last_activity_at", DateTime, nullable=False),
    Column("message_count", Integer, nullable=False, server_default="0"),
    Column("sentiment", Float),
    Column("sentiment_trend", String(16)),
    Column("topic_drift", Float),
    Column("engagement", Float),
    Column("resolved", Boolean),
    Column("quality_score", Float),
    Column("scored_at", DateTime),
    Column("scored_message_count", Integer, nullable=False, server_default="0"),
    Index("ix_conversations_last_activity", "last_activity_at"),
    Index("ix_conversations_account", "account_id"),
)

# Key/value control state: system-wide stop, budgets and console settings. Small, rarely written.
control_state = Table(
    "control_state",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_by", String(100)),
    Column("updated_at", DateTime, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("role", String(20), nullable=False),
    Column("password_hash", String(300), nullable=False),
    Column("disabled", Boolean, nullable=False, server_default=text("false")),
    Column("failed_logins", Integer, nullable=False, server_default="0"),
    Column("locked_until", DateTime),
    Column("created_at", DateTime, nullable=False),
    Column("last_login_at", DateTime),
    # single sign-on: the OIDC subject (issuer's `sub`) a user was matched or created by, and the
    # e-mail an SSO user is matched by before a subject is known
    Column("oidc_subject", String(255)),
    Column("email", String(320)),
    Index("ux_users_oidc_subject", "oidc_subject", unique=True),
)

# Sign-in throttle: one row per (account, client address) pair and one per client address, keyed by
# a SHA-256 of the normalised name and the address (a name typed into the form may be a mistyped
# password, so it is never stored in clear). `attempts` is incremented atomically *before* a
# password is checked (one UPSERT ... RETURNING), so concurrent guesses each count.
sign_in_throttle = Table(
    "sign_in_throttle",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("account_key", String(64), nullable=False),  # SHA-256 of the name; "" for a client row
    Column("attempts", Integer, nullable=False),
    Column("lockouts", Integer, nullable=False, server_default="0"),  # locks so far: delays grow
    Column("locked_until", DateTime),
    Column("updated_at", DateTime, nullable=False),
    Index("ix_sign_in_throttle_account", "account_key"),
)

# Console sessions (the signed HttpOnly cookie carries the id; only its SHA-256 is stored). A session
# ends when revoked (sign-out, password reset, disable, role change), idle or past its lifetime.
sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_name", String(100), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("last_seen_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),  # absolute lifetime
    Column("revoked_at", DateTime),
    Column("revoked_reason", String(100)),
    Index("ix_sessions_user", "user_name"),
)

# API tokens (issue 16): a JWT's `jti` is stored only as its SHA-256, with the scope it was given
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("jti_hash", String(64), primary_key=True),
    Column("user_name", String(100), nullable=False),
    Column("name", String(100), nullable=False),  # a label the user chose ("help desk bot")
    Column("scope", String(20), nullable=False),  # a role: the token may do what this role may
    Column("created_at", DateTime, nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Column("revoked_at", DateTime),
    Column("revoked_by", String(100)),
    Index("ix_api_tokens_user", "user_name"),
)

# inbound PagerDuty / Opsgenie deliveries already applied: a replay finds its id here
inbound_deliveries = Table(
    "inbound_deliveries",
    metadata,
    Column("id", String(200), primary_key=True),  # "<source>:<delivery id or body digest>"
    Column("received_at", DateTime, nullable=False),
    Column("outcome", String(200), nullable=False),
)

# ---------------------------------------------------------------------------------------------
# Alerting
# ---------------------------------------------------------------------------------------------

alert_rules = Table(
    "alert_rules",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("metric", String(200), nullable=False),
    Column("comparison", String(4), nullable=False),  # gt | gte | lt | lte | eq
    Column("threshold", Float, nullable=False),
    Column("severity", String(20), nullable=False),  # info | warning | critical
    Column("cooldown_s", Float, nullable=False, server_default="300"),
    Column("channels", JSON, nullable=False),
    Column("description", Text),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("for_s", Float, nullable=False, server_default="0"),
    Column("keep_firing_for_s", Float),
    Column("critical_threshold", Float),  # two-level rules: `threshold` warns, this is critical
    Column("managed_by", String(40)),  # thresholds_config | custom_metrics | alert_volume | channel_health
    Column("builtin", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("updated_by", String(100)),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule_name", String(100), nullable=False),
    Column("dedup_key", String(400), nullable=False),
    Column("labels", JSON, nullable=False),
    Column("state", String(16), nullable=False),  # pending | firing | acknowledged | resolved
    Column("severity", String(20), nullable=False),
    Column("value", Float),
    Column("threshold", Float),
    Column("message", Text),
    Column("pending_since", DateTime),
    Column("fired_at", DateTime),
    Column("last_true_at", DateTime),
    Column("clear_since", DateTime),
    Column("acknowledged_by", String(100)),
    Column("acknowledged_at", DateTime),
    Column("resolved_by", String(100)),
    Column("resolved_at", DateTime),
    Column("escalation_level", Integer, nullable=False, server_default="0"),
    Column("next_escalation_at", DateTime),
    Column("escalation_started_at", DateTime),  # when level 1 went out; later levels count from it
    Column("suppressed_by", String(200)),  # why the due step is held: silence / inhibition / cooldown
    Column("last_notified_at", DateTime),
    Column("created_at", DateTime, nullable=False),
    Index("ix_alerts_state", "state"),
    Index("ix_alerts_dedup_key", "dedup_key"),
    # one open alert per rule and label set
    Index(
        "ux_alerts_open_dedup",
        "dedup_key",
        unique=True,
        postgresql_where=text("state <> 'resolved'"),
        sqlite_where=text("state <> 'resolved'"),
    ),
    # an id is never handed out again (SQLite otherwise reuses the largest id once its row is
    # deleted, and a pending alert that clears without firing is deleted): links, API calls and
    # PagerDuty / Opsgenie dedup keys name alerts by id. PostgreSQL's sequence never goes back.
    sqlite_autoincrement=True,
)

# Append-only timeline of every alert: fired, notified, escalated, acknowledged, resolved.
alert_events = Table(
    "alert_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", Integer, nullable=False),
    Column("ts", DateTime, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("actor", String(100)),
    Column("detail", JSON),
    Index("ix_alert_events_alert", "alert_id", "ts"),
)

silences = Table(
    "silences",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule_name", String(100)),  # None: any rule
    Column("matchers", JSON, nullable=False),  # label -> value that must match
    Column("starts_at", DateTime, nullable=False),
    Column("ends_at", DateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_by", String(100)),
    Column("created_at", DateTime, nullable=False),
    # ended silences are purged by retention while alert timelines (kept forever) name them by id
    sqlite_autoincrement=True,
)

# The notification outbox: written in the same transaction as the alert change, sent by the
# leading worker, idempotent per (alert, level, channel, kind).
notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", Integer),
    Column("level", Integer, nullable=False, server_default="1"),
    Column("channel", String(30), nullable=False),
    Column("kind", String(20), nullable=False, server_default="trigger"),  # trigger|ack|resolve|test
    Column("payload", JSON, nullable=False),
    Column("status", String(12), nullable=False, server_default="pending"),  # pending|sent|dead
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime, nullable=False),
    Column("last_error", Text),
    Column("last_attempt_at", DateTime),
    Column("created_at", DateTime, nullable=False),
    Column("sent_at", DateTime),
    UniqueConstraint("alert_id", "level", "channel", "kind", name="uq_notifications_once"),
    Index("ix_notifications_status_due", "status", "next_attempt_at"),
)

# ---------------------------------------------------------------------------------------------
# Audit trails (never purged by retention, never edited from the console)
# ---------------------------------------------------------------------------------------------

interventions = Table(
    "interventions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("conversation_id", String(100), nullable=False),
    Column("action", String(30), nullable=False),  # take_control | reply | release_control
    Column("user_name", String(100), nullable=False),
    Column("reason", Text),
    Column("priority", String(20)),
    Column("notify_user", Boolean),
    Column("preserve_ai_suggestions", Boolean),
    Column("summary", Text),
    Column("ai_handoff_instructions", Text),
    Column("outcome", String(40)),
    Column("started_at", DateTime),
    Column("ended_at", DateTime),
    Column("duration_s", Float),
    Column("created_at", DateTime, nullable=False),
    Index("ix_interventions_conversation", "conversation_id", "created_at"),
)

emergency_actions = Table(
    "emergency_actions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("action", String(30), nullable=False),  # stop | reset | system_stop | system_resume
    Column("scope", String(20), nullable=False),  # conversation | system
    Column("conversation_id", String(100)),
    Column("user_name", String(100), nullable=False),
    Column("reason", Text),
    Column("confirmed", Boolean, nullable=False, server_default=text("false")),
    Column("outcome", String(40), nullable=False),
    Column("created_at", DateTime, nullable=False),
)

# ---------------------------------------------------------------------------------------------
# Rollups (per minute, hour and day). Sums and counts are exact; `sketch` is a mergeable
# log-bucket latency sketch (observability.store.sketch) with at most 1% relative error.
# ---------------------------------------------------------------------------------------------


def _ops_rollup(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column("bucket", DateTime, primary_key=True),
        Column("bot", String(64), primary_key=True),
        Column("operation", String(100), primary_key=True),
        Column("count", BigInteger, nullable=False),
        Column("errors", BigInteger, nullable=False),
        Column("cache_hits", BigInteger, nullable=False),
        Column("sum_ms", Float, nullable=False),
        Column("min_ms", Float),
        Column("max_ms", Float),
        Column("sketch", JSON, nullable=False),
    )


def _llm_rollup(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column("bucket", DateTime, primary_key=True),
        Column("model", String(200), primary_key=True),
        Column("provider", String(100), primary_key=True),
        Column("bot", String(64), primary_key=True),
        Column("agent", String(100), primary_key=True),
        Column("count", BigInteger, nullable=False),
        Column("errors", BigInteger, nullable=False),
        Column("cache_hits", BigInteger, nullable=False),
        Column("input_tokens", BigInteger, nullable=False),
        Column("output_tokens", BigInteger, nullable=False),
        Column("cache_read_tokens", BigInteger, nullable=False),
        Column("cache_write_tokens", BigInteger, nullable=False),
        Column("cost_usd", Float, nullable=False),
        Column("cost_saved_usd", Float, nullable=False),
        # sum of squared call costs: with count and cost_usd, the exact mean and standard
        # deviation of one call's cost over any window (agent cost anomalies)
        Column("cost_sq_usd", Float, nullable=False, server_default="0"),
        Column("sum_ms", Float, nullable=False),
        Column("min_ms", Float),
        Column("max_ms", Float),
        Column("sketch", JSON, nullable=False),
    )


rollup_ops_minute = _ops_rollup("rollup_ops_minute")
rollup_ops_hour = _ops_rollup("rollup_ops_hour")
rollup_llm_minute = _llm_rollup("rollup_llm_minute")
rollup_llm_hour = _llm_rollup("rollup_llm_hour")
# per UTC day, merged from the hours: a week's percentile merges 7 sketches per group, not 168
rollup_ops_day = _ops_rollup("rollup_ops_day")
rollup_llm_day = _llm_rollup("rollup_llm_day")

# LLM calls per hour, conversation and bot (only calls with a conversation_id; a missing bot is
# ''): the full hours of top_conversations / cost_by_conversation over a day and longer.
rollup_conversation_hour = Table(
    "rollup_conversation_hour",
    metadata,
    Column("bucket", DateTime, primary_key=True),
    Column("conversation_id", String(100), primary_key=True),
    Column("bot", String(64), primary_key=True),
    Column("calls", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Column("cost_usd", Float, nullable=False),
    Column("cost_saved_usd", Float, nullable=False),
    Column("first_ts", DateTime, nullable=False),
    Column("last_ts", DateTime, nullable=False),
)

# LLM calls the price table did not know (price_known false) per hour, model and provider: the
# full hours of `unknown_model_calls` over a day and longer.
rollup_unpriced_hour = Table(
    "rollup_unpriced_hour",
    metadata,
    Column("bucket", DateTime, primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("provider", String(100), primary_key=True),
    Column("calls", BigInteger, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cost_usd", Float, nullable=False),
    Column("cost_flagged_usd", Float),
    Column("first_ts", DateTime, nullable=False),
    Column("last_ts", DateTime, nullable=False),
    # of `calls`, those whose usage was not reported (`rollups.usage_missing`; migration 0017)
    Column("usage_missing_calls", BigInteger, nullable=False, server_default="0"),
)


# LLM calls per hour and account (the account of the call's conversation; calls without one are
# left out), with a latency sketch: an account's calls, spend and percentiles over a week or a
# month read at most 24 rows a day instead of every call of its conversations.
def _account_rollup(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column("bucket", DateTime, primary_key=True),
        Column("account_id", String(100), primary_key=True),
        Column("calls", BigInteger, nullable=False),
        Column("errors", BigInteger, nullable=False),
        Column("input_tokens", BigInteger, nullable=False),
        Column("output_tokens", BigInteger, nullable=False),
        Column("cost_usd", Float, nullable=False),
        Column("sum_ms", Float, nullable=False),
        Column("min_ms", Float),
        Column("max_ms", Float),
        Column("sketch", JSON, nullable=False),
        Index(f"ix_{name}_account", "account_id", "bucket"),
    )


rollup_account_hour = _account_rollup("rollup_account_hour")
rollup_account_day = _account_rollup("rollup_account_day")  # merged from the hours, like the other days

# Minutes whose raw rows changed since their rollup was computed; ingest marks, the rollup step
# recomputes and clears. Late or replayed events therefore land in the right bucket.
rollup_dirty = Table(
    "rollup_dirty",
    metadata,
    Column("kind", String(8), primary_key=True),  # ops | llm
    Column("minute", DateTime, primary_key=True),
    Column("mark", String(32), nullable=False),
)

# ---------------------------------------------------------------------------------------------
# Worker bookkeeping
# ---------------------------------------------------------------------------------------------

worker_heartbeats = Table(
    "worker_heartbeats",
    metadata,
    Column("worker_id", String(100), primary_key=True),
    Column("host", String(200)),
    Column("pid", Integer),
    Column("is_leader", Boolean, nullable=False, server_default=text("false")),
    Column("last_tick_at", DateTime, nullable=False),
    Column("last_tick_ms", Float),
    Column("ingested_total", BigInteger, nullable=False, server_default="0"),
    Column("stream_pending", BigInteger),
    Column("started_at", DateTime, nullable=False),
)

# OTLP spans per instrumentation scope and outcome (received, stored, merged, ignored, rejected,
# ignored:<reason>), summed over every worker since the store was made: what the Admin page shows
otlp_scope_spans = Table(
    "otlp_scope_spans",
    metadata,
    Column("scope", String(200), primary_key=True),
    Column("outcome", String(60), primary_key=True),
    Column("spans", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", DateTime, nullable=False),
)

RAW_EVENT_TABLES = (
    llm_calls,
    bot_operations,
    bot_interactions,
    handoffs,
    messages,
    system_metrics,
    activity_events,
)
AUDIT_TABLES = (interventions, emergency_actions, alert_events)

_RAW_EVENT_TABLE_NAMES = frozenset(t.name for t in RAW_EVENT_TABLES)
_PARTITION_RE = re.compile(r"(?P<parent>.+)_(?:default|p\d{8})")


def is_partition(table_name: str) -> bool:
    """A PostgreSQL partition of a raw event table: `<table>_default` or `<table>_pYYYYMMDD`.

    The migrations and `observability.store.retention` create and drop these; `metadata` describes only
    their parents, so schema comparisons (Alembic autogenerate in alembic/env.py,
    tests/test_migrations.py) skip them.
    """
    m = _PARTITION_RE.fullmatch(table_name)
    return bool(m) and m.group("parent") in _RAW_EVENT_TABLE_NAMES
