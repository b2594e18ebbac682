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
    ConditionStillHolds,
    InvalidTransition,
    RuleNotFound,
    RuleValidationError,
)
from observability.timeutil import utcnow
from observability.ui import alert_frames as views
from observability.ui import charts
from observability.ui import common as ui

user = ui.require("dashboards.view")
ui.page_header(
    "Alerts and rules",
    "Rules are evaluated by the worker every tick; notifications go out through the outbox with retries. "
    "Critical alerts escalate until acknowledged: level 2 (email, Slack, webhook), then level 3 (PagerDuty, Opsgenie).",
)

flash = st.session_state.pop("al_flash", None)
if flash:
    st.success(flash, icon=":material/check_circle:")

active_q = ui.cached_query(views.active_alerts)
timeline_q = ui.cached_query(views.alert_timeline)
trouble_q = ui.cached_query(views.trouble_of_bot)
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
        st.error(f"Not allowed: {ui.md_escape(exc)}")
        return None
    except RuleValidationError as exc:
        st.error(
            "Nothing was changed:\n\n"
            + "\n".join(f"- **{k}**: {ui.md_escape(v)}" for k, v in exc.errors.items())
        )
        return None
    except (InvalidTransition, RuleNotFound, LookupError, ValueError) as exc:
        st.error(ui.md_escape(exc))
        return None
    ui.clear_caches()
    st.toast(ui.md_escape(done))
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
m[3].metric("Held (silence, inhibition, cooldown)", sum(1 for a in firing if views.held(a)))
m[4].metric("Pending (not fired yet)", sum(1 for a in active if a["state"] == "pending"),
            help="Condition seen; fires once it has held for the rule's `for` duration")  # fmt: skip

# the tabs are drawn at the end of the page (ui.lazy_tabs): only the open one runs its queries and
# draws its widgets, so a load of the active alerts does not also build the rule, silence and
# channel forms (the open tab is in the URL, ?tab=Rules)

# ---- active alerts ------------------------------------------------------------------------------


ORDER_KEY = "al_order"  # ids in the order the operator sees the cards
CONFIRM_KEY = "al_confirm"  # {alert id: "resolve" | "escalate"}: the question shown on that card


def _ask(alert_id: int, what: str | None) -> None:
    asks = dict(st.session_state.get(CONFIRM_KEY, {}))
    if what is None:
        asks.pop(alert_id, None)
    else:
        asks[alert_id] = what
    st.session_state[CONFIRM_KEY] = asks


def resolve(a: dict[str, Any]) -> None:
    """Resolve only if the condition is clear; otherwise ask on the card (the service checks it
    in the same transaction, so a condition that came back meanwhile is caught too)."""
    try:
        service().resolve_alert(a["id"], user.name, only_if_clear=True)
    except ConditionStillHolds:
        _ask(a["id"], "resolve")
        st.rerun()
    except (auth.PermissionDenied, InvalidTransition, LookupError, ValueError) as exc:
        st.error(f"Alert #{a['id']} was not resolved: {ui.md_escape(exc)}")
        return
    ui.clear_caches()
    st.toast(f"Alert #{a['id']} resolved: its condition is clear.")
    st.rerun()


