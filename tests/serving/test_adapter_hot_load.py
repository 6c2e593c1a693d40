"""Adapters loaded and unloaded while a real uvicorn serves (tests/adapter_models.py's tiny base and adapters):
behind the admin token, /v1/models follows, a new domain answers as a fresh engine with that adapter would, a
bad file is one 4xx line that changes nothing, and requests in flight (of the other domains, and of the one
being unloaded) all finish with the answers they would have had alone."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from stages.inference import SamplingParams, load_engine
from tests.serving.conftest import start_thread_server

ADMIN = "admin-secret"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
QUESTIONS = ["Is a verbal agreement legally enforceable in court?", "Which medication lowers cholesterol?"]
GREEDY = SamplingParams(max_new_tokens=12, temperature=0.0, repeat_penalty=1.0)


def models(url: str) -> list[str]:
    return [m["id"] for m in httpx.get(f"{url}/v1/models", timeout=30).json()["data"]]


def chat(url: str, model: str, question: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
        "model": model, "max_tokens": GREEDY.max_new_tokens, "temperature": 0, "repeat_penalty": 1,
        "messages": [{"role": "user", "content": question}]})


def alone(files: dict, adapter: str | None, question: str, system: str | None) -> str:
    """The answer of a fresh engine, nothing else in flight."""
    engine = load_engine("gguf", files["base"], threads=1, n_ctx=256,
                         adapters={adapter: files[adapter]} if adapter else None)
    try:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
        return engine.for_adapter(adapter).chat([messages], GREEDY)[0].text
    finally:
        engine.close()


@pytest.fixture(scope="module")
def served(tiny_adapters):
    server = start_thread_server(f"serve.model={tiny_adapters['base']}", "serve.index=null", "serve.rerank=false",
                                 "serve.n_ctx=256", "serve.parallel=4", f"serve.admin_token={ADMIN}",
                                 f"serve.adapters={{legal:'{tiny_adapters['legal']}'}}")
    yield server
    server.stop()


class Load:
    """Clients asking the same questions over and over until stopped; every answer is kept."""

    def __init__(self, url: str, jobs: list[tuple[str, str]]):
        self.url, self.jobs, self.answers = url, jobs, []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(job,)) for job in jobs]

    def client(self, job: tuple[str, str]) -> None:
        while not self.stop.is_set():
            response = chat(self.url, *job)
            self.answers.append((job, response.status_code, response.json()["choices"][0]["message"]["content"]
                                 if response.status_code == 200 else response.text))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(120)


def test_an_adapter_loaded_under_load_is_served_at_once_and_unloaded_without_losing_a_request(served, tiny_adapters):
    url = served.url
    assert models(url) == ["base", "domain-llm-legal"]
    jobs = [("domain-llm-legal", QUESTIONS[0]), ("base", QUESTIONS[1])]
    expected = {job: chat(url, *job).json()["choices"][0]["message"]["content"] for job in jobs}
    with Load(url, jobs * 2) as load:
        while len(load.answers) < 4:
            time.sleep(0.05)
        loaded = httpx.post(f"{url}/api/v1/adapters", headers=AUTH, timeout=60,
                            json={"domain": "healthcare", "path": str(tiny_adapters["healthcare"])})
        assert loaded.status_code == 201, loaded.text
        assert loaded.json()["model"] == "domain-llm-healthcare" and loaded.json()["routed"]
        assert models(url) == ["base", "domain-llm-legal", "domain-llm-healthcare"]
        new = chat(url, "domain-llm-healthcare", QUESTIONS[1])
        assert new.status_code == 200 and new.headers["x-domain-llm-domain"] == "healthcare"
        assert httpx.post(f"{url}/api/v1/generate", timeout=60, json={
            "prompt": QUESTIONS[1], "domain": "auto", "max_tokens": 2}).json()["domain"] == "healthcare"
        # Requests of the new domain in flight while it is unloaded: every one finishes, then it is gone.
        with Load(url, [("domain-llm-healthcare", QUESTIONS[1])] * 3) as unloading:
            while len(unloading.answers) < 3:
                time.sleep(0.05)
            unloaded = httpx.delete(f"{url}/api/v1/adapters/healthcare", headers=AUTH, timeout=120)
            assert unloaded.status_code == 200, unloaded.text
        assert models(url) == ["base", "domain-llm-legal"]
        gone = chat(url, "domain-llm-healthcare", QUESTIONS[1])
        assert gone.status_code == 404 and "domain-llm-legal" in gone.text
        time.sleep(0.5)
    answers = {(job, status, text) for job, status, text in load.answers}
    assert answers == {(job, 200, expected[job]) for job in jobs}, "a request of another domain was disturbed"
    healthcare = alone(tiny_adapters, "healthcare", QUESTIONS[1], "You answer healthcare questions.")
    assert new.json()["choices"][0]["message"]["content"] == healthcare
    # Before the DELETE: answers as the adapter's; after it: a clear 404 (never the base model answering).
    statuses = {status for _, status, _ in unloading.answers}
    assert statuses <= {200, 404}
    assert {text for _, status, text in unloading.answers if status == 200} == {healthcare}
    assert any(status == 200 for _, status, _ in unloading.answers)


def test_admin_only_and_a_bad_file_is_one_line_that_changes_nothing(served, tiny_adapters, tmp_path):
    url = served.url
    body = {"domain": "finance", "path": str(tiny_adapters["base"])}
    assert httpx.post(f"{url}/api/v1/adapters", json=body, timeout=30).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert httpx.delete(f"{url}/api/v1/adapters/legal", headers=wrong, timeout=30).status_code == 401
    for path, says in ((tiny_adapters["base"], "not a LoRA adapter GGUF"), (tmp_path / "none.gguf", "not found")):
        refused = httpx.post(f"{url}/api/v1/adapters", headers=AUTH, timeout=30,
                             json={"domain": "finance", "path": str(path)})
        message = refused.json()["error"]["message"]
        assert refused.status_code == 422 and says in message and str(path) in message and "\n" not in message
    again = httpx.post(f"{url}/api/v1/adapters", headers=AUTH, timeout=30,
                       json={"domain": "legal", "path": str(tiny_adapters["legal"])})
    assert again.status_code == 409 and "already served" in again.json()["error"]["message"]
    assert httpx.delete(f"{url}/api/v1/adapters/tax", headers=AUTH, timeout=30).status_code == 404
    assert models(url) == ["base", "domain-llm-legal"]
    listed = httpx.get(f"{url}/api/v1/adapters", timeout=30).json()["adapters"]
    assert [(a["domain"], a["path"]) for a in listed] == [("legal", str(tiny_adapters["legal"]))]


def test_without_an_admin_token_the_adapter_endpoints_are_off(tiny_adapters):
    server = start_thread_server(f"serve.model={tiny_adapters['base']}", "serve.index=null", "serve.rerank=false",
                                 "serve.n_ctx=256", "serve.adapters={}")
    try:
        refused = httpx.post(f"{server.url}/api/v1/adapters", headers=AUTH, timeout=30,
                             json={"domain": "legal", "path": str(tiny_adapters["legal"])})
        assert refused.status_code == 403 and "admin_token" in refused.json()["error"]["message"]
    finally:
        server.stop()
