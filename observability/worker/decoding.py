"""An export request's body read into what the receiver merges and stores, here or in decoder
processes.

Why other processes: reading a request (decompressing, parsing protobuf or JSON, building a
`SpanView` per span, reading each span's GenAI attributes into a wire event) is about a third of
the receiver's CPU per span, and it is a pure function of the body. In the receiver's process it
holds the GIL the merging and the store's client need, so one process cannot use more than one
core. `OTLP_DECODE_PROCESSES` decoder processes each take one body at a time over a pipe and answer
with the decoded request, pickled; the receiver keeps the merging, the memory of recent traces and
the writes, so what is stored does not depend on which process read a body.

A decoder is an accelerator, never a dependency: bodies under `OTLP_DECODE_MIN_BYTES` (where the
pipe's round trip costs more than it saves), requests arriving while no decoder is free or started,
and any request whose decoder dies are read in this process; a dead decoder is started again.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import logging
import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from observability.worker.genai import CONTEXT_KEYS, RESPONSE_ID_KEY, ignore_reason, is_agent_call, llm_event
from observability.worker.otlp import SpanRejected, SpanView, decode_spans
from observability.worker.response import BadRequest

log = logging.getLogger(__name__)

MAX_DECODED_BYTES = 64 * 1024 * 1024  # after decompression
ANSWER_TIMEOUT_S = 30.0  # a decoder silent this long is stuck: it is replaced, the body read here

# what a span turned out to be (`Decoded.outcomes`)
CALL, AGENT, IGNORED, REJECTED = 0, 1, 2, 3


@dataclass(slots=True)
class Decoded:
    """A request's spans and what each is: `outcomes[i]` is (CALL or AGENT, its wire event),
    (IGNORED, the reason) or (REJECTED, the SpanRejected) for `views[i]`; `rejected` holds the spans
    that could not even be read (each with its `scope`)."""

    views: list[SpanView]
    outcomes: list[tuple[int, Any]]
    rejected: list[SpanRejected]


def decompress(body: bytes, encoding: str | None) -> bytes:
    """The body as sent before its Content-Encoding, bounded; BadRequest when it cannot be."""
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc not in ("gzip", "x-gzip", "deflate"):
        raise BadRequest(f"unsupported Content-Encoding {enc!r:.40} (use gzip or none)", 415)
    wbits = 31 if enc != "deflate" else 15
    try:
        d = zlib.decompressobj(wbits)
        out = d.decompress(body, MAX_DECODED_BYTES + 1)
        if len(out) > MAX_DECODED_BYTES:
            raise BadRequest(f"decompressed body exceeds {MAX_DECODED_BYTES} bytes", 413)
        if not d.eof:
            raise BadRequest(f"truncated {enc} body")
        return out
    except zlib.error as exc:
        raise BadRequest(f"body is not valid {enc}: {exc}") from exc


def decode_request(body: bytes, encoding: str | None, as_json: bool) -> Decoded:
    """Every span of the body and what it is; raises BadRequest for a body that cannot be read."""
    views: list[SpanView] = []
    outcomes: list[tuple[int, Any]] = []
    rejected: list[SpanRejected] = []
    for item in decode_spans(decompress(body, encoding), as_json=as_json):
        if isinstance(item, SpanRejected):
            rejected.append(item)
            continue
        views.append(item)
        try:
            e = llm_event(item)
        except SpanRejected as exc:
            outcomes.append((REJECTED, exc))
            continue
        if e is None:
            outcomes.append((IGNORED, ignore_reason(item)))
        else:
            outcomes.append((AGENT if is_agent_call(item) else CALL, e))
    return Decoded(views, outcomes, rejected)


# ---- the decoder processes ----------------------------------------------------------------------

_FRAME = struct.Struct(">I")
_ROOT = Path(__file__).resolve().parents[2]  # the checkout holding the `observability` package


def _write_frame(out: IO[bytes], data: bytes) -> None:
    view = memoryview(_FRAME.pack(len(data)) + data)
    while view:  # an unbuffered pipe may take part of it at a time
        n = out.write(view)
        view = view[n if n is not None else len(view) :]
    out.flush()


def _read_exactly(inp: IO[bytes], n: int) -> bytes:
    """n bytes from a buffered pipe (the decoder's side); EOFError when the pipe closes."""
    data = inp.read(n)
    if len(data) < n:
        raise EOFError("decoder pipe closed")
    return data


def _read_frame(inp: IO[bytes]) -> bytes:
    (n,) = _FRAME.unpack(_read_exactly(inp, _FRAME.size))
    return _read_exactly(inp, n)


def _read_answer(fd: int, deadline: float) -> memoryview:
    """A decoder's answer from its (unbuffered) pipe, the receiver's side: EOFError when the pipe
    closes, TimeoutError past the deadline (a stuck decoder).

    Why each read takes all that has arrived: every wait here gives up the receiver's GIL, and
    taking it back behind the threads that merge and store costs up to a switch interval (5 ms) a
    time. With the pipe widened to hold a whole answer (`_widen`), the decoder writes it at once and
    this reads it with one wake-up, where 64 kB reads took one per chunk."""
    buf = bytearray()
    total = None  # the frame's length once its header is in
    poller = select.poll()  # (not select.select: a busy worker's descriptors pass 1024)
    poller.register(fd, select.POLLIN)
    while total is None or len(buf) < total:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            raise TimeoutError("the decoder process did not answer in time")
        chunk = os.read(fd, _PIPE_BYTES if total is None else total - len(buf))
        if not chunk:
            raise EOFError("decoder pipe closed")
        buf += chunk
        if total is None and len(buf) >= _FRAME.size:
            total = _FRAME.size + _FRAME.unpack_from(buf)[0]
    if len(buf) > total:  # one request, one answer: anything more is a broken decoder
        raise ValueError("the decoder process sent more than its answer")
    return memoryview(buf)[_FRAME.size :]  # unpickled from where it was read, not copied


_PIPE_BYTES = 1 << 20  # Linux's default ceiling for a pipe (/proc/sys/fs/pipe-max-size)


def _widen(pipe: IO[bytes]) -> None:
    """Let the pipe hold a whole request or answer (Linux; 64 kB by default), so that it is written
    and read in one go. Where that is refused, the pipe works as it is, only with more wake-ups."""
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


_SENT_KEYS = frozenset((*CONTEXT_KEYS, RESPONSE_ID_KEY))


def _for_the_receiver(decoded: Decoded) -> Decoded:
    """The decoded request with each span's attributes cut to what the receiver still reads (the
    trace context, the response id; all of them for a span it will log as GenAI-looking but
    ignored): most of a span's attributes are in its wire event already, and pickling them is most
    of the cost of the pipe."""
    keep = _SENT_KEYS
    for v, (what, reason) in zip(decoded.views, decoded.outcomes, strict=True):
        if what != IGNORED or reason != "no_model":
            v.attrs = {k: x for k, x in v.attrs.items() if k in keep}
    return decoded


def serve_pipe(inp: IO[bytes], out: IO[bytes]) -> None:
    """A decoder process's loop: (body, encoding, as_json) in, ("ok", Decoded) or ("bad",
    BadRequest) out, until the receiver closes the pipe."""
    import gc

    gc.freeze()  # the decoder's heap is its modules; each request's objects die with the request
    while True:
        try:
            body, encoding, as_json = pickle.loads(_read_frame(inp))
        except EOFError:
            return
        try:
            answer: tuple = ("ok", _for_the_receiver(decode_request(body, encoding, as_json)))
        except BadRequest as exc:
            answer = ("bad", exc)
        _write_frame(out, pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))


