"""Single sign-on in the page run: `st.login` starts it, `st.user` ends it with a console session.

Streamlit does the OIDC flow ([auth] in `.streamlit/secrets.toml`, Authlib) and keeps the identity
in its own cookie; the console still wants its server-side session (reload, new tab, sign-out
everywhere and revocation work the same as for a password). A page run cannot set an HttpOnly
cookie, so once `st.user.is_logged_in` it resolves the console user (`auth.oidc.sign_in_oidc`:
matched or created, role from the claims) and sends the browser to `/auth/oidc/complete` with a
short-lived ticket bound to the identity cookie; that route opens the session (`ui.web_auth`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import streamlit as st

from observability import auth
from observability.auth import oidc
from observability.settings import get_settings
from observability.ui import common as ui

log = logging.getLogger(__name__)

COMPLETE_PATH = "/auth/oidc/complete"  # ui.web_auth.SSO_COMPLETE_PATH
SSO_URL_PATH = "sso"  # the hidden page whose run calls st.login (ui.web_auth.SSO_PAGE)


def enabled() -> bool:
    return get_settings().oidc_enabled


def identity() -> Mapping[str, Any] | None:
    """The claims of the browser's OIDC identity (`st.user`), or None when not signed in there."""
    if not enabled():
        return None
    try:
        if not st.user.is_logged_in:
            return None
        return st.user.to_dict()
    except Exception:  # noqa: BLE001 - no [auth] section, or no browser context (AppTest)
        return None


def finish(claims: Mapping[str, Any]) -> None:
    """Turn the OIDC identity into a console session: resolve the user, then hand the browser to
    `/auth/oidc/complete` (automatically; a link if scripts are blocked)."""
    try:
        user = oidc.sign_in_oidc(ui.get_store(), claims)
        ticket = oidc.issue_ticket(user, st.context.cookies.get(oidc.IDENTITY_COOKIE))
    except auth.AuthError as exc:
        st.error(f"Single sign-on failed: {ui.md_escape(exc)}.", icon=":material/block:")
        return
    url = f"{COMPLETE_PATH}?{urlencode({'ticket': ticket})}"
    st.info("Signing you in…", icon=":material/login:")
    st.html(f"<script>window.location.replace({json.dumps(url)});</script>", unsafe_allow_javascript=True)
    st.markdown(f'<a href="{url}" target="_self">Continue to the console</a>', unsafe_allow_html=True)


def sso_page() -> None:
    """The `sso` page: start the provider's sign-in, or finish it when it is already done."""
    ui.page_header("Single sign-on", "Signing in through your identity provider.", system_banner=False)
    if not enabled():
        st.error("Single sign-on is not configured for this console.")
        return
    claims = identity()
    if claims is not None:
        finish(claims)
        return
    try:
        st.login(get_settings().oidc_provider)
    except Exception as exc:  # noqa: BLE001 - a missing or wrong [auth] section in secrets.toml
        log.error("st.login failed: %s", exc)
        st.error(
            "Single sign-on is not set up correctly ([auth] in .streamlit/secrets.toml); see the README."
        )
