"""Alerts and rules (operators): active alerts with acknowledge / resolve / escalate, each alert's
timeline, history with filters, the alert rules panel (toggle, create, edit, delete), silences,
and a test notification per configured channel. All logic lives in `observability.alerting`; the
service checks every action's permission itself, this page only hides what a role cannot do."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from observability import auth
from observability.alerting import (
    AlertingService,
    InvalidTransition,
    RuleNotFound,
    RuleValidationError,
)
from observability.ui import alert_frames as views
from observability.ui import charts
from observability.ui import common as ui

user = ui.require("dashboards.view")
ui.page_header(
    "Alerts and rules",
    "Rules are evaluated by the worker every tick; notifications go out through the outbox with retries. "
    "Critical alerts escalate until acknowledged: level 2 (email, Slack, webhook), then level 3 (PagerDuty, Opsgenie).",
)

active_q = ui.cached_query(views.active_alerts)
timeline_q = ui.cached_query(views.alert_timeline)
history_q = ui.cached_query(views.alert_history)
counts_q = ui.cached_query(views.alert_counts)
rules_q = ui.cached_query(views.rules)
silences_q = ui.cached_query(views.silences)
channels_q = ui.cached_query(views.channels)
OPTS = views.options()
COLORS = views.SEVERITY_COLORS
NEW_RULE = "+ new rule"


def service() -> AlertingService:
    return AlertingService(ui.get_store())


def act(done: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a service action; show its error instead of raising; refresh the page's data on success."""
    try:
        result = fn(*args, **kwargs)
    except auth.PermissionDenied as exc:
        st.error(f"Not allowed: {exc}")
        return None
    except RuleValidationError as exc:
        st.error("Nothing was changed:\n\n" + "\n".join(f"- **{k}**: {v}" for k, v in exc.errors.items()))
        return None
    except (InvalidTransition, RuleNotFound, LookupError, ValueError) as exc:
        st.error(str(exc))
        return None
    ui.clear_caches()
    st.toast(done)
    return True if result is None else result


def badge(severity: str) -> str:
    return f":{views.SEVERITY_MARKDOWN.get(severity, 'gray')}-background[{severity.upper()}]"


# ---- headline -----------------------------------------------------------------------------------

active = active_q()
firing = [a for a in active if a["state"] == "firing"]
m = st.columns(5)
m[0].metric("Firing", len(firing))
m[1].metric("Critical firing", sum(1 for a in firing if a["severity"] == "critical"))
m[2].metric("Acknowledged", sum(1 for a in active if a["state"] == "acknowledged"))
m[3].metric("Held (silence, inhibition, cooldown)", sum(1 for a in firing if a["suppressed_by"]))
m[4].metric("Pending (waiting for `for`)", sum(1 for a in active if a["state"] == "pending"))

tab_active, tab_history, tab_rules, tab_silences, tab_channels = st.tabs(
    ["Active alerts", "History", "Rules", "Silences", "Channels"]
)

# ---- active alerts ------------------------------------------------------------------------------


