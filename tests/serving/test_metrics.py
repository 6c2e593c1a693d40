"""GET /metrics after a mixed load on a real server with two domain adapters (tests/adapter_models.py), parsed
with prometheus_client's own text parser: the counters equal what the requests were sent and answered."""

from __future__ import annotations

import json
from collections import Counter

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.serving.conftest import start_thread_server
from tests.serving.test_domains import LEGAL_QUESTION, MEDICAL_QUESTION, adapter_overrides

KEY = "metrics-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def served(tiny_adapters):
    server = start_thread_server(*adapter_overrides(tiny_adapters), f"serve.api_key={KEY}", "serve.ui=false")
    yield server
    server.stop()


def post(url: str, model: str, question: str, stream: bool = False) -> httpx.Response:
    body = {"model": model, "max_tokens": 6, "temperature": 0, "stream": stream,
            "messages": [{"role": "user", "content": question}],
            **({"stream_options": {"include_usage": True}} if stream else {})}
    return httpx.post(url + CHAT, json=body, headers=AUTH, timeout=60)


def usage_of(response: httpx.Response) -> dict:
    if response.headers["content-type"].startswith("text/event-stream"):
        chunks = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
        return next(c["usage"] for c in chunks if c.get("usage"))
    return response.json()["usage"]


def scrape(url: str) -> dict[tuple, float]:
    text = httpx.get(url + "/metrics", headers=AUTH, timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_equal_the_requests_sent(served):
    assert httpx.get(served.url + "/metrics", timeout=10).status_code == 401  # behind the API key
    sent = [("domain-llm-legal", LEGAL_QUESTION, False)] * 3 + [("domain-llm-healthcare", MEDICAL_QUESTION, True)] * 2 \
        + [("auto", LEGAL_QUESTION, False), ("auto", MEDICAL_QUESTION, True), ("base", LEGAL_QUESTION, False)]
    tokens: Counter = Counter()
    answered: Counter = Counter()
    for model, question, stream in sent:
        response = post(served.url, model, question, stream)
        assert response.status_code == 200, response.text
        domain = response.headers["x-domain-llm-domain"]
        answered[domain] += 1
        usage = usage_of(response)
        tokens[domain, "prompt"] += usage["prompt_tokens"]
        tokens[domain, "completion"] += usage["completion_tokens"]
        tokens[domain, "answers of more than one token"] += usage["completion_tokens"] > 1
    assert post(served.url, "domain-llm-finance", LEGAL_QUESTION).status_code == 404
    samples = scrape(served.url)

    assert answered == {"legal": 4, "healthcare": 3, "base": 1}
    for domain, count in answered.items():
        assert value(samples, "domain_llm_requests_total", route=CHAT, method="POST", status="200",
                     domain=domain) == count
        assert value(samples, "domain_llm_prompt_tokens_total", domain=domain) == tokens[domain, "prompt"]
        assert value(samples, "domain_llm_completion_tokens_total", domain=domain) == tokens[domain, "completion"]
    assert value(samples, "domain_llm_requests_total", route=CHAT, method="POST", status="404", domain="none") == 1
    assert value(samples, "domain_llm_routed_total", domain="legal") == 1
    assert value(samples, "domain_llm_routed_total", domain="healthcare") == 1
    # TTFT of every answer: streamed ones from their first piece, the others from the engine's first token
    for domain, count in answered.items():
        assert value(samples, "domain_llm_time_to_first_token_seconds_count", domain=domain) == count
        assert 0 < value(samples, "domain_llm_time_to_first_token_seconds_sum", domain=domain) < 60 * count
        assert value(samples, "domain_llm_time_per_output_token_seconds_count", domain=domain) == \
            tokens[domain, "answers of more than one token"]
    assert value(samples, "domain_llm_request_duration_seconds_count", route=CHAT) == len(sent) + 1
    engine = served.app.state.ctx.generation.worker.engine
    assert value(samples, "domain_llm_adapter_switches_total") == engine.scheduler.stats["adapter_switches"]
    assert value(samples, "domain_llm_prompt_tokens_evaluated_total") == engine.scheduler.stats["prompt_tokens"]
    assert value(samples, "domain_llm_active_sequences") == 0 and value(samples, "domain_llm_queue_depth",
                                                                        worker="model") == 0
    # labels stay bounded: a raw path or a made-up method gets no series of its own
    httpx.request("BREW", served.url + "/no/such/path/123", headers=AUTH, timeout=10)
    # the scrape itself is counted on its own route (never a raw path)
    again = scrape(served.url)
    assert not any("/no/such" in str(labels) or "BREW" in str(labels) for _, labels in again)
    assert value(again, "domain_llm_requests_total", route="unmatched", method="other", status="404",
                 domain="none") == 1
    assert value(again, "domain_llm_requests_total", route="/metrics", method="GET", status="200", domain="none") >= 1