def confirm_resolve(a: dict[str, Any]) -> None:
    bounds = views.duration_bounds()
    with st.container(border=True, key=f"ask_resolve_{a['id']}"):
        st.warning(
            f"**The condition of alert #{a['id']} still holds.** Resolving it now closes it, and the next "
            "evaluation fires it again as a new alert (the acknowledgement and escalation start over). "
            "To keep it quiet while you work on it, silence it instead.",
            icon=":material/warning:",
        )
        c = st.columns([1, 2])
        minutes = c[0].text_input(
            "Silence for (minutes)", value="60", key=f"sil_min_{a['id']}",
            help=f"{bounds['silence_min']:g} to {bounds['silence_max']:g} minutes ({bounds['silence_max_text']}).",
        )  # fmt: skip
        why = c[1].text_input("Reason", key=f"sil_why_{a['id']}", placeholder="working on it, ticket OPS-123")
        err = st.session_state.get(f"sil_err_{a['id']}")
        if err:
            st.error(ui.md_escape(err), icon=":material/error:")
        row = st.container(horizontal=True)
        if row.button(
            "Silence instead", key=f"sil_{a['id']}", type="primary", icon=":material/notifications_off:"
        ):
            try:  # the service parses the minutes and explains a bad value in minutes
                sil = service().silence_alert(a["id"], user.name, duration_min=minutes,
                                              reason=why.strip() or f"silenced from alert #{a['id']}")  # fmt: skip
            except RuleValidationError as exc:
                st.session_state[f"sil_err_{a['id']}"] = "; ".join(exc.errors.values())
                st.rerun()
            except (auth.PermissionDenied, LookupError, ValueError) as exc:
                st.session_state[f"sil_err_{a['id']}"] = str(exc)
                st.rerun()
            st.session_state.pop(f"sil_err_{a['id']}", None)
            _ask(a["id"], None)
            ui.clear_caches()
            st.toast(f"Alert #{a['id']} silenced until {sil['ends_at']:%H:%M} UTC (silence #{sil['id']}).")
            st.rerun()
        if row.button("Resolve anyway", key=f"resolve_anyway_{a['id']}"):
            _ask(a["id"], None)
            if act(f"Alert #{a['id']} resolved; it fires again if its condition still holds",
                   service().resolve_alert, a["id"], user.name):  # fmt: skip
                st.rerun()
        if row.button("Cancel", key=f"resolve_cancel_{a['id']}"):
            _ask(a["id"], None)
            st.rerun()


def confirm_escalate(a: dict[str, Any]) -> None:
    """Names the channels that will be tried, and those not configured or failing (it named the
    level's channels whether or not anything could reach them)."""
    ask = views.escalation_question(ui.get_store(), a)
    with st.container(border=True, key=f"ask_escalate_{a['id']}"):
        notes = "".join(f"\n\n{ui.md_escape(n)}" for n in ask["notes"])
        st.warning(f"**{ui.md_escape(ask['question'])}** {ui.md_escape(ask['paged'])}{notes}",
                   icon=":material/trending_up:")  # fmt: skip
        row = st.container(horizontal=True)
        if row.button("Escalate now", key=f"escalate_yes_{a['id']}", type="primary"):
            _ask(a["id"], None)
            if act(ask["done"], service().escalate_alert, a["id"], user.name):
                st.rerun()
        if row.button("Cancel", key=f"escalate_no_{a['id']}"):
            _ask(a["id"], None)
            st.rerun()


def _timeline_in_url(alert_id: int) -> None:
    """The open alert goes in the URL (?alert=<id>), so a shared link opens the same timeline."""
    if st.session_state.get(f"tl_open_{alert_id}"):
        ui.set_query_params(alert=alert_id)
    elif ui.query_param("alert") == str(alert_id):
        ui.set_query_params(alert=None)


