"""Between the routes and the worker: submit a job, await it while watching the client, map failures to HTTP.

Routes call `run(request, fn)` for a result or `stream(request, stream_of)` for text pieces; `fn(engine, job)`
runs in the worker thread. A request has ONE deadline, `serve.request_timeout_s` from its first job: routing,
retrieval, reranking and generation (and their queue waits) all share it, so `/api/v1/ask` with `auto` answers
within the timeout, not four times it. The request path keeps that deadline itself: whatever the worker is doing
(a rerank or a long prefill that never polls), the request answers 504 when it passes and marks its job
expired, so the worker skips it if still queued or stops it between tokens. A client that disconnects marks its
job cancelled the same way, so nobody's tokens are generated for a closed socket.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, Request

from serving.security import UISessions
from serving.settings import ServeSettings
from serving.worker import EngineWorker, Job, JobStopped, NotReady, QueueFull
from stages.errors import StageError
from stages.inference import Generation, ShouldStop, TextStream
from stages.inference.adapters import AdapterFacts

if TYPE_CHECKING:
    from serving.components import Component
    from serving.metrics import ServerMetrics
from stages.inference.types import EngineClosed
from stages.inference.upstream import UpstreamError

log = logging.getLogger(__name__)

DISCONNECT_POLL_S = 0.25


class ClientGone(Exception):
    """The client disconnected before its answer was ready; nothing is sent (logged as 499)."""


@dataclass
class ServingContext:
    """What the routes share: settings, request models, the two job runners and the model's public id."""

    settings: ServeSettings
    schemas: SimpleNamespace
    generation: JobRunner
    rerank: JobRunner | None
    model_id: str
    started: float = field(default_factory=time.time)
    index: JobRunner | None = None  # retrieval for /api/v1/ask (serve.index)
    domains: dict[str, AdapterFacts] = field(default_factory=dict)  # LoRA adapters served beside the base
    router: JobRunner | None = None  # `auto`: the nearest domain by embedding
    components: dict[str, Component] = field(default_factory=dict)  # what start-up found (serving/components.py)
    sessions: UISessions | None = None  # the web UI's sign-in cookies
    embeddings: JobRunner | None = None  # POST /v1/embeddings (serve.embeddings)
    metrics: ServerMetrics | None = None  # GET /metrics (serve.metrics)


def error_responses(settings: ServeSettings) -> dict:
    """The failure statuses of a queued endpoint, for the OpenAPI spec."""
    responses = {400: {"description": "the body is not valid JSON"},
                 404: {"description": "the model or domain named is not served here (GET /v1/models)"},
                 413: {"description": "request body larger than serve.max_body_bytes"},
                 429: {"description": "queue full; retry after the Retry-After seconds"},
                 503: {"description": "model not loaded (loading, failed or shutting down)"},
                 504: {"description": "request timed out (serve.request_timeout_s)"}}
    if settings.api_key:
        responses[401] = {"description": "missing or invalid API key"}
    return responses


def timeout_error(timeout_s: float) -> HTTPException:
    return HTTPException(504, f"request timed out after {timeout_s:g} s (serve.request_timeout_s)")


def http_error(e: BaseException, timeout_s: float) -> HTTPException:
    """One place that decides the status code of every failure a job can end with."""
    if isinstance(e, QueueFull):
        return HTTPException(429, str(e), headers={"Retry-After": str(e.retry_after_s)})
    if isinstance(e, NotReady | EngineClosed):
        return HTTPException(503, str(e), headers={"Retry-After": "5"})
    if isinstance(e, JobStopped):
        return timeout_error(timeout_s) if e.job.expired else HTTPException(499, str(e))
    if isinstance(e, StageError):  # input the model cannot take, e.g. a prompt longer than its context
        return HTTPException(422, str(e))
    if isinstance(e, UpstreamError):
        return HTTPException(502, f"upstream server error: {e}")
    if isinstance(e, NotImplementedError):
        return HTTPException(501, str(e))
    log.error("generation failed", exc_info=e)
    return HTTPException(500, f"internal error: {type(e).__name__}: {e}")


def request_deadline(request: Request, timeout_s: float) -> float:
    """The request's one deadline (time.monotonic()), set by its first job and shared by every later one."""
    deadline = getattr(request.state, "deadline", None)
    if deadline is None:
        deadline = request.state.deadline = time.monotonic() + timeout_s
    return deadline


