"""A bounded job queue in front of one engine, consumed by the worker thread(s) that own it.

llama.cpp contexts are not thread-safe, so exactly one thread ever touches a local engine; HTTP handlers
only enqueue jobs and await their futures. A full queue refuses at once (the route answers 429 with
Retry-After) instead of letting requests pile up; a job whose client went away or whose deadline passed is
skipped if still queued, and asked to stop (between tokens) if running.

The engine is built by `loader` in the worker thread itself, so a slow load (the reranker imports torch)
never blocks start-up; until it is ready, `submit` raises NotReady (the route answers 503).

Shutdown: `submit` checks the state and enqueues under the same lock that `stop` takes to mark the worker
stopped, so no job can land behind the end-of-queue sentinel; whatever is still queued when the threads are
gone (or stuck past the stop timeout) is answered with NotReady, so no request ever waits on a dead queue.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


class QueueFull(Exception):
    def __init__(self, retry_after_s: int):
        super().__init__(f"server busy: the request queue is full; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class NotReady(Exception):
    pass


class JobStopped(Exception):
    """A job skipped before it ran: timed out in the queue, or its client disconnected."""

    def __init__(self, job: Job):
        super().__init__("request timed out while queued" if job.expired else "request cancelled by the client")
        self.job = job


@dataclass
class Job:
    fn: Callable[[Any, Job], Any]  # (engine, job) -> result; runs in a worker thread
    deadline: float
    future: Future = field(default_factory=Future)
    cancelled: threading.Event = field(default_factory=threading.Event)
    expired: bool = False  # the deadline passed: seen by should_stop(), or set by the request giving up

    def should_stop(self) -> bool:
        """Polled between tokens: the client went away, or the request ran out of time."""
        if time.monotonic() > self.deadline:
            self.expired = True
        return self.cancelled.is_set() or self.expired


class EngineWorker:
    def __init__(self, name: str, loader: Callable[[], Any], queue_size: int, threads: int | None = None):
        self.name = name
        self.engine: Any = None
        self.state = "loading"  # loading | ready | failed | stopped
        self.error: str | None = None
        self.loader = loader  # run by start() in the worker thread; replaceable until then
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self._threads = threads or 1  # None: as many as the loaded engine takes at once (concurrent_requests)
        self._threads_from_engine = threads is None
        self._busy = 0
        self._lock = threading.Lock()
        self.counts = {"completed": 0, "failed": 0, "cancelled": 0, "rejected": 0}
        self._mean_job_s = 1.0
        self._workers: list[threading.Thread] = []

    def start(self) -> EngineWorker:
        first = threading.Thread(target=self._load_then_serve, name=f"{self.name}-worker-0", daemon=True)
        self._workers.append(first)
        first.start()
        return self

    def _load_then_serve(self) -> None:
        try:
            self.engine = self.loader()
        except Exception as e:  # reported by /health and in every 503 body
            self.state, self.error = "failed", str(e) or type(e).__name__
            log.error("%s failed to load: %s", self.name, self.error)
            return
        if self._threads_from_engine:
            self._threads = max(1, int(getattr(self.engine, "concurrent_requests", 1)))
        with self._lock:
            if self.state == "stopped":  # the server stopped while this was loading
                return
            self.state = "ready"
        for i in range(1, self._threads):  # only engines that are safe to share get more than one thread
            t = threading.Thread(target=self._serve, name=f"{self.name}-worker-{i}", daemon=True)
            self._workers.append(t)
            t.start()
        self._serve()

    def _serve(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                self._queue.put(None)  # let the sibling threads see it too
                return
            if not job.future.set_running_or_notify_cancel():  # its request gave up (deadline, disconnect)
                with self._lock:
                    self.counts["cancelled"] += 1
                continue
            if job.should_stop():  # its client left or its deadline passed while it waited
                with self._lock:
                    self.counts["cancelled"] += 1
                job.future.set_exception(JobStopped(job))
                continue
            with self._lock:
                self._busy += 1
            started = time.monotonic()
            try:
                result = job.fn(self.engine, job)
            except BaseException as e:  # delivered to the waiting request, never kills the worker
                job.future.set_exception(e)
                outcome = "failed"
            else:
                # Decide before set_result: its done-callbacks let the stream route finish and set
                # job.cancelled in its cleanup, which would count a normal end as a cancel.
                outcome = "cancelled" if job.cancelled.is_set() else "completed"
                job.future.set_result(result)
            with self._lock:
                self._busy -= 1
                self.counts[outcome] += 1
                self._mean_job_s = 0.8 * self._mean_job_s + 0.2 * (time.monotonic() - started)

    def submit(self, fn: Callable[[Any, Job], Any], timeout_s: float) -> Job:
        job = Job(fn, deadline=time.monotonic() + timeout_s)
        # Check and enqueue under the lock `stop` takes: a job can never be queued after the sentinel.
        with self._lock:
            if self.state != "ready":
                raise NotReady(self.describe_not_ready())
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                self.counts["rejected"] += 1
                raise QueueFull(self.retry_after_s()) from None
        return job

    def retry_after_s(self) -> int:
        """Expected wait for a free slot: queued jobs x mean job time, 1..60 s."""
        waiting = self._queue.qsize() + self._busy
        return int(min(60, max(1, math.ceil(waiting * self._mean_job_s / self._threads))))

    def describe_not_ready(self, state: str | None = None) -> str:
        """Why jobs are refused in `state` (default: the current one; pass the state already read to keep
        a report consistent while the loader thread changes it)."""
        state = state or self.state
        if state == "loading":
            return f"{self.name} not loaded yet (still loading); retry shortly"
        if state == "failed":
            return f"{self.name} not loaded: {self.error}"
        return f"{self.name} is shutting down"

    def stats(self) -> dict:
        with self._lock:
            return {"state": self.state, "queued": self._queue.qsize(), "capacity": self._queue.maxsize,
                    "busy": self._busy, **self.counts}

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the jobs already queued (up to `timeout_s`), then end the worker threads; any job still
        queued after that is answered with NotReady (503) instead of waiting forever."""
        with self._lock:
            was_ready, self.state = self.state == "ready", "stopped"  # refuse new jobs from here on
        if not was_ready:
            return  # nothing queued; a loader still running finds "stopped" and exits (daemon thread)
        deadline = time.monotonic() + timeout_s
        try:
            self._queue.put(None, timeout=timeout_s)  # blocks while full: queued jobs drain first
        except queue.Full:
            pass  # a job outlives the timeout and the queue is still full: the rest is refused below
        for t in self._workers:
            t.join(max(0.0, deadline - time.monotonic()))
        self._refuse_queued()

    def _refuse_queued(self) -> None:
        """Answer every job left in the queue with NotReady: no thread will run it any more."""
        still_running = any(t.is_alive() for t in self._workers)
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                continue
            if job.future.set_running_or_notify_cancel():  # else its request already gave up
                job.future.set_exception(NotReady(self.describe_not_ready()))
            with self._lock:
                self.counts["cancelled"] += 1
        if still_running:  # a thread stuck in a long job must still find the sentinel when it is done
            self._queue.put_nowait(None)
