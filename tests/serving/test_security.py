"""API key, admin token and CORS, on real uvicorn servers."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.serving.conftest import start_thread_server, wait_for

API_KEY, ADMIN = "test-key-123", "admin-456"


@pytest.fixture(scope="module")
def secured(gguf_overrides, gguf_engine_shared):
    running = start_thread_server(*gguf_overrides, f"serve.api_key={API_KEY}", f"serve.admin_token={ADMIN}",
                                  "serve.reranker=/nonexistent", "serve.cors_origins=[https://app.example.com]",
                                  engine=gguf_engine_shared)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    wait_for(lambda: httpx.get(f"{running.url}/api/v1/model/info", headers=headers).json()["reranker"]["state"]
             == "ready", timeout_s=120, interval_s=0.5)
    yield running
    running.stop()


ENDPOINTS = [("GET", "/api/v1/model/info", None), ("POST", "/api/v1/generate", {"prompt": "hi", "max_tokens": 1}),
             ("POST", "/api/v1/generate/batch", {"prompts": ["hi"], "max_tokens": 1}),
             ("POST", "/api/v1/rerank", {"query": "q", "documents": ["d"]}), ("GET", "/v1/models", None),
             ("POST", "/v1/completions", {"prompt": "hi", "max_tokens": 1}),
             ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}),
             ("POST", "/v1/rerank", {"query": "q", "documents": ["d"]})]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_every_endpoint_needs_the_api_key(secured, method, path, body):
    missing = httpx.request(method, secured.url + path, json=body)
    wrong = httpx.request(method, secured.url + path, json=body, headers={"Authorization": "Bearer nope"})
    for response in (missing, wrong):
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
        assert "API key" in response.json()["error"]["message"]
    good = httpx.request(method, secured.url + path, json=body, headers={"Authorization": f"Bearer {API_KEY}"},
                         timeout=60)
    assert good.status_code == 200


def test_health_and_docs_stay_open(secured):
    assert httpx.get(secured.url + "/api/v1/health").status_code == 200
    assert httpx.get(secured.url + "/docs").status_code == 200
    spec = httpx.get(secured.url + "/openapi.json").json()
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def test_openai_client_with_and_without_the_key(secured):
    good = openai.OpenAI(base_url=f"{secured.url}/v1", api_key=API_KEY, max_retries=0)
    assert good.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                        max_tokens=2).choices[0].message.content is not None
    bad = openai.OpenAI(base_url=f"{secured.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_shutdown_requires_the_admin_token_not_the_api_key(secured):
    url = secured.url + "/api/v1/shutdown"
    assert httpx.post(url).status_code == 401
    assert httpx.post(url, headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 401
    assert httpx.get(secured.url + "/api/v1/health").status_code == 200  # still up


def test_cors_allows_only_configured_origins(secured, server):
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    allowed = httpx.options(secured.url + "/v1/completions", headers=preflight)
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    other = httpx.options(secured.url + "/v1/completions", headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    default = httpx.get(server.url + "/api/v1/health", headers={"Origin": "https://app.example.com"})
    assert "access-control-allow-origin" not in default.headers  # none by default
