"""EngineWorker's books: how each job ends is counted once, as what really happened.

    pytest tests/serving/test_worker.py -q
"""

from __future__ import annotations

import time

from serving.worker import EngineWorker, Job


def wait_for_count(worker: EngineWorker, total: int, timeout_s: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = worker.stats()
        if stats["completed"] + stats["cancelled"] + stats["failed"] >= total and stats["busy"] == 0:
            return stats
        time.sleep(0.01)
    raise AssertionError(f"worker did not finish {total} jobs: {worker.stats()}")


def test_a_job_that_finished_is_completed_even_if_its_route_cancels_during_cleanup():
    # The stream route's done-callback hands the result to the client and, in its cleanup, sets job.cancelled;
    # Future.set_result runs that callback synchronously, before the worker's next line.
    worker = EngineWorker("echo", loader=lambda: "engine", queue_size=4).start()
    deadline = time.monotonic() + 10
    while worker.state != "ready" and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        jobs = []
        for i in range(3):
            job = worker.submit(lambda engine, job, i=i: f"{engine}-{i}", timeout_s=30)
            job.future.add_done_callback(lambda _, job=job: job.cancelled.set())
            jobs.append(job)
        stats = wait_for_count(worker, 3)
        assert [j.future.result(timeout=5) for j in jobs] == ["engine-0", "engine-1", "engine-2"]
        assert (stats["completed"], stats["cancelled"], stats["failed"]) == (3, 0, 0), stats
    finally:
        worker.stop()


def test_a_job_whose_client_left_while_running_is_cancelled():
    worker = EngineWorker("echo", loader=lambda: "engine", queue_size=4).start()
    deadline = time.monotonic() + 10
    while worker.state != "ready" and time.monotonic() < deadline:
        time.sleep(0.01)

    def generate_until_stopped(engine: str, job: Job) -> str:
        job.cancelled.set()  # the client disconnects mid-generation
        while not job.should_stop():
            time.sleep(0.01)
        return "partial"

    try:
        job = worker.submit(generate_until_stopped, timeout_s=30)
        stats = wait_for_count(worker, 1)
        assert job.future.result(timeout=5) == "partial"
        assert (stats["completed"], stats["cancelled"]) == (0, 1), stats
    finally:
        worker.stop()
