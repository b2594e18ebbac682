"""One model call, one row, with its context from the trace: spans into the rows they amount to.

The anthropic SDK traces its own calls (`anthropic.messages.create`) whenever a tracer provider is
set; OpenLLMetry's or OpenInference's instrumentation on top adds a second span for the same call.
Two call spans are the same call when they carry the same `gen_ai.response.id` (in any trace); in
one trace, when one is the other's parent, or when they come from different instrumentation scopes,
name the same provider and one's time span holds the other's (one client wraps the other). A failed
call has no response id, and outside any span of the bot the SDK's span and the instrumentation's
are roots of two traces: there, root call spans of the same process (resource), provider and model
whose time spans nest are the same call.

A group keeps the values of its most complete span (most non-zero token counts, then a response id,
then the provider's own SDK) and a row id that every export of the same call shares
(`genai.call_row_id`). Its conversation, bot, agent and account come from the call's spans, else
from the nearest ancestor in the trace that names them (`genai.span_context`), else from the
resource (`genai.resource_context`, the bot from `service.name`).

Spans come in many export requests: a bot's span ends, so is exported, after its calls. A call is
stored at once with what is known (nothing is held only in memory, so a worker restart loses no
call), and while its ancestry is incomplete it stays open for `window_s` seconds: an ancestor that
arrives meanwhile, or a more complete span of the same call, amends the stored row. Calls and span
contexts are remembered for a bounded number of traces, so spans of a call already stored are
counted as merged, and a re-delivered export stores nothing twice.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Any

from observability.worker.genai import (
    Context,
    call_row_id,
    is_logfire_stream_request,
    logfire_stream_seconds,
    resource_context,
    response_id,
    span_context,
)
from observability.worker.otlp import SpanView

PREFERRED_SCOPES = ("com.anthropic.sdk",)  # the provider's own tracing reads the response as sent
MAX_DEPTH = 64  # ancestors walked up from a call
# positions in an llm wire event (observability.events.llm_call)
E_ID, E_TS, E_BOT, E_AGENT, E_MODEL, E_PROVIDER, E_CONV, E_LATENCY = 1, 2, 3, 4, 6, 7, 15, 12
REQUEST_MODEL = "gen_ai.request.model"
CLOCK_SLACK_NS = 1_000_000  # a request span's end and its stream's start, read from two clocks


@dataclass(slots=True)
class CallSpan:
    view: SpanView
    event: list  # the span's own llm wire event
    _ref: _Ref | None = None  # computed once (`_ref`)


# What merging reads of a call span, as a plain tuple: (span id, parent span id, scope, start, end,
# provider, response id, model). Tuples of strings and numbers are untracked by the cycle collector,
# so the tens of thousands of them remembered cost no garbage-collection time (objects with
# attributes did: about a fifth of the receiver's CPU went to full collections walking them).
_Ref = tuple
R_SPAN, R_PARENT, R_SCOPE, R_START, R_END, R_PROVIDER, R_RESPONSE, R_MODEL = range(8)


@dataclass(slots=True)
class StoredCall:
    """A call stored from the spans seen so far: enough to merge later spans of it and amend it."""

    row_id: str
    trace_id: str
    event: tuple  # as stored, context included (a tuple: see `_Ref`)
    refs: tuple[_Ref, ...]
    score: tuple
    own: Context  # what the call's own spans name
    anchor: str  # the parent span id of the call's outermost span: where its ancestry starts
    resource: dict
    open_until: float = 0.0  # monotonic time until which missing ancestors may still amend it


@dataclass(slots=True)
class Plan:
    """What one export request amounts to; `CallMerger.commit` remembers it once it is stored."""

    new: list[tuple[list[CallSpan], CallSpan, StoredCall]] = field(default_factory=list)  # group, best
    amended: list[tuple[StoredCall, tuple, Context, tuple]] = field(default_factory=list)  # new event
    merged: list[CallSpan] = field(default_factory=list)  # spans of calls stored before
    # (conversation, ts, bot, account) of calls naming both
    links: list[tuple[str, float, str | None, str | None]] = field(default_factory=list)
    # the request's spans: (trace id, span id) -> (parent span id, what the span names)
    local: dict[tuple[str, str], tuple[str, Context]] = field(default_factory=dict)

    def events(self) -> list[list]:
        return [list(s.event) for *_, s in self.new]

    def replaced(self) -> list[tuple[str, float]]:
        return [(s.row_id, s.event[E_TS]) for s, *_ in self.amended]


def _holds(a: _Ref, b: _Ref) -> bool:
    """One client wraps the other: another scope, the same provider, one's time span holds the other's."""
    if a[R_SCOPE] == b[R_SCOPE] or a[R_PROVIDER] != b[R_PROVIDER]:
        return False
    return (a[R_START] <= b[R_START] and b[R_END] <= a[R_END]) or (
        b[R_START] <= a[R_START] and a[R_END] <= b[R_END]
    )


def _same_call(a: _Ref, b: _Ref) -> bool:
    """Two call spans of one trace."""
    if a[R_RESPONSE] is not None and a[R_RESPONSE] == b[R_RESPONSE]:
        return True
    if a[R_PARENT] == b[R_SPAN] or b[R_PARENT] == a[R_SPAN]:
        return True
    return _holds(a, b)


def _ref(c: CallSpan) -> _Ref:
    r = c._ref
    if r is None:
        v, e = c.view, c.event
        r = c._ref = (v.span_id, v.parent_span_id, v.scope, v.start_ns, v.end_ns, e[E_PROVIDER], response_id(v),
                      e[E_MODEL])  # fmt: skip
    return r


def _root_key(c: CallSpan) -> tuple | None:
    """For a root call span: its process (resource) and provider. Outside any span of the bot, the
    anthropic SDK's span and an instrumentation's span of one call are roots of two traces; a failed
    call has no response id, and a streamed one may have it on one span only."""
    v = c.view
    if v.parent_span_id:
        return None
    return tuple(sorted((k, str(x)) for k, x in v.resource.items())), c.event[E_PROVIDER]


def _same_root_call(a: _Ref, b: _Ref) -> bool:
    """Two root call spans of one process and provider: another scope, nested times, the same model
    (one may name the dated version) and no two different response ids."""
    if a[R_RESPONSE] is not None and b[R_RESPONSE] is not None:
        return a[R_RESPONSE] == b[R_RESPONSE]
    return _holds(a, b) and (a[R_MODEL].startswith(b[R_MODEL]) or b[R_MODEL].startswith(a[R_MODEL]))


def _score(c: CallSpan) -> tuple:
    e, r = c.event, _ref(c)
    return ((e[8] != 0) + (e[9] != 0) + (e[10] != 0) + (e[11] != 0), r[R_RESPONSE] is not None,
            r[R_SCOPE].startswith(PREFERRED_SCOPES))  # fmt: skip


def _fill(ctx: Context, more: Context) -> Context:
    a, b, c, d = ctx
    if a is not None and b is not None and c is not None and d is not None:
        return ctx
    w, x, y, z = more
    return (w if a is None else a, x if b is None else b, y if c is None else c, z if d is None else d)


def _with_context(event: list | tuple, row_id: str, ctx: Context) -> tuple:
    e = list(event)
    e[E_ID], e[E_CONV], e[E_BOT], e[E_AGENT] = row_id, ctx[0], ctx[1], ctx[2]
    return tuple(e)


class CallMerger:
    """Groups the call spans of export requests; remembers recent traces (bounded)."""

    MAX_ROOTS = 64  # recent root calls (with, and without a response id) remembered per process and provider

    def __init__(self, max_traces: int = 50_000, max_spans: int = 200_000, window_s: float = 60.0) -> None:
        self.max_traces, self.max_spans, self.window_s = max_traces, max_spans, window_s
        self._calls: collections.OrderedDict[str, list[StoredCall]] = collections.OrderedDict()
        self._roots: collections.OrderedDict[tuple, tuple[collections.deque, collections.deque]] = (
            collections.OrderedDict()
        )
        self._responses: collections.OrderedDict[str, StoredCall] = collections.OrderedDict()
        self._spans: collections.OrderedDict[tuple[str, str], tuple[str, Context]] = collections.OrderedDict()
        self._resources: dict[int, tuple[dict, Context]] = {}
        # Logfire's spans around streamed requests, by (trace, parent span, scope): (start, end, model)
        self._stream_requests: collections.OrderedDict[tuple[str, str, str], list[tuple[int, int, Any]]] = (
            collections.OrderedDict()
        )

    # ---- Logfire's streamed calls -----------------------------------------------------------

    @staticmethod
    def _stream_request_key(v: SpanView) -> tuple[str, str, str]:
        return v.trace_id, v.parent_span_id, v.scope

    def whole_streams(self, calls: list[CallSpan], views: list[SpanView]) -> None:
        """Give Logfire's streamed calls their whole time: from their request's start to the stream's end.

        Logfire's log of a streamed call times the stream from its first chunk only; the wait for the
        model's first token (most of a streamed call) is in the span around the request, its sibling
        (same parent, same scope), which ended before the stream began. The latest such request span
        of the same request model that ended before the log's stream began is the call's (this
        request's spans, or remembered from an earlier one: the request span is exported first); the
        call then starts at that span's start. Without it (a worker restarted in between) the log's
        own `duration` stays."""
        logs = [(c, d) for c in calls if (d := logfire_stream_seconds(c.view)) is not None]
        if not logs:
            return
        local: dict[tuple[str, str, str], list[tuple[int, int, Any]]] = collections.defaultdict(list)
        for v in views:
            if is_logfire_stream_request(v):
                local[self._stream_request_key(v)].append((v.start_ns, v.end_ns, v.attrs.get(REQUEST_MODEL)))
        for c, seconds in logs:
            v = c.view
            key = self._stream_request_key(v)
            stream_start = v.end_ns - int(seconds * 1e9)
            model = v.attrs.get(REQUEST_MODEL)
            best = None
            for req in (*self._stream_requests.get(key, ()), *local.get(key, ())):
                if (
                    req[1] <= stream_start + CLOCK_SLACK_NS
                    and (model is None or req[2] == model)
                    and (best is None or req[1] > best[1])
                ):
                    best = req
            if best is not None and best[0] <= v.end_ns:
                e = c.event = list(c.event)
                e[E_TS], e[E_LATENCY] = best[0] / 1e9, (v.end_ns - best[0]) / 1e6

    def _remember_stream_requests(self, views: list[SpanView]) -> None:
        d = self._stream_requests
        for v in views:
            if is_logfire_stream_request(v):
                key = self._stream_request_key(v)
                d.setdefault(key, []).append((v.start_ns, v.end_ns, v.attrs.get(REQUEST_MODEL)))
                d.move_to_end(key)
        while len(d) > self.max_traces:
            d.popitem(last=False)

    # ---- context from the trace -------------------------------------------------------------

    def context(
        self,
        trace_id: str,
        own: Context,
        anchor: str,
        resource: dict,
        local: dict[tuple[str, str], tuple[str, Context]],
    ) -> tuple[Context, bool]:
        """(conversation, bot, agent, account) of a call, and whether its ancestry is complete.

        The call's own spans first, then the nearest ancestor naming each (this request's spans,
        then those remembered from earlier requests), then the resource."""
        ctx, parent, depth = own, anchor, 0
        while parent and None in ctx and depth < MAX_DEPTH:
            depth += 1
            key = (trace_id, parent)
            if (known := local.get(key) or self._spans.get(key)) is not None:
                ctx, parent = _fill(ctx, known[1]), known[0]
            else:
                return _fill(ctx, self._resource_context(resource)), False
        return _fill(ctx, self._resource_context(resource)), True

    def _resource_context(self, resource: dict) -> Context:
        """`resource_context`, once per resource (every span of a request shares its resource's dict)."""
        hit = self._resources.get(id(resource))
        if hit is not None and hit[0] is resource:
            return hit[1]
        if len(self._resources) >= 256:
            self._resources.clear()
        ctx = resource_context(resource)
        self._resources[id(resource)] = (resource, ctx)
        return ctx

    # ---- grouping ---------------------------------------------------------------------------

    def group(self, calls: list[CallSpan]) -> list[list[CallSpan]]:
        """The calls of one request in groups that are one model call each."""
        parent = list(range(len(calls)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        refs = [_ref(c) for c in calls]
        by_response: dict[str, int] = {}
        by_trace: dict[str, list[int]] = collections.defaultdict(list)
        by_root: dict[tuple, tuple[list[int], list[int]]] = collections.defaultdict(lambda: ([], []))
        for i, (c, r) in enumerate(zip(calls, refs, strict=True)):
            if r[R_RESPONSE] is not None:
                j = by_response.setdefault(r[R_RESPONSE], i)
                parent[find(i)] = find(j)
            for j in by_trace[c.view.trace_id]:
                if _same_call(r, refs[j]):
                    parent[find(i)] = find(j)
            by_trace[c.view.trace_id].append(i)
            if (key := _root_key(c)) is not None:  # spans with response ids are matched above
                with_id, without_id = by_root[key]
                for j in without_id if r[R_RESPONSE] is not None else (*with_id, *without_id):
                    if _same_root_call(r, refs[j]):
                        parent[find(i)] = find(j)
                (with_id if r[R_RESPONSE] is not None else without_id).append(i)
        groups: dict[int, list[CallSpan]] = collections.defaultdict(list)
        for i, c in enumerate(calls):
            groups[find(i)].append(c)
        return list(groups.values())

    def stored_as(self, group: list[CallSpan]) -> StoredCall | None:
        """The call stored from an earlier request that these spans belong to, if any."""
        for c in group:
            r = _ref(c)
            if r[R_RESPONSE] is not None and (s := self._responses.get(r[R_RESPONSE])) is not None:
                return s
            for s in self._calls.get(c.view.trace_id, ()):
                if any(_same_call(r, k) for k in s.refs):
                    return s
            if (key := _root_key(c)) is not None and (roots := self._roots.get(key)) is not None:
                with_id, without_id = roots
                for k, s in reversed((*with_id, *without_id) if r[R_RESPONSE] is None else without_id):
                    if _same_root_call(r, k):
                        return s
        return None

    @staticmethod
    def best(group: list[CallSpan]) -> tuple[CallSpan, str]:
        """The most complete span of a group and the group's row id."""
        if len(group) == 1:  # the common case: one span, one call
            (best,) = group
            return best, call_row_id(best.view, _ref(best)[R_RESPONSE])
        best = max(group, key=_score)
        responses = [r for c in group if (r := response_id(c.view)) is not None]
        if responses:
            return best, call_row_id(best.view, responses[0])
        outer = min(group, key=lambda c: (c.view.start_ns, -c.view.end_ns))
        return best, call_row_id(outer.view, None)

    @staticmethod
    def _own(
        group: list[CallSpan], best: CallSpan, local: dict[tuple[str, str], tuple[str, Context]]
    ) -> Context:
        own = local[(best.view.trace_id, best.view.span_id)][1]
        if len(group) == 1:
            return own
        for c in group:
            if None not in own:
                break
            own = _fill(own, local[(c.view.trace_id, c.view.span_id)][1])
        return own

    # ---- one request --------------------------------------------------------------------------

    def plan(self, calls: list[CallSpan], views: list[SpanView], now: float | None = None) -> Plan:
        """New rows, amended rows and merged spans of one request (nothing is remembered yet)."""
        now = time.monotonic() if now is None else now
        self.whole_streams(calls, views)
        local = {(v.trace_id, v.span_id): (v.parent_span_id, span_context(v.attrs)) for v in views}
        out = Plan(local=local)
        touched: dict[int, StoredCall] = {}  # stored calls amended by this request, by id()
        for group in self.group(calls):
            stored = self.stored_as(group)
            if stored is None:
                best, row_id = self.best(group)
                outer = (
                    group[0]
                    if len(group) == 1
                    else min(group, key=lambda c: (c.view.start_ns, -c.view.end_ns))
                )
                own = self._own(group, best, local)
                v = outer.view
                ctx, complete = self.context(v.trace_id, own, v.parent_span_id, v.resource, local)
                s = StoredCall(row_id, v.trace_id, _with_context(best.event, row_id, ctx), tuple([_ref(c) for c in group]),
                               _score(best), own, v.parent_span_id, v.resource,
                               0.0 if complete else now + self.window_s)  # fmt: skip
                out.new.append((group, best, s))
                self._link(out, s.event, ctx)
                continue
            out.merged.extend(group)
            best = max(group, key=_score)
            event = best.event if _score(best) > stored.score else None
            own = (
                _fill(self._own(group, best, local), stored.own)
                if event
                else _fill(stored.own, self._own(group, best, local))
            )
            ctx, complete = self.context(stored.trace_id, own, stored.anchor, stored.resource, local)
            new = _with_context(event or stored.event, stored.row_id, ctx)
            if new != stored.event:
                out.amended.append((stored, new, own, _score(best) if event else stored.score))
                touched[id(stored)] = stored
            self._link(out, new, ctx)
        # calls stored earlier whose ancestors may be among this request's spans
        for trace_id in {v.trace_id for v in views}:
            for s in self._calls.get(trace_id, ()):
                if s.open_until <= now or id(s) in touched:
                    continue
                ctx, _ = self.context(s.trace_id, s.own, s.anchor, s.resource, local)
                new = _with_context(s.event, s.row_id, ctx)
                if new != s.event:
                    out.amended.append((s, new, s.own, s.score))
                    touched[id(s)] = s
                    self._link(out, new, ctx)
        return out

    @staticmethod
    def _link(plan: Plan, event: list | tuple, ctx: Context) -> None:
        """A call that names its conversation and account ties the two (conversations.account_id)."""
        if ctx[0] is not None and ctx[3] is not None:
            plan.links.append((ctx[0], event[E_TS], ctx[1], ctx[3]))

    def commit(self, plan: Plan, views: list[SpanView], now: float | None = None) -> None:
        """Remember what `plan` stored: its calls, their amendments, and every span's context."""
        now = time.monotonic() if now is None else now
        local = plan.local
        self._remember_stream_requests(views)
        self._spans.update(local)
        while len(self._spans) > self.max_spans:
            self._spans.popitem(last=False)
        for group, _, s in plan.new:
            self._remember_call(s, group)
        for s, event, own, score in plan.amended:
            s.event, s.own, s.score = event, own, score
            if s.open_until > now:
                _, complete = self.context(s.trace_id, s.own, s.anchor, s.resource, local)
                s.open_until = 0.0 if complete else s.open_until
        for c in plan.merged:
            if (s := self.stored_as([c])) is not None and not any(
                r[R_SPAN] == c.view.span_id for r in s.refs
            ):
                s.refs = (*s.refs, _ref(c))
                self._remember_member(s, c)

    def _remember_call(self, s: StoredCall, group: list[CallSpan]) -> None:
        d = self._calls
        d.setdefault(s.trace_id, []).append(s)
        d.move_to_end(s.trace_id)
        for c in group:
            self._remember_member(s, c)
        while len(d) > self.max_traces:
            d.popitem(last=False)

    def _remember_member(self, s: StoredCall, c: CallSpan) -> None:
        """One span of a stored call: by its trace, its response id and (a root) its process."""
        r = _ref(c)
        if c.view.trace_id != s.trace_id:  # one call in several traces (a response id, or roots)
            calls = self._calls.setdefault(c.view.trace_id, [])
            if not any(x is s for x in calls):
                calls.append(s)
            self._calls.move_to_end(c.view.trace_id)
        if r[R_RESPONSE] is not None:
            self._responses[r[R_RESPONSE]] = s
            self._responses.move_to_end(r[R_RESPONSE])
            while len(self._responses) > self.max_spans:
                self._responses.popitem(last=False)
        if (key := _root_key(c)) is not None:
            roots = self._roots.get(key)
            if roots is None:
                roots = self._roots[key] = (collections.deque(maxlen=self.MAX_ROOTS),
                                            collections.deque(maxlen=self.MAX_ROOTS))  # fmt: skip
            roots[0 if r[R_RESPONSE] is not None else 1].append((r, s))
            self._roots.move_to_end(key)
            while len(self._roots) > self.max_traces:
                self._roots.popitem(last=False)
