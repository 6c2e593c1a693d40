"""The other engines behind the same routes: `openai_upstream` in front of `python -m llama_cpp.server`, and `hf`."""

from __future__ import annotations

import subprocess
import sys

import httpx
import openai
import pytest

from tests.serving.conftest import free_port, start_server_process, start_thread_server, wait_for

MESSAGES = [{"role": "user", "content": "What is asthma?"}]


@pytest.fixture(scope="module")
def llama_cpp_server(smollm2_gguf, tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("upstream") / "llama_cpp_server.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf),
                                "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1"],
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: process.poll() is None and _up(url), timeout_s=60, interval_s=0.2)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/models", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_upstream_engine_serves_both_apis(llama_cpp_server, gguf_overrides):
    ours = start_server_process("serve.engine=openai_upstream", f"serve.upstream_url={llama_cpp_server}",
                                "serve.upstream_model=smollm2", "serve.rerank=false", "serve.system_prompt=null")
    try:
        direct = httpx.post(f"{llama_cpp_server}/v1/chat/completions", timeout=60, json={
            "messages": MESSAGES, "max_tokens": 8, "temperature": 0}).json()["choices"][0]["message"]["content"]
        client = openai.OpenAI(base_url=f"{ours.url}/v1", api_key="x", max_retries=0)
        proxied = client.chat.completions.create(model="auto", messages=MESSAGES, max_tokens=8, temperature=0)
        assert proxied.choices[0].message.content == direct and proxied.usage.completion_tokens == 8
        stream = client.chat.completions.create(model="auto", messages=MESSAGES, max_tokens=8, temperature=0,
                                                stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == direct
        body = httpx.post(f"{ours.url}/api/v1/generate", timeout=60, json={
            "prompt": "The capital of France is", "max_tokens": 6, "temperature": 0, "use_chat_template": False,
            "stop": ["."]}).json()
        assert body["generated_text"].strip() == "Paris" and body["finish_reason"] == "stop"
        info = httpx.get(f"{ours.url}/api/v1/model/info").json()
        assert info["type"] == "openai_upstream" and info["engine"] == "openai_upstream"
    finally:
        ours.stop()


def test_unreachable_upstream_fails_fast():
    port = free_port()  # nothing listens there
    result = subprocess.run([sys.executable, "-m", "stages.cli", "serve", "serve.engine=openai_upstream",
                             f"serve.upstream_url=http://127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "upstream not usable (ConnectError" in result.stderr.splitlines()[-1]


def test_hf_engine_behind_the_same_routes(tiny_model_dir):
    running = start_thread_server("serve.engine=hf", f"serve.model={tiny_model_dir}", "serve.rerank=false")
    try:
        info = httpx.get(f"{running.url}/api/v1/model/info").json()
        assert info["type"] == "hf" and info["quantization"] == "float32" and info["model_id"] == "base"
        batch = httpx.post(f"{running.url}/api/v1/generate/batch", timeout=60, json={
            "prompts": ["Hello", "The patient has a long history of"], "max_tokens": 5, "temperature": 0}).json()
        assert len(batch["results"]) == 2 and all(r["tokens_generated"] <= 5 for r in batch["results"])
        client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="x", max_retries=0)
        whole = client.chat.completions.create(model="auto", messages=MESSAGES, max_tokens=6, temperature=0)
        stream = client.chat.completions.create(model="auto", messages=MESSAGES, max_tokens=6, temperature=0,
                                                stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == \
            whole.choices[0].message.content
    finally:
        running.stop()
