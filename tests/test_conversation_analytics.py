"""ConversationAnalytics on scripted conversations: improving, declining, drifting, resolved and
handed off; the lexicon; negation; the weights of engagement and quality."""

from __future__ import annotations

import json

import pytest

from observability.analytics.conversation_analytics import (
    LEXICON_FILE,
    RESOLUTION_PATTERNS,
    ConversationAnalytics,
    load_lexicon,
)


def u(text: str) -> dict:
    return {"role": "user", "text": text}


def b(text: str) -> dict:
    return {"role": "bot", "text": text}


IMPROVING = [
    u("The last three listings you sent were overpriced and the photos looked dark and cramped."),
    b("Sorry about that. I can search again with a lower budget."),
    u("I am frustrated, the inspection found mold and a leaky roof."),
    b("Understood. Here are homes with a recent inspection."),
    u("This one is bright and spacious, the kitchen is renovated."),
    b("It also has a quiet backyard."),
    u("Wonderful, I love it, the price is fair too!"),
]
DECLINING = [
    u("Hi! I'm excited to start looking, we are pre-approved and happy with the budget."),
    b("Great, let me show you a few homes."),
    u("The first one looks lovely and the neighborhood is safe."),
    b("The seller rejected the offer."),
    u("That is disappointing. The second house had termites and the agent was rude."),
    b("I can look for others."),
    u("Honestly this is stressful, everything is overpriced and the process is confusing."),
]
DRIFTING = [
    u("What is the mortgage rate for a thirty year fixed loan with twenty percent down payment?"),
    b("Rates for a thirty year fixed loan start around six percent with twenty percent down."),
    u("Does the mortgage lender charge points on the fixed loan rate?"),
    b("Some lenders charge points to lower the loan rate."),
    u("Separately, can you recommend a school district with good soccer teams for my kids?"),
    b("Several school districts nearby have strong soccer programs for kids."),
    u("Which soccer league would my kids join in that school district?"),
    b("The youth soccer league plays at the district fields."),
]
RESOLVED = [
    u("Can I tour the condo on Elm Street this Saturday?"),
    b("Yes, I have 10am or 2pm open."),
    u("10am please."),
    b("Your showing is scheduled for Saturday at 10am."),
    u("Perfect, thank you so much!"),
]
UNRESOLVED = [
    u("Can I tour the condo on Elm Street this Saturday?"),
    b("Thank you for asking! Let me check with the listing agent."),
    u("Any update?"),
    b("Still waiting on the agent."),
    u("This is taking forever, that was not helpful."),
]


@pytest.fixture(scope="module")
def ca() -> ConversationAnalytics:
    return ConversationAnalytics()


def test_lexicon_has_enough_real_estate_terms() -> None:
    raw = json.loads(LEXICON_FILE.read_text())
    assert len(set(raw["positive"])) >= 70 and len(set(raw["negative"])) >= 60
    lex = load_lexicon()
    assert not lex.positive & lex.negative
    for word in ("spacious", "renovated", "turnkey", "walkable", "pre-approved"):
        assert word in lex.positive
    for word in ("overpriced", "mold", "termites", "foreclosure", "lowball"):
        assert word in lex.negative
    assert len(RESOLUTION_PATTERNS) >= 10


def test_message_sentiment_with_negation(ca: ConversationAnalytics) -> None:
    assert ca.score_sentiment("The kitchen is spacious and bright") == 1.0
    assert ca.score_sentiment("The basement has mold and the roof is leaking") == -1.0
    assert ca.score_sentiment("The house is not good") == -1.0
    assert ca.score_sentiment("The house isn't overpriced, it's not bad at all") == 1.0
    assert ca.score_sentiment("No problem, I can't complain") == 1.0
    assert ca.score_sentiment("It's spacious. Not cramped.") == 1.0
    assert ca.score_sentiment("Spacious but overpriced") == 0.0
    assert ca.score_sentiment(
        "Lovely views, great schools, but the HOA fees are ridiculous"
    ) == pytest.approx(1 / 3)
    assert ca.score_sentiment("When can we schedule the appraisal?") == 0.0
    # negation does not cross a clause boundary
    assert ca.score_sentiment("Not today, the yard is gorgeous") == 1.0