def alert_card(a: dict[str, Any]) -> None:
    """One alert; every widget keyed by the alert's id, so its state stays with the alert."""
    asking = st.session_state.get(CONFIRM_KEY, {}).get(a["id"])
    with st.container(border=True, key=f"alert_card_{a['id']}"):
        labels = (
            f" · {ui.md_escape(a['labels_text'])}" if a["labels_text"] else ""
        )  # data: text, not a code span
        st.markdown(f"{badge(a['severity'])} **{ui.md_escape(a['rule_name'])}**{labels} · {a['state']} · "
                    f"level {a['escalation_level']} · #{a['id']}")  # fmt: skip
        since = a["fired_at"] or a["pending_since"]
        notes = [f"since {since:%Y-%m-%d %H:%M:%S} UTC"] if since else []
        if a["acknowledged_by"]:
            notes.append(f"acknowledged by {ui.md_escape(a['acknowledged_by'])}")
        held = a["suppressed_by"] or a["silenced_by"]
        if a["next_escalation_at"] and a["state"] == "firing" and not held:  # a held alert takes no step
            due = a["next_escalation_at"]
            notes.append(
                f"next step due {due:%H:%M:%S} UTC"
                if due > utcnow()
                else "next step due now (at the worker's next tick)"
            )
        if a["suppressed_by"] and views.held(a):  # a clear one is said once, below
            notes.append(f"held: {ui.md_escape(a['suppressed_by'])}")
        elif a["silenced_by"] and views.held(a):  # in the store now, as the next step would say
            sil = a["silenced_by"]
            notes.append(f"silenced by silence #{sil['id']} until {sil['ends_at']:%Y-%m-%d %H:%M} UTC: "
                         f"notifications held ({ui.md_escape(sil['reason'])})")  # fmt: skip
        if a["state"] == "pending":  # not yet fired: nothing to clear, nothing sent
            notes.append(
                "pending: fires once its condition has held for the rule's `for`; dropped if it clears first"
            )
        elif a["condition_holds"]:
            notes.append("condition still holds")
        elif a["clear_since"]:  # the message above is the value while it held
            notes.append(
                f"condition clear since {a['clear_since']:%H:%M:%S} UTC (the value above is the last breach): "
                "no notification; resolves by itself unless it returns"
            )
        else:
            notes.append("condition clear")
        measured = views.measured_as(a.get("metric") or "")
        st.caption(f"{ui.md_escape(a['message'])}  \n" + " · ".join(notes)
                   + (f"  \n{ui.md_escape(measured)}" if measured else ""))  # fmt: skip
        links = views.alert_links(a)
        row = st.container(horizontal=True)
        if a["state"] == "firing" and user.can("alerts.acknowledge"):
            if row.button("Acknowledge", key=f"ack_{a['id']}", icon=":material/check:"):
                if act(f"Alert #{a['id']} acknowledged: escalation stopped", service().acknowledge_alert, a["id"],
                       user.name):  # fmt: skip
                    st.rerun()
        if a["state"] in ("firing", "acknowledged") and user.can("alerts.resolve"):
            if row.button(
                "Resolve", key=f"resolve_{a['id']}", icon=":material/done_all:", disabled=bool(asking)
            ):
                resolve(a)
        if (a["state"] in ("firing", "acknowledged") and a["escalation_level"] < 3
                and user.can("alerts.escalate")):  # fmt: skip
            if row.button("Escalate…", key=f"escalate_{a['id']}", icon=":material/trending_up:",
                          disabled=bool(asking)):  # fmt: skip
                _ask(a["id"], "escalate")
                st.rerun()
        bot = views.alert_bot(a)  # not the handoff step: it has no conversations of its own
        worst = trouble_q(bot) if bot and a["state"] in ("firing", "acknowledged") else None
        if worst is not None:
            links.insert(
                0, (f"Conversation in trouble: {worst['id']}", "conversations", {"conversation": worst["id"]})
            )
        for label, page, params in links:
            with row:
                ui.page_link(page, label, icon=":material/arrow_outward:", **params)
        if asking == "resolve":
            confirm_resolve(a)
        elif asking == "escalate":
            confirm_escalate(a)
        open_ = st.toggle("Timeline", key=f"tl_open_{a['id']}", value=ui.query_param("alert") == str(a["id"]),
                          on_change=_timeline_in_url, args=(a["id"],))  # fmt: skip
        if open_:
            st.caption(f"Timeline of alert #{a['id']}")
            tl = timeline_q(a["id"])
            if tl.empty:
                st.caption("Nothing recorded yet (a pending alert has no timeline until it fires).")
            else:
                st.dataframe(tl, hide_index=True, placeholder="", key=f"tl_{a['id']}")


def _linked_elsewhere(shown: set[int]) -> tuple[int, str, bool] | None:
    """The alert the URL names (?alert=<id>) when the list on screen does not hold it: its id, where
    it is in plain words, and whether History lists it (`views.alert_whereabouts`)."""
    linked = ui.query_param("alert")
    if not (linked and linked.isdigit()) or int(linked) in shown:
        return None
    return int(linked), *views.alert_whereabouts(ui.get_store(), int(linked))


