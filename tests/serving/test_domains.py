"""One server, a base model and a LoRA adapter per domain (tests/adapter_models.py): the request's `model`
(OpenAI API) or `domain` (seed API) picks the adapter, `auto` routes by embedding, and requests of different
domains are answered side by side by a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from stages.inference import SamplingParams
from tests.serving.conftest import start_server_process, start_thread_server

LEGAL_QUESTION = "Is a verbal agreement legally enforceable in court?"
MEDICAL_QUESTION = "Which medication lowers cholesterol?"


def adapter_overrides(files: dict) -> list[str]:
    return [f"serve.model={files['base']}", "serve.index=null", "serve.rerank=false", "serve.ui=true",
            "serve.n_ctx=256", "serve.parallel=4",
            f"serve.adapters={{legal:'{files['legal']}',healthcare:'{files['healthcare']}'}}"]


@pytest.fixture(scope="module")
def served(tiny_adapters):
    server = start_thread_server(*adapter_overrides(tiny_adapters))
    yield server
    server.stop()


def chat(url: str, model: str | None, question: str, **extra) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": question}], "max_tokens": 8, "temperature": 0, **extra}
    if model is not None:
        body["model"] = model
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)


def test_models_lists_the_base_and_one_id_per_domain(served):
    ids = [m["id"] for m in httpx.get(f"{served.url}/v1/models").json()["data"]]
    assert ids == ["base", "domain-llm-legal", "domain-llm-healthcare"]
    info = httpx.get(f"{served.url}/api/v1/model/info").json()
    assert [a["domain"] for a in info["adapters"]] == ["legal", "healthcare"]


def test_the_model_id_picks_the_domains_adapter_and_its_system_prompt(served):
    engine = served.app.state.ctx.generation.worker.engine
    answers = {}
    for domain in ("legal", "healthcare"):
        response = chat(served.url, f"domain-llm-{domain}", LEGAL_QUESTION)
        body = response.json()
        assert response.status_code == 200 and response.headers["x-domain-llm-domain"] == domain
        assert body["model"] == f"domain-llm-{domain}" and body["domain"] == domain
        messages = [{"role": "system", "content": f"You answer {domain} questions."},
                    {"role": "user", "content": LEGAL_QUESTION}]
        served_default = served.app.state.ctx.settings.repeat_penalty  # what a request that sets none gets
        [expected] = engine.for_adapter(domain).chat([messages], SamplingParams(max_new_tokens=8,
                                                                                repeat_penalty=served_default))
        answers[domain] = body["choices"][0]["message"]["content"]
        assert answers[domain] == expected.text
    base = chat(served.url, "base", LEGAL_QUESTION)
    assert base.headers["x-domain-llm-domain"] == "base" and base.json()["domain"] is None
    assert len({answers["legal"], answers["healthcare"], base.json()["choices"][0]["message"]["content"]}) == 3


def test_auto_and_a_missing_domain_route_by_embedding(served):
    legal = chat(served.url, "auto", LEGAL_QUESTION).json()
    assert legal["domain"] == "legal" and legal["model"] == "domain-llm-legal"
    assert legal["routing"]["legal"] > legal["routing"]["healthcare"]
    response = httpx.post(f"{served.url}/api/v1/generate", json={"prompt": MEDICAL_QUESTION, "max_tokens": 4},
                          timeout=60)
    assert response.status_code == 200 and response.json()["domain"] == "healthcare"
    assert response.headers["x-domain-llm-domain"] == "healthcare"
    streamed = httpx.post(f"{served.url}/v1/chat/completions", timeout=60, json={
        "model": "auto", "stream": True, "max_tokens": 4, "messages": [{"role": "user", "content": MEDICAL_QUESTION}]})
    assert streamed.headers["x-domain-llm-domain"] == "healthcare"
    chunks = [json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: {")]
    assert chunks and all(c["model"] == "domain-llm-healthcare" for c in chunks)


def test_an_unknown_model_or_domain_is_404_naming_the_served_ones(served):
    response = chat(served.url, "domain-llm-finance", LEGAL_QUESTION)
    assert response.status_code == 404
    assert "domain-llm-legal" in response.json()["error"]["message"]
    response = httpx.post(f"{served.url}/api/v1/generate", json={"prompt": "x", "domain": "finance"}, timeout=30)
    assert response.status_code == 404 and response.json()["error"]["message"].startswith("domain: 'finance'")


def test_mixed_domain_load_is_all_answered_and_a_batch_routes_each_prompt(served):
    engine = served.app.state.ctx.generation.worker.engine
    switches = engine.scheduler.stats["adapter_switches"]
    models = ["domain-llm-legal", "domain-llm-healthcare", "base", "auto"] * 4
    questions = [LEGAL_QUESTION, MEDICAL_QUESTION] * 8

    def ask(i: int) -> tuple[int, str]:
        response = chat(served.url, models[i], questions[i], max_tokens=24)
        return response.status_code, response.headers.get("x-domain-llm-domain")

    with ThreadPoolExecutor(8) as pool:
        answered = list(pool.map(ask, range(16)))
    expected = [m.removeprefix("domain-llm-") if m != "auto" else ("legal" if i % 2 == 0 else "healthcare")
                for i, m in enumerate(models)]
    assert answered == [(200, d) for d in expected]
    stats = engine.scheduler.stats  # the server's lanes (serve.lanes + spare_lanes), summed
    # threads=1: one regular lane (they share the threads) + the 6 spare lanes
    assert stats["lanes"] == 7
    # Which lane takes which request depends on timing, so the number of switches does too; what holds either
    # way: a lane holding an adapter set it (a counted switch), and a load that switched nothing ran on lanes
    # already holding both domains' adapters.
    lanes = engine.scheduler.lanes
    held = {lane._active_adapter for lane in lanes}
    assert all(lane.stats["adapter_switches"] >= 1 for lane in lanes if lane._active_adapter is not None)
    assert stats["adapter_switches"] > switches or {"legal", "healthcare"} <= held, (switches, stats, held)
    batch = httpx.post(f"{served.url}/api/v1/generate/batch", timeout=60, json={
        "prompts": [LEGAL_QUESTION, MEDICAL_QUESTION, LEGAL_QUESTION], "max_tokens": 6, "temperature": 0}).json()
    assert [r["domain"] for r in batch["results"]] == ["legal", "healthcare", "legal"]
    alone = httpx.post(f"{served.url}/api/v1/generate", timeout=60, json={
        "prompt": MEDICAL_QUESTION, "max_tokens": 6, "temperature": 0, "domain": "healthcare"}).json()
    assert batch["results"][1]["generated_text"] == alone["generated_text"]


def test_a_bad_adapter_file_stops_the_server_in_one_line(tiny_adapters):
    overrides = adapter_overrides(tiny_adapters)
    overrides[-1] = f"serve.adapters={{legal:'{tiny_adapters['base']}'}}"
    server = start_server_process(*overrides, wait=False)
    assert server.process.wait(60) != 0
    log = server.process.log_file.name
    errors = [line for line in open(log, encoding="utf-8") if "not a LoRA adapter GGUF" in line]
    assert len(errors) == 1 and str(tiny_adapters["base"]) in errors[0]


def test_the_playground_offers_auto_and_each_domain_and_says_which_answered(served):
    from tests.browser import chromium_path, offline_page, wait_until

    chromium_path()  # skips with the reason when no browser is installed
    with offline_page() as (page, log):
        page.goto(f"{served.url}/ui/playground")
        page.wait_for_selector("#model-line[data-ready]")
        options = page.locator("#model-select option").all_inner_texts()
        assert options == ["auto", "base", "domain-llm-legal", "domain-llm-healthcare"], options
        page.fill("#temperature", "0")
        page.fill("#max-tokens", "8")
        page.fill("#message", MEDICAL_QUESTION)  # auto: routed to healthcare
        page.click("#send")
        page.wait_for_selector("#stats[data-finish]", timeout=60_000)
        assert page.locator("#stats").inner_text().endswith("domain: healthcare")
        page.select_option("#model-select", "domain-llm-legal")
        page.click("#clear")
        page.fill("#message", MEDICAL_QUESTION)
        page.click("#send")
        wait_until(lambda: page.locator(".msg.assistant").count() == 1
                   and "domain: legal" in page.locator("#stats").inner_text(), timeout_s=60)
        log.assert_clean()
