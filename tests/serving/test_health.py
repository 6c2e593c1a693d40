"""/api/v1/health reports readiness per component and says "ok" (200) only when every enabled one is ready.

Real uvicorn over create_app with a small engine; the reranker worker's loader is replaced (before the server
starts) by one that blocks on an Event or fails, so the loading and failed states last as long as the test
needs.

    pytest tests/serving/test_health.py -q
"""

from __future__ import annotations

import threading

import httpx

from stages.config import compose
from tests.serving.conftest import (
    ThreadServer,
    serve_in_thread,
    wait_for,
    wait_until_healthy,
    with_test_defaults,
)


class Engine:
    name = "test"

    def info(self) -> dict:
        return {"type": "test"}


class Reranker:
    def info(self) -> dict:
        return {"type": "bi-encoder"}

    def rerank(self, query: str, documents: list[str], top_k: int | None = None) -> list[dict]:
        return [{"document": d, "score": 0.5, "rank": i + 1, "original_index": i} for i, d in enumerate(documents)]


def serve(*overrides: str, reranker_loader=None) -> ThreadServer:
    from serving.app import create_app

    app = create_app(compose(["threads=1", *with_test_defaults(overrides)]), engine=Engine())
    if reranker_loader is not None:
        app.state.ctx.rerank.worker.loader = reranker_loader  # runs when the server starts
    return serve_in_thread(app, healthy=False)


def health(url: str) -> httpx.Response:
    return httpx.get(f"{url}/api/v1/health", timeout=10)


def test_health_is_503_while_the_reranker_loads_then_200():
    loaded = threading.Event()

    def slow_reranker() -> Reranker:
        loaded.wait(60)
        return Reranker()

    running = serve(reranker_loader=slow_reranker)
    try:
        response = wait_for(lambda: (r := health(running.url)).json()["model_loaded"] and r, timeout_s=10)
        body = response.json()
        assert response.status_code == 503 and body["status"] == "loading", body
        assert body["components"]["model"] == {"state": "ready", "ready": True, "required": True}
        reranker = body["components"]["reranker"]
        assert reranker["state"] == "loading" and reranker["ready"] is False
        assert reranker["detail"] == "reranker not loaded yet (still loading); retry shortly"
        assert body["detail"] == "reranker: " + reranker["detail"]  # names the component that holds it back
        assert body["reranker"] == "loading" and body["queue"]["state"] == "ready"  # the old fields stay
        # What the 503 promises: /rerank is not served yet.
        rerank = httpx.post(f"{running.url}/api/v1/rerank", json={"query": "q", "documents": ["d"]})
        assert rerank.status_code == 503

        loaded.set()
        wait_until_healthy(running.url, timeout_s=10)
        body = health(running.url).json()
        assert body["status"] == "ok" and body["model_loaded"] is True and "detail" not in body
        ready = {"state": "ready", "ready": True, "required": True}
        assert body["components"]["model"] == body["components"]["reranker"] == ready
        assert body["reranker"] == "ready"
        rerank = httpx.post(f"{running.url}/api/v1/rerank", json={"query": "q", "documents": ["d"]})
        assert rerank.status_code == 200 and rerank.json()["reranker"] == "bi-encoder"
    finally:
        loaded.set()
        running.stop()


def test_health_is_503_when_the_reranker_failed_to_load():
    def broken_reranker() -> Reranker:
        raise OSError("reranker weights unreadable")

    running = serve(reranker_loader=broken_reranker)
    try:
        response = wait_for(lambda: (r := health(running.url)).json()["status"] == "failed" and r, timeout_s=10)
        body = response.json()
        assert response.status_code == 503 and body["model_loaded"] is True
        assert body["components"]["reranker"] == {"state": "failed", "ready": False, "required": True,
                                                  "detail": "reranker not loaded: reranker weights unreadable"}
    finally:
        running.stop()


def test_a_disabled_reranker_does_not_count():
    running = serve("serve.rerank=false")
    try:
        wait_until_healthy(running.url, timeout_s=10)
        body = health(running.url).json()
        assert body["status"] == "ok" and body["model_loaded"] is True and body["reranker"] == "disabled"
        assert body["components"]["reranker"] == {"state": "disabled", "ready": False, "required": False}
    finally:
        running.stop()
