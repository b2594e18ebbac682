"""`POST /v1/traces`: the OTLP/HTTP trace receiver, answering as OTLP exporters expect.

It takes an OTLP `ExportTraceServiceRequest`, protobuf (`application/x-protobuf`) or JSON
(`application/json`), optionally gzip- or deflate-compressed, and stores the model calls among its
spans (`genai.py`) through the same ingest path as SDK events. Here live the rules of the endpoint
itself: the bearer token, the content types, the size limits, and the counting of every span.

Agent spans (`invoke_agent`) of a trace whose model calls came as spans of their own would count
the same tokens twice: they are counted and ignored. A span with bad values (negative tokens, end
before start, an id of the wrong length) is rejected alone: the answer is 200 with `partial_success`
saying how many and why. A body that cannot be decoded gets 400 with the reason; a missing or wrong
bearer token when `OTLP_INGEST_TOKEN` is set gets 401; a store outage gets 503 with `Retry-After`,
which OTLP exporters retry, so nothing is lost.
"""

from __future__ import annotations

import base64
import collections
import hmac
import json
import logging
import threading
from typing import Any

from observability.settings import Settings
from observability.store import Store, StoreUnavailable, otlp_counts
from observability.store.ingest import (
    CallWrite,
    amend_llm_calls,
    is_conflict,
    is_data_error,
    write_batch,
    write_calls,
)
from observability.worker.decoding import AGENT, CALL, IGNORED, MAX_DECODED_BYTES, DecoderPool  # noqa: F401 (the limit is part of this endpoint)
from observability.worker.genai import ignore_reason
from observability.worker.merge import CallMerger, CallSpan, Plan
from observability.worker.otlp import SpanRejected, SpanView
from observability.worker.response import BadRequest, Response

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024  # as received
MAX_REASONS = 5  # rejected spans named in a partial-success message
RPC_CODES = {400: 3, 401: 16, 413: 8, 415: 3, 503: 14}  # HTTP status -> google.rpc.Code (else 13)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def rpc_status(code: int, message: str) -> bytes:
    """A google.rpc.Status message (code, message), the OTLP/HTTP error body for protobuf."""
    msg = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(msg)) + msg


class GroupCommit:
    """The writes of concurrent export requests in few transactions: one commit (and one pool
    checkout, one rollup mark) for all the requests that arrived while the earlier ones ran.

    Up to `OTLP_WRITE_TRANSACTIONS` transactions run at once: a request that finds one free takes
    itself and every request queued before it into a transaction; the others wait until theirs is
    taken and committed. Two at once let one transaction's round trips and its work in PostgreSQL
    overlap the next one's, which one alone leaves the receiver waiting for. Each request is answered
    only once its own writes are committed, so a 200 still means durable. When the store refuses
    some data, the requests of that transaction are written again one by one, so only the bad one
    fails; a store outage fails them all (503, retried). Requests about the same traces never share
    the store at once (the receiver orders them), so concurrent transactions touch different calls.
    """

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store, self.settings = store, settings
        # SQLite writes one transaction at a time whatever the receiver does
        self.max_writers = max(1, settings.otlp_write_transactions) if store.is_postgres else 1
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._writers = 0
        self.transactions = 0  # for tests and benchmarks: commits so far
        self.requests = 0

    @property
    def writing(self) -> int:
        """Transactions running."""
        return self._writers

    @property
    def waiting(self) -> int:
        """Requests queued for the next transaction."""
        return len(self._queue)

    def write(self, write: CallWrite) -> list[str]:
        """Store one request's writes; returns reasons for events the store refused (not expected).
        Raises what the store raised for the transaction that held them."""
        mine = _Pending(write)
        batch: list[_Pending] | None = None
        with self._cond:
            self._queue.append(mine)
            while not mine.taken:
                if self._writers < self.max_writers:
                    batch, self._queue = self._queue, []
                    for p in batch:
                        p.taken = True
                    self._writers += 1
                    break
                self._cond.wait()
        if batch is not None:
            try:
                self._run(batch)
            except BaseException as exc:  # not even an interrupt may leave the others waiting
                for p in batch:
                    if not p.done.is_set():
                        p.error = p.error or exc
                        p.done.set()
                raise
            finally:
                with self._cond:
                    self._writers -= 1
                    self._cond.notify_all()
        mine.done.wait()
        if mine.error is not None:
            raise mine.error
        return mine.reasons

    CONFLICT_RETRIES = 3  # a transaction PostgreSQL chose as a deadlock's victim is run again

    def _run(self, batch: list[_Pending]) -> None:
        try:
            for attempt in range(self.CONFLICT_RETRIES + 1):
                try:
                    write_calls(self.store, [p.write for p in batch], self.settings)
                    break
                except Exception as exc:  # noqa: BLE001
                    if not is_conflict(exc) or attempt == self.CONFLICT_RETRIES:
                        raise
                    log.info("OTLP transaction ran into a concurrent one (%s): run again", type(exc).__name__)
            self.transactions += 1
        except Exception as exc:  # noqa: BLE001 - every waiting request gets its own outcome
            if len(batch) > 1 and is_data_error(exc):
                for p in batch:
                    self._run_alone(p)
            else:
                for p in batch:
                    p.error = exc
                    p.done.set()
            return
        finally:
            self.requests += len(batch)
        for p in batch:
            p.done.set()

    def _run_alone(self, p: _Pending) -> None:
        """One request by the careful path: bad events are found and refused, the rest stored."""
        try:
            w = p.write
            if w.events:
                result = write_batch(self.store, w.events, self.settings)
                p.reasons = result.reasons if result.rejected else []
            if w.amended or w.links:
                amend_llm_calls(self.store, w.replaced, w.amended, w.links, self.settings)
            self.transactions += 1
        except Exception as exc:  # noqa: BLE001
            p.error = exc
        p.done.set()


