"""Demo traffic: a lead, a buyer and a seller bot talking to customers about real estate.

    python -m observability.simulate                      # stream live through the SDK until Ctrl-C
    python -m observability.simulate --backfill-hours 24  # write 24 h of history fast, then exit
    python -m observability.simulate --backfill-hours 24 --live   # ... then go on streaming

Every conversation is planned up front as a list of timed *actions* (a user message; a bot reply
with its LLM calls, operations, interaction, handoff, message, AI confidence and safety score;
activity events). A backfill writes the actions' wire events straight through
`ingest.write_batch` in batches, then runs the rollups; live mode replays actions at their wall
time through `ObservabilityClient`, and a bot reply is skipped when `ai_may_respond()` says a
human holds the conversation or it is stopped. Incidents (slow periods, error bursts, rate
limiting, handoff storms, cold caches, outages) come on a schedule, so SLA breaches and alerts
really happen. Everything random comes from `--seed`: the same seed and `--end` give the same
rows.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import logging
import math
import random
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from observability import events as ev
from observability.settings import DATA_DIR, Settings, get_settings
from observability.timeutil import to_epoch

if TYPE_CHECKING:
    from observability.sdk import ObservabilityClient
    from observability.store import Store

log = logging.getLogger("observability.simulate")

PHRASES_FILE = DATA_DIR / "demo_phrases.json"
BOTS = ("lead_bot", "buyer_bot", "seller_bot")
HANDOFF = "handoff"  # the bot name of the handoff service's own operation ("handoff", "execute")
DEFAULT_SEED = 7
DEFAULT_RATE = 5.0  # events per second
ACCOUNTS = 150
VIP_SHARE = 0.15

# ---- behaviour profiles ---------------------------------------------------------------------

# Operation durations are log-normal, drawn inside the SLA targets of source doc 000
# (p50, p95, p99 in ms) so that only incidents breach them. Deliberately not read from
# data/sla_targets.json: an operator tightening a target should see the same traffic breach it.
SLA_TARGETS: dict[tuple[str, str], tuple[float, float, float]] = {
    ("lead_bot", "full_qualification"): (500, 2000, 3000),
    ("lead_bot", "process"): (300, 1500, 2000),
    ("lead_bot", "handoff"): (100, 500, 800),
    ("buyer_bot", "full_qualification"): (800, 2500, 3500),
    ("buyer_bot", "process"): (400, 1800, 2500),
    ("buyer_bot", "handoff"): (100, 500, 800),
    ("seller_bot", "full_qualification"): (700, 2500, 3500),
    ("seller_bot", "process"): (400, 1800, 2500),
    ("seller_bot", "handoff"): (100, 500, 800),
    (HANDOFF, "execute"): (100, 500, 800),
}


def lognormal_within(p50: float, p95: float, p99: float) -> tuple[float, float]:
    """(mu, sigma) of a log-normal whose p50/p95/p99 sit comfortably inside the targets (even in
    the small samples of a quiet hour), so that only incidents breach them."""
    median = 0.75 * p50
    sigma = min(0.5, math.log(0.9 * p99 / median) / 2.326, math.log(0.85 * p95 / median) / 1.645)
    return math.log(median), sigma


OP_LOGNORMAL = {key: lognormal_within(*t) for key, t in SLA_TARGETS.items()}


@dataclass(frozen=True)
class Model:
    provider: str
    ttft_ms: float  # median time to first token
    sigma: float
    ms_per_token: float


OPUS, SONNET, HAIKU, FLASH = "claude-opus-4-6", "claude-sonnet-4-5", "claude-haiku-4-5", "gemini-2.5-flash"
MODELS = {
    OPUS: Model("anthropic", 900, 0.40, 9.0),
    SONNET: Model("anthropic", 520, 0.38, 4.5),
    HAIKU: Model("anthropic", 260, 0.35, 2.2),
    FLASH: Model("google", 320, 0.45, 1.6),
}
FALLBACK_MODEL = FLASH  # where bots go when Anthropic rate-limits them


@dataclass(frozen=True)
class Agent:
    system_tokens: int  # cacheable prompt prefix (instructions, tools, listings schema)
    context_tokens: int  # dynamic input per call
    per_turn_tokens: int  # conversation history growth per turn
    output_tokens: int  # median completion length
    response_cache: float  # chance the response cache answers instead of the model
    models: dict[str, float]  # model -> weight


AGENTS = {
    "qualifier": Agent(1800, 300, 120, 140, 0.18, {HAIKU: 5, FLASH: 4, SONNET: 1}),
    "property_matcher": Agent(2500, 1500, 120, 380, 0.12, {SONNET: 5, FLASH: 4, OPUS: 1}),
    "pricing_analyst": Agent(3000, 2200, 100, 350, 0.08, {OPUS: 3, SONNET: 7}),
    "scheduler": Agent(1200, 200, 60, 90, 0.25, {HAIKU: 8, FLASH: 2}),
    "summarizer": Agent(900, 400, 250, 260, 0.05, {FLASH: 5, HAIKU: 5}),
    "responder": Agent(3500, 200, 150, 200, 0.08, {SONNET: 4, HAIKU: 6}),
}

SELLER_TOPICS = ("selling", "pricing")  # the seller bot's; the buyer bot takes every other topic
START_TOPICS = {
    "buying": 28,
    "selling": 18,
    "pricing": 14,
    "mortgage": 14,
    "viewings": 14,
    "neighbourhoods": 12,
}
# (agent, decision type) a domain bot consults before writing its reply, by topic
DOMAIN_AGENT = {
    "buying": ("property_matcher", "property_search"),
    "viewings": ("scheduler", "viewing_booking"),
    "mortgage": ("qualifier", "financing_check"),
    "neighbourhoods": ("property_matcher", "area_insights"),
    "local_life": ("property_matcher", "area_insights"),
    "selling": ("pricing_analyst", "market_analysis"),
    "pricing": ("pricing_analyst", "valuation"),
}
ARCS = {"resolved": 35, "happy": 25, "unhappy": 20, "drifting": 20}  # conversation shapes, by weight
TURNS = {"resolved": (4, 8), "happy": (3, 7), "unhappy": (3, 7), "drifting": (6, 9)}  # customer messages
LLM_ERRORS = {"api_error": 45, "overloaded": 40, "timeout": 15}  # error_type -> weight
QUALIFICATION = {
    "lead_bot": "lead_scoring",
    "buyer_bot": "buyer_qualification",
    "seller_bot": "seller_qualification",
}
CONFIDENCE = {"unhappy": (16, 4), "drifting": (17, 3.5)}  # beta(a, b) of AI confidence; others (22, 3)
BLOCK_WINDOW_MIN = 30


def domain_bot(topic: str) -> str:
    return "seller_bot" if topic in SELLER_TOPICS else "buyer_bot"


# ---- incidents --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentKind:
    backfill_minutes: tuple[float, float]
    live_minutes: tuple[float, float]
    one_bot: bool  # hits one bot (else every bot: the provider, the cache, the handoff service)
    strength: tuple[float, float]  # latency factor, error rate or rate-limited share
    activity: tuple[str, str, str, str, str]  # event type, title, severity, category, description


INCIDENT_KINDS = {
    "slow": IncidentKind((18, 30), (5, 9), True, (5.0, 6.5), (
        "latency_degraded", "Latency degraded on {bot}", "high", "performance",
        "Response times are several times above normal; SLA targets at risk.")),
    "error_burst": IncidentKind((8, 20), (3, 6), True, (0.2, 0.35), (
        "error_spike", "Error spike on {bot}", "critical", "system",
        "Upstream calls are failing; replies fall back to apologies.")),
    "rate_limit": IncidentKind((8, 18), (3, 6), False, (0.3, 0.45), (
        "rate_limited", "Anthropic API rate limiting", "high", "system",
        "Requests are being throttled (429); falling back to gemini-2.5-flash where possible.")),
    "handoff_storm": IncidentKind((15, 30), (4, 8), False, (1, 1), (
        "handoff_storm", "Handoff loop detected", "high", "handoff",
        "Bots keep trying to pass conversations back and forth; circular handoffs are blocked.")),
    "cache_cold": IncidentKind((15, 30), (5, 10), False, (1, 1), (
        "cache_flush", "Response cache flushed", "medium", "performance",
        "Response and prompt caches were cleared by a deploy; hit rates will recover.")),
    "outage": IncidentKind((6, 10), (6, 8), True, (1, 1), (
        "bot_down", "{bot} stopped responding", "critical", "system",
        "Health checks fail; customer messages are waiting without replies.")),
}  # fmt: skip


@dataclass(frozen=True)
class Incident:
    kind: str
    bot: str | None  # None: every bot
    start: float
    end: float
    strength: float


@dataclass(frozen=True)
class Effects:
    """What the incidents active at one moment do to one bot."""

    slow: float = 1.0  # latency factor
    errors: float = 0.0  # extra failure probability
    rate_limit: float = 0.0  # share of Anthropic calls rate-limited
    cache_cold: bool = False
    outage: bool = False
    storm: bool = False


CALM = Effects()


def make_incident(rng: random.Random, kind: str, start: float, live: bool = False) -> Incident:
    k = INCIDENT_KINDS[kind]
    bot = rng.choice(BOTS) if k.one_bot else None
    minutes = rng.uniform(*(k.live_minutes if live else k.backfill_minutes))
    return Incident(kind, bot, start, start + minutes * 60, rng.uniform(*k.strength))


def backfill_incidents(rng: random.Random, start: float, end: float) -> list[Incident]:
    """Incidents laid out backwards from `end`, 45 to 100 minutes apart: the latest is a slow
    period still under way at `end` (the last hour shows an SLA breach, and a worker started right
    after the backfill finds it firing), before it an error burst and a rate-limited period, then
    every kind once per round in a seeded order."""
    order: list[str] = ["slow", "error_burst", "rate_limit"]
    out: list[Incident] = []
    t_end = end + rng.uniform(2, 8) * 60
    while True:
        if not order:
            order = list(INCIDENT_KINDS)
            rng.shuffle(order)
        inc = make_incident(rng, order.pop(0), 0.0)
        if t_end - inc.end < start:
            return sorted(out, key=lambda x: x.start)
        out.append(Incident(inc.kind, inc.bot, t_end - inc.end, t_end, inc.strength))
        t_end -= inc.end + rng.uniform(45, 100) * 60


class Incidents:
    """The incident schedule; live mode extends it forward as time passes."""

    def __init__(self, rng: random.Random, enabled: bool = True) -> None:
        self.rng = rng
        self.items: list[Incident] = []
        self.enabled = enabled
        self._live_next: float | None = None
        self._live_order: list[str] = []

    def extend_live(self, until: float, now: float) -> list[Incident]:
        """Plan live incidents up to `until`: the first 2-6 minutes after `now`, then 8-18 apart."""
        if not self.enabled:
            return []
        if self._live_next is None:
            self._live_next = now + self.rng.uniform(2, 6) * 60
        self.items = [i for i in self.items if i.end > now - 3600]  # a long run keeps few
        new = []
        while self._live_next < until:
            if not self._live_order:
                self._live_order = list(INCIDENT_KINDS)
                self.rng.shuffle(self._live_order)
            inc = make_incident(self.rng, self._live_order.pop(0), self._live_next, live=True)
            self.items.append(inc)
            new.append(inc)
            self._live_next = inc.end + self.rng.uniform(8, 18) * 60
        return new

    def effects(self, bot: str, t: float) -> Effects:
        if not self.enabled:
            return CALM
        fx: dict = {}
        for i in self.items:
            if not (i.start <= t < i.end) or (i.bot is not None and i.bot != bot):
                continue
            if i.kind == "slow":
                fx["slow"] = i.strength
            elif i.kind == "error_burst":
                fx["errors"] = i.strength
            elif i.kind == "rate_limit":
                fx["rate_limit"] = i.strength
            elif i.kind == "cache_cold":
                fx["cache_cold"], fx["slow"] = True, max(fx.get("slow", 1.0), 1.4)
            elif i.kind == "outage":
                fx["outage"] = True
            elif i.kind == "handoff_storm":
                fx["storm"] = True
        return Effects(**fx) if fx else CALM


# ---- phrases ----------------------------------------------------------------------------------

_SLOT = re.compile(r"\{(\w+)\}")
KEPT_SLOTS = ("area", "street", "budget", "bedrooms", "property")  # a conversation sticks to these


class Phrases:
    """The phrase bank (data/demo_phrases.json) with slot filling."""

    def __init__(self, rng: random.Random, path: Path = PHRASES_FILE) -> None:
        self.rng = rng
        self.data = json.loads(path.read_text())
        self.slots = self.data["slots"]

    def keep(self) -> dict[str, str]:
        """Slot values one conversation keeps coming back to."""
        return {k: self.rng.choice(self.slots[k]) for k in KEPT_SLOTS}

    def fill(
        self, template: str, kept: dict[str, str] | None = None, said: dict[str, str] | None = None
    ) -> str:
        """Fill {slot}s. A slot's first use takes what was `said` already in this exchange (the
        customer's message, so the answer matches it), else mostly the conversation's `kept`
        value, else a random one; a second use in the same template takes a different value."""
        rng, slots, here = self.rng, self.slots, {}
        said = {} if said is None else said

        def value(m: re.Match[str]) -> str:
            name = m.group(1)
            if name in here:
                others = [v for v in slots[name] if v != here[name]]
                return rng.choice(others or slots[name])
            if name not in said:
                use_kept = kept and name in kept and rng.random() < 0.85
                said[name] = kept[name] if use_kept else rng.choice(slots[name])
            here[name] = said[name]
            return said[name]

        return _SLOT.sub(value, template)

    def pick(self, *path: str, kept: dict[str, str] | None = None) -> str:
        node = self.data
        for p in path:
            node = node[p]
        return self.fill(self.rng.choice(node), kept)

    def exchange(self, topic: str, used: set[tuple[str, int]]) -> int:
        """Index of a (customer message, bot answer) pair of `topic` not used yet in the conversation."""
        pairs = self.data["topics"][topic]
        fresh = [i for i in range(len(pairs)) if (topic, i) not in used] or list(range(len(pairs)))
        i = self.rng.choice(fresh)
        used.add((topic, i))
        return i


# ---- actions ----------------------------------------------------------------------------------


@dataclass(order=True)
class Action:
    """Events that happen together at `ts`; `gated` ones are bot replies (skipped in live mode
    while `ai_may_respond(conversation_id)` is False)."""

    ts: float
    seq: int
    gated: bool = field(compare=False)
    conversation_id: str | None = field(compare=False)
    events: list[list] = field(compare=False)


@dataclass
class Conversation:
    id: str
    account: str
    vip: bool
    arc: str
    topics: list[str]
    bot: str
    qualify_turn: int | None  # the lead bot qualifies and hands off at this turn
    history: list[tuple[str, float]] = field(default_factory=list)  # (bot, since)
    qualified: set[str] = field(default_factory=set)
    return_at: int | None = None  # drifting conversations that try to go back (blocked)
    closing: str | None = None  # how the user's last message ended it: resolved | unhappy | open
    kept: dict[str, str] = field(default_factory=dict)  # slot values of this conversation
    used: set[tuple[str, int]] = field(default_factory=set)  # exchanges already used
    exchange: int | None = None  # the exchange of the current turn (the bot answers it)
    said: dict[str, str] = field(default_factory=dict)  # slot values of the current exchange
    question: int = 0  # the lead bot's qualifying question
    mood: str | None = None  # tone of the customer's current message

    @property
    def n_turns(self) -> int:
        return len(self.topics)


@dataclass
class Account:
    id: str
    name: str
    vip: bool
    weight: float


class Simulator:
    """Plans conversations and incidents. All randomness comes from the seed."""

    def __init__(self, seed: int = DEFAULT_SEED, *, anchor: float = 0.0, incidents: bool = True) -> None:
        self.seed = seed
        key = f"{seed}:{anchor:.3f}"  # the same seed and anchor (backfill end, live start) replay
        self.rng = random.Random(f"traffic:{key}")
        self._ids = random.Random(f"ids:{key}")
        self.phrases = Phrases(self.rng)
        self.accounts = make_accounts(seed, self.phrases.data)  # the seed alone: same in every mode
        self._weights = [a.weight for a in self.accounts]
        self.incidents = Incidents(random.Random(f"incidents:{key}"), enabled=incidents)
        self._seq = 0
        self.events_per_conversation = 55.0  # running mean, sets the conversation start rate

    # -- small helpers
    def uid(self) -> str:
        return f"{self._ids.getrandbits(128):032x}"

    def seq(self) -> int:
        self._seq += 1
        return self._seq

    def choice_w(self, pairs: Iterable[tuple[str, float]]) -> str:
        pairs = tuple(pairs)
        return self.rng.choices([p[0] for p in pairs], [p[1] for p in pairs])[0]

    def op_ms(self, bot: str, operation: str, factor: float = 1.0) -> float:
        mu, sigma = OP_LOGNORMAL[(bot, operation)]
        return round(self.rng.lognormvariate(mu, sigma) * factor, 2)

    def think_s(self) -> float:
        return min(self.rng.lognormvariate(math.log(22), 0.7), 240.0)

    # -- events, built by the wire contract's builders (the same as the SDK's)
    def llm_event(self, ts: float, bot: str, agent: str, dtype: str, model: str, tokens: tuple, lat: float,
                  hit: bool, conv: str, ok: bool, err: str | None) -> list:  # fmt: skip
        it, ot, cr, cw = tokens
        return ev.llm_call(
            self.uid(), ts, bot=bot, agent=agent, decision_type=dtype, model=model,
            provider=MODELS[model].provider, input_tokens=it, output_tokens=ot, cache_read_tokens=cr,
            cache_write_tokens=cw, latency_ms=lat, cache_hit=hit,
            cost_usd=None if ok else 0.0,  # None: priced at ingest; failed calls are not billed
            conversation_id=conv, success=ok, error_type=err,
        )  # fmt: skip

    def op_event(self, ts: float, bot: str, operation: str, ms: float, ok: bool = True, hit: bool = False,
                 err: str | None = None) -> list:  # fmt: skip
        return ev.operation(self.uid(), ts, bot=bot, operation=operation, duration_ms=ms, success=ok,
                            cache_hit=hit, error_type=err)  # fmt: skip

    def interaction_event(self, ts: float, bot: str, ms: float, ok: bool, hit: bool, err: str | None) -> list:
        return ev.interaction(
            self.uid(), ts, bot=bot, duration_ms=ms, success=ok, cache_hit=hit, error_type=err
        )

    def handoff_event(self, ts: float, source: str, target: str, ok: bool, ms: float, blocked: bool,
                      reason: str | None, c: Conversation) -> list:  # fmt: skip
        return ev.handoff(self.uid(), ts, source=source, target=target, success=ok, duration_ms=ms,
                          blocked=blocked, reason=reason, conversation_id=c.id)  # fmt: skip

    def message_event(self, ts: float, c: Conversation, role: str, text: str) -> list:
        return ev.message(
            self.uid(), ts, conversation_id=c.id, role=role, text=text, bot=c.bot, account_id=c.account
        )

    def metric_event(self, ts: float, name: str, value: float, c: Conversation, meta: dict) -> list:
        return ev.metric(self.uid(), ts, metric_name=name, metric_type="gauge", value=value, account_id=c.account,
                         conversation_id=c.id, metadata=meta)  # fmt: skip

    def activity_event(self, ts: float, etype: str, title: str, severity: str, category: str,
                       description: str | None = None, c: Conversation | None = None,
                       meta: dict | None = None) -> list:  # fmt: skip
        return ev.activity(self.uid(), ts, event_type=etype, title=title, description=description,
                           severity=severity, category=category, account_id=c.account if c else None,
                           conversation_id=c.id if c else None, metadata=meta)  # fmt: skip

    def account_events(self, ts: float) -> list[list]:
        return [ev.account(a.id, ts, name=a.name, vip=a.vip) for a in self.accounts]

    # -- planning a conversation
    def new_conversation(self, t0: float) -> Conversation:
        rng = self.rng
        acct = rng.choices(self.accounts, self._weights)[0]
        arc = self.choice_w(ARCS.items())
        n = rng.randint(*TURNS[arc])
        if arc == "drifting":
            first, second = rng.choice(self.phrases.data["drift_pairs"])
            cut = n // 2
            topics = [first] * cut + [second] * (n - cut)
        else:
            topics = [self.choice_w(START_TOPICS.items())] * n
        via_lead = rng.random() < 0.6
        if via_lead:  # opener plus the answer to the lead bot's qualifying question
            topics = [topics[0]] + topics
        bot = "lead_bot" if via_lead else domain_bot(topics[0])
        c = Conversation(
            f"conv-{self.uid()[:16]}", acct.id, acct.vip, arc, topics, bot, 1 if via_lead else None
        )
        c.history.append((c.bot, t0))
        c.kept = self.phrases.keep()
        c.question = rng.randrange(len(self.phrases.data["qualify"]))
        if arc == "drifting" and domain_bot(topics[-1]) != domain_bot(topics[0]) and rng.random() < 0.1:
            c.return_at = min(len(topics) - 1, len(topics) - (n - n // 2) + 2)  # 2 turns after drifting
        return c

    def conversation(self, t0: float) -> list[Action]:
        """Every action of one conversation starting at t0."""
        c = self.new_conversation(t0)
        actions = []
        if c.vip:
            e = self.activity_event(t0, "vip_conversation", f"VIP conversation started ({c.account})", "medium",
                                    "vip", c=c)  # fmt: skip
            actions.append(Action(t0, self.seq(), False, c.id, [e]))
        t = t0
        for i in range(c.n_turns):
            text = self.user_text(c, i)
            actions.append(Action(t, self.seq(), False, c.id, [self.message_event(t, c, "user", text)]))
            fx = self.incidents.effects(c.bot, t)
            if fx.outage:  # the bot is down: the message waits unanswered
                t += self.think_s() * 2
                continue
            events, t_reply = self.reply(c, i, t, fx)
            actions.append(Action(t_reply, self.seq(), True, c.id, events))
            t = t_reply + self.think_s()
        n_events = sum(len(a.events) for a in actions)
        self.events_per_conversation += (n_events - self.events_per_conversation) * 0.02
        return actions

    # -- texts
    def user_text(self, c: Conversation, i: int) -> str:
        p, rng = self.phrases, self.rng
        last = i == c.n_turns - 1
        c.exchange, c.mood, c.said = None, None, {}
        if c.qualify_turn == i:
            return p.fill(p.rng.choice(p.data["qualify"][c.question]["answers"]), c.kept, c.said)
        if last and c.arc == "resolved":
            c.closing = "resolved"
        elif last and c.arc == "unhappy" and rng.random() < 0.6:
            c.closing = "unhappy"
        elif last and c.arc in ("happy", "drifting") and rng.random() < 0.4:
            c.closing = "open"
        if c.closing:
            return p.pick("closings", f"{c.closing}_user")
        progress = i / max(c.n_turns - 1, 1)
        if i == 0:
            prefix = p.pick("greetings", "user")
        elif c.arc == "unhappy" and rng.random() < 0.3 + 0.6 * progress:
            prefix, c.mood = p.pick("tone", "unhappy_user"), "unhappy"
        elif c.arc in ("happy", "resolved") and rng.random() < 0.2 + 0.5 * progress:
            prefix, c.mood = p.pick("tone", "happy_user"), "happy"
        else:
            prefix = ""
        c.exchange = p.exchange(c.topics[i], c.used)
        return prefix + p.fill(p.data["topics"][c.topics[i]][c.exchange][0], c.kept, c.said)

    def bot_text(self, c: Conversation, i: int, ok: bool) -> str:
        p, rng = self.phrases, self.rng
        if not ok:
            return p.pick("errors", "bot")
        last = i == c.n_turns - 1
        if c.bot == "lead_bot" and c.qualify_turn is not None and i < c.qualify_turn:
            return p.data["qualify"][c.question]["question"]
        if last and c.closing:
            path = (
                ("closings", "resolved_bot", c.bot)
                if c.closing == "resolved"
                else ("closings", f"{c.closing}_bot")
            )
            return p.pick(*path, kept=c.kept)
        if c.exchange is None:  # answering the qualifying answer without handing off
            return p.pick("holding", kept=c.kept)
        prefix = ""
        if c.mood == "unhappy" and rng.random() < 0.8:
            prefix = p.pick("tone", "unhappy_bot")
        elif c.mood == "happy" and rng.random() < 0.3:
            prefix = p.pick("tone", "happy_bot")
        return prefix + p.fill(p.data["topics"][c.topics[i]][c.exchange][1], c.kept, c.said)

    # -- one bot reply
    def reply(self, c: Conversation, i: int, t: float, fx: Effects) -> tuple[list[list], float]:
        """The bot's answer to turn i: LLM calls, operations, handoff, message and scores."""
        rng = self.rng
        events: list[list] = []
        clock = t + rng.uniform(0.02, 0.08)
        ok, err = True, None
        if c.bot not in c.qualified and (c.bot != "lead_bot" or c.qualify_turn == i):
            clock, ok, err = self.qualification(events, c, i, clock, fx)
        if ok and c.bot != "lead_bot" and rng.random() < 0.7:
            agent, dtype = DOMAIN_AGENT[c.topics[i]]
            clock, ok, err = self.llm_call(events, c, i, clock, fx, agent, dtype)
        if ok:
            clock, ok, err = self.llm_call(events, c, i, clock, fx, "responder", "reply_generation")
        if ok and rng.random() < fx.errors * 0.5 + 0.001:  # the bot's own code fails now and then
            ok, err = False, "internal_error"
        clock = self.process(events, c, t, clock, fx, ok, err)
        text = self.bot_text(c, i, ok)
        if ok and i == c.n_turns - 1 and c.arc == "resolved":
            self.llm_call(events, c, i, clock, fx, "summarizer", "conversation_summary")
        if ok:
            text = self.maybe_handoff(events, c, i, clock, fx) or text
        events.append(self.message_event(clock, c, "bot", text))
        self.scores(events, c, i, clock, ok)
        self.closing_activity(events, c, i, clock, ok)
        return events, clock

    def qualification(self, events: list, c: Conversation, i: int, clock: float, fx: Effects) -> tuple:
        """`full_qualification`: the lead bot scores the lead, buyer and seller bots qualify once."""
        start = clock
        clock, ok, err = self.llm_call(events, c, i, clock, fx, "qualifier", QUALIFICATION[c.bot])
        ms = self.op_ms(c.bot, "full_qualification", fx.slow)
        clock = max(clock, start + ms / 1000)
        events.append(self.op_event(clock, c.bot, "full_qualification", ms, ok, False, err))
        if ok:
            c.qualified.add(c.bot)
            score = round(self.rng.uniform(35, 98))
            if c.bot == "lead_bot" and score >= 80:
                title, meta = f"Hot lead qualified (score {score})", {"score": score, "bot": c.bot}
                events.append(
                    self.activity_event(clock, "lead_qualified", title, "low", "business", c=c, meta=meta)
                )
        return clock, ok, err

    def llm_call(self, events: list, c: Conversation, i: int, clock: float, fx: Effects, agent: str,
                 dtype: str) -> tuple[float, bool, str | None]:  # fmt: skip
        """One agent call; a rate-limited Anthropic call is usually retried on the fallback model."""
        rng = self.rng
        model = self.choice_w(AGENTS[agent].models.items())
        for attempt in range(2):
            tokens = self.tokens(agent, i, MODELS[model].provider, fx)
            hit = attempt == 0 and rng.random() < (0.0 if fx.cache_cold else AGENTS[agent].response_cache)
            lat = self.latency(model, tokens[1], fx, hit)
            ok, err = True, None
            if hit:
                pass  # a response-cache hit never fails
            elif MODELS[model].provider == "anthropic" and rng.random() < fx.rate_limit + 0.001:
                ok, err, lat = False, "rate_limit", round(rng.uniform(40, 220), 1)
            elif rng.random() < 0.002 + fx.errors * 0.5:
                ok, err = False, self.choice_w(LLM_ERRORS.items())
                lat = round(rng.uniform(30_000, 60_000), 1) if err == "timeout" else lat
            toks = tokens if ok else (tokens[0], 0, 0, 0)
            events.append(self.llm_event(clock, c.bot, agent, dtype, model, toks, lat, hit, c.id, ok, err))
            clock += lat / 1000
            if ok or err != "rate_limit" or rng.random() < 0.2:
                break
            model = FALLBACK_MODEL
        return clock, ok, err

    def tokens(self, agent: str, i: int, provider: str, fx: Effects) -> tuple[int, int, int, int]:
        """(input incl. cached, output, cache_read, cache_write) of one call."""
        a, rng = AGENTS[agent], self.rng
        system = int(a.system_tokens * rng.uniform(0.95, 1.05))
        dynamic = int((a.context_tokens + a.per_turn_tokens * i) * rng.lognormvariate(0, 0.3))
        out = max(8, int(rng.lognormvariate(math.log(a.output_tokens), 0.45)))
        read = write = 0
        r = rng.random()
        if provider == "anthropic":  # prompt caching: mostly reads, a write when the cache expired
            p_read, p_write = (0.1, 0.6) if fx.cache_cold else (0.78, 0.1)
            if r < p_read:
                read = system
            elif r < p_read + p_write:
                write = system
        elif r < (0.05 if fx.cache_cold else 0.5):  # Gemini's implicit caching: reads only
            read = system
        return system + dynamic, out, read, write

    def latency(self, model: str, out_tokens: int, fx: Effects, hit: bool) -> float:
        rng = self.rng
        if hit:  # served by the response cache
            return round(rng.uniform(6, 45), 1)
        m = MODELS[model]
        ms = m.ttft_ms * rng.lognormvariate(0, m.sigma) + out_tokens * m.ms_per_token * rng.uniform(0.85, 1.2)
        return round(ms * (1.0 + (fx.slow - 1.0) * 0.6), 1)  # slow periods hurt models less than bots

    def process(self, events: list, c: Conversation, t: float, clock: float, fx: Effects, ok: bool,
                err: str | None) -> float:  # fmt: skip
        """The bot's `process` operation and its interaction record; returns the reply time."""
        rng = self.rng
        ms = self.op_ms(c.bot, "process", fx.slow)
        hit = rng.random() < (0.05 if fx.cache_cold else 0.75)
        if err == "timeout":
            ms = max(ms, round((clock - t) * 1000, 2))
        end = max(clock, t + ms / 1000) + rng.uniform(0.01, 0.05)
        events.append(self.op_event(end, c.bot, "process", ms, ok, hit, err))
        events.append(self.interaction_event(end, c.bot, round(ms + rng.uniform(5, 40), 2), ok, hit, err))
        return end + 0.01

    def maybe_handoff(self, events: list, c: Conversation, i: int, clock: float, fx: Effects) -> str | None:
        """Hand the conversation over when its topic belongs to another bot; returns the text."""
        target = None
        if c.bot == "lead_bot" and c.qualify_turn is not None and c.qualify_turn <= i < c.n_turns - 1:
            target = domain_bot(c.topics[i])
        elif c.bot != "lead_bot" and domain_bot(c.topics[i]) != c.bot:  # the customer changed subject
            target = domain_bot(c.topics[i])
        elif len(c.history) > 1 and (c.return_at == i or self.rng.random() < (0.2 if fx.storm else 0.001)):
            target = c.history[-2][0]  # back where it came from: circular
        if target is None or target == c.bot:
            return None
        return self.handoff(events, c, target, clock, fx)

    def handoff(self, events: list, c: Conversation, target: str, clock: float, fx: Effects) -> str | None:
        """Blocked when `target` had the conversation within the window; else executed (or failing)."""
        source = c.bot
        recent = {b for b, since in c.history[:-1] if clock - since < BLOCK_WINDOW_MIN * 60}
        check_ms = self.op_ms(source, "handoff", fx.slow)
        if target in recent:
            reason = (
                f"circular handoff blocked: {target} -> {source} -> {target} within {BLOCK_WINDOW_MIN} min"
            )
            events.append(self.op_event(clock, source, "handoff", check_ms))
            # success=True as with the SDK's defaults: the guard worked; `blocked` says it did not happen
            events.append(self.handoff_event(clock, source, target, True, check_ms, True, reason, c))
            title = f"Handoff {source} -> {target} blocked"
            events.append(
                self.activity_event(clock, "handoff_blocked", title, "medium", "handoff", reason, c)
            )
            return None
        exec_ms = self.op_ms(HANDOFF, "execute", fx.slow)
        errors = max(fx.errors, self.incidents.effects(target, clock).errors)  # either side failing
        ok = self.rng.random() >= 0.002 + errors * 0.5 + (0.15 if fx.storm else 0.0)
        err = None if ok else self.rng.choice(("timeout", "context_transfer_failed"))
        reason = None if ok else f"handoff to {target} failed: {err}"
        events.append(self.op_event(clock, source, "handoff", check_ms, ok, False, err))
        events.append(self.op_event(clock + exec_ms / 1000, HANDOFF, "execute", exec_ms, ok, False, err))
        events.append(
            self.handoff_event(clock, source, target, ok, round(check_ms + exec_ms, 2), False, reason, c)
        )
        if not ok:
            title = f"Handoff {source} -> {target} failed"
            events.append(self.activity_event(clock, "handoff_failed", title, "high", "handoff", reason, c))
            return None
        if source == "lead_bot":
            self.llm_call(events, c, 0, clock, fx, "summarizer", "handoff_summary")
        c.bot = target
        c.history.append((target, clock))
        return self.phrases.pick("handoff", target, kept=c.kept)

    def scores(self, events: list, c: Conversation, i: int, ts: float, ok: bool) -> None:
        """AI confidence and safety score of this reply, with activity when they are low."""
        rng = self.rng
        conf = rng.betavariate(*CONFIDENCE.get(c.arc, (22, 3))) if ok else rng.uniform(0.25, 0.5)
        if rng.random() < 0.004:
            safety = rng.uniform(0.45, 0.78)
        else:
            safety = rng.betavariate(*((30, 1.5) if c.arc == "unhappy" else (48, 1.5)))
        meta = {"bot": c.bot, "turn": i}
        events.append(self.metric_event(ts, "ai_confidence", round(conf, 4), c, meta))
        events.append(self.metric_event(ts, "safety_score", round(safety, 4), c, meta))
        if conf < 0.6:
            title = f"Low AI confidence ({conf:.2f}) on {c.bot}"
            sev = "high" if conf < 0.4 else "medium"
            events.append(self.activity_event(ts, "low_confidence", title, sev, "ai_quality", c=c, meta=meta))
        if safety < 0.8:
            title, desc = (
                f"Safety score {safety:.2f} on {c.bot} reply",
                "Reply held for review by the safety filter.",
            )
            sev = "critical" if safety < 0.6 else "high"
            events.append(self.activity_event(ts, "safety_flag", title, sev, "safety", desc, c, meta))

    def closing_activity(self, events: list, c: Conversation, i: int, ts: float, ok: bool) -> None:
        if i != c.n_turns - 1 or not ok:
            return
        if c.arc == "resolved" and self.rng.random() < 0.5:
            title = f"Appointment booked by {c.bot}"
            events.append(self.activity_event(ts, "appointment_booked", title, "low", "business", c=c))
        elif c.arc == "unhappy" and c.closing == "unhappy":
            title = "Customer left unhappy"
            events.append(self.activity_event(ts, "negative_sentiment", title, "medium", "conversation", c=c))

    # -- incidents and background activity
    def incident_actions(self, incidents: Iterable[Incident]) -> list[Action]:
        """Activity events when an incident starts and ends (a deploy precedes a cache flush)."""
        out = []
        for inc in incidents:
            etype, title, sev, cat, desc = INCIDENT_KINDS[inc.kind].activity
            title = title.format(bot=inc.bot)
            meta = {"incident": inc.kind, "bot": inc.bot}
            started = self.activity_event(inc.start, etype, title, sev, cat, desc, meta=meta)
            ended = self.activity_event(inc.end, "recovered", f"Recovered: {title}", "low", cat, meta=meta)
            events = [(inc.start, started), (inc.end, ended)]
            if inc.kind == "cache_cold":
                events.append((inc.start - 30, self.deployment(inc.start - 30)))
            out += [Action(ts, self.seq(), False, None, [e]) for ts, e in events]
        return out

    def deployment(self, ts: float) -> list:
        bot = self.rng.choice(BOTS)
        version = f"v2.{self.rng.randint(10, 40)}.{self.rng.randint(0, 9)}"
        return self.activity_event(
            ts, "deployment", f"Deployed {bot} {version}", "low", "system", meta={"bot": bot}
        )

    def background_actions(self, start: float, end: float) -> list[Action]:
        """Deploys and prompt updates now and then (a few a day)."""
        out, t = [], start + self.rng.uniform(0.5, 3) * 3600
        while t < end:
            if self.rng.random() < 0.5:
                e = self.deployment(t)
            else:
                bot, agent = self.rng.choice(BOTS), self.rng.choice(sorted(AGENTS))
                title, meta = f"Prompt of {agent} updated for {bot}", {"bot": bot, "agent": agent}
                e = self.activity_event(t, "prompt_updated", title, "low", "config", meta=meta)
            out.append(Action(t, self.seq(), False, None, [e]))
            t += self.rng.uniform(2, 6) * 3600
        return out

    # -- timing
    def conversation_rate(self, rate: float) -> float:
        """Conversations per second for `rate` events per second."""
        return rate / max(self.events_per_conversation, 1.0)


