"""Admin: users and roles, what each role may do, and the channel configuration status (which
never shows a secret: "configured" / "not configured" and host names only).

`observability.auth` checks `users.manage` for the acting user in every change and records it in
the activity feed; the last active admin can be neither demoted nor disabled.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from observability import auth, redis_client
from observability.auth import api_tokens
from observability.auth import cli as users
from observability.settings import get_settings
from observability.store import otlp_counts
from observability.ui import alert_frames as alert_views
from observability.ui import common as ui

me = ui.require("users.manage")
ui.page_header("Admin", "Users and roles; channel configuration (secrets are never shown).")
store = ui.get_store()


def _act(label: str, fn, *args, done=None, **kwargs) -> bool:  # noqa: ANN001
    """Run an admin action; a refusal shows here, a success after the rerun, in plain words
    (`done(result)`, e.g. the user as stored: "Carol.R" is stored as "carol.r")."""
    try:
        result = fn(store, me.name, *args, **kwargs)
    except (auth.PermissionDenied, ValueError) as exc:
        st.error(f"{ui.md_escape(label)}: {ui.md_escape(exc)}")
        return False
    st.session_state["ad_done"] = ui.md_escape(done(result) if done else f"{label}: done")
    return True


if "ad_done" in st.session_state:
    st.success(st.session_state.pop("ad_done"), icon=":material/check_circle:")
if "ad_password" in st.session_state:  # a generated password, shown this once
    who, password = st.session_state.pop("ad_password")
    st.warning(f"New password of **{ui.md_escape(who)}**, shown this once only:", icon=":material/key:")
    st.code(password, language=None)


@st.cache_data(ttl=60, show_spinner=False)
def _redis_risk() -> str | None:
    return redis_client.persistence_warning(get_settings())


# Redis without an append-only file: the ingest backlog is lost on a Redis restart (issue 17)
if risk := _redis_risk():
    st.warning(f"**Redis is at risk of losing events.** {ui.md_escape(risk)}", icon=":material/warning:")

tab_users, tab_roles, tab_channels = st.tabs(
    ["Users", "Roles", "Channels and settings"], **ui.in_url("tab")
)  # the open tab is in the URL

with tab_users:
    people = auth.list_users(store)
    if not people:
        ui.empty_state(
            "No users yet.", "Add one below or with `python -m observability.users add NAME --role ROLE`."
        )
    else:
        df = pd.DataFrame(
            [
                {
                    "user": u.name,
                    "role": u.role,
                    "status": u.status(),
                    "failed sign-ins": u.failed_logins,
                    "last sign-in": u.last_login_at,
                    "created": u.created_at,
                }  # fmt: skip
                for u in people
            ]
        )
        ui.table(df, "users.csv", key="ad_users")

    st.markdown("**Add a user**")
    if st.session_state.pop("ad_added", False):  # a user was added: the form starts empty again
        for key in ("ad_new_name", "ad_new_role", "ad_new_pw1", "ad_new_pw2"):
            st.session_state.pop(key, None)
    with st.form("ad_add"):  # a refusal keeps what was typed beside its error
        c1, c2 = st.columns(2)
        name = c1.text_input("User name", key="ad_new_name")
        role = c2.selectbox("Role", auth.ROLES, key="ad_new_role")
        c3, c4 = st.columns(2)
        pw1 = c3.text_input("Password (8+ characters)", type="password", key="ad_new_pw1")
        pw2 = c4.text_input("Repeat password", type="password", key="ad_new_pw2")
        if st.form_submit_button("Add user", type="primary", icon=":material/person_add:"):
            if pw1 != pw2:
                st.error("The passwords do not match.")
            elif _act(f"Add {name}", auth.add_user, name.strip(), role, pw1,
                      done=lambda u: f"Added user {u.name} as {u.role}; they can sign in now."):  # fmt: skip
                st.session_state["ad_added"] = True
                st.rerun()

    if people:
        st.markdown("**Change a user**")
        names = [u.name for u in people]
        target = st.selectbox("User", names, key="ad_target")
        current = next(u for u in people if u.name == target)
        c1, c2 = st.columns([2, 1])
        new_role = c1.selectbox("Role", auth.ROLES, index=auth.ROLES.index(current.role), key="ad_role")
        if c2.button("Change role", key="ad_set_role", disabled=new_role == current.role):
            if _act(f"Role of {target}", auth.set_role, target, new_role):
                st.rerun()
        b = st.columns(4)
        if b[0].button("Reset password", key="ad_reset", icon=":material/key:"):
            password = auth.random_password()
            if _act(f"Password of {target}", auth.reset_password, target, password):
                st.session_state["ad_password"] = (target, password)
                st.rerun()
        if current.disabled:
            if b[1].button("Enable", key="ad_enable") and _act(f"Enable {target}", auth.enable_user, target):
                st.rerun()
        elif b[1].button("Disable", key="ad_disable", disabled=target == me.name):
            if _act(f"Disable {target}", auth.disable_user, target):
                st.rerun()
        if b[2].button(
            "Unlock", key="ad_unlock", disabled=not current.locked() and not current.failed_logins
        ):
            if _act(f"Unlock {target}", auth.unlock_user, target):
                st.rerun()

with tab_roles:
    st.caption("What each role may do; the service functions enforce this whatever a page shows.")
    matrix = pd.DataFrame(
        [
            {"action": action, **{r: ("✓" if auth.role_can(r, action) else "") for r in auth.ROLES}}
            for action in auth.PERMISSIONS
        ]
    )
    ui.table(matrix, "permissions.csv", key="ad_matrix")

with tab_channels:
    settings = get_settings()
    st.caption("Configured through environment variables (see the README); secrets are never shown here.")
    # configured is not working: a channel whose last delivery failed says so here, with the error
    for ch in ui.cached_query(alert_views.failing_channels)():
        st.error(f"**Alert channel {ch['channel']} is failing:** its last "
                 f"{'test' if ch['last_failed_kind'] == 'test' else 'delivery'} failed at "
                 f"{ch['last_failed_at']:%Y-%m-%d %H:%M:%S} UTC: {ui.md_escape(ch['last_error'] or 'no error recorded')}",
                 icon=":material/error:")  # fmt: skip
        ui.page_link(
            "alerts", f"Alerts: delivery via {ch['channel']}", icon=":material/arrow_outward:", tab="Channels"
        )
    ui.table(pd.DataFrame(users.channel_status(settings)), "channels.csv", key="ad_channels")
    st.markdown("**Control and privacy settings**")
    ui.table(pd.DataFrame(users.security_settings(settings)), "security_settings.csv", key="ad_security")

# ---- API tokens (issue 16): per-user JWTs for /api/v1, shown once, stored hashed --------------------
st.divider()
st.subheader("API tokens")
st.caption("A token acts as its user through the HTTP API and WebSocket (/api/v1), within its scope, "
           "until it expires or is revoked. It is shown once; only a hash of its id is kept.")  # fmt: skip
if "ad_token" in st.session_state:  # a new token, shown this once
    label, token = st.session_state.pop("ad_token")
    st.warning(f"Token **{ui.md_escape(label)}**, shown this once only (copy it now):", icon=":material/key:")
    st.code(token, language=None)
tokens = api_tokens.list_tokens(store)
if tokens:
    ui.table(pd.DataFrame(tokens).drop(columns=["id"]).assign(id=[t["id"][:12] for t in tokens]),
             "api_tokens.csv", key="ad_tokens")  # fmt: skip
with st.form("ad_token_new", clear_on_submit=True):
    c1, c2, c3, c4 = st.columns([2, 2, 1, 1])
    owner = c1.selectbox(
        "User", [u.name for u in auth.list_users(store) if not u.disabled], key="ad_tok_user"
    )
    label = c2.text_input("Name (what will use it)", key="ad_tok_name")
    scope = c3.selectbox("Scope", ["(user's role)", *auth.ROLES], key="ad_tok_scope")
    days = c4.number_input("Days", min_value=1, max_value=get_settings().api_token_max_days,
                           value=get_settings().api_token_default_days, key="ad_tok_days")  # fmt: skip
    if st.form_submit_button("Create token", icon=":material/key:"):
        try:
            issued = api_tokens.create_token(store, me.name, owner, label,
                                             scope=None if scope.startswith("(") else scope, days=days)  # fmt: skip
        except (auth.PermissionDenied, ValueError) as exc:
            st.error(f"Create token: {ui.md_escape(exc)}")
        else:
            st.session_state["ad_token"] = (issued.name, issued.token)
            st.rerun()
active = [t for t in tokens if t["revoked_at"] is None]
if active:
    c1, c2 = st.columns([3, 1])
    pick = c1.selectbox("Revoke", active, format_func=lambda t: f"{t['user']}: {t['name']} ({t['id'][:12]})",
                        key="ad_tok_revoke")  # fmt: skip
    if c2.button("Revoke token", key="ad_tok_revoke_btn", icon=":material/block:"):
        if _act(f"Revoke {pick['name']}", api_tokens.revoke_token, pick["id"]):
            st.rerun()

# ---- OpenTelemetry ingest: what each instrumentation's spans became (summed over every worker) ----
st.markdown("**OpenTelemetry ingest, per instrumentation scope**")
st.caption(
    "Spans posted to the workers' `/v1/traces` since this store was made (counts reach here about a "
    "second after each export): stored as LLM calls, merged into a call another span already stored, "
    "ignored (not a model call) or rejected (bad values)."
)
scopes = ui.cached_query(otlp_counts.by_scope)()
if not scopes:
    ui.empty_state("No OpenTelemetry spans received yet.", "See the README, section Bots without our SDK.")
else:
    for s in scopes:
        if s.ignored_genai:
            st.warning(
                f"{s.ignored_genai} span(s) of scope {ui.md_escape(s.scope or '(no name)')} look like GenAI "
                "but name no model: that instrumentation's conventions are not read.",
                icon=":material/visibility_off:",
            )
    frame = pd.DataFrame(
        [
            {
                "scope": s.scope or "(no name)",
                "received": s.received,
                "stored as calls": s.stored,
                "merged": s.merged,
                "ignored": s.ignored,
                "of them GenAI-looking": s.ignored_genai,
                "rejected": s.rejected,
                "last seen (UTC)": s.last_seen,
            }  # fmt: skip
            for s in scopes
        ]
    )
    ui.table(frame, "otlp_scopes.csv", key="ad_otlp")
