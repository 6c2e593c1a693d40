"""The OpenAI-compatible API (/v1) through the official `openai` client and raw SSE, on a real server."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from stages.inference import SamplingParams, load_engine
from tests.serving.conftest import wait_for

MESSAGES = [{"role": "system", "content": "You are a medical assistant."},
            {"role": "user", "content": "What is asthma?"}]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def local_engine(smollm2_gguf):
    return load_engine("gguf", smollm2_gguf, threads=1, n_ctx=2048)


def test_models_lists_the_served_model(client):
    [model] = client.models.list().data
    assert model.id == "SmolLM2-135M-Instruct.Q4_1" and model.owned_by == "domain-llm"


def test_chat_completion_matches_the_engine(client, local_engine):
    response = client.chat.completions.create(model="auto", messages=MESSAGES, max_tokens=10, temperature=0)
    [expected] = local_engine.chat([MESSAGES], SamplingParams(max_new_tokens=10))
    choice = response.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == expected.text
    assert choice.finish_reason == "length"
    assert response.usage.completion_tokens == 10 and response.usage.prompt_tokens == expected.prompt_tokens


def test_chat_stream_equals_non_stream_and_reports_usage(client):
    whole = client.chat.completions.create(model="auto", messages=MESSAGES, max_tokens=10, temperature=0)
    stream = client.chat.completions.create(model="auto", messages=MESSAGES, max_tokens=10, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 10


def test_completions_with_stop_and_a_prompt_list(client):
    response = client.completions.create(model="auto", prompt="The capital of France is", max_tokens=20,
                                         temperature=0, stop=".")
    assert response.choices[0].text.strip() == "Paris" and response.choices[0].finish_reason == "stop"
    response = client.completions.create(model="auto", prompt=["The capital of France is", "2 + 2 ="],
                                         max_tokens=3, temperature=0)
    assert [c.index for c in response.choices] == [0, 1] and response.usage.completion_tokens == 6


def test_completion_stream_is_sse_ending_with_done(server):
    body = {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    chunks = [json.loads(e[len("data: "):]) for e in events[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    streamed = "".join(c["choices"][0]["text"] for c in chunks)
    whole = httpx.post(f"{server.url}/v1/completions", json={**body, "stream": False}, timeout=60).json()
    assert streamed == whole["choices"][0]["text"] and streamed


def test_openai_client_sees_validation_errors(client):
    with pytest.raises(openai.UnprocessableEntityError, match="max_tokens"):
        client.chat.completions.create(model="auto", messages=MESSAGES, max_tokens=100_000)
    with pytest.raises(openai.UnprocessableEntityError, match="n: Input should be less than or equal to 1"):
        client.completions.create(model="auto", prompt="hi", max_tokens=2, n=2)
    with pytest.raises(openai.UnprocessableEntityError, match="messages"):
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x" * 9000}] * 2)


def test_vllms_repetition_penalty_is_our_repeat_penalty(client):
    def answer(**extra) -> str:
        return client.completions.create(model="auto", prompt="one one one one", max_tokens=8, temperature=0,
                                         extra_body=extra).choices[0].text
    assert answer(repetition_penalty=1.8) == answer(repeat_penalty=1.8) != answer(repeat_penalty=1.0)
    with pytest.raises(openai.UnprocessableEntityError, match="repetition_penalty and repeat_penalty differ"):
        answer(repetition_penalty=1.8, repeat_penalty=1.2)


def test_rerank_cohere_jina_shape(server):
    wait_for(lambda: httpx.get(f"{server.url}/api/v1/model/info").json()["reranker"]["state"] == "ready",
             timeout_s=120, interval_s=0.5)
    documents = ["A stock split increases the number of shares outstanding.",
                 {"text": "Asthma is a chronic disease of the airways treated with inhaled corticosteroids."},
                 "Consideration is required for a contract to be binding."]
    body = {"model": "rerank", "query": "How is asthma treated?", "documents": documents, "top_n": 2,
            "return_documents": True}
    response = httpx.post(f"{server.url}/v1/rerank", json=body, timeout=120).json()
    assert [r["index"] for r in response["results"]][0] == 1 and len(response["results"]) == 2
    assert response["results"][0]["document"]["text"].startswith("Asthma")
    assert response["results"][0]["relevance_score"] >= response["results"][1]["relevance_score"]
    response = httpx.post(f"{server.url}/v1/rerank", json={**body, "return_documents": False}, timeout=60).json()
    assert "document" not in response["results"][0]