def make_accounts(seed: int, data: dict) -> list[Account]:
    """The customer accounts (same for a seed in backfill and live mode); ~15% are VIP."""
    rng = random.Random(f"accounts:{seed}")
    names, patterns = data["accounts"]["surnames"], data["accounts"]["patterns"]
    vips = set(rng.sample(range(ACCOUNTS), round(ACCOUNTS * VIP_SHARE)))
    out = []
    for i in range(ACCOUNTS):
        name = rng.choice(patterns).format(surname=rng.choice(names))
        weight = rng.paretovariate(2.0) * (2.0 if i in vips else 1.0)
        out.append(Account(f"acct-{i + 1:04d}", name, i in vips, weight))
    return out


def diurnal(ts: float) -> float:
    """Traffic factor by hour of day (UTC): quiet at 03:00, busiest at 15:00, mean 1."""
    h = (ts % 86400) / 3600
    return (0.5 + 0.5 * (0.5 - 0.5 * math.cos(2 * math.pi * (h - 3) / 24))) / 0.75


# ---- backfill ---------------------------------------------------------------------------------


@dataclass
class BackfillResult:
    hours: float
    start: float
    end: float
    counts: Counter
    rejected: int
    seconds: float
    rollup_seconds: float
    pending: list[Action]  # actions at or after `end` (live mode continues them)
    incidents: list[Incident]

    @property
    def events(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(self.counts.items()))
        return (
            f"backfilled {self.hours:g} h: {self.events:,} events ({kinds}), {len(self.incidents)} "
            f"incidents, in {self.seconds:.1f} s (rollups {self.rollup_seconds:.1f} s)"
        )


