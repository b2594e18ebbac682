"""The one place that reads the environment.

Every other module asks `get_settings()` so that configuration is visible in one file, documented
in the README, and can be overridden in tests with `Settings.from_env({...})` without touching
`os.environ`.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"
LOCAL_DIR = DATA_DIR / "local"


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _float(value: str | None, default: float) -> float:
    return default if value in (None, "") else float(value)


def _int(value: str | None, default: int) -> int:
    return default if value in (None, "") else int(value)


def _str(value: str | None, default: str | None) -> str | None:
    return default if value in (None, "") else value


EMAIL_SECURITY = ("starttls", "tls", "none")


def _role_map(value: str | None) -> dict[str, str]:
    """OIDC_ROLE_MAP: `group=role` pairs separated by commas (`ops-admins=admin,ops-oncall=operator`)."""
    out: dict[str, str] = {}
    for part in (value or "").split(","):
        if not part.strip():
            continue
        group, sep, role = part.partition("=")
        if not sep or not group.strip() or not role.strip():
            raise ValueError(f"OIDC_ROLE_MAP: {part.strip()!r} is not group=role")
        out[group.strip()] = role.strip().lower()
    return out


def _cidrs(value: str | None) -> tuple[str, ...]:
    """TRUSTED_PROXIES: CIDRs (or single addresses) separated by commas, each checked here at start."""
    out = []
    for part in (value or "").split(","):
        if part.strip():
            try:
                out.append(str(ipaddress.ip_network(part.strip(), strict=False)))
            except ValueError as exc:
                raise ValueError(
                    f"TRUSTED_PROXIES: {part.strip()!r} is not an address or CIDR: {exc}"
                ) from exc
    return tuple(out)


def _patterns(value: str | None) -> tuple[str, ...]:
    """REDACT_EXTRA_PATTERNS: a JSON list of regular expressions, each checked here at start."""
    if not value:
        return ()
    try:
        patterns = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"REDACT_EXTRA_PATTERNS must be a JSON list of regular expressions: {exc}") from exc
    if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
        raise ValueError("REDACT_EXTRA_PATTERNS must be a JSON list of regular expressions")
    for p in patterns:
        try:
            re.compile(p)
        except re.error as exc:
            raise ValueError(f"REDACT_EXTRA_PATTERNS: {p!r} is not a regular expression: {exc}") from exc
    return tuple(patterns)


_SECRET_WORDS = ("password", "secret", "api_key", "token", "webhook_url", "headers")


def _masked_url(value: str) -> str:
    """A URL with its password, path and query hidden (for repr and the admin page)."""
    try:
        u = urlsplit(value)
        host = u.hostname or ""
        port = f":{u.port}" if u.port else ""
    except ValueError:
        return "***"
    if not u.scheme or not u.netloc:
        return value
    user = f"{u.username}:***@" if u.password else (f"{u.username}@" if u.username else "")
    if u.scheme.startswith(("postgresql", "redis", "rediss", "sqlite", "mysql")):
        path = u.path  # a database name or number is not a secret
    else:
        path = "/***" if u.path.strip("/") or u.query else ""
    return f"{u.scheme}://{user}{host}{port}{path}"


def _parse(kind: Any, raw: str) -> Any:
    """A non-empty environment value as the field's type (`int`, `float`, `bool`, `Path`, `str`,
    or one of them or None)."""
    if kind is bool:
        return _bool(raw, False)
    for t in (int, float, Path):
        if kind is t or kind == (t | None):
            return t(raw)
    return raw


def _lower(raw: str | None, default: str) -> str:
    return (_str(raw, default) or "").strip().lower()


def _webhook_headers(raw: str | None) -> dict[str, str]:
    """ALERT_WEBHOOK_HEADERS: a JSON object of extra headers for the generic webhook."""
    try:
        headers = json.loads(raw) if raw else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"ALERT_WEBHOOK_HEADERS must be a JSON object: {exc}") from exc
    if not isinstance(headers, dict):
        raise ValueError("ALERT_WEBHOOK_HEADERS must be a JSON object")
    return headers


@dataclass(frozen=True)
class Settings:
    # --- store, Redis, ingest -------------------------------------------------------------
    database_url: str = f"sqlite:///{LOCAL_DIR / 'observability.db'}"
    database_read_url: str | None = None  # a hot standby the console's reads go to (else DATABASE_URL)
    replica_max_lag_s: float = 30.0  # pages say so when the read replica is further behind than this
    redis_url: str | None = None
    redis_cluster: bool = False  # REDIS_URL names one node of a Redis Cluster
    redis_prefix: str = "obs:"
    ingest_stream_shards: int = 1  # ingest streams the SDK spreads batches over (own slots on a cluster)
    redis_socket_timeout_s: float = 2.0  # longest wait for one Redis reply (blocking reads add theirs)
    redis_connect_timeout_s: float = 2.0
    spool_dir: Path = LOCAL_DIR / "spool"
    sdk_queue_size: int = 100_000
    sdk_batch_size: int = 500
    sdk_flush_interval_s: float = 0.5
    sdk_max_retries: int = 3
    sdk_retry_backoff_s: float = 0.2
    sdk_max_text_bytes: int = 64_000
    control_cache_s: float = 0.5
    # --- worker ---------------------------------------------------------------------------
    worker_tick_s: float = 15.0
    worker_http_host: str = "127.0.0.1"
    worker_http_port: int = 4318
    worker_http_max_connections: int = 64  # connections and requests at once; 503 beyond
    worker_batch_entries: int = 50
    worker_claim_idle_ms: int = 60_000
    worker_lock_file: Path = LOCAL_DIR / "worker.leader.lock"
    monitoring_enabled: bool = True  # false: no system load readings, alert evaluation or escalation
    # --- alerting -------------------------------------------------------------------------
    alert_rules_file: Path = DATA_DIR / "alert_rules.json"
    alert_thresholds_config: Path = DATA_DIR / "alert_thresholds.json"
    alert_escalation_l2_delay_s: float = 300.0
    alert_escalation_l3_delay_s: float = 900.0
    alert_silence_max_s: float = 7 * 86400.0  # longest silence an operator may set
    alert_keep_firing_for_s: float = 300.0  # one metric window clear before an alert resolves
    alert_delivery_max_attempts: int = 8
    alert_delivery_backoff_s: float = 5.0
    alert_http_timeout_s: float = 10.0
    alert_metric_window_s: float = 300.0  # window over which recorded metrics are averaged
    alert_min_samples: int = 20  # a rate or P95 over fewer events in the window is "no data"
    alert_default_for_s: float = 120.0  # `for` of the shipped rules on rates and percentiles
    alert_console_url: str | None = None  # link put into notifications (Alertmanager externalURL)
    alert_email_enabled: bool = False
    alert_email_smtp_host: str | None = None
    alert_email_smtp_port: int = 587
    alert_email_smtp_user: str | None = None
    alert_email_smtp_password: str | None = field(default=None, repr=False)  # secrets: never in repr()
    alert_email_security: str = "starttls"  # starttls | tls | none (anything else: a configuration error)
    alert_email_allow_plain_auth: bool = False  # SMTP AUTH over a connection without TLS (a local relay)
    alert_email_ca_file: Path | None = None  # extra CA bundle to trust (a private SMTP relay)
    alert_email_from: str | None = None
    alert_email_to: str | None = None
    alert_slack_enabled: bool = False
    alert_slack_webhook_url: str | None = field(default=None, repr=False)
    alert_slack_channel: str | None = None
    alert_webhook_enabled: bool = False
    alert_webhook_url: str | None = None
    alert_webhook_headers: dict = field(default_factory=dict, repr=False)
    alert_webhook_secret: str | None = field(default=None, repr=False)
    alert_webhook_pagerduty_url: str | None = None
    alert_webhook_pagerduty_api_key: str | None = field(default=None, repr=False)
    alert_webhook_opsgenie_url: str | None = None
    alert_webhook_opsgenie_api_key: str | None = field(default=None, repr=False)
    # --- control, auth, privacy -----------------------------------------------------------
    auth_mode: str = "password"  # password | none
    password_hash_time_cost: int = 3  # argon2id passes (the argon2-cffi default)
    password_hash_memory_kib: int = 65_536  # argon2id memory per hash (64 MiB, the argon2-cffi default)
    password_hash_concurrency: int = 2  # argon2 hashes at once per process (memory = this x 64 MiB)
    sign_in_max_failures: int = 5  # attempts per (account, client address) before a lock
    sign_in_client_max_failures: int = 30  # failed attempts per client address (all names) before a lock
    sign_in_lockout_s: float = 900.0  # first lock; each further lock of the same pair doubles, up to 24 h
    session_idle_timeout_s: float = 8 * 3600.0  # a session unused this long ends
    session_lifetime_s: float = 7 * 86400.0  # a session ends this long after sign-in, used or not
    session_secret: str | None = field(default=None, repr=False)  # signs cookies; else a local file
    session_secret_file: Path = LOCAL_DIR / "session.secret"
    trusted_proxies: tuple[str, ...] = ()  # CIDRs whose X-Forwarded-For is believed (empty: none)
    oidc_enabled: bool = False  # single sign-on through st.login ([auth] in .streamlit/secrets.toml)
    oidc_provider: str | None = None  # the [auth.NAME] provider to use; None: the [auth] section itself
    oidc_role_claim: str = "groups"  # the ID-token claim whose values OIDC_ROLE_MAP maps to roles
    oidc_role_map: dict = field(default_factory=dict)  # claim value -> role; the highest role wins
    oidc_default_role: str = "analyst"  # role of an SSO user whose claim maps to none
    password_sign_in: bool = True  # False (with OIDC on): only single sign-on signs anyone in
    emergency_confirmation_required: bool = True
    emergency_rate_limit_per_min: int = 3
    redact_pii: bool = True
    redact_extra_patterns: tuple[str, ...] = ()  # more regular expressions masked as "[redacted]"
    anthropic_api_key: str | None = field(default=None, repr=False)
    suggest_model: str = "claude-sonnet-4-5"
    # --- ecosystem ------------------------------------------------------------------------
    otel_enabled: bool = True
    otlp_ingest_token: str | None = field(default=None, repr=False)
    otlp_ingest_token_file: Path = LOCAL_DIR / "otlp_ingest.token"  # bootstrap's token, when none is set
    otlp_cost_ceiling_usd: float = 100.0  # a call priced above this is flagged, not summed (0: none)
    otlp_decode_processes: int = 2  # processes reading OTLP bodies beside the receiver (0: it reads them)
    otlp_decode_min_bytes: int = 16384  # smaller bodies are read by the receiver itself
    otlp_write_transactions: int = 2  # OTLP transactions running at once (group commit)
    otlp_context_window_s: float = (
        60.0  # how long a stored OTLP call may still get its context from later spans
    )
    monitoring_db_retention_days: int = 90
    monitoring_metrics_retention_hours: int = 72
    rollup_retention_days: int = 400
    metrics_window_s: float = 300.0  # window of the latency histograms on /metrics
    health_max_worker_lag_s: float = 0.0  # 0: 4 x WORKER_TICK_S, at least 60 s
    otel_exporter_endpoint: str | None = None  # the worker's own spans/counters go here (OTLP/HTTP)
    otel_service_name: str | None = None
    # --- console --------------------------------------------------------------------------
    console_cache_ttl_s: int = 15
    monthly_budget_usd: float = 500.0
    # --- HTTP API and WebSocket (/api/v1) ----------------------------------------------------
    api_rate_limit_per_min: int = 1000  # requests per user and minute
    api_emergency_rate_limit_per_min: int = (
        10  # emergency resets/resume per user and minute (a stop never counts)
    )
    api_token_default_days: int = 90
    api_token_max_days: int = 365
    api_token_cache_s: float = 5.0  # a verified token is trusted this long (revocations elsewhere: within it)
    api_metrics_max_age_s: float = 1.0  # live metrics served by the API/WebSocket are at most this old
    websocket_max_connections: int = 1000  # per console process
    websocket_user_connections: int = 10  # per user and console process
    websocket_ping_interval_s: float = 30.0
    websocket_timeout_s: float = 300.0  # a client silent this long is disconnected
    websocket_poll_interval_s: float = 1.0  # store polling for live messages (Redis pushes at once)
    metrics_interval_s: float = 15.0  # metrics_update to the monitoring_dashboard room
    pagerduty_webhook_secret: str | None = field(default=None, repr=False)
    opsgenie_webhook_secret: str | None = field(default=None, repr=False)
    # a call is a cost anomaly when it is above BOTH: a dollar amount worth acting on, and this many
    # standard deviations above its agent's mean (cost page, analytics.agent_costs)
    cost_anomaly_min_usd: float = 0.10
    cost_anomaly_z: float = 3.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from a mapping (default: the process environment).

        Every field is read from its upper-cased name (or its name in `_ENV_NAMES`) and parsed by its
        type, so adding a setting is one line in the class; fields with their own syntax are parsed
        by the function `_PARSERS` names, and an empty value means the default.
        """
        e = os.environ if env is None else env
        hints = get_type_hints(cls)
        values = {}
        for f in fields(cls):
            raw = e.get(_ENV_NAMES.get(f.name, f.name.upper()))
            if f.name in _PARSERS:
                values[f.name] = _PARSERS[f.name](raw)
            elif raw not in (None, ""):
                values[f.name] = _parse(hints[f.name], raw)
        return cls(**values)

    def __post_init__(self) -> None:
        roles = ("analyst", "operator", "manager", "admin")  # auth.roles.ROLES (settings imports nothing)
        for role in (self.oidc_default_role, *self.oidc_role_map.values()):
            if role not in roles:
                raise ValueError(f"OIDC roles must be one of {', '.join(roles)}, not {role!r}")
        if not (math.isfinite(self.cost_anomaly_z) and self.cost_anomaly_z > 0):
            raise ValueError(f"COST_ANOMALY_Z must be a positive number, not {self.cost_anomaly_z!r}")
        if not (math.isfinite(self.cost_anomaly_min_usd) and self.cost_anomaly_min_usd >= 0):
            raise ValueError(
                f"COST_ANOMALY_MIN_USD must be zero or more dollars, not {self.cost_anomaly_min_usd!r}"
            )
        if not 1 <= self.ingest_stream_shards <= 1024:
            raise ValueError(
                f"INGEST_STREAM_SHARDS must be from 1 to 1024, not {self.ingest_stream_shards!r}"
            )
        if self.alert_email_security not in EMAIL_SECURITY:
            raise ValueError(
                f"ALERT_EMAIL_SECURITY must be one of {', '.join(EMAIL_SECURITY)}, "
                f"not {self.alert_email_security!r}"
            )
        if (
            self.alert_email_enabled
            and self.alert_email_security == "none"
            and self.alert_email_smtp_user
            and not self.alert_email_allow_plain_auth
        ):
            # the e-mail channel refuses to log in without TLS (the password would cross the network
            # in clear), so this setup drops every e-mail: refused here, at start, not per message
            raise ValueError(
                "ALERT_EMAIL_SECURITY=none with ALERT_EMAIL_SMTP_USER set: every e-mail would be refused "
                "(SMTP AUTH is not sent without TLS). Set ALERT_EMAIL_SECURITY to starttls or tls, or "
                "ALERT_EMAIL_ALLOW_PLAIN_AUTH=true for a trusted local relay, or unset ALERT_EMAIL_SMTP_USER"
            )

    def __repr__(self) -> str:
        """Every field, with secrets masked: keys, tokens, passwords, webhook URLs and headers as
        `***`, and the password (and, for web URLs, the path and query) of any URL hidden."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value and any(w in f.name for w in _SECRET_WORDS):
                shown = "'***'"
            elif isinstance(value, str) and "://" in value:
                shown = repr(_masked_url(value))
            else:
                shown = repr(value)
            parts.append(f"{f.name}={shown}")
        return f"Settings({', '.join(parts)})"

    def replace(self, **changes) -> "Settings":
        """A copy with some fields changed (tests and CLIs use it instead of the environment)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)