def test_improving_and_declining_trajectories(ca: ConversationAnalytics) -> None:
    up = ca.sentiment_trajectory(IMPROVING)
    assert len(up.scores) == len(IMPROVING) and up.trend == "improving"
    assert up.scores[0] == -1.0 and up.scores[-1] == 1.0
    assert up.average == pytest.approx(sum(up.scores) / len(up.scores)) and up.overall == up.average
    assert up.second_half - up.first_half > 0.1
    down = ca.sentiment_trajectory(DECLINING)
    assert down.trend == "declining" and down.scores[0] == 1.0 and down.scores[-1] == -1.0
    flat = ca.sentiment_trajectory([u("spacious"), b("ok"), u("bright"), b("sure")])
    assert flat.trend == "stable"
    assert ca.sentiment_trajectory([]).trend == "stable" and ca.sentiment_trajectory([]).average == 0.0
    assert ca.sentiment_trajectory([u("great")]).trend == "stable"
    users_only = ca.sentiment_trajectory(DECLINING, roles=("user",))
    assert len(users_only.scores) == 4 and users_only.trend == "declining"


def test_trend_threshold_is_point_one(ca: ConversationAnalytics) -> None:
    # first half mean 0.0, second half mean 0.1 -> stable; 0.2 -> improving
    def conv(second: list[str]) -> list[dict]:
        return [u("ok"), u("ok"), *[u(t) for t in second]]

    # 10 messages: halves of 5; second half with one message scoring 0.5 -> mean 0.1 (not > 0.1)
    ten = [u("ok")] * 5 + [u("spacious spacious spacious overpriced")] + [u("ok")] * 4
    assert ca.sentiment_trajectory(ten).trend == "stable"
    ten_up = [u("ok")] * 5 + [u("spacious")] + [u("ok")] * 4
    assert ca.sentiment_trajectory(ten_up).trend == "improving"
    assert ca.sentiment_trajectory(conv(["overpriced"])).trend == "declining"


def test_topic_drift(ca: ConversationAnalytics) -> None:
    drifting = ca.detect_topic_drift(DRIFTING)
    same = ca.detect_topic_drift(DRIFTING[:4] + DRIFTING[:4])
    assert 0.0 <= same < 0.05 < 0.9 < drifting <= 1.0
    assert ca.detect_topic_drift(RESOLVED) < drifting
    assert ca.detect_topic_drift([u("hello")]) == 0.0
    assert ca.detect_topic_drift([]) == 0.0
    assert ca.detect_topic_drift([u("..."), u("!!")]) == 0.0


