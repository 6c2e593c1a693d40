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
                                  "serve.reranker=null", "serve.cors_origins=[https://app.example.com]",
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
    assert good.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}],
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


def test_a_foreign_host_header_is_refused(secured):
    """DNS rebinding: evil.example resolving to 127.0.0.1 reaches the socket, but not the API."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    assert httpx.get(secured.url + "/v1/models", headers={**headers, "Host": "evil.example"}).status_code == 400
    assert httpx.get(secured.url + "/api/v1/health", headers={"Host": "evil.example:8000"}).status_code == 400
    for host in ("localhost", "127.0.0.1:9999"):
        assert httpx.get(secured.url + "/v1/models", headers={**headers, "Host": host}).status_code == 200


def test_binding_beyond_loopback_without_a_key_refuses_to_start():
    import subprocess
    import sys

    from tests.serving.conftest import free_port

    port = free_port()
    refused = subprocess.run([sys.executable, "-m", "stages.cli", "serve", "serve.host=0.0.0.0",
                              f"serve.port={port}"], capture_output=True, text=True, timeout=120,
                             env={k: v for k, v in __import__("os").environ.items() if k != "DOMAIN_LLM_API_KEY"})
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].startswith("error: serve.host=0.0.0.0 listens beyond this machine")
    assert "serve.allow_open=true" in refused.stderr


def test_ui_session_cookie_expires_is_revoked_by_logout_and_is_secure_under_https(secured):
    from serving.security import UI_COOKIE, UISessions

    login = httpx.post(secured.url + "/ui/login", json={"api_key": API_KEY})
    assert login.status_code == 204
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=43200" in cookie
    assert "Secure" not in cookie  # plain http here
    session = login.cookies[UI_COOKIE]
    assert API_KEY not in session
    models = httpx.get(secured.url + "/v1/models", cookies={UI_COOKIE: session})
    assert models.status_code == 200  # the cookie works like the key
    logout = httpx.post(secured.url + "/ui/logout", cookies={UI_COOKIE: session})
    assert logout.status_code == 204 and 'domain_llm_ui=""' in logout.headers["set-cookie"]
    assert httpx.get(secured.url + "/v1/models", cookies={UI_COOKIE: session}).status_code == 401  # revoked
    # behind a TLS proxy (uvicorn trusts X-Forwarded-Proto from 127.0.0.1) the cookie is Secure
    https = httpx.post(secured.url + "/ui/login", json={"api_key": API_KEY}, headers={"X-Forwarded-Proto": "https"})
    assert https.status_code == 204 and "Secure" in https.headers["set-cookie"]
    # expiry: a session issued an hour-long life ago and a forged one are refused
    sessions = UISessions(API_KEY, hours=1)
    token = sessions.issue()
    assert sessions.valid(token)
    expiry, nonce, _ = token.split(".")
    assert not sessions.valid(f"{int(expiry) - 3601}.{nonce}.{sessions._mac(f'{int(expiry) - 3601}.{nonce}')}")
    assert not sessions.valid(f"{expiry}.{nonce}.{'0' * 64}")
    assert not UISessions("another-key").valid(token)
