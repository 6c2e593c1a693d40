"""EngineWorker at shutdown: a job submitted once stop() began is refused at once (503), and no job is ever
left waiting on a queue that no thread reads any more.

    pytest tests/serving/test_shutdown.py -q
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import wait

import pytest

from serving.worker import EngineWorker, Job, NotReady, QueueFull
from tests.serving.conftest import wait_for


def ready_worker(queue_size: int = 4) -> EngineWorker:
    worker = EngineWorker("model", loader=lambda: "engine", queue_size=queue_size).start()
    wait_for(lambda: worker.state == "ready", timeout_s=10, interval_s=0.01)
    return worker


def blocking_job(release: threading.Event, ran: list[str], name: str):
    """A job that holds the worker (like a long prefill: it never polls should_stop) until released."""
    def fn(engine: str, job: Job) -> str:
        ran.append(name)
        release.wait(30)
        return name
    return fn


def test_a_job_submitted_after_stop_began_is_refused_at_once():
    worker = ready_worker()
    release, ran = threading.Event(), []
    running = worker.submit(blocking_job(release, ran, "running"), timeout_s=30)
    wait_for(lambda: ran == ["running"], timeout_s=5, interval_s=0.01)
    stopper = threading.Thread(target=worker.stop, kwargs={"timeout_s": 30})
    stopper.start()
    try:
        wait_for(lambda: worker.state == "stopped", timeout_s=5, interval_s=0.01)
        started = time.monotonic()
        with pytest.raises(NotReady, match="model is shutting down"):
            worker.submit(blocking_job(release, ran, "late"), timeout_s=30)
        assert time.monotonic() - started < 0.1
        assert stopper.is_alive()  # still draining the running job
    finally:
        release.set()
        stopper.join(10)
    assert not stopper.is_alive() and running.future.result(timeout=1) == "running"
    assert ran == ["running"]  # the late job never ran


def test_jobs_still_queued_when_stop_times_out_are_answered_not_ready():
    # The running job outlives stop()'s timeout; the jobs queued behind it must not wait forever.
    worker = ready_worker()
    release, ran = threading.Event(), []
    running = worker.submit(blocking_job(release, ran, "running"), timeout_s=30)
    wait_for(lambda: ran == ["running"], timeout_s=5, interval_s=0.01)
    queued = [worker.submit(blocking_job(release, ran, f"queued-{i}"), timeout_s=30) for i in range(2)]
    try:
        started = time.monotonic()
        worker.stop(timeout_s=0.5)
        assert time.monotonic() - started < 2
        for job in queued:
            assert isinstance(job.future.exception(timeout=1), NotReady)
        assert not running.future.done()
    finally:
        release.set()
    assert running.future.result(timeout=5) == "running"
    time.sleep(0.2)  # the worker thread, freed, must find the end of the queue and not run the refused jobs
    assert ran == ["running"]
    assert not any(t.is_alive() for t in worker._workers)
    assert worker.stats()["cancelled"] == 2


def submit_until_refused(worker: EngineWorker, accepted: list[Job], go: threading.Event) -> None:
    go.wait()
    while True:
        try:
            accepted.append(worker.submit(lambda engine, job: "done", timeout_s=30))
        except NotReady:
            return
        except QueueFull:  # fine under pressure: keep going until stop refuses us
            time.sleep(0.001)


def test_stop_racing_submits_leaves_no_job_unanswered():
    # Submitters keep enqueueing while stop() runs: each job is either refused at submit or answered.
    for _ in range(20):
        worker = ready_worker(queue_size=64)
        accepted: list[Job] = []
        go = threading.Event()
        threads = [threading.Thread(target=submit_until_refused, args=(worker, accepted, go)) for _ in range(3)]
        for t in threads:
            t.start()
        go.set()
        time.sleep(0.005)
        worker.stop(timeout_s=10)
        for t in threads:
            t.join(10)
        done, not_done = wait([job.future for job in accepted], timeout=5)
        assert not not_done, f"{len(not_done)} of {len(accepted)} jobs never answered"
        assert all(f.exception() is None or isinstance(f.exception(), NotReady) for f in done)
