"""Privacy: PII redaction of message text, and keeping secrets out of log lines.

`redact(text)` replaces, in this order,
- e-mail addresses (also the `name [at] example [dot] com` spellings),
- payment card numbers: 13 to 19 digits, optionally in groups separated by spaces or dashes,
  that pass the Luhn check (so order numbers and other long ids are left alone; a card number
  followed by more digits is still found),
- phone numbers in common national and international formats: `+44 20 7946 0958`,
  `0044 20 7946 0958`, `+1 (415) 555-2671`, `(415) 555 2671`, `415.555.2671`, `07700 900123`,
  `030/1234567`, `555-1234`, and plain runs of 10 to 15 digits. Dates, timestamps, times, IPv4 addresses,
  versions and amounts (`$1 250 000`) are not phone numbers.
Ingest applies it to every stored message when `REDACT_PII` is on (the default), and the control
services apply it to operator replies, so no stored message text carries these.

`install_secret_filter()` makes every log record of the process pass through `scrub()`, which
masks passwords and tokens written as `password=...`, credentials inside URLs
(`postgresql://user:***@host`), bearer tokens, API keys and any value registered with
`register_secret` (the configured secrets are registered from the settings). The services do
not log secrets in the first place; the filter is the net under that rule.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import threading
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from observability import events as ev

Mask = Callable[[str, str], str]  # (kind: email | card | phone, what was found) -> its replacement
EMAIL_MASK = "[email redacted]"
PHONE_MASK = "[phone redacted]"
CARD_MASK = "[card redacted]"
KINDS = ("email", "card", "phone")

# ---- e-mail -----------------------------------------------------------------------------------

EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,63})@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
_AT = r"(?:\s*[\[({<]\s*at\s*[\])}>]\s*|\s+at\s+)"
_DOT = r"(?:\s*[\[({<]\s*dot\s*[\])}>]\s*|\s+dot\s+)"
EMAIL_SPELLED = re.compile(
    rf"(?<![\w.+-])[A-Za-z0-9][\w.+-]{{0,63}}(?:{_DOT}[\w+-]{{1,63}})*{_AT}[A-Za-z0-9-]{{1,63}}(?:(?:{_DOT}|\.)[A-Za-z0-9-]{{1,63}})*"
    rf"{_DOT}[A-Za-z]{{2,24}}\b",
    re.IGNORECASE,
)

# ---- cards ------------------------------------------------------------------------------------

CARD_RUN = re.compile(r"(?<![\w+])\d(?:[ -]?\d){12,}(?![\w])")
_DIGIT_GROUP = re.compile(r"\d+")


def luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = ord(ch) - 48
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_spans(run: str) -> list[tuple[int, int]]:
    """Spans (within `run`) of Luhn-valid card numbers made of whole digit groups."""
    groups = [(m.start(), m.end(), m.group(0)) for m in _DIGIT_GROUP.finditer(run)]
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(groups):
        best = None
        digits = ""
        for j in range(i, len(groups)):
            digits += groups[j][2]
            if len(digits) > 19:
                break
            if len(digits) >= 13 and luhn_ok(digits):
                best = j  # keep the longest valid window starting at group i
        if best is None:
            i += 1
            continue
        spans.append((groups[i][0], groups[best][1]))
        i = best + 1
    return spans


def _redact_cards(text: str, mask: Mask | None = None) -> str:
    def repl(match: re.Match[str]) -> str:
        run = match.group(0)
        spans = _card_spans(run)
        if not spans:
            return run
        out, pos = [], 0
        for a, b in spans:
            out.append(run[pos:a])
            out.append(mask("card", run[a:b]) if mask else CARD_MASK)
            pos = b
        out.append(run[pos:])
        return "".join(out)

    return CARD_RUN.sub(repl, text)


# ---- phones -----------------------------------------------------------------------------------

PHONE_CANDIDATE = re.compile(
    r"(?<![\w+.,/-])"  # not inside a word, a number or an amount
    r"(?:\+|\b00)?\s?"  # international prefix
    r"(?:\(\s?\+?\d{1,4}\s?\)|\d{1,15})"  # first group, maybe an area code in parentheses
    r"(?:[ .\-/]?\s?\(\s?\d{1,4}\s?\)\s?\d{1,8}|[ .\-/]\d{1,8}){0,6}"  # more groups
    r"(?![\w]|[.,]\d)"  # not followed by a letter or more digits of an amount
)
_DATE = re.compile(
    r"\d{4}([-/.])\d{1,2}\1\d{1,2}"  # 2024-09-11
    r"|\d{1,2}([-/.])\d{1,2}\2\d{2,4}"  # 11.09.2024, 9/11/24
)
_DATE_HOUR = re.compile(rf"(?:{_DATE.pattern})\s?[ T]\s?\d{{1,2}}")  # 2026-12-03 08(:29:56), a timestamp
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_LOCAL_7 = re.compile(r"\d{3}[-.]\d{4}")  # 555-1234
_ZIP_4 = re.compile(r"\d{5}-\d{4}")  # US ZIP+4
_CURRENCY = set("$€£¥₹")


def _is_phone(candidate: str, before: str) -> bool:
    s = candidate.strip()
    digits = re.sub(r"\D", "", s)
    n = len(digits)
    if n < 7 or n > 15 + (2 if s.startswith("00") else 0):
        return False
    if _DATE.fullmatch(s) or _DATE_HOUR.fullmatch(s) or _IPV4.fullmatch(s) or _ZIP_4.fullmatch(s):
        return False
    if before.rstrip()[-1:] in _CURRENCY:
        return False
    if s.startswith("+") or s.startswith("00"):
        return n >= 8
    if "(" in s:
        return n >= 7
    if re.search(r"[ .\-/]", s):
        return n >= 9 or bool(_LOCAL_7.fullmatch(s))
    return n >= 10  # plain digits


def _redact_phones(text: str, mask: Mask | None = None) -> str:
    def repl(match: re.Match[str]) -> str:
        s = match.group(0)
        before = text[max(0, match.start() - 3) : match.start()]
        if not _is_phone(s, before):
            return s
        lead = s[: len(s) - len(s.lstrip())]
        trail = s[len(s.rstrip()) :]
        return f"{lead}{mask('phone', s.strip()) if mask else PHONE_MASK}{trail}"

    return PHONE_CANDIDATE.sub(repl, text)


# ---- the entry point --------------------------------------------------------------------------


def redact(
    text: Any, *, email: bool = True, card: bool = True, phone: bool = True, mask: Mask | None = None
) -> Any:
    """Text with e-mail addresses, card numbers and phone numbers masked (non-text unchanged);
    `mask(kind, found)` gives each one's replacement (default: the fixed masks above)."""
    if not isinstance(text, str) or not text:
        return text
    email_mask: Any = (lambda m: mask("email", m.group(0))) if mask else EMAIL_MASK
    if email and "@" in text:
        text = EMAIL.sub(email_mask, text)
    if email:
        lowered = text.lower()
        if " at " in lowered or "at]" in lowered or "at)" in lowered or "at}" in lowered or "at>" in lowered:
            text = EMAIL_SPELLED.sub(email_mask, text)
    if not any(ch.isdigit() for ch in text):
        return text
    if card:
        text = _redact_cards(text, mask)
    if phone:
        text = _redact_phones(text, mask)
    return text


