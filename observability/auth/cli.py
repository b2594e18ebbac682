"""User administration: the `python -m observability.users` CLI and the admin page's read models.

    python -m observability.users add NAME --role ROLE [--password PW]   (prompts when no password)
    python -m observability.users set-role NAME ROLE
    python -m observability.users reset-password NAME [--password PW | --random]
    python -m observability.users disable NAME
    python -m observability.users enable NAME
    python -m observability.users unlock NAME
    python -m observability.users list
    python -m observability.users token create NAME --name LABEL [--scope ROLE] [--days N]
    python -m observability.users token list [NAME]
    python -m observability.users token revoke TOKEN_ID

The CLI acts with the store's own credentials (DATABASE_URL, or --database-url), like a database
administrator would; every change still leaves an activity-feed event (`by` = "cli"). A password
given with --password is visible to other local users in the process list: prefer the prompt.
Passwords and hashes are never printed or logged (a generated one is printed once, on stdout).

`channel_status(settings)` describes the configured channels and services for the admin page
without any secret: "configured" / "not configured" and host names only.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from typing import Any
from urllib.parse import urlsplit

from observability import auth
from observability.redaction import install_secret_filter
from observability.settings import Settings, get_settings
from observability.store import Store

log = logging.getLogger(__name__)


# ---- the admin page's read model ---------------------------------------------------------------


def host_of(url: str | None) -> str | None:
    """Only the host (and port) of a URL: no user, password, path, query or token."""
    if not url:
        return None
    try:
        parts = urlsplit(url if "://" in url else f"//{url}")
        host = parts.hostname
        if not host:
            return None
        return f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return None


def _database(url: str) -> tuple[str, str | None]:
    import sqlalchemy as sa

    try:
        parsed = sa.make_url(url)
    except Exception:  # noqa: BLE001 - a malformed URL is shown as such, never echoed
        return "unparseable DATABASE_URL", None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return "SQLite (embedded file)", None
    host = parsed.host or "localhost"
    return backend, f"{host}:{parsed.port}" if parsed.port else host


def channel_status(settings: Settings | None = None) -> list[dict[str, Any]]:
    """One row per channel or service: name, enabled, status ("configured"/"not configured"), host.

    Never a secret: passwords, API keys, webhook paths (which carry tokens) and URL credentials
    are reduced to whether they are set.
    """
    s = settings or get_settings()

    def row(name: str, enabled: bool | None, configured: bool, host: str | None, note: str = "") -> dict:
        return {
            "channel": name,
            "enabled": enabled,
            "status": "configured" if configured else "not configured",
            "host": host,
            "note": note,
        }

    email_ok = bool(s.alert_email_smtp_host and s.alert_email_from and s.alert_email_to)
    email_host = f"{s.alert_email_smtp_host}:{s.alert_email_smtp_port}" if s.alert_email_smtp_host else None
    db_kind, db_host = _database(s.database_url)
    rows = [
        row(
            "Email (SMTP)",
            s.alert_email_enabled,
            email_ok,
            email_host,
            f"security {s.alert_email_security}; login "
            + ("set" if s.alert_email_smtp_user and s.alert_email_smtp_password else "not set"),
        ),
        row(
            "Slack",
            s.alert_slack_enabled,
            bool(s.alert_slack_webhook_url),
            host_of(s.alert_slack_webhook_url),
        ),
        row(
            "Webhook",
            s.alert_webhook_enabled,
            bool(s.alert_webhook_url),
            host_of(s.alert_webhook_url),
            "signing secret " + ("set" if s.alert_webhook_secret else "not set"),
        ),
        row(
            "PagerDuty (Events API v2)",
            None,
            bool(s.alert_webhook_pagerduty_api_key),
            host_of(s.alert_webhook_pagerduty_url)
            or ("events.pagerduty.com" if s.alert_webhook_pagerduty_api_key else None),
            "routing key " + ("set" if s.alert_webhook_pagerduty_api_key else "not set"),
        ),
        row(
            "Opsgenie (Alerts API)",
            None,
            bool(s.alert_webhook_opsgenie_api_key),
            host_of(s.alert_webhook_opsgenie_url)
            or ("api.opsgenie.com" if s.alert_webhook_opsgenie_api_key else None),
            "API key " + ("set" if s.alert_webhook_opsgenie_api_key else "not set"),
        ),
        row(
            "Claude (suggestions)",
            None,
            bool(s.anthropic_api_key),
            "api.anthropic.com" if s.anthropic_api_key else None,
            f"model {s.suggest_model}"
            if s.anthropic_api_key
            else "suggestions come from similar resolved conversations",
        ),
        row("Store", None, True, db_host, db_kind),
        row(
            "Redis",
            None,
            bool(s.redis_url),
            host_of(s.redis_url),
            "take-overs published to bots" if s.redis_url else "bots poll the store",
        ),
        row(
            "OTLP trace ingest",
            s.otel_enabled,
            True,
            f"{s.worker_http_host}:{s.worker_http_port}",
            "token "
            + ("required" if s.otlp_ingest_token or s.otlp_ingest_token_file.is_file() else "not required"),
        ),
    ]
    return rows


def security_settings(settings: Settings | None = None) -> list[dict[str, Any]]:
    """The control and privacy settings in force (no secrets among them)."""
    s = settings or get_settings()
    return [
        {"setting": "AUTH_MODE", "value": s.auth_mode},
        {
            "setting": "EMERGENCY_CONFIRMATION_REQUIRED",
            "value": str(s.emergency_confirmation_required).lower(),
        },
        {"setting": "EMERGENCY_RATE_LIMIT_PER_MIN", "value": str(s.emergency_rate_limit_per_min)},
        {"setting": "REDACT_PII", "value": str(s.redact_pii).lower()},
        {"setting": "CONTROL_CACHE_S", "value": str(s.control_cache_s)},
        {
            "setting": "SIGN_IN_MAX_FAILURES / SIGN_IN_LOCKOUT_S",
            "value": f"{s.sign_in_max_failures} failed sign-ins from one address pause that name there "
            f"for {s.sign_in_lockout_s:.0f} s (doubling with each further lock)",
        },
    ]


# ---- first start --------------------------------------------------------------------------------


def bootstrap_admin(ctx: Any) -> str:
    """Bootstrap step (`make run`): with no user yet, create `admin` with a random password and
    print it once (on the console only, never to a log)."""
    password = auth.ensure_first_admin(ctx.store)
    if password is None:
        return "users exist already; nothing to do"
    ctx.echo("  admin_user: created the first user `admin` with the password (shown this once only):")
    ctx.echo(f"      {password}")
    ctx.echo(
        "    sign in and keep it safe, or set another: python -m observability.users reset-password admin"
    )
    return "created user admin (password printed above)"


# ---- the CLI ----------------------------------------------------------------------------------


def _prompt_password(confirm: bool = True) -> str:
    password = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Repeat password: ") != password:
        raise ValueError("the passwords do not match")
    return password


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m observability.users", description="Manage console users.")
    p.add_argument("--database-url", help="store to use (default: DATABASE_URL or the embedded SQLite file)")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("add", help="add a user")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=auth.ROLES)
    a.add_argument("--password", help="the password (prompted for when omitted; visible in the process list)")
    a.add_argument("--random", action="store_true", help="generate a password and print it once")

    r = sub.add_parser("set-role", help="change a user's role")
    r.add_argument("name")
    r.add_argument("role", nargs="?", choices=auth.ROLES)
    r.add_argument("--role", dest="role_option", choices=auth.ROLES)

    pw = sub.add_parser("reset-password", help="set a new password (also unlocks the account)")
    pw.add_argument("name")
    pw.add_argument("--password", help="the new password (prompted for when omitted)")
    pw.add_argument("--random", action="store_true", help="generate a password and print it once")

    for command, text in (
        ("disable", "disable a user (they can no longer sign in or act)"),
        ("enable", "enable a disabled user"),
        ("unlock", "clear a lockout after failed sign-ins"),
    ):
        c = sub.add_parser(command, help=text)
        c.add_argument("name")

    sub.add_parser("list", help="list users (never their password hashes)")

    t = sub.add_parser("token", help="API tokens for /api/v1 (shown once; stored hashed)")
    tsub = t.add_subparsers(dest="token_command", required=True)
    tc = tsub.add_parser("create", help="create a token for a user and print it once")
    tc.add_argument("name", help="the user the token acts for")
    tc.add_argument("--name", dest="label", required=True, help="what will use it (e.g. 'help desk')")
    tc.add_argument(
        "--scope", choices=auth.ROLES, help="a role no wider than the user's (default: the user's role)"
    )
    tc.add_argument("--days", type=float, help="lifetime in days (default API_TOKEN_DEFAULT_DAYS)")
    tl = tsub.add_parser("list", help="list tokens (never the tokens themselves)")
    tl.add_argument("name", nargs="?", help="only this user's tokens")
    tr = tsub.add_parser("revoke", help="revoke a token by the id `token list` shows")
    tr.add_argument("token_id")
    return p


def _new_password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, generated?)"""
    if getattr(args, "random", False):
        if args.password:
            raise ValueError("give either --password or --random")
        return auth.random_password(), True
    if args.password is not None:
        return args.password, False
    return _prompt_password(), False