def plan(
    sim: Simulator, start: float, end: float, rate: float, *, shape: Callable[[float], float] = diurnal
) -> Iterator[Action]:
    """Actions of conversations starting in [start, end), conversation by conversation."""
    t = start
    while True:
        t += sim.rng.expovariate(max(sim.conversation_rate(rate) * shape(t), 1e-9))
        if t >= end:
            return
        yield from sim.conversation(t)


def backfill(
    store: Store,
    hours: float,
    *,
    seed: int = DEFAULT_SEED,
    rate: float = DEFAULT_RATE,
    end: float | None = None,
    incidents: bool = True,
    batch_size: int = 5000,
    settings: Settings | None = None,
    progress: Callable[[str], None] | None = None,
) -> BackfillResult:
    """Write `hours` of history ending at `end` (default now) straight into the store, then roll up."""
    from observability.store import rollups
    from observability.store.ingest import write_batch

    settings = settings or get_settings()
    started = time.perf_counter()
    end = time.time() if end is None else end
    start = end - hours * 3600
    sim = Simulator(seed, anchor=end, incidents=incidents)
    sim.incidents.items = backfill_incidents(sim.incidents.rng, start, end) if incidents else []
    counts: Counter = Counter()
    rejected = 0
    batch: list[list] = sim.account_events(start)
    pending: list[Action] = []

    def flush() -> None:
        nonlocal rejected, batch
        if batch:
            r = write_batch(store, batch, settings)
            counts.update(r.written)
            rejected += r.rejected
            batch = []

    actions = [*sim.incident_actions(sim.incidents.items), *sim.background_actions(start, end)]
    next_report = start + 3 * 3600
    for action in itertools.chain(actions, plan(sim, start, end, rate)):
        if action.ts >= end:
            pending.append(action)
            continue
        batch.extend(action.events)
        if len(batch) >= batch_size:
            flush()
            if progress and action.ts >= next_report:
                progress(
                    f"  ... {(action.ts - start) / 3600:.0f} of {hours:g} h, {sum(counts.values()):,} events"
                )
                next_report += 3 * 3600
    flush()
    t_roll = time.perf_counter()
    for _ in range(1000):  # each run rolls up a bounded number of minutes
        if not rollups.run(store):
            break
    now = time.perf_counter()
    return BackfillResult(
        hours, start, end, counts, rejected, now - started, now - t_roll, sorted(pending), sim.incidents.items
    )


