"""One model call, one row: spans of the same call from several instrumentations become one event.

The anthropic SDK traces its own calls (`anthropic.messages.create`) whenever a tracer provider is
set; OpenLLMetry's or OpenInference's instrumentation on top adds a second span for the same call.
Two call spans are the same call when they carry the same `gen_ai.response.id` (in any trace), or,
in one trace, when one is the other's parent, or when they come from different instrumentation
scopes, name the same provider and one's time span holds the other's (one client wraps the other).

A group keeps the values of its most complete span (most non-zero token counts, then the
provider's own SDK), the conversation of any member or of the nearest ancestor span that names one
(`gen_ai.conversation.id` or `session.id`), and a row id that every export of the same call shares
(`genai.call_row_id`). Calls and span contexts are remembered for a bounded number of traces, so a
span of a call already stored from an earlier export request is counted as merged, not stored again.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from observability.worker.genai import call_row_id, conversation_of, response_id
from observability.worker.otlp import SpanView

PREFERRED_SCOPES = ("com.anthropic.sdk",)  # the provider's own tracing reads the response as sent


@dataclass(slots=True)
class CallSpan:
    view: SpanView
    event: list  # the span's own llm wire event


@dataclass(slots=True)
class _Ref:
    span_id: str
    parent: str
    scope: str
    start: int
    end: int
    provider: str
    response: str | None


def _same_call(a: _Ref, b: _Ref) -> bool:
    if a.response is not None and a.response == b.response:
        return True
    if a.parent == b.span_id or b.parent == a.span_id:
        return True
    if a.scope == b.scope or a.provider != b.provider:
        return False
    return (a.start <= b.start and b.end <= a.end) or (b.start <= a.start and a.end <= b.end)


def _ref(c: CallSpan) -> _Ref:
    v = c.view
    return _Ref(v.span_id, v.parent_span_id, v.scope, v.start_ns, v.end_ns, c.event[7], response_id(v))


def _score(c: CallSpan) -> tuple:
    e = c.event
    return (sum(1 for x in e[8:12] if x), response_id(c.view) is not None,
            c.view.scope.startswith(PREFERRED_SCOPES))  # fmt: skip


class CallMerger:
    """Groups the call spans of export requests; remembers recent traces (bounded)."""

    def __init__(self, max_traces: int = 50_000, max_spans: int = 200_000) -> None:
        self.max_traces, self.max_spans = max_traces, max_spans
        self._calls: collections.OrderedDict[str, list[_Ref]] = collections.OrderedDict()
        self._spans: collections.OrderedDict[tuple[str, str], tuple[str, str | None]] = (
            collections.OrderedDict()
        )

    def remember_spans(self, views: list[SpanView]) -> None:
        """Every span's parent and conversation, for children that come in later requests."""
        spans = self._spans
        for v in views:
            spans[(v.trace_id, v.span_id)] = (v.parent_span_id, conversation_of(v.attrs))
        while len(spans) > self.max_spans:
            spans.popitem(last=False)

    def conversation(self, view: SpanView, local: dict[tuple[str, str], SpanView]) -> str | None:
        """The conversation named by the nearest ancestor of `view` (this request's spans first)."""
        parent, seen = view.parent_span_id, 0
        while parent and seen < 64:
            seen += 1
            key = (view.trace_id, parent)
            if (p := local.get(key)) is not None:
                if conv := conversation_of(p.attrs):
                    return conv
                parent = p.parent_span_id
            elif (known := self._spans.get(key)) is not None:
                if known[1]:
                    return known[1]
                parent = known[0]
            else:
                return None
        return None

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
        for i, (c, r) in enumerate(zip(calls, refs, strict=True)):
            if r.response is not None:
                j = by_response.setdefault(r.response, i)
                parent[find(i)] = find(j)
            for j in by_trace[c.view.trace_id]:
                if _same_call(r, refs[j]):
                    parent[find(i)] = find(j)
            by_trace[c.view.trace_id].append(i)
        groups: dict[int, list[CallSpan]] = collections.defaultdict(list)
        for i, c in enumerate(calls):
            groups[find(i)].append(c)
        return list(groups.values())

    def seen_before(self, group: list[CallSpan]) -> bool:
        """True when a span of this call came in an earlier request (the row is stored already)."""
        for c in group:
            known = self._calls.get(c.view.trace_id)
            if known and any(_same_call(_ref(c), k) for k in known):
                return True
        return False

    def remember(self, group: list[CallSpan]) -> None:
        for c in group:
            d = self._calls
            d.setdefault(c.view.trace_id, []).append(_ref(c))
            d.move_to_end(c.view.trace_id)
            while len(d) > self.max_traces:
                d.popitem(last=False)

    @staticmethod
    def best(group: list[CallSpan]) -> tuple[CallSpan, str]:
        """The most complete span of a group and the group's row id."""
        best = max(group, key=_score)
        responses = [r for c in group if (r := response_id(c.view)) is not None]
        if responses:
            return best, call_row_id(best.view, responses[0])
        outer = min(group, key=lambda c: (c.view.start_ns, -c.view.end_ns))
        return best, call_row_id(outer.view, None)