@ui.live(run_every=ui.LIVE_REFRESH_S)
def active_alerts() -> None:
    alerts, order = views.stable_order(active_q(), st.session_state.get(ORDER_KEY, []))
    st.session_state[ORDER_KEY] = order
    unlisted = _linked_elsewhere({a["id"] for a in alerts})
    if unlisted is not None:
        linked, note, listed = unlisted
        st.info(f"Not active: {ui.md_escape(note)}", icon=":material/info:")
        if listed:
            ui.page_link("alerts", f"Alert #{linked} in History, with its timeline", icon=":material/history:",
                         tab="History", h_range="30d", alert=linked)  # fmt: skip
    if not alerts:
        ui.empty_state("No active alerts.", "Alerts appear here when a rule's condition holds; the worker evaluates "
                       "the rules every tick.")  # fmt: skip
        return
    st.caption("Cards keep their places while you work; alerts that open meanwhile are added at the end.")
    for a in alerts:
        alert_card(a)


# ---- history ------------------------------------------------------------------------------------


def history_tab() -> None:
    f = st.columns([1, 2, 2, 2, 2])
    window = f[0].selectbox("Range", list(views.HISTORY_RANGES), index=1, **ui.in_url("h_range"))
    hours = views.HISTORY_RANGES[window] * 24
    per_day = hours > 24
    counts = counts_q(hours, per_day)
    if not counts.empty:  # the Range's window (the chart said "last 24 hours" under a Range of 7d)
        fig = charts.bar(counts, x="hour", y="alerts", color="severity", barmode="stack", color_map=COLORS,
                         title=f"Every alert fired, per {'day' if per_day else 'hour'}, last {window} "
                               "(the other filters apply to the table)", xlabel="",
                         category_order=["critical", "warning", "info"], period_s=86_400 if per_day else 3600,
                         x_range=charts.last_hours(hours))  # fmt: skip
        st.plotly_chart(fig, key="alerts_per_hour")
    states = f[1].multiselect("State", list(views.STATES), **ui.in_url("h_state"), placeholder="All states")
    severities = f[2].multiselect(
        "Severity", OPTS["severities"], **ui.in_url("h_sev"), placeholder="All severities"
    )
    rule_names = rules_q()["name"].tolist() if not rules_q().empty else []
    rule = f[3].selectbox("Rule", rule_names, index=None, **ui.in_url("h_rule"), placeholder="All rules")
    bot = f[4].text_input("Bot label", **ui.in_url("h_bot"), placeholder="e.g. lead_bot") or None
    hist = history_q(window, tuple(states), tuple(severities), rule, bot)
    linked = ui.query_param("alert")  # the open alert, as on the active tab: ?tab=History&alert=<id>
    unlisted = _linked_elsewhere(set() if hist.empty else set(hist["id"]))
    if unlisted is not None:
        _, note, listed = unlisted
        st.info(ui.md_escape(note) + (" These range and filters leave it out." if listed else ""),
                icon=":material/info:")  # fmt: skip
    if hist.empty:
        ui.empty_state("No alerts match these filters.", "Pending alerts that never fired are not listed.")
    else:
        ui.table(hist, "alert_history.csv", key="h_table",
                 column_config={"fired (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
                                "resolved (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")})  # fmt: skip
        ids = hist["id"].tolist()
        pick = st.selectbox("Timeline of alert", ids, key="h_pick",
                            index=ids.index(int(linked)) if linked and linked.isdigit() and int(linked) in ids else 0,
                            format_func=lambda i: f"#{i} {hist.loc[hist['id'] == i, 'rule'].iloc[0]}",
                            on_change=lambda: ui.set_query_params(alert=st.session_state.get("h_pick")))  # fmt: skip
        if pick is not None:
            st.dataframe(timeline_q(int(pick)), hide_index=True, placeholder="", key="h_timeline")


# ---- rules --------------------------------------------------------------------------------------


def _num(value: str, default: Any = None) -> Any:
    value = (value or "").strip()
    return default if value == "" else value  # the service parses and explains bad numbers


