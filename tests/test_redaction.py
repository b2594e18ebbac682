"""Privacy: PII is redacted from stored message text (configurable), and secrets stay out of logs."""

from __future__ import annotations

import logging
import time
import uuid

import pytest
import sqlalchemy as sa

from observability import redaction
from observability.redaction import CARD_MASK, EMAIL_MASK, PHONE_MASK, redact, scrub
from observability.settings import Settings
from observability.store import Store, schema
from observability.store.ingest import write_batch


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to john.doe+tag@mail.example.co.uk please", f"write to {EMAIL_MASK} please"),
        ("ME@EXAMPLE.COM", EMAIL_MASK),
        ("jane [at] example [dot] org", EMAIL_MASK),
        ("john dot doe at example dot com", EMAIL_MASK),
        ("<a.b@c.io>", f"<{EMAIL_MASK}>"),
    ],
)
def test_email_addresses_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "phone",
    [
        "+44 20 7946 0958",
        "0044 20 7946 0958",
        "+1 (415) 555-2671",
        "+1-800-555-0199",
        "1-800-555-0199",
        "(415) 555 2671",
        "415.555.2671",
        "415-555-2671",
        "4155552671",
        "555-1234",
        "07700 900123",
        "030/1234567",
        "+33 1 23 45 67 89",
        "+91 98765 43210",
        "+49 30 123456",
        "+44 (0)20 7946 0958",
        "020 7946 0958",
    ],
)
def test_phone_numbers_in_common_formats_are_redacted(phone: str) -> None:
    assert redact(f"call me on {phone} tomorrow") == f"call me on {PHONE_MASK} tomorrow"
    assert redact(f"{phone}.") == f"{PHONE_MASK}."


@pytest.mark.parametrize(
    "card",
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "5500 0000 0000 0004",
        "3782 822463 10005",  # Amex, 15 digits in 4-6-5 groups
        "6011000990139424",
    ],
)
def test_card_numbers_that_pass_luhn_are_redacted(card: str) -> None:
    assert redact(f"my card is {card}, thanks") == f"my card is {CARD_MASK}, thanks"


def test_a_phone_number_beside_a_timestamp_is_still_found() -> None:
    assert redact("call 07700 900123 at 2026-12-03 08:30") == f"call {PHONE_MASK} at 2026-12-03 08:30"


def test_a_card_number_followed_by_more_digits_is_still_found() -> None:
    assert redact("card 4111 1111 1111 1111 2024") == f"card {CARD_MASK} 2024"


@pytest.mark.parametrize(
    "text",
    [
        "order 1234567890123456789012",  # too long for a card, not a phone
        "on 2024-09-11 at 15:30:45",
        "condition clear since 2026-12-03 08:29:56 UTC",  # a timestamp: date, then the hour
        "from 2026-12-03T08:29 to 11.09.2024 14:05",
        "11.09.2024 and 9/11/24",
        "server 192.168.100.200",
        "version 1.2.3",
        "price $1 250 000 or €2 500 000",
        "price 1,250,000.00 or 1.250.000,00",
        "order #12345, ticket 987654",
        "3 bedrooms, 2.5 baths, 1200 sq ft",
        "zip 94103-1234",
        "between 350000 and 400000",
        "ratio 16:9",
        "it costs 3.50 - 4.20 dollars",
        "meet me at the office at 5",
    ],
)
def test_numbers_that_are_not_pii_are_left_alone(text: str) -> None:
    assert redact(text) == text


def test_luhn_failures_are_not_cards() -> None:
    assert CARD_MASK not in redact("ref 4111 1111 1111 1112")


def test_non_text_and_empty_values_pass_through() -> None:
    assert redact("") == "" and redact(None) is None and redact(42) == 42
    assert redact("nothing to see") == "nothing to see"


def test_each_kind_can_be_switched_off() -> None:
    text = "a@b.com 4111 1111 1111 1111 +44 20 7946 0958"
    assert redact(text, email=False).startswith("a@b.com")
    assert "4111" in redact(text, card=False)
    assert "+44" in redact(text, phone=False)


def _stored_texts(store: Store) -> list[str]:
    with store.connect() as conn:
        return conn.execute(sa.select(schema.messages.c.text).order_by(schema.messages.c.ts)).scalars().all()


def test_ingest_redacts_message_text_before_it_is_stored(store: Store) -> None:
    text = "I'm jo@example.com, +1 (415) 555-2671, card 4111 1111 1111 1111"
    write_batch(
        store,
        [["message", uuid.uuid4().hex, time.time(), "c1", "user", text, "lead", None, None]],
        Settings(),
    )
    assert _stored_texts(store) == [f"I'm {EMAIL_MASK}, {PHONE_MASK}, card {CARD_MASK}"]