# ---- identifiers ------------------------------------------------------------------------------
# Bots often name an account by its customer's e-mail or phone. Masked like text, two customers'
# ids would become one ("acct-[email redacted]") and their conversations one account; so in an id
# each one becomes a pseudonym, the same for the same value wherever it is recorded (SDK, OTLP,
# the API), different for different values: "acct:bob@example.org" is stored as
# "acct:[email 5d41402abc]". A pseudonym is a hash, not a secret: whoever already knows the address
# can recompute it (the console's search does, so a person can still find the account by it).


def _pseudonym(kind: str, found: str) -> str:
    norm = (
        found.strip().lower()
        if kind == "email"
        else re.sub(r"\D", "", found)
        if kind in ("card", "phone")
        else found
    )
    return f"[{kind} {hashlib.sha256(f'{kind}:{norm}'.encode()).hexdigest()[:10]}]"


def pseudonymize_id(value: Any, settings: Any = None, max_len: int = 100) -> Any:
    """An identifier with the personal data in it replaced by pseudonyms (`_pseudonym`) when
    REDACT_PII is on; unchanged otherwise, and when it holds none (the common case, no copy)."""
    if settings is None:
        from observability.settings import get_settings

        settings = get_settings()
    if not settings.redact_pii or not isinstance(value, str) or not value:
        return value
    out = redact(value, mask=_pseudonym)
    extra = _extra(tuple(settings.redact_extra_patterns))
    if extra is not None:
        out = extra.sub(lambda m: _pseudonym("redacted", m.group(0)), out)
    if out == value or len(out) <= max_len:
        return out
    digest = hashlib.sha256(out.encode()).hexdigest()[:12]  # still one id per value, within the column
    return f"{out[: max_len - 13]}#{digest}"