def field_error(errors: dict[str, str], *keys: str) -> None:
    """The service's message for a field, right under it."""
    for k in keys:
        if k in errors:
            st.error(ui.md_escape(errors[k]), icon=":material/error:")


def rule_form(name: str | None) -> None:
    current = views.rule_form_defaults(ui.get_store(), name) if name else {}
    k = f"rf_{name or 'new'}"
    errors: dict[str, str] = st.session_state.get(f"{k}_errors", {})
    fixed = current.get("thresholds_from")  # built-in: metric and thresholds are read-only
    bounds = views.duration_bounds()
    cd_default = bounds["default_cooldown_s"]  # what a blank Cooldown means (the help says so)
    for_default = bounds["default_for_s"]
    with st.form(k, enter_to_submit=False):
        if fixed:
            st.info(f"Built-in rule: its metric, comparison and thresholds come from {fixed} and are shown "
                    "read-only; change them there. Severity, durations, channels and description are yours.",
                    icon=":material/lock:")  # fmt: skip
        c = st.columns([2, 3, 1, 1, 1])
        with c[0]:
            new_name = st.text_input("Name", value=name or "", disabled=name is not None, key=f"{k}_name")
            field_error(errors, "name", "fields")
        with c[1]:
            metric = st.text_input("Metric", value=current.get("metric", ""), key=f"{k}_metric", disabled=bool(fixed),
                                   placeholder="error_rate, lead_bot.response_time_p95, a recorded metric",
                                   help="Known metrics: " + "; ".join(f"{n}: {h}" for n, h in OPTS["metric_help"].items()))  # fmt: skip
            field_error(errors, "metric")
        comparisons = OPTS["comparisons"]
        with c[2]:
            comparison = st.selectbox("Comparison", comparisons, key=f"{k}_cmp", disabled=bool(fixed),
                                      index=comparisons.index(current.get("comparison", "gt")),
                                      format_func=lambda x: OPTS["symbols"][x])  # fmt: skip
            field_error(errors, "comparison")
        with c[3]:
            threshold = st.text_input("Threshold", value="" if not current else f"{current['threshold']:g}",
                                      key=f"{k}_thr", disabled=bool(fixed))  # fmt: skip
            field_error(errors, "threshold")
        with c[4]:
            critical = st.text_input("Critical at", key=f"{k}_crit", help="Optional second level (critical).",
                                     disabled=bool(fixed),
                                     value="" if current.get("critical_threshold") is None else f"{current['critical_threshold']:g}")  # fmt: skip
            field_error(errors, "critical_threshold")
        c2 = st.columns([1, 1, 1, 1, 3])
        with c2[0]:
            severity = st.selectbox("Severity", OPTS["severities"], key=f"{k}_sev",
                                    index=OPTS["severities"].index(current.get("severity", "warning")))  # fmt: skip
            field_error(errors, "severity")
        with c2[1]:
            cooldown = st.text_input("Cooldown (s)", value=f"{current.get('cooldown_s', cd_default):g}",
                                     key=f"{k}_cd", placeholder=f"blank: {cd_default:g}",
                                     help=f"0 to {bounds['cooldown_s']:g} s: the least time between two "
                                     f"notifications of this rule. Blank: {cd_default:g} s.")  # fmt: skip
        with c2[2]:
            for_s = st.text_input("For (s)", value=f"{current.get('for_s', for_default):g}", key=f"{k}_for",
                                  placeholder=f"blank: {for_default:g}",
                                  help=f"0 to {bounds['for_s']:g} s: how long the condition holds before "
                                  f"the alert fires. Blank: {for_default:g} s (fires at once).")  # fmt: skip
        with c2[3]:
            keep = st.text_input("Keep firing (s)", key=f"{k}_keep",
                                 help=f"Blank: ALERT_KEEP_FIRING_FOR_S. 0 to {bounds['keep_firing_for_s']:g} s.",
                                 value="" if current.get("keep_firing_for_s") is None else f"{current['keep_firing_for_s']:g}")  # fmt: skip
        with c2[4]:
            chans = st.multiselect("Channels", OPTS["channels"], default=list(current.get("channels", ["slack"])),
                                   key=f"{k}_ch")  # fmt: skip
            field_error(errors, "channels")
        field_error(
            errors, "cooldown_s", "for_s", "keep_firing_for_s"
        )  # under the row: its columns are narrow
        description = st.text_input("Description", value=current.get("description", ""), key=f"{k}_desc")
        field_error(errors, "description")
        if st.form_submit_button("Save rule" if name else "Create rule", icon=":material/save:"):
            data = {"severity": severity, "cooldown_s": _num(cooldown, cd_default), "for_s": _num(for_s, for_default),
                    "keep_firing_for_s": _num(keep), "channels": chans, "description": description}  # fmt: skip
            if not fixed:
                data.update(metric=metric, comparison=comparison, threshold=_num(threshold),
                            critical_threshold=_num(critical))  # fmt: skip
            try:
                if name:
                    service().update_rule(name, data, user.name)
                else:
                    service().add_rule({**data, "name": new_name}, user.name)
            except RuleValidationError as exc:
                st.session_state[f"{k}_errors"] = exc.errors  # shown beside each field; typed values stay
                st.rerun()
            except (auth.PermissionDenied, RuleNotFound) as exc:
                st.session_state[f"{k}_errors"] = {"fields": f"Nothing was changed: {exc}"}
                st.rerun()
            st.session_state.pop(f"{k}_errors", None)
            ui.clear_caches()
            st.session_state["al_flash"] = (
                f"Rule {ui.md_escape(name or new_name)} {'saved' if name else 'created'}."
            )
            st.rerun()
    if errors:
        st.error("Nothing was changed: fix the fields marked above.", icon=":material/error:")