def run(
    argv: list[str] | None = None, *, store: Store | None = None, out: Any = None, err: Any = None
) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 refused, 2 usage)."""
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(argv)
    settings = get_settings()
    install_secret_filter(settings)
    own_store = store is None
    if store is None:
        store = Store.from_url(args.database_url or settings.database_url)
        store.migrate()
    try:
        if args.command == "add":
            password, generated = _new_password(args)
            user = auth.create_user(store, args.name, args.role, password, by="cli")
            print(f"added {user.name} ({user.role})", file=out)
            if generated:
                print(f"password (shown once): {password}", file=out)
        elif args.command == "set-role":
            role = args.role or args.role_option
            if not role:
                print("set-role needs a role: set-role NAME ROLE", file=err)
                return 2
            user = auth.update_user(store, args.name, role=role, by="cli")
            print(f"{user.name} is now {user.role}", file=out)
        elif args.command == "reset-password":
            if auth.get_user(store, args.name) is None:
                raise ValueError(f"no user named {args.name!r}")
            password, generated = _new_password(args)
            auth.update_user(store, args.name, password=password, by="cli")
            print(f"password of {args.name} reset", file=out)
            if generated:
                print(f"password (shown once): {password}", file=out)
        elif args.command in ("disable", "enable"):
            user = auth.update_user(store, args.name, disabled=args.command == "disable", by="cli")
            print(f"{user.name} {'disabled' if user.disabled else 'enabled'}", file=out)
        elif args.command == "unlock":
            auth.update_user(store, args.name, unlock=True, by="cli")
            print(f"{args.name} unlocked", file=out)
        elif args.command == "token":
            return _token_command(store, settings, args, out)
        elif args.command == "list":
            users = auth.list_users(store)
            if not users:
                print("no users yet (`make run` creates `admin` on first start)", file=out)
            else:
                print(f"{'NAME':<24} {'ROLE':<9} {'STATUS':<34} LAST SIGN-IN", file=out)
                for u in users:
                    last = f"{u.last_login_at:%Y-%m-%d %H:%M} UTC" if u.last_login_at else "never"
                    print(f"{u.name:<24} {u.role:<9} {u.status():<34} {last}", file=out)
        return 0
    except (ValueError, LookupError, auth.AuthError, auth.PermissionDenied) as exc:
        print(f"error: {exc}", file=err)
        return 1
    finally:
        if own_store:
            store.dispose()


def _token_command(store: Store, settings: Settings, args: argparse.Namespace, out: Any) -> int:
    from observability.auth import api_tokens

    if args.token_command == "create":
        issued = api_tokens.create_token(store, None, args.name, args.label, scope=args.scope, days=args.days,
                                         settings=settings)  # fmt: skip
        print(f"token {issued.name!r} for {issued.user} (scope {issued.scope}, expires "
              f"{issued.expires_at:%Y-%m-%d %H:%M} UTC); shown once:", file=out)  # fmt: skip
        print(issued.token, file=out)
    elif args.token_command == "list":
        rows = api_tokens.list_tokens(store, args.name)
        if not rows:
            print("no API tokens", file=out)
        for r in rows:
            state = "revoked" if r["revoked_at"] else f"expires {r['expires_at']:%Y-%m-%d}"
            print(f"{r['id']}  {r['user']:<20} {r['scope']:<9} {state:<20} {r['name']}", file=out)
    else:
        changed = api_tokens.revoke_token(store, None, args.token_id, settings=settings)
        print("revoked" if changed else "already revoked", file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(argv)
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130