class _Decoder:
    """One decoder process and its pipe; used by one request at a time."""

    def __init__(self) -> None:
        # the child runs this checkout's code, whatever the working directory
        code = f"import sys; sys.path.insert(0, {str(_ROOT)!r}); from observability.worker.decoding import main; main()"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
        )  # unbuffered: answers are read from the pipe itself, with a deadline
        for pipe in (self.proc.stdin, self.proc.stdout):
            assert pipe is not None
            _widen(pipe)

    def decode(self, body: bytes, encoding: str | None, as_json: bool, timeout_s: float) -> tuple[str, Any]:
        """("ok", Decoded) or ("bad", BadRequest); TimeoutError after `timeout_s` of silence."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        _write_frame(
            self.proc.stdin, pickle.dumps((body, encoding, as_json), protocol=pickle.HIGHEST_PROTOCOL)
        )
        return pickle.loads(_read_answer(self.proc.stdout.fileno(), time.monotonic() + timeout_s))

    def close(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):  # a dead decoder's pipe may refuse its last flush
                    pipe.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class DecoderPool:
    """`processes` decoders shared by the receiver's request threads; with 0, every body is read
    in this process. They start in the background on the first body worth sending them (which is
    read here meanwhile), so a receiver that only ever gets small bodies starts none."""

    WAIT_S = 1.0  # a request waits this long for a free decoder before reading its body itself

    def __init__(self, processes: int, min_bytes: int) -> None:
        self.processes, self.min_bytes = max(0, processes), max(0, min_bytes)
        self._idle: queue.SimpleQueue[_Decoder] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._all: list[_Decoder] = []
        self._closed = False
        self._started = False
        self.decoded = collections.Counter()  # where request bodies were read: "decoder" | "receiver"
        self.restarts = 0  # decoders started again after one died
        self.answer_timeout_s = ANSWER_TIMEOUT_S

    def start(self) -> None:
        """Start the decoders in the background (once; later calls do nothing)."""
        with self._lock:
            start, self._started = not self._started and not self._closed, True
        if start:
            for _ in range(self.processes):
                self._start_one()

    def _start_one(self) -> None:
        def start() -> None:
            try:
                d = _Decoder()
            except OSError as exc:
                log.warning("OTLP decoder process could not start (%s): bodies are read in the receiver", exc)
                return
            with self._lock:
                if self._closed:
                    d.close()
                    return
                self._all.append(d)
            self._idle.put(d)

        threading.Thread(target=start, name="otlp-decoder-start", daemon=True).start()

    @property
    def decoded_outside(self) -> int:
        """Requests a decoder process read."""
        return self.decoded["decoder"]

    def _here(self, body: bytes, encoding: str | None, as_json: bool) -> Decoded:
        with self._lock:
            self.decoded["receiver"] += 1
        return decode_request(body, encoding, as_json)

    def decode(self, body: bytes, encoding: str | None, as_json: bool) -> Decoded:
        """The request decoded by a free decoder process, else here; the same answer either way."""
        if not self.processes or len(body) < self.min_bytes:
            return self._here(body, encoding, as_json)
        if not self._started:
            self.start()
        try:
            d = self._idle.get(timeout=self.WAIT_S if self._all else 0)
        except queue.Empty:
            return self._here(body, encoding, as_json)
        try:
            status, value = d.decode(body, encoding, as_json, self.answer_timeout_s)
        except (OSError, EOFError, TimeoutError, pickle.UnpicklingError, ValueError) as exc:
            log.warning("OTLP decoder process %s failed (%s): starting another", d.proc.pid, exc)
            self._replace(d)
            return self._here(body, encoding, as_json)
        self._idle.put(d)
        with self._lock:
            self.decoded["decoder"] += 1
        if status == "bad":
            raise value
        return value

    def _replace(self, d: _Decoder) -> None:
        with self._lock:
            if d in self._all:
                self._all.remove(d)
            closed = self._closed
        d.proc.kill()
        d.close()
        if not closed:
            with self._lock:
                self.restarts += 1
            self._start_one()

    def pids(self) -> list[int]:
        """The decoder processes running now."""
        with self._lock:
            return [d.proc.pid for d in self._all]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            decoders, self._all = self._all, []
        for d in decoders:
            d.close()


def main() -> None:
    """A decoder process: requests on stdin, answers on stdout (see `serve_pipe`)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the worker, which closes the pipe
    answers = os.fdopen(os.dup(1), "wb")  # the pipe; anything printed goes to stderr instead
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve_pipe(sys.stdin.buffer, answers)