def test_jaccard_fallback_when_tfidf_cannot_run(
    ca: ConversationAnalytics, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(first: str, second: str) -> float:
        raise ValueError("empty vocabulary")

    monkeypatch.setattr(ConversationAnalytics, "_tfidf_drift", staticmethod(broken))
    drift = ca.detect_topic_drift([u("the house has a pool"), u("the house has a garage")])
    assert drift == pytest.approx(1 - 4 / 6)  # {the, house, has, a} shared of 6 words
    assert ca.detect_topic_drift([u("to be"), u("or not")]) == 1.0
    # stop words only: TF-IDF has no vocabulary, Jaccard still answers
    monkeypatch.undo()
    assert ca.detect_topic_drift([u("it is the"), u("it is the")]) == 0.0


def test_engagement_weights(ca: ConversationAnalytics) -> None:
    # 2 user messages of 50 chars (length 0.5), one with '?' (0.5), 2 of 4 messages from the user
    q = "Is the house near the park and the train station??"
    s = "x" * 50
    conv = [u(q[:50]), b("sure"), u(s), b("ok")]
    assert len(conv[0]["text"]) == 50
    expected = 0.4 * 0.5 + 0.3 * 0.5 + 0.3 * min(0.5, 0.6) / 0.6
    assert ca.engagement_score(conv) == pytest.approx(expected)
    long_only_user = [u("y" * 300 + "?")] * 3
    assert ca.engagement_score(long_only_user) == pytest.approx(1.0)  # length and participation capped
    assert ca.engagement_score([b("hello")]) == 0.0 and ca.engagement_score([]) == 0.0


def test_resolution_over_the_last_three_messages(ca: ConversationAnalytics) -> None:
    assert ca.detect_resolution(RESOLVED)
    assert {"scheduled", "perfect", "thank you"} <= set(ca.resolution_matches(RESOLVED))
    assert not ca.detect_resolution(UNRESOLVED)  # the bot's early "thank you" is too far back; "not helpful"
    assert ca.detect_resolution([u("that's all I needed, have a great day")])
    assert ca.detect_resolution([u("my question is answered")])
    assert ca.detect_resolution([u("All set, see you Tuesday")])
    assert not ca.detect_resolution([u("no thanks")])
    assert not ca.detect_resolution([])


def test_handoff_effectiveness(ca: ConversationAnalytics) -> None:
    handed = [
        [*DECLINING[:3], b("Let me hand you to our buyer specialist."), *RESOLVED[1:]],
        [u("I want to sell"), b("Connecting you to the seller bot."), u("hello?"), b("One moment.")],
        [u("Need help"), b("Transferring you now.")],
    ]
    result = ca.handoff_effectiveness(handed, [3, 1, 1])
    assert result.total_handoffs == 3 and result.successful_resolutions == 1
    assert result.avg_messages_after_handoff == pytest.approx((4 + 2 + 0) / 3)
    assert result.effectiveness_rate == pytest.approx(1 / 3)
    assert result.per_conversation[0]["resolved"] and result.per_conversation[2]["messages_after"] == 0
    assert result.avg_sentiment_after > result.per_conversation[1]["sentiment_after"] - 1
    assert ca.handoff_effectiveness([], []).total_handoffs == 0
    with pytest.raises(ValueError):
        ca.handoff_effectiveness(handed, [1, 2])
    with pytest.raises(ValueError):
        ca.handoff_effectiveness(handed[:1], [99])


def test_quality_score_weights(ca: ConversationAnalytics) -> None:
    scores = ca.analyze(RESOLVED)
    expected = (0.25 * (scores.sentiment + 1) / 2 + 0.25 * scores.engagement + 0.25 * (1 - scores.topic_drift)
                + 0.20 + 0.05)  # fmt: skip
    assert scores.resolved and ca.quality_score(RESOLVED) == pytest.approx(expected)
    unresolved = ca.analyze(UNRESOLVED)
    assert not unresolved.resolved
    assert unresolved.quality_score == pytest.approx(
        0.25 * (unresolved.sentiment + 1) / 2
        + 0.25 * unresolved.engagement
        + 0.25 * (1 - unresolved.topic_drift)
        + 0.05
    )
    assert ca.quality_score(RESOLVED) > ca.quality_score(UNRESOLVED)
    assert ca.quality_score(IMPROVING) > ca.quality_score(DECLINING)
    assert ca.quality_score([]) == 0.0
    assert 0.0 <= ca.quality_score(DRIFTING) <= 1.0


def test_content_key_is_accepted_and_bad_messages_are_rejected(ca: ConversationAnalytics) -> None:
    as_content = [{"role": m["role"], "content": m["text"]} for m in RESOLVED]
    assert ca.analyze(as_content) == ca.analyze(RESOLVED)
    with pytest.raises(TypeError):
        ca.quality_score(["just a string"])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        ca.quality_score([{"role": "user", "text": 42}])