EXTRA_MASK = "[redacted]"


@functools.lru_cache(maxsize=16)
def _extra(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None


def redact_if_enabled(text: Any, settings: Any = None) -> Any:
    """`redact(text)` plus the `REDACT_EXTRA_PATTERNS` when REDACT_PII is on (the default), else
    the text unchanged."""
    if settings is None:
        from observability.settings import get_settings

        settings = get_settings()
    if not settings.redact_pii or not isinstance(text, str) or not text:
        return text
    extra = _extra(tuple(settings.redact_extra_patterns))
    text = redact(text)
    return extra.sub(EXTRA_MASK, text) if extra is not None else text


def redact_value(value: Any, settings: Any = None) -> Any:
    """Every string inside a value (metadata: dicts and lists, nested) redacted; numbers unchanged."""
    if isinstance(value, str):
        return redact_if_enabled(value, settings)
    if isinstance(value, dict):
        return {k: redact_value(v, settings) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v, settings) for v in value]
    return value


# the free-text fields of each event kind (names, ids and enums are not free text)
TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    ev.KIND_LLM: ("error_type", "error_raw"),
    ev.KIND_OPERATION: ("error_type",),
    ev.KIND_INTERACTION: ("error_type",),
    ev.KIND_HANDOFF: ("reason",),
    ev.KIND_MESSAGE: ("text", "author"),
    ev.KIND_ACCOUNT: ("name",),
    ev.KIND_METRIC: ("metadata",),
    ev.KIND_ACTIVITY: ("title", "description", "metadata"),
}
_POSITIONS: dict[str, tuple[int, ...]] = {
    kind: tuple(1 + ev.FIELDS[kind].index(name) for name in names) for kind, names in TEXT_FIELDS.items()
}
# the identifiers of each event kind that may hold personal data: pseudonymized (`pseudonymize_id`).
# Conversation ids are not among them: a bot's gate and an operator's take-over meet on the id as
# the bot sends it, so it must be stored as sent (the README asks for ids without personal data).
ID_FIELDS: dict[str, tuple[str, ...]] = {
    ev.KIND_MESSAGE: ("account_id",),
    ev.KIND_ACCOUNT: ("id",),
    ev.KIND_METRIC: ("account_id",),
    ev.KIND_ACTIVITY: ("account_id",),
}
_ID_POSITIONS: dict[str, tuple[int, ...]] = {
    kind: tuple(1 + ev.FIELDS[kind].index(name) for name in names) for kind, names in ID_FIELDS.items()
}


def redact_event(event: list, settings: Any = None) -> list:
    """A wire event with every free-text field redacted and every identifier that may hold
    personal data pseudonymized (a new list; the input is not changed)."""
    positions = _POSITIONS.get(event[0], ()) if event else ()
    ids = _ID_POSITIONS.get(event[0], ()) if event else ()
    if not any(i < len(event) and event[i] for i in (*positions, *ids)):
        return event  # the common case (no error, no reason): no copy, no work
    out = list(event)
    for i in positions:
        if i < len(out) and out[i]:
            out[i] = redact_value(out[i], settings)
    for i in ids:
        if i < len(out) and out[i]:
            out[i] = pseudonymize_id(out[i], settings)
    return out


def redact_events(kind: str, events: list, settings: Any = None) -> list:
    """`redact_event` over wire-checked events of one kind: the list itself when none has free text
    (looked at column by column in C, so a batch of LLM calls without errors costs no work per event)."""
    positions = (*_POSITIONS.get(kind, ()), *_ID_POSITIONS.get(kind, ()))
    if not positions or not any(any(map(itemgetter(i), events)) for i in positions):
        return events
    return [redact_event(e, settings) for e in events]


def redact_batch(batch: list, settings: Any = None) -> list:
    """`redact_event` over a batch (when REDACT_PII is off, the batch itself)."""
    if settings is None:
        from observability.settings import get_settings

        settings = get_settings()
    if not settings.redact_pii:
        return batch
    return [redact_event(e, settings) if isinstance(e, list) else e for e in batch]


# ---- secrets in log lines ---------------------------------------------------------------------