# Fields whose environment variable is not their upper-cased name (the names source document 004
# and OpenTelemetry use).
_ENV_NAMES: dict[str, str] = {
    "otel_exporter_endpoint": "OTEL_EXPORTER_OTLP_ENDPOINT",
    "websocket_ping_interval_s": "WEBSOCKET_PING_INTERVAL",
    "websocket_timeout_s": "WEBSOCKET_TIMEOUT",
    "metrics_interval_s": "METRICS_INTERVAL",
}

# Fields with a syntax of their own: the parser gets the raw value (None when unset) and is called
# even when it is unset, so it gives the default itself.
_PARSERS: dict[str, Callable[[str | None], Any]] = {
    "alert_webhook_headers": _webhook_headers,
    "alert_email_security": lambda raw: _lower(raw, Settings.alert_email_security),
    "oidc_default_role": lambda raw: _lower(raw, Settings.oidc_default_role),
    "oidc_role_map": _role_map,
    "trusted_proxies": _cidrs,
    "redact_extra_patterns": _patterns,
}

_cached: Settings | None = None


def get_settings() -> Settings:
    """Settings of this process, read from the environment once."""
    global _cached
    if _cached is None:
        _cached = Settings.from_env()
    return _cached


def reset_settings_cache() -> None:
    """Forget the cached settings (tests that change the environment call this)."""
    global _cached
    _cached = None


def test_environment(env: Mapping[str, str] | None = None) -> dict[str, str | bool | None]:
    """Test-suite knobs (TEST_DATABASE_URL, TEST_REDIS_URL, REQUIRE_SERVICES), read here too."""
    e = os.environ if env is None else env
    return {
        "database_url": _str(e.get("TEST_DATABASE_URL"), None),
        "redis_url": _str(e.get("TEST_REDIS_URL"), None),
        "require_services": _bool(e.get("REQUIRE_SERVICES"), False),
        "chromium": _str(e.get("CHROMIUM_PATH"), "/usr/bin/chromium"),
        "bench_database_url": _str(e.get("BENCH_DATABASE_URL"), None),
        "bench_database_server": _str(e.get("BENCH_DATABASE_SERVER"), None),
    }
