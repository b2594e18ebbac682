"""Deterministic demo data for page tests, the browser test and the small-scale page benchmark.

Written through the real ingest path (`ingest.write_batch`) and rolled up (`rollups.run`), so the
pages read exactly what a worker would have stored. Three bots (lead, buyer, seller), several
Claude models, one Gemini model and one model missing from the price table; operations of the SLA
table, interactions, handoffs (some failed, some blocked), conversations with messages, VIP
accounts, AI confidence / safety / system load metrics, activity events, and one expensive hour for
one agent so the cost anomaly detector has something to find.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta

from observability.store import Store, ingest, rollups
from observability.timeutil import to_epoch, utcnow

BOTS = ("lead_bot", "buyer_bot", "seller_bot")
AGENTS = {"lead_bot": "qualifier", "buyer_bot": "matcher", "seller_bot": "valuator"}
MODELS = (
    ("anthropic", "claude-sonnet-4-5", 0.55),
    ("anthropic", "claude-haiku-4-5", 0.30),
    ("anthropic", "claude-opus-4-1", 0.07),
    ("google", "gemini-2.5-pro", 0.07),
    ("acme", "mystery-model-x", 0.01),
)
OPERATIONS = ("full_qualification", "process", "handoff")
HAPPY = ["Thanks, that was really helpful!", "Perfect, the viewing is scheduled.", "Great, I appreciate it."]
UNHAPPY = [
    "This is frustrating and slow.",
    "I am unhappy with the offer, terrible.",
    "Why is this so confusing?",
]
NEUTRAL = ["I am looking for a three bedroom house near the park?", "What is my home worth?",
           "Can we talk about the mortgage rate?", "Do you have listings downtown?"]  # fmt: skip


def _id() -> str:
    return uuid.uuid4().hex


def build_events(
    hours: float = 3.0, now: datetime | None = None, seed: int = 7, rate_per_min: int = 6
) -> list[list]:
    """Wire events (see observability.events.FIELDS) for `hours` of history ending at `now`."""
    rnd = random.Random(seed)
    now = now or utcnow()
    start = now - timedelta(hours=hours)
    ev: list[list] = []
    accounts = [f"acct-{i}" for i in range(8)]
    for i, a in enumerate(accounts):
        ev.append(["account", a, to_epoch(start), f"Account {i}", i < 2])
    minutes = int(hours * 60)
    spike_minute = minutes - 50  # one expensive hour for "valuator" about an hour ago
    conv_n = 0
    for m in range(minutes):
        t0 = start + timedelta(minutes=m)
        for _ in range(rate_per_min):
            bot = rnd.choice(BOTS)
            ts = to_epoch(t0 + timedelta(seconds=rnd.uniform(0, 59)))
            r = rnd.random()
            acc = 0.0
            prov, model = MODELS[0][0], MODELS[0][1]
            for p, mo, w in MODELS:
                acc += w
                if r <= acc:
                    prov, model = p, mo
                    break
            it, ot = rnd.randint(300, 3000), rnd.randint(50, 600)
            hit = rnd.random() < 0.35
            cr = int(it * 0.6) if hit else 0
            slow = bot == "buyer_bot" and m > minutes - 30
            lat = rnd.lognormvariate(6.6 if not slow else 7.8, 0.5)
            ok = rnd.random() > (0.03 if not slow else 0.2)
            cost = None
            if bot == "seller_bot" and spike_minute <= m < spike_minute + 5:
                cost = 2.5  # the anomaly
            conv = f"conv-{rnd.randint(0, 40)}"
            ev.append(["llm", _id(), ts, bot, AGENTS[bot], "respond", model, prov, it, ot, cr, 0, lat, hit,
                       cost, conv, ok, None if ok else "RateLimitError"])  # fmt: skip
            op = rnd.choice(OPERATIONS)
            ev.append(["op", _id(), ts, bot, op, rnd.lognormvariate(5.5 if not slow else 7.7, 0.6), ok, hit,
                       None if ok else "Timeout"])  # fmt: skip
            ev.append(
                [
                    "interaction",
                    _id(),
                    ts,
                    bot,
                    rnd.lognormvariate(6.0, 0.5),
                    ok,
                    hit,
                    None if ok else "Timeout",
                ]
            )
            ev.append(["metric", _id(), ts, "ai_confidence", "gauge", min(1.0, max(0.0, rnd.gauss(0.82, 0.08))),
                       None, conv, None, None])  # fmt: skip
            ev.append(["metric", _id(), ts, "safety_score", "gauge", min(1.0, max(0.0, rnd.gauss(0.95, 0.03))),
                       None, conv, None, None])  # fmt: skip
        ev.append(
            ["op", _id(), to_epoch(t0), "handoff", "execute", rnd.lognormvariate(4.5, 0.4), True, False, None]
        )
        ev.append(
            [
                "metric",
                _id(),
                to_epoch(t0),
                "system_load",
                "gauge",
                rnd.uniform(20, 80),
                None,
                None,
                None,
                None,
            ]
        )
        if m % 3 == 0:
            src, dst = rnd.sample(BOTS, 2)
            blocked = rnd.random() < 0.1
            ok = not blocked and rnd.random() > 0.05
            ev.append(["handoff", _id(), to_epoch(t0), src, dst, ok, rnd.uniform(20, 300), blocked,
                       "circular handoff" if blocked else None])  # fmt: skip
        if m % 4 == 0:  # a conversation of a few messages, sometimes handed to another bot
            conv_n += 1
            cid = f"conv-{conv_n % 41}"
            acct = rnd.choice(accounts)
            b1 = rnd.choice(BOTS)
            b2 = rnd.choice([b for b in BOTS if b != b1]) if rnd.random() < 0.3 else b1
            mood = rnd.choice([HAPPY, UNHAPPY, NEUTRAL])
            for k in range(6):
                ts = to_epoch(t0 + timedelta(seconds=k * 5))
                role = "user" if k % 2 == 0 else "bot"
                text = (
                    rnd.choice(NEUTRAL if k < 3 else mood) if role == "user" else "Happy to help with that."
                )
                ev.append(["message", _id(), ts, cid, role, text, b1 if k < 3 else b2, acct, None])
        if m % 10 == 0:
            sev = rnd.choice(["low", "low", "medium", "high", "critical"])
            acct = rnd.choice(accounts)
            ev.append(["activity", _id(), to_epoch(t0), rnd.choice(["conversation_started", "handoff", "sla_breach"]),
                       f"Event at minute {m}", "generated for tests", sev, "system", acct, None, None, None])  # fmt: skip
    return ev


def load_demo(store: Store, hours: float = 3.0, now: datetime | None = None, seed: int = 7,
              rate_per_min: int = 6) -> int:  # fmt: skip
    """Write demo events into `store` and roll them up; returns the number of events."""
    events = build_events(hours, now, seed, rate_per_min)
    for i in range(0, len(events), 5000):
        ingest.write_batch(store, events[i : i + 5000])
    while rollups.run(store):
        pass
    return len(events)