def rules_tab() -> None:
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
                on = cols[i % 3].toggle(ui.md_escape(row.name), value=bool(row.enabled), key=f"toggle_{row.name}",
                                        help=ui.md_escape(f"{row.severity}: {row.condition}"))  # fmt: skip
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


def silences_tab() -> None:
    sil = silences_q()
    if sil.empty:
        ui.empty_state("No silences.", "A silence holds notifications of matching alerts during maintenance; the "
                       "alerts are still recorded.")  # fmt: skip
    else:
        ui.table(sil, "alert_silences.csv", key="s_table")
    if user.can("silences.manage"):
        with st.form("silence_form", enter_to_submit=False):
            st.markdown("**New silence**")
            s_err: dict[str, str] = st.session_state.get("s_errors", {})
            bounds = views.duration_bounds()
            c = st.columns([2, 3, 1])
            names = rules_q()["name"].tolist() if not rules_q().empty else []
            with c[0]:
                s_rule = st.selectbox("Rule", names, index=None, key="s_rule", placeholder="Any rule")
                field_error(s_err, "rule_name")
            with c[1]:
                s_match = st.text_input(
                    "Label matchers", key="s_match", placeholder="bot=lead_bot, severity=warning"
                )
                field_error(s_err, "matchers")
            with c[2]:
                minutes = st.text_input("Minutes", value="60", key="s_min",
                                        help=f"{bounds['silence_min']:g} to {bounds['silence_max']:g} minutes "
                                             f"({bounds['silence_max_text']}, ALERT_SILENCE_MAX_S).")  # fmt: skip
                field_error(s_err, "duration_min", "ends_at")
            reason = st.text_input(
                "Reason", key="s_reason", placeholder="Deploy of the lead bot, ticket OPS-123"
            )
            field_error(s_err, "reason")
            if st.form_submit_button("Create silence", icon=":material/notifications_off:"):
                matchers = dict(p.split("=", 1) for p in (x.strip() for x in s_match.split(",")) if "=" in p)
                try:  # the service parses the minutes and explains a bad value in minutes
                    made = service().add_silence(user.name, rule_name=s_rule, reason=reason, duration_min=minutes,
                                                 matchers={k.strip(): v.strip() for k, v in matchers.items()})  # fmt: skip
                except RuleValidationError as exc:
                    st.session_state["s_errors"] = exc.errors
                    st.rerun()
                except auth.PermissionDenied as exc:
                    st.session_state["s_errors"] = {"reason": f"Not allowed: {exc}"}
                    st.rerun()
                st.session_state.pop("s_errors", None)
                ui.clear_caches()
                st.session_state["al_flash"] = (
                    f"Silence #{made['id']} created: matching alerts stay quiet until "
                    f"{made['ends_at']:%Y-%m-%d %H:%M} UTC."
                )
                st.rerun()
            if s_err:
                st.error("No silence was created: fix the fields marked above.", icon=":material/error:")
        live = sil[sil["active"]] if not sil.empty else pd.DataFrame()
        if not live.empty:
            e = st.columns([3, 1])
            sid = e[0].selectbox("End a silence now", live["id"].tolist(), key="s_end",
                                 format_func=lambda i: f"#{i}: {live.loc[live['id'] == i, 'reason'].iloc[0]}")  # fmt: skip
            if e[1].button("End silence", key="s_end_btn"):
                if act(f"Silence #{sid} ended", service().expire_silence, int(sid), user.name):
                    st.rerun()


