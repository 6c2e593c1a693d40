"""The seed API (/api/v1) on a real `domain-llm serve` over the SmolLM2 GGUF."""

from __future__ import annotations

import json

import httpx
import pytest

from stages.inference import SamplingParams, load_engine
from tests.serving.conftest import wait_for

QUESTION = "What is hypertension?"


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def local_engine(smollm2_gguf):
    return load_engine("gguf", smollm2_gguf, threads=1, n_ctx=2048)


def test_health_reports_the_queue(client):
    body = client.get("/api/v1/health").json()
    assert body["status"] == "ok" and body["model_loaded"] is True and body["engine"] == "gguf"
    assert body["queue"]["capacity"] == 16 and body["queue"]["state"] == "ready"
    # healthy = every enabled component ready, the reranker (the bi-encoder here) included; the others are off
    ready, off = {"state": "ready", "ready": True, "required": True}, {"state": "disabled", "ready": False,
                                                                       "required": False}
    assert body["components"] == {"model": ready, "reranker": ready, "adapters": off, "router": off, "index": off}


def test_model_info_is_read_from_the_gguf(client):
    info = client.get("/api/v1/model/info").json()
    assert info["type"] == "gguf" and info["quantization"] == "Q4_1" and info["context_length"] == 8192
    assert info["name"].startswith("Smollm2 135M") and 130e6 < info["parameters"] < 140e6
    assert info["file"] == "SmolLM2-135M-Instruct.Q4_1.gguf" and "path" not in info
    assert "domain" in info


def test_generate_equals_the_engine_with_the_domain_system_prompt(client, local_engine, cfg_factory):
    response = client.post("/api/v1/generate", json={"prompt": QUESTION, "max_tokens": 12, "temperature": 0})
    assert response.status_code == 200 and response.headers["x-request-id"]
    body = response.json()
    system = cfg_factory().domain.system_prompt
    [expected] = local_engine.chat([[{"role": "system", "content": system}, {"role": "user", "content": QUESTION}]],
                                   SamplingParams(max_new_tokens=12))
    served = client.get("/api/v1/model/info").json()["domain"]
    assert body == {"generated_text": expected.text, "prompt": QUESTION, "tokens_generated": 12,
                    "prompt_tokens": expected.prompt_tokens, "finish_reason": "length", "domain": served,
                    "routing": None}
    assert response.headers["x-domain-llm-domain"] == served


def test_generate_raw_prompt_with_stop(client):
    body = client.post("/api/v1/generate", json={
        "prompt": "The capital of France is", "max_tokens": 20, "temperature": 0, "use_chat_template": False,
        "stop": ["."]}).json()
    assert body["generated_text"].strip() == "Paris" and body["finish_reason"] == "stop"


def test_generate_batch(client):
    prompts = ["The capital of France is", "The capital of Italy is"]
    body = client.post("/api/v1/generate/batch", json={
        "prompts": prompts, "max_tokens": 4, "temperature": 0, "use_chat_template": False}).json()
    assert [r["prompt"] for r in body["results"]] == prompts
    assert "Paris" in body["results"][0]["generated_text"] and "Rome" in body["results"][1]["generated_text"]
    assert body["total_tokens_generated"] == sum(r["tokens_generated"] for r in body["results"])
    assert body["total_prompts"] == 2


def test_rerank_uses_the_fallback_and_reports_it(client):
    documents = ["Consideration is required for a contract to be binding.",
                 "ACE inhibitors and thiazide diuretics are first-line treatments for hypertension.",
                 "A stock split increases the number of shares outstanding."]
    # the reranker loads in the background (torch import): wait until it is ready
    wait_for(lambda: client.get("/api/v1/model/info").json()["reranker"]["state"] == "ready", timeout_s=120,
             interval_s=0.5)
    body = client.post("/api/v1/rerank", json={"query": "How is high blood pressure treated?",
                                               "documents": documents, "top_k": 2}).json()
    assert body["reranker"] == "bi-encoder" and len(body["results"]) == 2
    best = body["results"][0]
    assert best["original_index"] == 1 and best["rank"] == 1 and best["document"] == documents[1]
    assert 0 <= body["results"][1]["score"] <= best["score"] <= 1
    reranker = client.get("/api/v1/model/info").json()["reranker"]
    assert reranker["fallback"] is True and reranker["type"] == "bi-encoder"


@pytest.mark.parametrize(("payload", "field", "words"), [
    ({"prompt": QUESTION, "max_tokens": 5000}, "max_tokens", "less than or equal to 1024"),
    ({"prompt": QUESTION, "max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
    ({"prompt": ""}, "prompt", "at least 1 character"),
    ({"prompt": "x" * 16001}, "prompt", "at most 16000 characters"),
    ({"prompt": QUESTION, "temperature": 3}, "temperature", "less than or equal to 2"),
    ({"prompt": QUESTION, "model_path": "/etc/passwd"}, "model_path", "not supported by this server"),
    ({"max_tokens": 5}, "prompt", "Field required"),
])
def test_generate_validation_errors_name_the_field(client, payload, field, words):
    response = client.post("/api/v1/generate", json=payload)
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert message.startswith(field) and words in message


def test_batch_and_document_counts_are_bounded(client):
    response = client.post("/api/v1/generate/batch", json={"prompts": ["hi"] * 17, "max_tokens": 1})
    assert response.status_code == 422 and "prompts" in response.json()["error"]["message"]
    response = client.post("/api/v1/rerank", json={"query": "q", "documents": ["d"] * 257})
    assert response.status_code == 422 and "documents" in response.json()["error"]["message"]
    response = client.post("/api/v1/rerank", json={"query": "q", "documents": []})
    assert response.status_code == 422


def test_body_over_the_limit_is_413_even_without_content_length(client):
    big = json.dumps({"prompt": "x" * 1_100_000})
    response = client.post("/api/v1/generate", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "larger than 1048576 bytes" in response.json()["error"]["message"]

    def chunks():  # chunked transfer: no Content-Length header to check up front
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536].encode()
    response = client.post("/api/v1/generate", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_prompt_longer_than_the_context_is_422(client):
    response = client.post("/api/v1/generate", json={"prompt": "word " * 3000, "max_tokens": 4})
    assert response.status_code == 422 and "context window" in response.json()["error"]["message"]


def test_shutdown_is_disabled_without_an_admin_token(client):
    response = client.post("/api/v1/shutdown")
    assert response.status_code == 403 and "serve.admin_token" in response.json()["error"]["message"]
    assert client.get("/api/v1/health").status_code == 200


def test_docs_and_openapi_document_every_endpoint_with_examples(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    for path in ["/api/v1/health", "/api/v1/model/info", "/api/v1/generate", "/api/v1/generate/batch",
                 "/api/v1/rerank", "/api/v1/shutdown", "/v1/completions", "/v1/chat/completions", "/v1/models",
                 "/v1/rerank"]:
        assert path in spec["paths"], path
    schemas = spec["components"]["schemas"]
    assert schemas["GenerateRequest"]["examples"][0]["prompt"]
    assert schemas["GenerateRequest"]["properties"]["max_tokens"]["maximum"] == 1024
