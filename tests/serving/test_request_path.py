"""The request path keeps its own deadline and watches its client, whatever the worker is doing.

Real uvicorn (create_app with a small engine whose calls block like a long prefill: they never poll
should_stop), plus one test route that drives JobRunner.stream with the real Starlette request.

    pytest tests/serving/test_request_path.py -q -s     # -s prints the measured timings
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi import Request
from fastapi.responses import StreamingResponse

from serving.service import ClientGone
from stages.config import compose
from stages.inference import Generation, SamplingParams, TextStream
from tests.serving.conftest import ThreadServer, serve_in_thread, wait_for, with_test_defaults

TIMEOUT_S = 1.0
SLACK_S = 1.5
PROMPT = {"prompt": "What is hypertension?", "max_tokens": 4}


class PrefillEngine:
    """generate/chat hold the worker until `release` is set, without polling should_stop (as a long prefill
    or a rerank does); stream yields one piece, then stalls the same way when `stall_stream` is set."""

    name = "test"
    max_batch_size = 1

    def __init__(self, stall_stream: bool = False):
        self.release = threading.Event()
        self.calls: list[str] = []
        self.stall_stream = stall_stream

    def _block(self, kind: str, n: int) -> list[Generation]:
        self.calls.append(kind)
        self.release.wait(60)
        return [Generation("ok", 3, 1, "stop") for _ in range(n)]

    def generate(self, prompts: list[str], params: SamplingParams, should_stop=None) -> list[Generation]:
        return self._block("generate", len(prompts))

    def chat(self, conversations: list[list[dict]], params: SamplingParams, should_stop=None) -> list[Generation]:
        return self._block("chat", len(conversations))

    def stream(self, prompt: str, params: SamplingParams, should_stop=None) -> TextStream:
        self.calls.append("stream")

        def pieces() -> Iterator[str]:
            yield "ok"
            if self.stall_stream:
                self.release.wait(60)
                yield " late"
            return Generation("ok", 3, 1, "stop")
        return TextStream(pieces())

    def info(self) -> dict:
        return {"type": "test"}


def serve(engine: PrefillEngine, timeout_s: float, gone: list[float]) -> ThreadServer:
    """create_app on `engine`, plus POST /test/stream: JobRunner.stream with the real request, its pieces
    as plain text and a failure after the first piece as "[error CODE]"."""
    from serving.app import create_app

    app = create_app(compose(with_test_defaults(["threads=1", "serve.rerank=false", f"serve.request_timeout_s={timeout_s}"])),
                     engine=engine)

    @app.post("/test/stream")
    async def stream_route(request: Request) -> StreamingResponse:
        try:
            first, rest = await app.state.ctx.generation.stream(
                request, lambda e, should_stop: e.stream("What is hypertension?", SamplingParams(), should_stop))
        except ClientGone:
            gone.append(time.monotonic())
            raise

        async def body():
            if first:
                yield first
            async for kind, value in rest:
                if kind == "piece":
                    yield value
                elif kind == "error":
                    yield f"[error {value.status_code}]"
        return StreamingResponse(body(), media_type="text/plain")

    return serve_in_thread(app)


def stats(url: str) -> dict:
    return httpx.get(f"{url}/api/v1/health", timeout=10).json()["queue"]


def settled(url: str, jobs: int) -> dict:
    """The queue once `jobs` jobs have ended and the worker is idle."""
    return wait_for(lambda: (s := stats(url))["busy"] == 0 and s["queued"] == 0
                    and s["completed"] + s["cancelled"] + s["failed"] >= jobs and s, timeout_s=10)


def test_requests_queued_behind_a_job_that_never_polls_answer_504_at_their_deadline():
    engine, gone = PrefillEngine(), []
    running = serve(engine, TIMEOUT_S, gone)
    try:
        with ThreadPoolExecutor(1) as pool:
            holder = pool.submit(httpx.post, f"{running.url}/api/v1/generate", json=PROMPT, timeout=30)
            wait_for(lambda: engine.calls == ["chat"], timeout_s=5, interval_s=0.01)
            for path in ("/api/v1/generate", "/test/stream"):
                started = time.monotonic()
                response = httpx.post(f"{running.url}{path}", json=PROMPT, timeout=30)
                elapsed = time.monotonic() - started
                print(f"\n{path} queued behind a blocked job: {response.status_code} after {elapsed:.2f} s "
                      f"(serve.request_timeout_s={TIMEOUT_S:g})")
                assert response.status_code == 504, response.text
                assert "timed out after 1 s" in response.json()["error"]["message"]
                assert TIMEOUT_S - 0.05 <= elapsed < TIMEOUT_S + SLACK_S
            # The request whose job is the blocked one got its 504 at its own deadline too.
            assert holder.result().status_code == 504
        assert engine.calls == ["chat"]
        engine.release.set()
        queue = settled(running.url, 3)
        # The blocked job ran to its end; the two expired ones were skipped, never reaching the engine.
        assert engine.calls == ["chat"]
        assert (queue["completed"], queue["cancelled"], queue["failed"]) == (1, 2, 0), queue
    finally:
        engine.release.set()
        running.stop()


def test_a_stream_stalled_after_its_first_piece_ends_with_504_at_the_deadline():
    engine, gone = PrefillEngine(stall_stream=True), []
    running = serve(engine, TIMEOUT_S, gone)
    try:
        started = time.monotonic()
        response = httpx.post(f"{running.url}/test/stream", json=PROMPT, timeout=30)
        elapsed = time.monotonic() - started
        print(f"\nstream stalled after its first piece: '[error 504]' after {elapsed:.2f} s")
        assert response.status_code == 200 and response.text == "ok[error 504]"
        assert TIMEOUT_S - 0.05 <= elapsed < TIMEOUT_S + SLACK_S
    finally:
        engine.release.set()
        running.stop()


def test_a_queued_stream_whose_client_left_is_dropped_before_it_runs():
    engine, gone = PrefillEngine(), []
    running = serve(engine, 30, gone)
    try:
        with ThreadPoolExecutor(1) as pool:
            holder = pool.submit(httpx.post, f"{running.url}/api/v1/generate", json=PROMPT, timeout=30)
            wait_for(lambda: engine.calls == ["chat"], timeout_s=5, interval_s=0.01)
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):  # the client gives up after 1 s and closes the connection
                httpx.post(f"{running.url}/test/stream", json=PROMPT, timeout=httpx.Timeout(30, read=1))
            closed = time.monotonic()
            wait_for(lambda: gone, timeout_s=5, interval_s=0.01)
            print(f"\nqueued stream dropped (ClientGone) {gone[0] - started:.2f} s after it was sent; "
                  f"the client closed at {closed - started:.2f} s")
            assert gone[0] - closed < 1.0
            assert engine.calls == ["chat"]  # still blocked: the stream was dropped while queued
            engine.release.set()
            assert holder.result().status_code == 200
        queue = settled(running.url, 2)
        assert engine.calls == ["chat"]  # engine.stream never ran
        assert (queue["completed"], queue["cancelled"], queue["failed"]) == (1, 1, 0), queue
    finally:
        engine.release.set()
        running.stop()


class SlowRouter:
    """Routes every text to `legal` after `delay_s`, counting its calls (one per routing job)."""

    def __init__(self, delay_s: float):
        self.delay_s, self.calls = delay_s, []

    def route_many(self, texts: list[str]) -> list[tuple[str, dict]]:
        self.calls.append(list(texts))
        time.sleep(self.delay_s)
        return [("legal", {"legal": 1.0}) for _ in texts]


class SlowIndex:
    def __init__(self, delay_s: float):
        self.delay_s = delay_s

    def search(self, question: str, top_k: int, mode: str) -> list:
        from stages.inference.retrieval import Chunk, Hit

        time.sleep(self.delay_s)
        return [Hit(Chunk("a#0", "a", "A", "Passage."), 1.0)]


class AdapterEngine(PrefillEngine):
    """A PrefillEngine that serves one `legal` adapter (so `auto` routes), answering at once."""

    def __init__(self):
        from stages.inference.adapters import AdapterFacts

        super().__init__()
        self.release.set()
        self.adapters = {"legal": AdapterFacts(Path("legal.gguf"), "legal", None, ["q"])}

    def for_adapter(self, name):
        return self

    def apply_chat_template(self, messages: list[dict]) -> str:
        return str(messages)

    def prompt_ids(self, prompt: str) -> list[int]:
        return [1, 2, 3]

    def info(self) -> dict:
        return {"type": "test", "n_ctx_per_sequence": 512}


def test_one_deadline_covers_routing_retrieval_and_generation():
    """/ask with `auto` runs a routing job, then retrieval, then generation: 0.6 s + 0.6 s of jobs under a 1 s
    timeout is a 504 at 1 s (each job alone fits; the request does not)."""
    from serving.app import create_app

    engine = AdapterEngine()
    app = create_app(compose(with_test_defaults(["threads=1", "serve.rerank=false", "serve.index=/unused",
                                                 f"serve.request_timeout_s={TIMEOUT_S}", "serve.require=[model]"])),
                     engine=engine)
    app.state.ctx.router.worker.loader = lambda: SlowRouter(0.6)
    app.state.ctx.index.worker.loader = lambda: SlowIndex(0.6)
    running = serve_in_thread(app, healthy=False)
    try:
        wait_for(lambda: app.state.ctx.index.worker.state == "ready" and app.state.ctx.router.worker.state == "ready",
                 timeout_s=10)
        started = time.monotonic()
        response = httpx.post(f"{running.url}/api/v1/ask", json={"question": "Who?", "domain": "auto"}, timeout=30)
        elapsed = time.monotonic() - started
        print(f"\n/ask with auto, 1.2 s of jobs under a 1 s timeout: {response.status_code} after {elapsed:.2f} s")
        assert response.status_code == 504, response.text
        assert TIMEOUT_S - 0.05 <= elapsed < TIMEOUT_S + SLACK_S
        assert engine.calls == []  # generation never started: the deadline had passed
    finally:
        running.stop()


def test_a_batch_routes_in_one_job():
    from serving.app import create_app

    engine, router = AdapterEngine(), SlowRouter(0.0)
    app = create_app(compose(with_test_defaults(["threads=1", "serve.rerank=false"])), engine=engine)
    app.state.ctx.router.worker.loader = lambda: router
    running = serve_in_thread(app)
    try:
        prompts = ["Can my landlord keep the deposit?", "What is a tort?", "Is a verbal contract binding?"]
        response = httpx.post(f"{running.url}/api/v1/generate/batch", json={"prompts": prompts, "max_tokens": 2},
                              timeout=30)
        assert response.status_code == 200, response.text
        assert [r["domain"] for r in response.json()["results"]] == ["legal"] * 3
        assert router.calls == [prompts]  # one routing job for the whole batch
    finally:
        running.stop()
