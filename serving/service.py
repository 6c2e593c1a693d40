"""Between the routes and the worker: submit a job, await it while watching the client, map failures to HTTP.

Routes call `run(request, fn)` for a result or `stream(request, fn)` for text pieces; `fn(engine, job)` runs
in the worker thread. Either way a client that disconnects marks its job cancelled, and a running
generation polls `job.should_stop()` between tokens, so nobody's tokens are generated for a closed socket.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from fastapi import HTTPException, Request

from serving.settings import ServeSettings
from serving.upstream import UpstreamError
from serving.worker import EngineWorker, Job, JobStopped, NotReady, QueueFull
from stages.errors import StageError
from stages.generation import Generation, TextStream

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


def error_responses(settings: ServeSettings) -> dict:
    """The failure statuses of a queued endpoint, for the OpenAPI spec."""
    responses = {400: {"description": "the body is not valid JSON"},
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
    if isinstance(e, NotReady):
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


class JobRunner:
    def __init__(self, worker: EngineWorker, timeout_s: float):
        self.worker = worker
        self.timeout_s = timeout_s

    def _submit(self, fn: Callable[[Any, Job], Any]) -> Job:
        try:
            return self.worker.submit(fn, self.timeout_s)
        except (QueueFull, NotReady) as e:
            raise http_error(e, self.timeout_s) from None

    async def run(self, request: Request, fn: Callable[[Any, Job], Any]) -> Any:
        job = self._submit(fn)
        future = asyncio.wrap_future(job.future)
        try:
            while not future.done():
                await asyncio.wait({future}, timeout=DISCONNECT_POLL_S)
                if not future.done() and await request.is_disconnected():
                    job.cancelled.set()
                    raise ClientGone()
            result = future.result()
        except (ClientGone, asyncio.CancelledError):
            job.cancelled.set()
            raise
        except Exception as e:
            raise http_error(e, self.timeout_s) from None
        if job.expired:
            raise timeout_error(self.timeout_s)
        return result

    async def stream(self, stream_of: Callable[[Any], TextStream]) -> tuple[str | None, AsyncIterator]:
        """Start a streamed generation. Returns its first piece (errors before any text raise HTTPException,
        so they get a real status code) and an async iterator of ("piece", str) then ("done", Generation)."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def emit(kind: str, value: Any) -> None:
            loop.call_soon_threadsafe(events.put_nowait, (kind, value))

        def produce(engine: Any, job: Job) -> Generation:
            stream = stream_of(engine)
            try:
                for piece in stream:
                    emit("piece", piece)
                    if job.should_stop():
                        break
            finally:
                stream.close()  # a no-op when exhausted; otherwise stops the engine after this token
            return stream.result or Generation(stream.text, 0, 0, "stop")

        job = self._submit(produce)

        def finished(future) -> None:
            error = future.exception()
            emit("error", error) if error else emit("done", future.result())

        job.future.add_done_callback(finished)
        kind, value = await events.get()
        if kind == "error":
            raise http_error(value, self.timeout_s)
        first = value if kind == "piece" else None
        pending = None if kind == "piece" else (kind, value)
        return first, self._rest(job, events, pending)

    async def _rest(self, job: Job, events: asyncio.Queue, pending: tuple | None) -> AsyncIterator:
        try:
            if pending is not None:
                yield pending
                return
            while True:
                kind, value = await events.get()
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