# ---- live -------------------------------------------------------------------------------------


# kind -> (SDK method, positional fields, keyword fields): how live mode records a wire event
SDK_CALLS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    ev.KIND_LLM: ("record_llm_call", ("model", "provider", "input_tokens", "output_tokens", "latency_ms"),
                  ("cache_hit", "conversation_id", "bot", "agent", "decision_type", "success", "error_type",
                   "cache_read_tokens", "cache_write_tokens", "cost_usd")),
    ev.KIND_OPERATION: ("track_operation", ("bot", "operation", "duration_ms"), ("success", "cache_hit", "error_type")),
    ev.KIND_INTERACTION: ("record_bot_interaction", ("bot", "duration_ms"), ("success", "cache_hit", "error_type")),
    ev.KIND_HANDOFF: ("record_handoff", ("source", "target"),
                      ("success", "duration_ms", "blocked", "reason", "conversation_id")),
    ev.KIND_MESSAGE: ("record_message", ("conversation_id", "role", "text"), ("bot", "account_id")),
    ev.KIND_ACCOUNT: ("set_account", ("id",), ("name", "vip")),
    ev.KIND_METRIC: ("record_metric", ("metric_name", "value"),
                     ("metric_type", "account_id", "conversation_id", "metadata")),
    ev.KIND_ACTIVITY: ("log_activity", ("event_type", "title"),
                       ("severity", "category", "description", "account_id", "conversation_id", "metadata")),
}  # fmt: skip


