"""The batched GGUF engine behind the HTTP APIs (real uvicorn in a thread, SmolLM2 GGUF): several requests in
flight at once, structured output, the batch budget, cancellation and deadlines with several sequences."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.serving.conftest import start_thread_server, wait_for

STORY = [{"role": "user", "content": "Write a very long story about a dragon."}]


@pytest.fixture(scope="module")
def running(gguf_overrides, gguf_engine_shared):
    server = start_thread_server(*gguf_overrides, "serve.rerank=false", "serve.max_batch_tokens=256",
                                 engine=gguf_engine_shared)
    yield server
    server.stop()


def scheduler_idle(engine) -> bool:
    return not engine.scheduler.busy()


def test_model_info_reports_slots_and_context_per_sequence(running, gguf_engine_shared):
    info = httpx.get(f"{running.url}/api/v1/model/info", timeout=10).json()
    assert info["parallel"] == gguf_engine_shared.max_batch_size == 8
    assert info["n_ctx_per_sequence"] == 2048 and info["kv_unified"] is False and info["flash_attn"] == "auto"


def test_concurrent_requests_decode_together_and_match_their_answers_alone(running, gguf_engine_shared):
    questions = ["What is hypertension?", "What causes asthma?", "How is diabetes treated?", "What is a fever?"]

    def ask(question: str) -> str:
        body = {"messages": [{"role": "user", "content": question}], "max_tokens": 16, "temperature": 0}
        response = httpx.post(f"{running.url}/v1/chat/completions", json=body, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()["choices"][0]["message"]["content"]

    alone = [ask(q) for q in questions]
    before = gguf_engine_shared.scheduler.lanes[0].stats["max_active"]
    gguf_engine_shared.scheduler.lanes[0].stats["max_active"] = 0
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(ask, questions))
    assert gguf_engine_shared.scheduler.lanes[0].stats["max_active"] >= 2, "requests were decoded one at a time"
    gguf_engine_shared.scheduler.lanes[0].stats["max_active"] = max(before, 4)
    # Batched matrix products (and flash attention over a shared KV buffer) round differently from a request
    # decoded alone, so a greedy answer may take another word at a near tie; but every answer is about its
    # own question (no sequence reads another's KV), and most are identical.
    same = sum(a == b for a, b in zip(alone, together, strict=True))
    print(f"\n4 concurrent chats vs alone, greedy, 16 tokens: {same}/4 identical")
    assert same >= 2 and all(a.split()[:2] == b.split()[:2] for a, b in zip(alone, together, strict=True)), \
        (alone, together)


@pytest.mark.parametrize("response_format", [
    {"type": "json_schema", "json_schema": {"name": "triage", "strict": True, "schema": {
        "type": "object", "additionalProperties": False, "required": ["condition", "urgent", "steps"],
        "properties": {"condition": {"type": "string", "maxLength": 60}, "urgent": {"type": "boolean"},
                       "steps": {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 3}}}}},
    {"type": "json_object"},
], ids=["json_schema", "json_object"])
def test_response_format_returns_json_that_validates(running, response_format):
    import jsonschema_rs

    # A prompt the 135M model answers with a small object; the grammar, not the prompt, makes it JSON.
    question = 'Return JSON with keys "name" and "age" for a 30 year old patient called Ana.'
    body = {"messages": [{"role": "user", "content": question}], "max_tokens": 200, "temperature": 0, "response_format": response_format}
    response = httpx.post(f"{running.url}/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "stop", choice
    parsed = json.loads(choice["message"]["content"])
    schema = response_format.get("json_schema", {}).get("schema", {"type": "object"})
    jsonschema_rs.validate(schema, parsed)


@pytest.mark.parametrize("schema, message", [
    ({"$ref": "#/$defs/missing"}, "cannot be turned into a grammar"),
    # A bound becomes that many nested groups in the grammar: a huge one would stall or crash the parser.
    ({"type": "string", "maxLength": 100000}, "schema.maxLength=100000: at most 256"),
    ({"type": "object", "properties": {"tags": {"type": "array", "maxItems": 10**9}}}, "tags.maxItems=1000000000"),
], ids=["unresolved-ref", "huge-maxLength", "huge-maxItems"])
def test_a_schema_that_cannot_become_a_grammar_is_422(running, schema, message):
    body = {"messages": STORY, "max_tokens": 8, "response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}
    started = time.monotonic()
    response = httpx.post(f"{running.url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 422 and time.monotonic() - started < 5
    assert "response_format.json_schema" in response.json()["error"]["message"]
    assert message in response.json()["error"]["message"]
    bounded = {"type": "string", "maxLength": 256}  # the largest bound allowed parses and answers
    body["response_format"]["json_schema"]["schema"] = bounded
    assert httpx.post(f"{running.url}/v1/chat/completions", json=body, timeout=60).status_code == 200


def test_a_batch_over_the_token_budget_is_422_naming_the_limit(running):
    body = {"prompts": ["What is hypertension?"] * 4, "max_tokens": 128}
    response = httpx.post(f"{running.url}/api/v1/generate/batch", json=body, timeout=30)
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "4 prompts x max_tokens 128 = 512" in message and "serve.max_batch_tokens (256)" in message
    completions = httpx.post(f"{running.url}/v1/completions", timeout=30,
                             json={"prompt": ["Hi"] * 4, "max_tokens": 128})
    assert completions.status_code == 422 and "serve.max_batch_tokens" in completions.json()["error"]["message"]
    ok = httpx.post(f"{running.url}/api/v1/generate/batch", json={**body, "max_tokens": 64}, timeout=60)
    assert ok.status_code == 200 and ok.json()["total_prompts"] == 4


def test_one_stream_disconnects_while_others_decode_and_they_still_finish(running, gguf_engine_shared):
    def long_answer(i: int) -> httpx.Response:
        body = {"messages": [{"role": "user", "content": f"Explain hypertension, part {i}."}], "max_tokens": 40,
                "temperature": 0}
        return httpx.post(f"{running.url}/v1/chat/completions", json=body, timeout=60)

    with ThreadPoolExecutor(3) as pool:
        others = [pool.submit(long_answer, i) for i in range(3)]
        body = {"messages": STORY, "max_tokens": 1000, "temperature": 0, "stream": True}
        with httpx.stream("POST", f"{running.url}/v1/chat/completions", json=body, timeout=30) as response:
            lines = response.iter_lines()
            received = [next(lines) for _ in range(6)]
        assert any('"content"' in line for line in received)
        answers = [f.result() for f in others]
    assert all(a.status_code == 200 and a.json()["usage"]["completion_tokens"] > 0 for a in answers)
    # The story (1000 tokens, ~20 s alone) was stopped when its client left: the engine is idle again.
    wait_for(lambda: scheduler_idle(gguf_engine_shared), timeout_s=8)


def test_the_deadline_stops_every_sequence_in_flight(gguf_overrides, gguf_engine_shared):
    server = start_thread_server(*gguf_overrides, "serve.request_timeout_s=1.5", "serve.rerank=false",
                                 engine=gguf_engine_shared)
    try:
        body = {"messages": STORY, "max_tokens": 1000, "temperature": 0}
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(lambda _: httpx.post(f"{server.url}/v1/chat/completions", json=body,
                                                           timeout=30), range(4)))
        assert [r.status_code for r in responses] == [504] * 4
        assert time.monotonic() - started < 6
        wait_for(lambda: scheduler_idle(gguf_engine_shared), timeout_s=5)
    finally:
        server.stop()


@pytest.mark.slow
def test_requests_at_the_configured_limits_finish_within_the_timeout(gguf_overrides, gguf_engine_shared):
    """The default limits are consistent: the largest batch they allow (serve.max_batch_size prompts x
    serve.max_batch_tokens) and one request at serve.max_tokens_limit finish before serve.request_timeout_s
    on the default-size model, even at 1 thread. Raw counting prompts ("101, 102, ...,") go on counting to the
    limit whatever the batch's rounding; a story's greedy continuation can end early when the batch changes."""
    from serving.settings import Limits, ServeSettings

    def counting(start: int) -> str:
        return ", ".join(str(k) for k in range(start, start + 12)) + ","

    limits, timeout_s = Limits(), ServeSettings().request_timeout_s
    server = start_thread_server(*gguf_overrides, "serve.rerank=false", engine=gguf_engine_shared)
    try:
        n = limits.max_batch_size
        # No repeat penalty: counting repeats digits and commas by nature, and the served default (1.1) ended
        # the counting after 41 tokens.
        batch = {"prompts": [counting(100 * i + 1) for i in range(n)], "repeat_penalty": 1.0,
                 "max_tokens": limits.max_batch_tokens // n, "temperature": 0, "use_chat_template": False}
        single = {"prompt": counting(7), "max_tokens": limits.max_tokens_limit, "repeat_penalty": 1.0,
                  "temperature": 0, "use_chat_template": False}
        for path, body, most in (("/api/v1/generate/batch", batch, limits.max_batch_tokens),
                                 ("/api/v1/generate", single, limits.max_tokens_limit)):
            started = time.monotonic()
            response = httpx.post(f"{server.url}{path}", json=body, timeout=timeout_s + 30)
            elapsed = time.monotonic() - started
            assert response.status_code == 200, response.text
            tokens = response.json().get("total_tokens_generated") or response.json()["tokens_generated"]
            print(f"\n{path} at the limits: {tokens} tokens in {elapsed:.1f} s (timeout {timeout_s:g} s)")
            assert elapsed < timeout_s and tokens >= most // 2, "the prompts ended early: not a test of the limits"
    finally:
        server.stop()