# ---- channels -----------------------------------------------------------------------------------


TEST_RESULT = "al_test_result"  # {channel: the last test's result}, shown on its card after a rerun


def channels_tab() -> None:
    st.caption("Channels are configured by environment variables (see the README). Failed deliveries are "
               "retried with exponential backoff; a channel that keeps failing raises its own alert (test "
               "notifications are shown here and do not count towards it).")  # fmt: skip
    results = st.session_state.get(TEST_RESULT, {})
    for ch in channels_q():
        name = ch["channel"]
        with st.container(border=True, key=f"channel_{name}"):
            c = st.columns([2, 4, 2])
            state = {
                "configured": ":green[configured]",
                "failing": ":red[failing]",
            }.get(ch["state"], ":gray[not configured]")
            c[0].markdown(f"**{name}**  \n{state}")
            if not ch["configured"]:  # the variables to set, in the wide column (they broke mid-word)
                c[1].caption(f"To turn it on, set {ui.md_escape(ch['missing'])}.")
            last = f"{ch['last_sent_at']:%Y-%m-%d %H:%M:%S} UTC" if ch["last_sent_at"] else "never"
            tests = ch["failed_test_attempts"]
            of_tests = f" ({tests} of them tests, which raise no alert)" if tests else ""
            c[1].caption(f"last delivered: {last} · pending: {ch['pending']} · gave up: {ch['dead']} · "
                         f"failed attempts since last success: {ch['failed_attempts_since_success']}{of_tests}")  # fmt: skip
            if ch["state"] == "failing":
                what = "test" if ch["last_failed_kind"] == "test" else "delivery"
                c[1].caption(f"last {what} failed at {ch['last_failed_at']:%Y-%m-%d %H:%M:%S} UTC: "
                             f"{ui.md_escape(ch['last_error'] or 'no error recorded')}")  # fmt: skip
            if ch["configured"] and user.can("notifications.test"):
                if c[2].button("Send test notification", key=f"test_{name}", icon=":material/send:"):
                    try:
                        result = service().send_test_notification(name, user.name)
                    except (auth.PermissionDenied, ValueError) as exc:
                        result = {"ok": False, "summary": f"Test notification via {name} not sent: {exc}"}
                    # rerun, so this card's counts and state include the test beside its result
                    st.session_state[TEST_RESULT] = {**results, name: result}
                    ui.clear_caches()
                    st.rerun()
            if name in results:
                r = results[name]
                at = f" (at {r['at']:%H:%M:%S} UTC)" if r.get("at") else ""
                (st.success if r["ok"] else st.error)(ui.md_escape(r["summary"]) + at)


ui.lazy_tabs({"Active alerts": active_alerts, "History": history_tab, "Rules": rules_tab,
              "Silences": silences_tab, "Channels": channels_tab})  # fmt: skip