def send(client: ObservabilityClient, e: list) -> None:
    """Record one wire event through the SDK, at the current time (the SDK gives it a new id)."""
    method, args, kwargs = SDK_CALLS[e[0]]
    v = ev.as_dict(e)
    getattr(client, method)(*(v[a] for a in args), **{k: v[k] for k in kwargs})


@dataclass
class LiveStats:
    events: int = 0
    replies: int = 0
    skipped_replies: int = 0
    conversations: int = 0


def run_live(
    client: ObservabilityClient,
    *,
    seed: int = DEFAULT_SEED,
    rate: float = DEFAULT_RATE,
    incidents: bool = True,
    stop: threading.Event | None = None,
    duration_s: float | None = None,
    pending: list[Action] | None = None,
    past_incidents: list[Incident] | None = None,
    warm_start_s: float = 600.0,
    clock: Callable[[], float] = time.time,
) -> LiveStats:
    """Stream actions at their wall time through `client` until `stop` is set (or `duration_s`).

    Starts in steady state: conversations already under way (`pending`, from a backfill, or
    planned over the last `warm_start_s` seconds) continue where they are. A bot reply is sent
    only while `client.ai_may_respond(conversation_id)` is True. `duration_s` counts from when
    streaming starts, after that planning, so a slow start never eats into it.
    """
    stop = stop or threading.Event()
    now = clock()
    sim = Simulator(seed, anchor=now, incidents=incidents)
    sim.incidents.items = list(past_incidents or [])
    stats = LiveStats()
    heap: list[Action] = []
    for e in sim.account_events(now):
        send(client, e)
    if pending:
        heap.extend(a for a in pending if a.ts >= now - 5)
    else:
        for a in plan(sim, now - warm_start_s, now, rate, shape=lambda _t: 1.0):
            if a.ts >= now:
                heap.append(a)
    heapq.heapify(heap)
    next_start = now + sim.rng.expovariate(sim.conversation_rate(rate))
    deadline = None if duration_s is None else clock() + duration_s
    last_log = now
    while not stop.is_set():
        now = clock()
        if deadline is not None and now >= deadline:
            break
        for inc_action in sim.incident_actions(sim.incidents.extend_live(now + 600, now)):
            heapq.heappush(heap, inc_action)
        while next_start <= now:
            for a in sim.conversation(next_start):
                heapq.heappush(heap, a)
            stats.conversations += 1
            next_start += sim.rng.expovariate(sim.conversation_rate(rate))
        while heap and heap[0].ts <= now:
            dispatch(client, heapq.heappop(heap), stats)
        if now - last_log >= 60:
            log.info(
                "live: %d events, %d conversations, %d replies (%d skipped by the gate)",
                stats.events,
                stats.conversations,
                stats.replies,
                stats.skipped_replies,
            )
            last_log = now
        wake = min(next_start, heap[0].ts if heap else next_start, now + 0.5)
        stop.wait(max(0.0, wake - clock()))
    return stats


