"""PII redaction applied to message text before it is stored.

E-mail addresses, phone numbers and payment card numbers (Luhn-checked, so order numbers are
left alone) are replaced by placeholders. Runs at ingest, off the bot's thread.
"""

from __future__ import annotations

import re

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
PHONE = re.compile(r"(?<![\w])(?:\+?\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]?\d{3,4}(?![\w])")

EMAIL_MASK = "[email redacted]"
PHONE_MASK = "[phone redacted]"
CARD_MASK = "[card redacted]"


def _luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return CARD_MASK if 13 <= len(digits) <= 19 and _luhn_ok(digits) else match.group(0)


def redact(text: str) -> str:
    """Text with e-mail addresses, card numbers and phone numbers masked."""
    if not text:
        return text
    text = EMAIL.sub(EMAIL_MASK, text)
    text = CARD.sub(_card, text)
    return PHONE.sub(PHONE_MASK, text)