@st.fragment(run_every=ui.LIVE_REFRESH_S)
def active_alerts() -> None:
    alerts = active_q()
    if not alerts:
        ui.empty_state("No active alerts.", "Alerts appear here when a rule's condition holds; the worker evaluates "
                       "the rules every tick.")  # fmt: skip
        return
    for a in alerts:
        with st.container(border=True):
            head, b1, b2, b3 = st.columns([6, 1.3, 1, 1])
            labels = f" `{a['labels_text']}`" if a["labels_text"] else ""
            head.markdown(f"{badge(a['severity'])} **{a['rule_name']}**{labels} · {a['state']} · "
                          f"level {a['escalation_level']} · #{a['id']}")  # fmt: skip
            since = a["fired_at"] or a["pending_since"]
            notes = [f"since {since:%Y-%m-%d %H:%M:%S} UTC"] if since else []
            if a["acknowledged_by"]:
                notes.append(f"acknowledged by {a['acknowledged_by']}")
            if a["next_escalation_at"] and a["state"] == "firing":
                notes.append(f"next step due {a['next_escalation_at']:%H:%M:%S} UTC")
            if a["suppressed_by"]:
                notes.append(f"held: {a['suppressed_by']}")
            head.caption(f"{a['message']}  \n" + " · ".join(notes))
            if a["state"] == "firing" and user.can("alerts.acknowledge"):
                if b1.button("Acknowledge", key=f"ack_{a['id']}", icon=":material/check:"):
                    if act(f"Alert #{a['id']} acknowledged", service().acknowledge_alert, a["id"], user.name):
                        st.rerun()
            if a["state"] in ("firing", "acknowledged") and user.can("alerts.resolve"):
                if b2.button("Resolve", key=f"resolve_{a['id']}", icon=":material/done_all:"):
                    if act(f"Alert #{a['id']} resolved", service().resolve_alert, a["id"], user.name):
                        st.rerun()
            if (a["state"] in ("firing", "acknowledged") and a["escalation_level"] < 3
                    and user.can("alerts.escalate")):  # fmt: skip
                if b3.button("Escalate", key=f"escalate_{a['id']}", icon=":material/trending_up:"):
                    if act(f"Alert #{a['id']} escalated", service().escalate_alert, a["id"], user.name):
                        st.rerun()
            with st.expander("Timeline"):
                tl = timeline_q(a["id"])
                if tl.empty:
                    st.caption("Nothing recorded yet (a pending alert has no timeline until it fires).")
                else:
                    st.dataframe(tl, hide_index=True, key=f"tl_{a['id']}")


with tab_active:
    active_alerts()

# ---- history ------------------------------------------------------------------------------------

with tab_history:
    counts = counts_q(24)
    if not counts.empty:
        fig = charts.bar(counts, x="hour", y="alerts", color="severity", barmode="stack", color_map=COLORS,
                         title="Alerts fired per hour, last 24 hours", xlabel="",
                         category_order=["critical", "warning", "info"], period_s=3600,
                         x_range=charts.last_hours(24))  # fmt: skip
        st.plotly_chart(fig, key="alerts_per_hour")
    f = st.columns([1, 2, 2, 2, 2])
    window = f[0].selectbox("Range", list(views.HISTORY_RANGES), index=1, key="h_range")
    states = f[1].multiselect("State", list(views.STATES), key="h_state", placeholder="All states")
    severities = f[2].multiselect("Severity", OPTS["severities"], key="h_sev", placeholder="All severities")
    rule_names = rules_q()["name"].tolist() if not rules_q().empty else []
    rule = f[3].selectbox("Rule", rule_names, index=None, key="h_rule", placeholder="All rules")
    bot = f[4].text_input("Bot label", key="h_bot", placeholder="e.g. lead_bot") or None
    hist = history_q(window, tuple(states), tuple(severities), rule, bot)
    if hist.empty:
        ui.empty_state("No alerts match these filters.", "Pending alerts that never fired are not listed.")
    else:
        ui.table(hist, "alert_history.csv", key="h_table",
                 column_config={"fired (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
                                "resolved (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")})  # fmt: skip
        pick = st.selectbox("Timeline of alert", hist["id"].tolist(), key="h_pick",
                            format_func=lambda i: f"#{i} {hist.loc[hist['id'] == i, 'rule'].iloc[0]}")  # fmt: skip
        if pick is not None:
            st.dataframe(timeline_q(int(pick)), hide_index=True, key="h_timeline")

# ---- rules --------------------------------------------------------------------------------------


def _num(value: str, default: Any = None) -> Any:
    value = (value or "").strip()
    return default if value == "" else value  # the service parses and explains bad numbers