def test_redaction_is_configurable_with_redact_pii(sqlite_store: Store) -> None:
    off = Settings.from_env({"REDACT_PII": "false"})
    assert off.redact_pii is False and Settings.from_env({}).redact_pii is True
    text = "mail jo@example.com"
    write_batch(
        sqlite_store, [["message", uuid.uuid4().hex, time.time(), "c1", "user", text, None, None, None]], off
    )
    assert _stored_texts(sqlite_store) == [text]
    assert redaction.redact_if_enabled(text, off) == text
    assert redaction.redact_if_enabled(text, Settings()) == f"mail {EMAIL_MASK}"


# ---- secrets in log lines ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("connecting to postgresql+psycopg://app:db-S3cret@db:5432/obs", "db-S3cret"),
        ("redis://:redis-S3cret@cache:6379/0 unreachable", "redis-S3cret"),
        ("login with password=hunter2-S3cret", "hunter2-S3cret"),
        ('{"api_key": "k-S3cret-123"}', "k-S3cret-123"),
        ("Authorization: Bearer abcdefghijklmnop", "abcdefghijklmnop"),
        ("using sk-ant-api03-abcdefghijkl", "abcdefghijkl"),
        ("posting to https://hooks.slack.com/services/T000/B000/XYZSECRET", "XYZSECRET"),
    ],
)
def test_scrub_masks_secrets_in_log_lines(line: str, secret: str) -> None:
    cleaned = scrub(line)
    assert secret not in cleaned and redaction.SECRET_MASK in cleaned


def test_the_secret_filter_scrubs_every_record_and_traceback(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.from_env(
        {"ALERT_WEBHOOK_SECRET": "hmac-S3cret-value", "ANTHROPIC_API_KEY": "plain-S3cret-key"}
    )
    redaction.install_secret_filter(settings)
    redaction.install_secret_filter(settings)  # idempotent
    log = logging.getLogger("observability.test_redaction")
    caplog.set_level(logging.INFO)
    log.info("signing with %s", "hmac-S3cret-value")
    log.warning("store at %s down", "postgresql://u:pw-S3cret@h/db")
    try:
        raise RuntimeError("key plain-S3cret-key rejected")
    except RuntimeError:
        log.exception("call failed")
    assert "S3cret" not in caplog.text
    assert caplog.text.count(redaction.SECRET_MASK) >= 3


def test_settings_repr_shows_no_secret() -> None:
    s = Settings.from_env(
        {
            "ANTHROPIC_API_KEY": "sk-ant-S3cret",
            "ALERT_EMAIL_SMTP_PASSWORD": "smtp-S3cret",
            "OTLP_INGEST_TOKEN": "tok-S3cret",
        }
    )
    assert "S3cret" not in repr(s) and s.anthropic_api_key == "sk-ant-S3cret"


def test_personal_data_in_an_account_id_is_stored_as_one_pseudonym_everywhere(store: Store) -> None:
    """Bots name accounts by their customer's e-mail: stored as sent, the address sat in
    `messages.account_id`. It becomes a pseudonym, the same from every path (so one customer stays
    one account), different per customer, and the console's search still finds it by the address."""
    from observability.control import browse_conversations
    from observability.worker.genai import span_context

    now = time.time()
    s = Settings()
    write_batch(store, [
        ["message", uuid.uuid4().hex, now, "c-bob", "user", "hi", "lead", "acct:Bob@Example.org", None],
        ["message", uuid.uuid4().hex, now, "c-ann", "user", "hi", "lead", "acct:ann@example.org", None],
        ["message", uuid.uuid4().hex, now, "c-tel", "user", "hi", "lead", "+44 20 7946 0958", None],
        ["account", "acct:bob@example.org", now, "Bob", True],
    ], s)  # fmt: skip
    with store.connect() as conn:
        convs = dict(
            conn.execute(sa.select(schema.conversations.c.id, schema.conversations.c.account_id)).all()
        )
        accounts = conn.execute(sa.select(schema.accounts.c.id)).scalars().all()
        stored = conn.execute(sa.select(schema.messages.c.account_id)).scalars().all()
    bob, ann, tel = convs["c-bob"], convs["c-ann"], convs["c-tel"]
    assert bob.startswith("acct:[email ") and ann.startswith("acct:[email ") and bob != ann
    assert tel.startswith("[phone ") and "7946" not in tel
    assert accounts == [bob]  # the account event's id: the same pseudonym (case of the address aside)
    assert not [v for v in (*stored, *accounts) if "@" in v or "example" in v]
    assert span_context({"obs.account_id": "acct:bob@example.org", "gen_ai.conversation.id": "c9"})[3] == bob
    found = browse_conversations(store, search="bob@example.org").rows
    assert [r["id"] for r in found] == ["c-bob"]
    off = Settings.from_env({"REDACT_PII": "false"})
    assert redaction.pseudonymize_id("acct-bob@example.org", off) == "acct-bob@example.org"
    assert redaction.pseudonymize_id("acct-42", s) == "acct-42"  # no personal data: as sent
    long = redaction.pseudonymize_id("x" * 80 + "bob@example.org", s)
    assert len(long) <= 100 and long != redaction.pseudonymize_id("x" * 80 + "ann@example.org", s)