class LoopMailbox:
    """Events from engine threads into one event loop, with at most one wake-up pending at a time.

    A batching engine hands over every active sequence's token in one burst per decode step; posting each with
    its own call_soon_threadsafe wakes the loop (a self-pipe write and a thread switch) up to once per token,
    and on a small CPU each wake-up preempts a llama.cpp thread in the middle of the next decode. Here the
    first post of a burst schedules one flush and the rest ride along."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._items: list[tuple[asyncio.Queue, tuple]] = []
        self._lock = threading.Lock()
        self._flush_pending = False

    def post(self, events: asyncio.Queue, event: tuple) -> None:
        with self._lock:
            self._items.append((events, event))
            if self._flush_pending:
                return
            self._flush_pending = True
        self.loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self._lock:
            items, self._items, self._flush_pending = self._items, [], False
        for events, event in items:
            events.put_nowait(event)


class JobRunner:
    def __init__(self, worker: EngineWorker, timeout_s: float):
        self.worker = worker
        self.timeout_s = timeout_s
        self._mailbox: LoopMailbox | None = None
        # The generation runner's: told of every finished list of Generations (and a stream's first-piece time)
        # with the request, for /metrics; called on the worker thread for streams.
        self.on_generations: Callable[..., None] | None = None

    def _mailbox_for(self, loop: asyncio.AbstractEventLoop) -> LoopMailbox:
        mailbox = self._mailbox
        if mailbox is None or mailbox.loop is not loop:  # a server has one loop; tests may start several
            mailbox = self._mailbox = LoopMailbox(loop)
        return mailbox

    def _submit(self, request: Request, fn: Callable[[Any, Job], Any]) -> Job:
        remaining = request_deadline(request, self.timeout_s) - time.monotonic()
        if remaining <= 0:  # an earlier job of this request (routing, retrieval) used up its time
            raise timeout_error(self.timeout_s)
        try:
            return self.worker.submit(fn, remaining)
        except (QueueFull, NotReady) as e:
            raise http_error(e, self.timeout_s) from None

    def _expire(self, job: Job) -> HTTPException:
        job.expired = True  # the worker skips it if still queued, or stops it at its next should_stop()
        return timeout_error(self.timeout_s)

    async def _client_gone(self, job: Job, request: Request) -> bool:
        if await request.is_disconnected():
            job.cancelled.set()
            return True
        return False

    async def run(self, request: Request, fn: Callable[[Any, Job], Any]) -> Any:
        job = self._submit(request, fn)
        future = asyncio.wrap_future(job.future)
        try:
            while not future.done():
                remaining = job.deadline - time.monotonic()
                if remaining <= 0:
                    raise self._expire(job)
                await asyncio.wait({future}, timeout=min(DISCONNECT_POLL_S, remaining))
                if not future.done() and await self._client_gone(job, request):
                    raise ClientGone()
        except BaseException:  # 504, ClientGone, or this request's task was cancelled
            if not job.expired:
                job.cancelled.set()
            # Cancels the job's own future too while it is still queued, so the worker never runs it;
            # a running job's late result is then dropped instead of logged as never retrieved.
            future.cancel()
            raise
        try:
            result = future.result()
        except Exception as e:
            raise http_error(e, self.timeout_s) from None
        if job.expired:
            raise timeout_error(self.timeout_s)
        if self.on_generations is not None and isinstance(result, list) and result \
                and all(isinstance(g, Generation) for g in result):
            self.on_generations(request, result, None, None)
        return result

    async def stream(self, request: Request,
                     stream_of: Callable[[Any, ShouldStop], TextStream]) -> tuple[str | None, AsyncIterator]:
        """Start a streamed generation. Returns its first piece (errors before any text raise HTTPException,
        so they get a real status code) and an async iterator of ("piece", str) then ("done", Generation),
        or ("error", HTTPException) when the job fails or the deadline passes after the first piece.

        Until the first piece, the client is watched like in `run`: a disconnect drops the job before it runs
        (ClientGone), and the deadline answers 504 even while the worker is busy with another job."""
        mailbox = self._mailbox_for(asyncio.get_running_loop())
        events: asyncio.Queue = asyncio.Queue()

        def emit(kind: str, value: Any) -> None:
            mailbox.post(events, (kind, value))

        first_piece: list[float] = []

        def piece(text: str) -> None:
            if not first_piece:
                first_piece.append(time.monotonic())
            emit("piece", text)

        def produce(engine: Any, job: Job) -> Generation:
            stream = stream_of(engine, job.should_stop)  # checked between tokens, text or not
            try:
                # A batching engine calls emit from its decode thread: no hop through this worker thread.
                generation = stream.pipe(piece, job.should_stop)
            finally:
                stream.close()  # a no-op when exhausted; otherwise stops the engine after this token
            if self.on_generations is not None:
                self.on_generations(request, [generation], first_piece[0] if first_piece else None, time.monotonic())
            return generation

        job = self._submit(request, produce)

        def finished(future: Future) -> None:
            if future.cancelled():  # the request gave up while the job was queued; nobody reads events now
                return
            error = future.exception()
            emit("error", error) if error else emit("done", future.result())

        job.future.add_done_callback(finished)
        try:
            kind, value = await self._next_event(job, events, request)
        except BaseException:  # 504, ClientGone, or this request's task was cancelled
            if not job.expired:
                job.cancelled.set()
            job.future.cancel()  # still queued: the worker skips it (counted as cancelled); running: no-op
            raise
        if kind == "error":
            raise http_error(value, self.timeout_s)
        first = value if kind == "piece" else None
        pending = None if kind == "piece" else (kind, value)
        return first, self._rest(job, events, pending)

    async def _next_event(self, job: Job, events: asyncio.Queue, request: Request | None) -> tuple[str, Any]:
        """The next worker event, or 504 at the job's deadline (and ClientGone, when `request` is given)."""
        while True:
            # What the worker already produced is delivered first: a stream that finished in time is not
            # turned into a 504 because its client read slowly.
            if not events.empty():
                return events.get_nowait()
            remaining = job.deadline - time.monotonic()
            if remaining <= 0:
                raise self._expire(job)
            try:
                return await asyncio.wait_for(events.get(), timeout=min(DISCONNECT_POLL_S, remaining))
            except TimeoutError:
                if request is not None and await self._client_gone(job, request):
                    raise ClientGone() from None

    async def _rest(self, job: Job, events: asyncio.Queue, pending: tuple | None) -> AsyncIterator:
        try:
            if pending is not None:
                yield pending
                return
            while True:
                # No disconnect polling here: the StreamingResponse itself watches the client and closes
                # this generator (-> finally) when it leaves; two readers of `receive` would race.
                try:
                    kind, value = await self._next_event(job, events, None)
                except HTTPException as timed_out:
                    yield "error", timed_out
                    return
                if kind == "error":
                    value = http_error(value, self.timeout_s)
                elif kind == "done" and job.expired:
                    value = timeout_error(self.timeout_s)
                    kind = "error"
                yield kind, value
                if kind != "piece":
                    return
        finally:
            job.cancelled.set()  # the client went away (or we are done): stop generating for it