def rule_form(name: str | None) -> None:
    current = views.rule_form_defaults(ui.get_store(), name) if name else {}
    k = f"rf_{name or 'new'}"
    with st.form(k):
        c = st.columns([2, 3, 1, 1, 1])
        new_name = c[0].text_input("Name", value=name or "", disabled=name is not None, key=f"{k}_name")
        metric = c[1].text_input("Metric", value=current.get("metric", ""), key=f"{k}_metric",
                                 placeholder="error_rate, lead_bot.response_time_p95, a recorded metric",
                                 help="Known metrics: " + "; ".join(f"{n}: {h}" for n, h in OPTS["metric_help"].items()))  # fmt: skip
        comparisons = OPTS["comparisons"]
        comparison = c[2].selectbox("Comparison", comparisons, key=f"{k}_cmp",
                                    index=comparisons.index(current.get("comparison", "gt")),
                                    format_func=lambda x: OPTS["symbols"][x])  # fmt: skip
        threshold = c[3].text_input(
            "Threshold", value="" if not current else f"{current['threshold']:g}", key=f"{k}_thr"
        )
        critical = c[4].text_input("Critical at", key=f"{k}_crit", help="Optional second level (critical).",
                                   value="" if current.get("critical_threshold") is None else f"{current['critical_threshold']:g}")  # fmt: skip
        c2 = st.columns([1, 1, 1, 1, 3])
        severity = c2[0].selectbox("Severity", OPTS["severities"], key=f"{k}_sev",
                                   index=OPTS["severities"].index(current.get("severity", "warning")))  # fmt: skip
        cooldown = c2[1].text_input(
            "Cooldown (s)", value=f"{current.get('cooldown_s', 300):g}", key=f"{k}_cd"
        )
        for_s = c2[2].text_input("For (s)", value=f"{current.get('for_s', 0):g}", key=f"{k}_for")
        keep = c2[3].text_input("Keep firing (s)", key=f"{k}_keep", help="Blank: ALERT_KEEP_FIRING_FOR_S.",
                                value="" if current.get("keep_firing_for_s") is None else f"{current['keep_firing_for_s']:g}")  # fmt: skip
        chans = c2[4].multiselect("Channels", OPTS["channels"], default=list(current.get("channels", ["slack"])),
                                  key=f"{k}_ch")  # fmt: skip
        description = st.text_input("Description", value=current.get("description", ""), key=f"{k}_desc")
        if st.form_submit_button("Save rule" if name else "Create rule", icon=":material/save:"):
            data = {"metric": metric, "comparison": comparison, "threshold": _num(threshold),
                    "critical_threshold": _num(critical), "severity": severity, "cooldown_s": _num(cooldown, 300),
                    "for_s": _num(for_s, 0), "keep_firing_for_s": _num(keep), "channels": chans,
                    "description": description}  # fmt: skip
            if name:
                if act(f"Rule {name} saved", service().update_rule, name, data, user.name):
                    st.rerun()
            elif act(f"Rule {new_name} created", service().add_rule, {**data, "name": new_name}, user.name):
                st.rerun()


with tab_rules:
    rules = rules_q()
    if rules.empty:
        ui.empty_state("No alert rules.", "The worker seeds the default rules on start (`make run`).")
    else:
        ui.table(rules, "alert_rules.csv", key="r_table",
                 column_config={"enabled": st.column_config.CheckboxColumn("on")})  # fmt: skip
        if user.can("rules.toggle"):
            st.markdown("**Turn rules on and off**")
            cols = st.columns(3)
            for i, row in enumerate(rules.itertuples(index=False)):
                on = cols[i % 3].toggle(f"{row.name}", value=bool(row.enabled), key=f"toggle_{row.name}",
                                        help=f"{row.severity}: {row.condition}")  # fmt: skip
                if on != bool(row.enabled):
                    fn = service().enable_rule if on else service().disable_rule
                    if act(f"Rule {row.name} {'enabled' if on else 'disabled'}", fn, row.name, user.name):
                        st.rerun()
    if user.can("rules.edit"):
        st.markdown("**Create or edit a rule**")
        choice = st.selectbox("Rule", [NEW_RULE, *rules["name"].tolist()] if not rules.empty else [NEW_RULE],
                              key="r_pick")  # fmt: skip
        rule_form(None if choice == NEW_RULE else choice)
    if user.can("rules.delete") and not rules.empty:
        st.markdown("**Delete a rule** (its open alerts are resolved)")
        d = st.columns([3, 2, 1])
        victim = d[0].selectbox("Rule to delete", rules["name"].tolist(), index=None, key="r_del")
        sure = d[1].checkbox("Yes, delete it", key="r_del_sure")
        if d[2].button("Delete", key="r_del_btn", disabled=not (victim and sure), icon=":material/delete:"):
            if act(f"Rule {victim} deleted", service().remove_rule, victim, user.name):
                st.rerun()