class _Pending:
    __slots__ = ("write", "taken", "done", "error", "reasons")

    def __init__(self, write: CallWrite) -> None:
        self.write = write
        self.taken = False  # in a transaction (set under GroupCommit's lock)
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.reasons: list[str] = []


class OTLPReceiver:
    """Decode, turn GenAI spans into llm_calls rows, answer per OTLP/HTTP; counts what it saw."""

    RECENT_TRACES = 100_000
    COUNTS_FLUSH_S = 1.0  # scope counts reach the store (the Admin page) this long after a request

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._lock = threading.Lock()
        self.requests: collections.Counter = collections.Counter()  # HTTP status -> requests
        self.spans: collections.Counter = collections.Counter()  # outcome -> spans
        # traces whose model calls came as spans of their own (agent spans there are aggregates)
        self._traces_with_calls: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.merger = CallMerger(window_s=settings.otlp_context_window_s)
        self._cond = threading.Condition(self._lock)
        self._inflight: set[str] = set()  # trace ids of requests being merged and stored
        self.by_scope: collections.Counter = collections.Counter()  # (scope, outcome) -> spans
        self._warned: set[str] = set()  # scopes whose GenAI-looking spans were logged as ignored
        self._pending: collections.Counter = collections.Counter()  # by_scope not yet added to the store
        self._flush_timer: threading.Timer | None = None
        self.writer = GroupCommit(store, settings)
        self.decoders = DecoderPool(settings.otlp_decode_processes, settings.otlp_decode_min_bytes)

    def close(self) -> None:
        """Stop the decoder processes (the server calls this as it stops)."""
        self.decoders.close()

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """A consistent copy of (requests by HTTP status, spans by outcome), for /metrics."""
        with self._lock:
            return dict(self.requests), dict(self.spans)

    def _count(self, status: int, **spans: int) -> None:
        with self._lock:
            self.requests[str(status)] += 1
            for k, v in spans.items():
                if v:
                    self.spans[k] += v

    def authorized(self, authorization: str | None) -> bool:
        """The bearer token; or HTTP basic auth whose password is the token (the Langfuse SDK sends
        its public and secret keys so: LANGFUSE_SECRET_KEY set to the token)."""
        token = self.settings.otlp_ingest_token
        if not token:
            return True
        if not authorization:
            return False
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "basic":
            try:
                value = base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                return False
        elif scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(value.strip().encode(), token.encode())

    def export(
        self,
        body: bytes,
        content_type: str | None,
        content_encoding: str | None = None,
        authorization: str | None = None,
    ) -> Response:
        ctype = (content_type or "").split(";")[0].strip().lower()
        as_json = ctype == "application/json"

        def error(status: int, reason: str, headers: dict[str, str] | None = None) -> Response:
            self._count(status)
            code = RPC_CODES.get(status, 13)
            if as_json:
                data = json.dumps({"code": code, "message": reason}).encode()
                return Response(status, data, "application/json", headers or {})
            return Response(status, rpc_status(code, reason), "application/x-protobuf", headers or {})

        if not self.authorized(authorization):
            return error(
                401, "missing or wrong bearer token (OTLP_INGEST_TOKEN)", {"WWW-Authenticate": "Bearer"}
            )
        if ctype not in ("application/json", "application/x-protobuf", "application/protobuf"):
            return error(
                415,
                f"unsupported or missing Content-Type {ctype!r:.60}: use application/x-protobuf or application/json",
            )
        try:
            decoded = self.decoders.decode(body, content_encoding, as_json)
        except BadRequest as exc:
            log.info("OTLP request rejected: %s", exc)
            return error(exc.status, str(exc))
        views, rejected = decoded.views, decoded.rejected
        received = len(views) + len(rejected)
        agent_spans, calls, ignored = [], [], 0
        by_scope: collections.Counter = collections.Counter()  # (scope, outcome) -> spans
        for item in rejected:
            by_scope[(getattr(item, "scope", ""), "rejected")] += 1
        for scope, n in collections.Counter([v.scope for v in views]).items():
            by_scope[(scope, "received")] += n
        for v, (what, x) in zip(views, decoded.outcomes, strict=True):
            if what == CALL:
                calls.append(CallSpan(v, x))
            elif what == IGNORED:
                ignored += 1
                self._ignored(v, by_scope, x)
            elif what == AGENT:
                agent_spans.append((v, x))
            else:
                rejected.append(x)
                by_scope[(v.scope, "rejected")] += 1
        if calls:
            self._remember({c.view.trace_id for c in calls})
        traces = {v.trace_id for v in views}
        with self._cond:  # requests about the same traces merge one after the other
            self._cond.wait_for(lambda: self._inflight.isdisjoint(traces), timeout=30)
            self._inflight |= traces
            plan = self.merger.plan(calls, views)
        try:
            return self._store(
                plan, views, agent_spans, by_scope, as_json, rejected, received, ignored, error
            )
        finally:
            with self._cond:
                self._inflight -= traces
                self._cond.notify_all()

    def _store(self, plan: Plan, views: list[SpanView], agent_spans: list, by_scope: collections.Counter,
               as_json: bool, rejected: list, received: int, ignored: int, error: Any) -> Response:  # fmt: skip
        events = plan.events()
        stored: collections.Counter = collections.Counter()  # scope -> calls stored
        for group, best, _ in plan.new:
            stored[best.view.scope] += 1
            if len(group) > 1:
                by_scope.update((c.view.scope, "merged") for c in group if c is not best)
                ignored += len(group) - 1
        for scope, n in stored.items():
            by_scope[(scope, "stored")] += n
        by_scope.update((c.view.scope, "merged") for c in plan.merged)
        ignored += len(plan.merged)
        for v, e in agent_spans:
            if self._seen(v.trace_id):
                ignored += 1
                self._ignored(v, by_scope, "agent_aggregate")
            else:
                events.append(e)
                by_scope[(v.scope, "stored")] += 1
        write = CallWrite(events, plan.replaced(), [list(e) for _, e, *_ in plan.amended], plan.links)
        try:
            if events or write.amended or write.links:
                reasons = self.writer.write(write)
                rejected.extend(SpanRejected(r) for r in reasons)  # not expected: events were checked
        except StoreUnavailable as exc:
            log.warning("OTLP export deferred, store unavailable: %s", exc)
            return error(503, "store unavailable, retry later", {"Retry-After": "5"})
        except Exception as exc:  # noqa: BLE001
            log.exception("OTLP export failed")
            return error(500, f"cannot store spans: {type(exc).__name__}")
        self._count(200, received=received, llm=len(events), ignored=ignored, rejected=len(rejected),
                    amended=len(plan.amended))  # fmt: skip
        with self._lock:  # only once stored: a retried export after a 503 must be stored, not merged
            self.by_scope.update(by_scope)
            self._pending.update(by_scope)
            self._schedule_flush()
            self.merger.commit(plan, views)
        return self._success(as_json, rejected)

    def _ignored(self, v: SpanView, by_scope: collections.Counter, reason: str | None = None) -> None:
        reason = reason or ignore_reason(v)
        by_scope[(v.scope, "ignored")] += 1
        by_scope[(v.scope, f"ignored:{reason}")] += 1
        if reason == "no_model" and v.scope not in self._warned:
            with self._lock:  # concurrent requests of one scope: still one line
                first = v.scope not in self._warned
                self._warned.add(v.scope)
            if not first:
                return
            log.warning(
                "OTLP: spans of scope %r look like GenAI (gen_ai.* / llm.* attributes) but name no model: "
                "they are ignored and counted in obs_otlp_scope_spans_total{outcome=\"ignored\"} "
                "(first: %r with %s)", v.scope, v.name, sorted(v.attrs)[:12],
            )  # fmt: skip

    def _schedule_flush(self) -> None:
        """Add the pending scope counts to the store within COUNTS_FLUSH_S (held: self._lock)."""
        if self._flush_timer is None and self._pending:
            self._flush_timer = threading.Timer(self.COUNTS_FLUSH_S, self.flush_counts)
            self._flush_timer.daemon = True
            self._flush_timer.start()

    def flush_counts(self) -> None:
        """Add the scope counts of the last second to the store's totals (`store.otlp_counts`), off
        the request path; while the store is down they are kept and tried again."""
        with self._lock:
            pending, self._pending, self._flush_timer = self._pending, collections.Counter(), None
        if not pending:
            return
        try:
            otlp_counts.add(self.store, pending)
        except Exception as exc:  # noqa: BLE001 - kept for the next try
            log.info("OTLP scope counts not stored yet (%s): kept for the next try", type(exc).__name__)
            with self._lock:
                self._pending.update(pending)
                self._schedule_flush()

    def scope_counts(self) -> dict[tuple[str, str], int]:
        """Spans by (instrumentation scope, outcome), for /metrics; `ignored:<reason>` too."""
        with self._lock:
            return dict(self.by_scope)

    def _remember(self, trace_ids: set[str]) -> None:
        with self._lock:
            d = self._traces_with_calls
            for trace_id in trace_ids:
                d[trace_id] = None
                d.move_to_end(trace_id)
            while len(d) > self.RECENT_TRACES:
                d.popitem(last=False)

    def _seen(self, trace_id: str) -> bool:
        with self._lock:
            return trace_id in self._traces_with_calls

    @staticmethod
    def _success(as_json: bool, rejected: list[SpanRejected]) -> Response:
        message = ""
        if rejected:
            reasons = [str(r) for r in rejected[:MAX_REASONS]]
            more = f" (and {len(rejected) - MAX_REASONS} more)" if len(rejected) > MAX_REASONS else ""
            message = f"{len(rejected)} span(s) rejected: " + "; ".join(reasons) + more
            log.info("OTLP partial success: %s", message)
        if as_json:
            doc: dict[str, Any] = {}
            if rejected:
                doc["partialSuccess"] = {"rejectedSpans": str(len(rejected)), "errorMessage": message}
            return Response(200, json.dumps(doc).encode(), "application/json")
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        resp = ExportTraceServiceResponse()
        if rejected:
            resp.partial_success.rejected_spans = len(rejected)
            resp.partial_success.error_message = message
        return Response(200, resp.SerializeToString(), "application/x-protobuf")