SECRET_MASK = "***"
_KEY_VALUE = re.compile(
    r"(?i)(?P<key>\b[\w-]*(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|authorization|"
    r"routing[_-]?key|genie[_-]?key)\b[\"']?)(?P<sep>\s*[=:]\s*)(?P<q>[\"']?)(?P<value>[^\s\"',;&}]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic|geniekey|token)\s+[A-Za-z0-9._~+/=-]{8,}")
# known token shapes: Anthropic/OpenAI keys, Slack tokens, GitHub/GitLab tokens, AWS access key ids,
# Google API keys, Standard Webhooks secrets, JWTs
_API_KEYS = re.compile(
    r"\b(sk-ant-|sk-|xox[abposr]-|xapp-|ghp_|gho_|ghs_|ghu_|github_pat_|glpat-|AKIA|ASIA|AIza|whsec_)"
    r"[A-Za-z0-9_+/=-]{8,}"
)
_URL_PATH = re.compile(r"(?i)(\burl:\s*)/[^\s'\"()]*")  # urllib3: "Max retries exceeded with url: /path?q"
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
# any URL: only its scheme and host (and port) are kept; user info, path, query and fragment can
# carry credentials (a Slack webhook path, `?token=`) and are masked
_URL = re.compile(
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]{1,20}://)(?P<userinfo>[^\s/?#@'\"<>]*@)?"
    r"(?P<host>\[[0-9a-fA-F:.]+\]|[^\s/?#:'\"<>@]+)(?P<port>:\d{1,5})?"
    r"(?P<rest>[/?#][^\s'\"<>)\]]*)?"
)


def _reduce_url(m: re.Match[str]) -> str:
    userinfo = f"{SECRET_MASK}@" if m.group("userinfo") else ""
    rest = m.group("rest") or ""
    tail = f"/{SECRET_MASK}" if rest.strip("/") else rest
    return f"{m.group('scheme')}{userinfo}{m.group('host')}{m.group('port') or ''}{tail}"


_registered: set[str] = set()
_reg_lock = threading.Lock()
_installed = False


def register_secret(value: Any) -> None:
    """Mask this exact value wherever it appears in a log line (values under 6 chars ignored)."""
    if isinstance(value, str) and len(value) >= 6:
        with _reg_lock:
            _registered.add(value)


def register_settings_secrets(settings: Any) -> None:
    """Register every configured secret of the settings (passwords, keys, tokens, URL credentials)."""
    from dataclasses import fields

    for f in fields(settings):
        value = getattr(settings, f.name)
        name = f.name.lower()
        if any(w in name for w in ("password", "secret", "api_key", "token", "webhook_url")):
            register_secret(value)
        elif isinstance(value, str) and "://" in value:
            m = re.search(r"://[^\s:/@]*:([^\s@/]+)@", value)
            if m:
                register_secret(m.group(1))
        elif isinstance(value, dict) and name.endswith("headers"):
            for v in value.values():
                register_secret(v)


def scrub(message: str) -> str:
    """A log line, an error text or a response body with secrets masked: registered secrets,
    `key=value` credentials, bearer tokens and known token shapes; every URL is reduced to its
    scheme and host (`https://hooks.slack.com/***`)."""
    if not message:
        return message
    with _reg_lock:
        registered = sorted(_registered, key=len, reverse=True)
    for value in registered:
        if value in message:
            message = message.replace(value, SECRET_MASK)
    message = _URL.sub(_reduce_url, message)
    message = _URL_PATH.sub(lambda m: f"{m.group(1)}/{SECRET_MASK}", message)
    message = _BEARER.sub(lambda m: f"{m.group(1)} {SECRET_MASK}", message)
    message = _KEY_VALUE.sub(
        lambda m: f"{m.group('key')}{m.group('sep')}{m.group('q')}{SECRET_MASK}", message
    )
    message = _API_KEYS.sub(lambda m: f"{m.group(1)}{SECRET_MASK}", message)
    return _JWT.sub(SECRET_MASK, message)


def scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a broken format string is logging's problem, not ours
        return record
    cleaned = scrub(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and not record.exc_text:
        record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
    return record


def install_secret_filter(settings: Any = None) -> None:
    """Scrub every log record this process creates (idempotent); registers the settings' secrets."""
    global _installed
    if settings is None:
        from observability.settings import get_settings

        settings = get_settings()
    register_settings_secrets(settings)
    with _reg_lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return scrub_record(previous(*args, **kwargs))

    logging.setLogRecordFactory(factory)