def dispatch(client: ObservabilityClient, action: Action, stats: LiveStats) -> None:
    if action.gated:
        if not client.ai_may_respond(action.conversation_id):
            stats.skipped_replies += 1
            return
        stats.replies += 1
    for e in action.events:
        send(client, e)
    stats.events += len(action.events)


# ---- command line -----------------------------------------------------------------------------


def _parse_end(value: str) -> float:
    return to_epoch(datetime.fromisoformat(value.replace("Z", "+00:00")))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m observability.simulate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    p.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        help=f"events per second, live; the daily average of a backfill (default {DEFAULT_RATE:g})",
    )
    p.add_argument(
        "--backfill-hours",
        type=float,
        default=None,
        metavar="N",
        help="write N hours of history straight into the store, then exit (see --live)",
    )
    p.add_argument("--live", action="store_true", help="after --backfill-hours, go on streaming live")
    p.add_argument(
        "--end",
        type=_parse_end,
        default=None,
        metavar="ISO",
        help="end of the backfill, e.g. 2025-01-31T12:00:00Z (default now); with --seed, reproducible",
    )
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop streaming after S seconds")
    p.add_argument(
        "--no-incidents",
        dest="incidents",
        action="store_false",
        help="calm traffic: no slow periods, error bursts, rate limiting or outages",
    )
    p.add_argument("--batch-size", type=int, default=5000, help="events per backfill batch (default 5000)")
    p.add_argument("--database-url", default=None, help="store to write to (default: DATABASE_URL)")
    p.add_argument("--log-level", default="INFO")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = get_settings()
    if args.database_url:
        settings = settings.replace(database_url=args.database_url)
    if args.rate <= 0:
        print("--rate must be positive", file=sys.stderr)
        return 2
    result = None
    if args.backfill_hours:
        from observability.store import Store

        store = Store.from_url(settings.database_url)
        store.migrate()
        print(
            f"backfilling {args.backfill_hours:g} h of demo traffic (seed {args.seed}, {args.rate:g} events/s)",
            flush=True,
        )
        result = backfill(
            store,
            args.backfill_hours,
            seed=args.seed,
            rate=args.rate,
            end=args.end,
            incidents=args.incidents,
            batch_size=args.batch_size,
            settings=settings,
            progress=lambda m: print(m, flush=True),
        )
        store.dispose()
        print(result.summary(), flush=True)
        if result.rejected:
            print(f"warning: {result.rejected} events rejected at ingest", file=sys.stderr)
        if not args.live:
            return 0
    return _live_main(args, settings, result)


def _live_main(args: argparse.Namespace, settings: Settings, result: BackfillResult | None) -> int:
    from observability.sdk import ObservabilityClient

    if not settings.redis_url:  # the SDK writes straight into the store: make sure it has a schema
        from observability.store import Store

        store = Store.from_url(settings.database_url)
        store.migrate()
        store.dispose()
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    client = ObservabilityClient(settings=settings)
    print(
        f"streaming demo traffic live at ~{args.rate:g} events/s (seed {args.seed}); Ctrl-C stops", flush=True
    )
    try:
        stats = run_live(
            client,
            seed=args.seed,
            rate=args.rate,
            incidents=args.incidents,
            stop=stop,
            duration_s=args.duration,
            pending=result.pending if result else None,
            past_incidents=result.incidents if result else None,
        )
    finally:
        client.close()
    print(
        f"stopped: {stats.events:,} events, {stats.conversations:,} new conversations, "
        f"{stats.replies:,} replies, {stats.skipped_replies:,} skipped while a human held the conversation "
        f"or it was stopped; sdk {client.stats()}",
        flush=True,
    )
    return 0
