"""Conversation analytics (source document 000, Conversation Analytics): pure functions of messages.

A conversation is a list of messages, each a dict `{"role": "user" | "bot" | "operator", "text":
str}` (`content` is accepted for `text`). Nothing here touches the store; the worker step
`observability.analytics.conversation_scoring.score_pending` (a worker step) stores the scores on each conversation.

- Sentiment: a real-estate lexicon (`data/sentiment_lexicon.json`) with negation handling ("not
  happy" counts as negative, "no problem" as positive). A message scores (pos - neg) / (pos + neg)
  in [-1, 1], 0 when it has no sentiment words. The trend compares the mean of the first half of
  the messages with the second half: `improving` above +0.1, `declining` below -0.1, else `stable`.
- Topic drift: 1 - cosine similarity of the TF-IDF vectors (scikit-learn, English stop words
  removed) of the first and second halves; Jaccard distance of their words if TF-IDF cannot run.
- Engagement: 40% average user-message length (capped at 100 characters), 30% share of user
  messages asking a question, 30% user participation (user messages / all, capped at 0.6).
- Resolution: any of the `RESOLUTION_PATTERNS` in the last 3 messages, unless negated.
- Quality: 25% sentiment mapped to 0..1, 25% engagement, 25% topic coherence (1 - drift), 20% if
  resolved, 5% baseline.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from observability.settings import DATA_DIR

log = logging.getLogger(__name__)

LEXICON_FILE = DATA_DIR / "sentiment_lexicon.json"
TREND_THRESHOLD = 0.1
RESOLUTION_WINDOW = 3

RESOLUTION_PATTERNS: tuple[str, ...] = (
    r"\bthank(?:s| you| u)\b|\bthx\b",
    r"\b(?:good)?bye\b",
    r"\bappreciate(?:d)?\b",
    r"\bhelpful\b",
    r"\bperfect\b",
    r"\b(?:scheduled|booked|confirmed)\b",
    r"\bgreat help\b",
    r"\bthat(?:'s| is) (?:all|it|everything)\b",
    r"\ball set\b",
    r"\bsounds (?:good|great)\b",
    r"\blooking forward\b",
    r"\bsee you\b",
    r"\bhave a (?:great|good|nice|wonderful) (?:day|one|evening|weekend|night)\b",
    r"\b(?:issue|problem|question|concern)s? (?:is |are |was |were |has been |have been )?(?:resolved|solved|fixed|answered)\b",
)

_TOKEN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_CLAUSE = re.compile(r"[.!?;,:\n]+")
_APOSTROPHES = re.compile(r"['\u2019]")


# ---------------------------------------------------------------------------------------------
# Lexicon and tokenising
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lexicon:
    positive: frozenset[str]
    negative: frozenset[str]
    negators: frozenset[str]
    negation_window: int = 3


def load_lexicon(path: Path | None = None) -> Lexicon:
    """The shipped lexicon (or another file with the same keys)."""
    return _load_lexicon(str(path or LEXICON_FILE))


@lru_cache(maxsize=4)
def _load_lexicon(path: str) -> Lexicon:
    raw = json.loads(Path(path).read_text())

    def words(key: str) -> frozenset[str]:
        return frozenset(_APOSTROPHES.sub("", w.lower()) for w in raw[key])

    return Lexicon(
        words("positive"), words("negative"), words("negators"), int(raw.get("negation_window", 3))
    )


def _clauses(text: str) -> list[list[str]]:
    text = _APOSTROPHES.sub("", text.lower())
    return [_TOKEN.findall(part) for part in _CLAUSE.split(text)]


def message_text(message: Any) -> str:
    """The text of a message dict (`text`, else `content`); a TypeError for anything else."""
    if not isinstance(message, Mapping):
        raise TypeError(f"a message must be a dict with 'role' and 'text', got {type(message).__name__}")
    value = message.get("text")
    if value is None:
        value = message.get("content")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"message text must be a string, got {type(value).__name__}")
    return value


def message_role(message: Any) -> str:
    if not isinstance(message, Mapping):
        raise TypeError(f"a message must be a dict with 'role' and 'text', got {type(message).__name__}")
    role = message.get("role")
    return str(role).lower() if role is not None else ""


def _is_user(message: Any) -> bool:
    return message_role(message) in ("user", "human", "customer")


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass
class SentimentTrajectory:
    scores: list[float]  # one per message, in order
    average: float
    trend: str  # improving | declining | stable
    first_half: float = 0.0
    second_half: float = 0.0

    @property
    def overall(self) -> float:  # the source document's name
        return self.average


@dataclass
class HandoffEffectiveness:
    total_handoffs: int
    successful_resolutions: int
    avg_messages_after_handoff: float
    effectiveness_rate: float
    avg_sentiment_before: float = 0.0
    avg_sentiment_after: float = 0.0
    per_conversation: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ConversationScores:
    message_count: int
    sentiment: float
    sentiment_trend: str
    topic_drift: float
    engagement: float
    resolved: bool
    quality_score: float
    sentiment_scores: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# The analytics
# ---------------------------------------------------------------------------------------------


class ConversationAnalytics:
    """Stateless scoring of conversations; safe to share between threads."""

    def __init__(self, lexicon: Lexicon | None = None) -> None:
        self.lexicon = lexicon or load_lexicon()
        self._resolution = [re.compile(p, re.IGNORECASE) for p in RESOLUTION_PATTERNS]

    # ---- sentiment ----------------------------------------------------------------------------
    def _negated(self, tokens: Sequence[str], i: int) -> bool:
        lo = max(0, i - self.lexicon.negation_window)
        return any(t in self.lexicon.negators for t in tokens[lo:i])

    def sentiment_counts(self, text: str) -> tuple[int, int]:
        """(positive, negative) word counts of a text, negation applied."""
        pos = neg = 0
        lex = self.lexicon
        for tokens in _clauses(text):
            for i, tok in enumerate(tokens):
                polarity = 1 if tok in lex.positive else -1 if tok in lex.negative else 0
                if not polarity:
                    continue
                if self._negated(tokens, i):
                    polarity = -polarity
                if polarity > 0:
                    pos += 1
                else:
                    neg += 1
        return pos, neg

    def score_sentiment(self, text: str) -> float:
        """(pos - neg) / (pos + neg) in [-1, 1]; 0.0 for a text without sentiment words."""
        pos, neg = self.sentiment_counts(text)
        return (pos - neg) / (pos + neg) if pos + neg else 0.0

    def sentiment_trajectory(
        self, messages: Sequence[Mapping[str, Any]], *, roles: Sequence[str] | None = None
    ) -> SentimentTrajectory:
        """Per-message scores, their average and the trend (first half vs second half, +/-0.1).

        `roles` limits the messages scored (e.g. `("user",)` for the customer's sentiment only).
        """
        msgs = [m for m in messages if roles is None or message_role(m) in roles]
        scores = [self.score_sentiment(message_text(m)) for m in msgs]
        if not scores:
            return SentimentTrajectory([], 0.0, "stable")
        average = sum(scores) / len(scores)
        if len(scores) < 2:
            return SentimentTrajectory(scores, average, "stable", average, average)
        mid = len(scores) // 2
        first = sum(scores[:mid]) / mid
        second = sum(scores[mid:]) / (len(scores) - mid)
        diff = second - first
        trend = (
            "improving" if diff > TREND_THRESHOLD else "declining" if diff < -TREND_THRESHOLD else "stable"
        )
        return SentimentTrajectory(scores, average, trend, first, second)

    # ---- topic drift --------------------------------------------------------------------------
    def detect_topic_drift(self, messages: Sequence[Mapping[str, Any]]) -> float:
        """0 (same topic) .. 1 (entirely different) between the first and second half."""
        texts = [message_text(m) for m in messages]
        if len(texts) < 2:
            return 0.0
        mid = len(texts) // 2
        first, second = " ".join(texts[:mid]), " ".join(texts[mid:])
        if not _TOKEN.search(first.lower()) or not _TOKEN.search(second.lower()):
            return 0.0
        try:
            return self._tfidf_drift(first, second)
        except Exception as exc:  # noqa: BLE001 - any TF-IDF failure falls back to word overlap
            log.debug("TF-IDF drift failed (%s); using Jaccard distance", exc)
            return self.jaccard_drift(first, second)

    @staticmethod
    def _tfidf_drift(first: str, second: str) -> float:
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(stop_words="english", token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
        matrix = vectorizer.fit_transform([first, second])  # rows are L2-normalised
        a, b = matrix[0], matrix[1]
        if a.nnz == 0 or b.nnz == 0:
            return 1.0
        cosine = float(a.multiply(b).sum())
        return min(max(1.0 - cosine, 0.0), 1.0)

    @staticmethod
    def jaccard_drift(first: str, second: str) -> float:
        """1 - |A & B| / |A | B| over the two texts' words (the fallback when TF-IDF cannot run)."""
        a = set(_TOKEN.findall(_APOSTROPHES.sub("", first.lower())))
        b = set(_TOKEN.findall(_APOSTROPHES.sub("", second.lower())))
        if not a or not b:
            return 0.0
        return 1.0 - len(a & b) / len(a | b)

    # ---- engagement ---------------------------------------------------------------------------
    def engagement_score(self, messages: Sequence[Mapping[str, Any]]) -> float:
        """40% average user-message length (capped at 100 characters), 30% share of user messages
        with a question mark, 30% participation (user messages / all messages, capped at 0.6)."""
        if not messages:
            return 0.0
        user = [message_text(m) for m in messages if _is_user(m)]
        if not user:
            return 0.0
        length = min(sum(len(t) for t in user) / len(user) / 100.0, 1.0)
        questions = sum(1 for t in user if "?" in t) / len(user)
        participation = min(len(user) / len(messages), 0.6) / 0.6
        return 0.4 * length + 0.3 * questions + 0.3 * participation

    # ---- resolution ---------------------------------------------------------------------------
    def resolution_matches(self, messages: Sequence[Mapping[str, Any]]) -> list[str]:
        """The resolution phrases found in the last 3 messages (negated ones left out)."""
        found: list[str] = []
        for m in list(messages)[-RESOLUTION_WINDOW:]:
            text = message_text(m)
            for pattern in self._resolution:
                for match in pattern.finditer(text):
                    if not self._phrase_negated(text, match.start()):
                        found.append(match.group(0).lower())
        return found

    def _phrase_negated(self, text: str, start: int) -> bool:
        before = _clauses(text[:start])
        tokens = before[-1] if before else []
        return any(t in self.lexicon.negators for t in tokens[-self.lexicon.negation_window :])

    def detect_resolution(self, messages: Sequence[Mapping[str, Any]]) -> bool:
        """True when the last 3 messages show the conversation was resolved (thanks, goodbye,
        scheduled, that's all, ...), unless the phrase is negated ("not helpful")."""
        return bool(self.resolution_matches(messages))

    # ---- handoffs -----------------------------------------------------------------------------
    def handoff_effectiveness(
        self, conversations: Sequence[Sequence[Mapping[str, Any]]], handoff_indices: Sequence[int]
    ) -> HandoffEffectiveness:
        """How conversations went after a handoff at `handoff_indices[i]` (the index of the handoff
        message in conversation i; the messages after it are the post-handoff part).

        Counts the handoffs whose post-handoff part is resolved, the average number of messages
        after the handoff, the rate of resolved handoffs, and the mean sentiment before and after.
        """
        if len(conversations) != len(handoff_indices):
            raise ValueError(
                f"one handoff index per conversation: {len(conversations)} conversations, "
                f"{len(handoff_indices)} indices"
            )
        if not conversations:
            return HandoffEffectiveness(0, 0, 0.0, 0.0)
        resolved = 0
        after_counts: list[int] = []
        before_s: list[float] = []
        after_s: list[float] = []
        per: list[dict[str, Any]] = []
        for i, (conv, idx) in enumerate(zip(conversations, handoff_indices, strict=True)):
            if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < max(len(conv), 1):
                raise ValueError(f"handoff index {idx!r} is outside conversation {i} ({len(conv)} messages)")
            before, after = list(conv[: idx + 1]), list(conv[idx + 1 :])
            ok = self.detect_resolution(after) if after else False
            resolved += ok
            after_counts.append(len(after))
            sb = self.sentiment_trajectory(before).average if before else 0.0
            sa_ = self.sentiment_trajectory(after).average if after else 0.0
            before_s.append(sb)
            after_s.append(sa_)
            per.append({"index": i, "handoff_at": idx, "messages_after": len(after), "resolved": ok,
                        "sentiment_before": sb, "sentiment_after": sa_})  # fmt: skip
        total = len(conversations)
        return HandoffEffectiveness(
            total_handoffs=total,
            successful_resolutions=resolved,
            avg_messages_after_handoff=sum(after_counts) / total,
            effectiveness_rate=resolved / total,
            avg_sentiment_before=sum(before_s) / total,
            avg_sentiment_after=sum(after_s) / total,
            per_conversation=per,
        )

    # ---- quality ------------------------------------------------------------------------------
    def analyze(self, messages: Sequence[Mapping[str, Any]]) -> ConversationScores:
        """Every score of a conversation in one pass (what the worker stores)."""
        traj = self.sentiment_trajectory(messages)
        drift = self.detect_topic_drift(messages)
        engagement = self.engagement_score(messages)
        resolved = self.detect_resolution(messages)
        return ConversationScores(
            message_count=len(messages),
            sentiment=traj.average,
            sentiment_trend=traj.trend,
            topic_drift=drift,
            engagement=engagement,
            resolved=resolved,
            quality_score=_quality(traj.average, engagement, drift, resolved) if messages else 0.0,
            sentiment_scores=traj.scores,
        )

    def quality_score(self, messages: Sequence[Mapping[str, Any]]) -> float:
        """0..1: 25% sentiment ((avg + 1) / 2), 25% engagement, 25% coherence (1 - drift), 20% when
        resolved, 5% baseline. 0.0 for an empty conversation."""
        return self.analyze(messages).quality_score


def _quality(sentiment: float, engagement: float, drift: float, resolved: bool) -> float:
    raw = (
        0.25 * (sentiment + 1) / 2
        + 0.25 * engagement
        + 0.25 * (1 - drift)
        + (0.20 if resolved else 0.0)
        + 0.05
    )
    return min(max(raw, 0.0), 1.0)
