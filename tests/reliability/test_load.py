"""Load: 32 concurrent clients x 20 requests against a real `domain-llm serve` with a 4-deep queue. Every request
must end in 200 or a refusal with Retry-After (429 queue full, 503 not ready) - no client timeout (a hang), no
connection error (a drop), no 5xx - the server's memory must stay bounded, and it must still answer afterwards.

    pytest tests/reliability/test_load.py -q -s      # prints served/refused counts and RSS growth

Clients do not honour Retry-After on purpose: they hammer the queue, which is the worst case for it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import psutil
import pytest

from tests.serving.conftest import log_tail, start_server_process

CLIENTS, REQUESTS_PER_CLIENT = 32, 20
QUEUE_SIZE = 4
CLIENT_TIMEOUT_S = 120  # well over serve.request_timeout_s: a server-side timeout is a 504, a hang is ours
RSS_GROWTH_LIMIT = 200 * 2**20
REFUSALS = {429, 503}


@dataclass
class Outcome:
    kind: str          # "generate" | "chat" | "stream"
    status: int | None  # None when the client raised
    error: str = ""     # exception type, or what was wrong with a 200 / a refusal
    retry_after: str | None = None


def one_request(client: httpx.Client, kind: str, i: int) -> Outcome:
    prompt = f"Name one symptom of condition number {i}."
    try:
        if kind == "generate":
            r = client.post("/api/v1/generate", json={"prompt": prompt, "max_tokens": 6, "temperature": 0})
            ok = r.status_code != 200 or r.json()["tokens_generated"] >= 1
            return Outcome(kind, r.status_code, "" if ok else "empty 200", r.headers.get("Retry-After"))
        if kind == "chat":
            r = client.post("/v1/chat/completions", json={
                "messages": [{"role": "user", "content": prompt}], "max_tokens": 6, "temperature": 0})
            ok = r.status_code != 200 or r.json()["choices"][0]["finish_reason"] in ("stop", "length")
            return Outcome(kind, r.status_code, "" if ok else "bad 200 body", r.headers.get("Retry-After"))
        body = {"prompt": prompt, "max_tokens": 6, "temperature": 0, "stream": True}
        with client.stream("POST", "/v1/completions", json=body) as r:
            events = [line for line in r.iter_lines() if line]
            # A 200 stream must end cleanly; a refusal is a plain JSON answer with a real status code.
            ok = r.status_code != 200 or (events[-1] == "data: [DONE]" and '"error"' not in events[-2])
            return Outcome(kind, r.status_code, "" if ok else f"stream ended {events[-2:]}",
                           r.headers.get("Retry-After"))
    except httpx.TimeoutException as e:
        return Outcome(kind, None, f"hang: {type(e).__name__}")
    except httpx.TransportError as e:
        return Outcome(kind, None, f"drop: {type(e).__name__}: {e}")


def client_session(url: str, client_id: int) -> list[Outcome]:
    kinds = ("generate", "chat", "stream")
    with httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT_S) as client:
        return [one_request(client, kinds[(client_id + i) % 3], client_id * 100 + i)
                for i in range(REQUESTS_PER_CLIENT)]


class RssSampler(threading.Thread):
    """Peak resident memory of the server process while the load runs."""

    def __init__(self, process: psutil.Process):
        super().__init__(daemon=True)
        self.process, self.peak, self.done = process, process.memory_info().rss, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            self.peak = max(self.peak, self.process.memory_info().rss)


@pytest.fixture()
def small_queue_server(gguf_model):
    running = start_server_process(gguf_model, f"serve.queue_size={QUEUE_SIZE}", "serve.max_tokens_limit=8",
                                   "serve.n_ctx=512", "serve.rerank=false", "serve.request_timeout_s=60",
                                   "serve.log_requests=false")
    yield running
    running.stop()


def test_32_clients_x_20_requests_small_queue(small_queue_server):
    url, process = small_queue_server.url, psutil.Process(small_queue_server.process.pid)
    for _ in range(3):  # warm-up: the first requests allocate llama.cpp's buffers; growth is measured after
        assert httpx.post(f"{url}/api/v1/generate", json={"prompt": "Hi", "max_tokens": 4}, timeout=60).is_success
    queue_before = httpx.get(f"{url}/api/v1/health", timeout=10).json()["queue"]
    rss_before = process.memory_info().rss
    sampler = RssSampler(process)
    sampler.start()
    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        outcomes = [o for session in pool.map(lambda c: client_session(url, c), range(CLIENTS)) for o in session]
    elapsed = time.monotonic() - started
    sampler.done.set()
    sampler.join()
    rss_after = process.memory_info().rss

    statuses = Counter(o.status for o in outcomes)
    served, refused = statuses[200], sum(statuses[s] for s in REFUSALS)
    problems = [o for o in outcomes if o.error or o.status not in {200, *REFUSALS}]
    growth_mb, peak_mb = (rss_after - rss_before) / 2**20, (sampler.peak - rss_before) / 2**20
    print(f"\nload {CLIENTS}x{REQUESTS_PER_CLIENT} queue {QUEUE_SIZE}: {len(outcomes)} requests in {elapsed:.0f} s, "
          f"served {served}, refused {refused} ({dict(statuses)}), problems {len(problems)}, "
          f"RSS {rss_before / 2**20:.0f} MB -> {rss_after / 2**20:.0f} MB (growth {growth_mb:+.1f} MB, "
          f"peak {peak_mb:+.1f} MB)")

    assert len(outcomes) == CLIENTS * REQUESTS_PER_CLIENT
    assert problems == [], Counter((o.kind, o.status, o.error) for o in problems)
    assert all(o.retry_after is not None and int(o.retry_after) >= 1 for o in outcomes if o.status in REFUSALS)
    # The queue really overflowed, and the model really served a share of the traffic, of every kind.
    assert statuses[429] >= CLIENTS and served >= CLIENTS, statuses
    assert {o.kind for o in outcomes if o.status == 200} == {"generate", "chat", "stream"}
    # The server's own books agree with what the clients saw: nothing lost, nothing cancelled or failed.
    queue = httpx.get(f"{url}/api/v1/health", timeout=10).json()["queue"]
    delta = {key: queue[key] - queue_before[key] for key in ("completed", "cancelled", "failed", "rejected")}
    # Every client read its answer to the end, so none of them was cancelled (a stream's route sets job.cancelled
    # in its cleanup; the worker decides the outcome before that can happen).
    assert delta["completed"] == served and delta["cancelled"] == 0, delta
    assert delta["rejected"] == statuses[429] and delta["failed"] == 0, delta
    assert queue["busy"] == 0 and queue["queued"] == 0, queue
    assert rss_after - rss_before < RSS_GROWTH_LIMIT, f"RSS grew {growth_mb:.0f} MB"

    # Still healthy, and still generating.
    health = httpx.get(f"{url}/api/v1/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    after = httpx.post(f"{url}/api/v1/generate", json={"prompt": "What is asthma?", "max_tokens": 8,
                                                       "temperature": 0}, timeout=60)
    assert after.status_code == 200 and after.json()["tokens_generated"] >= 1, after.text
    assert small_queue_server.process.poll() is None
    assert "Traceback" not in log_tail(small_queue_server.process, 200_000)
