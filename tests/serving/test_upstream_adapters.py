"""Per-domain adapters behind `serve.engine=openai_upstream`: our API in front of an upstream that serves the same
adapter files under model ids (vLLM's --lora-modules convention; here another real domain-llm server, which names
them the same way). A domain the upstream lacks stops the start-up with one line, never a base-model answer.
llama-server's per-request `lora` field is tested with real llama-server replicas behind nginx
(tests/deploy/test_replicas.py, slow)."""

from __future__ import annotations

import httpx
import pytest

from tests.serving.conftest import serve_command, start_thread_server
from tests.serving.test_domains import LEGAL_QUESTION, MEDICAL_QUESTION, adapter_overrides, chat


@pytest.fixture(scope="module")
def upstream(tiny_adapters):
    server = start_thread_server(*adapter_overrides(tiny_adapters), "serve.ui=false")
    yield server
    server.stop()


def front_overrides(files: dict, url: str, domains=("legal", "healthcare")) -> list[str]:
    spec = ",".join(f"{d}:'{files[d]}'" for d in domains)
    return ["serve.engine=openai_upstream", f"serve.upstream_url={url}", "serve.upstream_model=base",
            f"serve.model={files['base']}", f"serve.adapters={{{spec}}}", "serve.index=null", "serve.rerank=false",
            "serve.ui=false"]


def test_each_domain_is_answered_by_its_adapter_on_the_upstream(upstream, tiny_adapters):
    front = start_thread_server(*front_overrides(tiny_adapters, upstream.url))
    try:
        ids = [m["id"] for m in httpx.get(f"{front.url}/v1/models").json()["data"]]
        assert ids == ["base", "domain-llm-legal", "domain-llm-healthcare"]
        info = httpx.get(f"{front.url}/api/v1/model/info").json()
        assert info["type"] == "openai_upstream" and info["upstream_adapters"] == "model"
        answers = {}
        for model in ("domain-llm-legal", "domain-llm-healthcare", "base"):
            proxied, direct = chat(front.url, model, LEGAL_QUESTION), chat(upstream.url, model, LEGAL_QUESTION)
            assert proxied.status_code == 200 and direct.status_code == 200
            assert proxied.headers["x-domain-llm-domain"] == direct.headers["x-domain-llm-domain"]
            answers[model] = proxied.json()["choices"][0]["message"]["content"]
            assert answers[model] == direct.json()["choices"][0]["message"]["content"]
        assert len(set(answers.values())) == 3  # three models answered, not the base three times
        routed = chat(front.url, "auto", MEDICAL_QUESTION)  # our router in front, the adapter upstream
        assert routed.json()["domain"] == "healthcare"
        assert routed.json()["choices"][0]["message"]["content"] == \
            chat(upstream.url, "domain-llm-healthcare", MEDICAL_QUESTION).json()["choices"][0]["message"]["content"]
        streamed = httpx.post(f"{front.url}/v1/chat/completions", timeout=60, json={
            "model": "domain-llm-legal", "stream": True, "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "user", "content": LEGAL_QUESTION}]})
        assert streamed.headers["x-domain-llm-domain"] == "legal"
        assert "".join(_deltas(streamed.text)) == answers["domain-llm-legal"]
    finally:
        front.stop()


def _deltas(sse: str) -> list[str]:
    import json

    chunks = [json.loads(line[6:]) for line in sse.splitlines() if line.startswith("data: {")]
    return [c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")]


def test_a_domain_the_upstream_lacks_stops_the_start_up(tiny_adapters):
    import subprocess

    only_legal = start_thread_server(f"serve.model={tiny_adapters['base']}", "serve.rerank=false", "serve.ui=false",
                                     "serve.n_ctx=256", f"serve.adapters={{legal:'{tiny_adapters['legal']}'}}")
    try:
        result = subprocess.run(serve_command(*front_overrides(tiny_adapters, only_legal.url)), capture_output=True,
                                text=True, timeout=120)
    finally:
        only_legal.stop()
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2, result.stderr[-2000:]
    assert "adapter 'healthcare'" in last and "not served by upstream" in last and "domain-llm-healthcare" in last


def test_manifests_of_another_base_leave_health_at_503_naming_the_adapters(upstream, tiny_adapters, tmp_path):
    """The models volume holds adapter manifests but not the base they were published for: no domain is served,
    and /health says so instead of answering every domain with the base model."""
    import json

    published = tmp_path / "adapters" / "legal"
    published.mkdir(parents=True)
    (published / "manifest.json").write_text(json.dumps({"domain": "legal", "adapter": {"file": "adapter.gguf"},
                                                         "base": {"file": "model.gguf", "sha256": "0" * 64}}))
    front = start_thread_server("serve.engine=openai_upstream", f"serve.upstream_url={upstream.url}",
                                "serve.upstream_model=base", f"serve.model={tmp_path / 'model.gguf'}",
                                "serve.adapters=null", f"serve.adapter_dir={tmp_path / 'adapters'}",
                                "serve.rerank=false", "serve.ui=false", healthy=False)
    try:
        response = httpx.get(f"{front.url}/api/v1/health")
        adapters = response.json()["components"]["adapters"]
        assert response.status_code == 503 and adapters["state"] == "missing"
        assert adapters["detail"].startswith("no adapter published for model.gguf")
        assert chat(front.url, "domain-llm-legal", LEGAL_QUESTION).status_code == 404
    finally:
        front.stop()
