"""Pytest fixtures of the alerting tests (a plugin registered by `tests/conftest.py`): the SMTP
certificate, the peers, one user per role, and the `alerting` harness over the `store` fixture."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from support.alerting import PASSWORD, T0, Harness, Peers


@pytest.fixture(scope="session")
def smtp_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for 127.0.0.1 (the client trusts it via ALERT_EMAIL_CA_FILE)."""
    tmp = tmp_path_factory.mktemp("smtp-tls")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def peers(smtp_certificate: tuple[Path, Path]) -> Iterator[Peers]:
    p = Peers(smtp_certificate)
    p.start_smtp("starttls")
    yield p
    p.close()


@pytest.fixture(scope="session")
def password_hash() -> str:
    from observability.auth import hash_password

    return hash_password(PASSWORD)  # argon2 is slow on purpose: hash once per session


@pytest.fixture
def users(store: Any, password_hash: str) -> dict[str, str]:
    """One user per role (rows as `auth.create_user` writes them); returns role -> user name."""
    from observability.auth import ROLES
    from observability.store import schema

    names = {role: f"{role}1" for role in ROLES}
    with store.begin() as conn:
        conn.execute(sa.insert(schema.users), [
            {"name": name, "role": role, "password_hash": password_hash, "disabled": False, "failed_logins": 0,
             "created_at": T0 - timedelta(days=1)} for role, name in names.items()
        ])  # fmt: skip
    return names


@pytest.fixture
def alerting(store: Any, store_url: str, make_settings: Any, peers: Peers, users: dict) -> Harness:
    # scripted scenarios fire at once and resolve at once unless they set `for` / keep_firing_for
    settings = peers.settings(make_settings(store_url), auth_mode="password", alert_keep_firing_for_s=0.0,
                              alert_default_for_s=0.0, alert_escalation_l2_delay_s=300.0,
                              alert_escalation_l3_delay_s=900.0)  # fmt: skip
    return Harness(store, settings, peers, users)