# ---- silences -----------------------------------------------------------------------------------

with tab_silences:
    sil = silences_q()
    if sil.empty:
        ui.empty_state("No silences.", "A silence holds notifications of matching alerts during maintenance; the "
                       "alerts are still recorded.")  # fmt: skip
    else:
        ui.table(sil, "alert_silences.csv", key="s_table")
    if user.can("silences.manage"):
        with st.form("silence_form"):
            st.markdown("**New silence**")
            c = st.columns([2, 3, 1])
            names = rules_q()["name"].tolist() if not rules_q().empty else []
            s_rule = c[0].selectbox("Rule", names, index=None, key="s_rule", placeholder="Any rule")
            s_match = c[1].text_input(
                "Label matchers", key="s_match", placeholder="bot=lead_bot, severity=warning"
            )
            minutes = c[2].number_input("Minutes", min_value=1, max_value=7 * 24 * 60, value=60, key="s_min")
            reason = st.text_input(
                "Reason", key="s_reason", placeholder="Deploy of the lead bot, ticket OPS-123"
            )
            if st.form_submit_button("Create silence", icon=":material/notifications_off:"):
                matchers = dict(p.split("=", 1) for p in (x.strip() for x in s_match.split(",")) if "=" in p)
                if act("Silence created", service().add_silence, user.name, rule_name=s_rule, reason=reason,
                       matchers={k.strip(): v.strip() for k, v in matchers.items()}, duration_s=minutes * 60):  # fmt: skip
                    st.rerun()
        live = sil[sil["active"]] if not sil.empty else pd.DataFrame()
        if not live.empty:
            e = st.columns([3, 1])
            sid = e[0].selectbox("End a silence now", live["id"].tolist(), key="s_end",
                                 format_func=lambda i: f"#{i}: {live.loc[live['id'] == i, 'reason'].iloc[0]}")  # fmt: skip
            if e[1].button("End silence", key="s_end_btn"):
                if act(f"Silence #{sid} ended", service().expire_silence, int(sid), user.name):
                    st.rerun()

# ---- channels -----------------------------------------------------------------------------------

with tab_channels:
    st.caption("Channels are configured by environment variables (see the README). Failed deliveries are "
               "retried with exponential backoff; a channel that keeps failing raises its own alert.")  # fmt: skip
    for ch in channels_q():
        with st.container(border=True):
            c = st.columns([2, 4, 2])
            state = (
                ":green[configured]" if ch["configured"] else f":gray[not configured: set {ch['missing']}]"
            )
            c[0].markdown(f"**{ch['channel']}**  \n{state}")
            last = f"{ch['last_sent_at']:%Y-%m-%d %H:%M:%S} UTC" if ch["last_sent_at"] else "never"
            c[1].caption(f"last delivered: {last} · pending: {ch['pending']} · gave up: {ch['dead']} · "
                         f"failed attempts since last success: {ch['failed_attempts_since_success']}")  # fmt: skip
            if ch["configured"] and user.can("notifications.test"):
                if c[2].button("Send test notification", key=f"test_{ch['channel']}", icon=":material/send:"):
                    result = act(f"Test sent via {ch['channel']}", service().send_test_notification, ch["channel"],
                                 user.name)  # fmt: skip
                    if result is not None:
                        (st.success if result["ok"] else st.error)(f"{ch['channel']}: {result['detail']}")
