"""`domain-llm serve` as a process: fail-fast start-up, graceful SIGTERM, admin shutdown, request logs."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import httpx
import pytest

from tests.serving.conftest import REPO_ROOT, log_tail, serve_command, start_server_process


def run_to_exit(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(serve_command("serve.port=1", *overrides), cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)


def test_missing_model_fails_fast_with_one_line(tmp_path):
    result = run_to_exit(f"serve.model={tmp_path}/absent.gguf")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path}/absent.gguf: GGUF model file not found; build it with `dvc repro quantize` "
        "or pass another file (e.g. serve.model=PATH)")


def test_corrupt_model_fails_fast_with_one_line(tmp_path, smollm2_gguf):
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(smollm2_gguf.read_bytes()[:3_000_000])
    result = run_to_exit(f"serve.model={truncated}")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {truncated}: ") and "truncated" in last and "re-run" in last
    result = run_to_exit("serve.engine=tpu")
    assert result.returncode == 2 and "serve.engine='tpu': use one of gguf, hf, openai_upstream" in result.stderr


def test_sigterm_lets_the_in_flight_request_finish(gguf_overrides):
    server = start_server_process(*gguf_overrides, "serve.rerank=false")
    results = {}

    def long_request():
        results["response"] = httpx.post(f"{server.url}/api/v1/generate", timeout=120, json={
            "prompt": "Tell me about the heart.", "max_tokens": 60, "temperature": 0})

    client = threading.Thread(target=long_request)
    client.start()
    # SIGTERM once the request is being generated
    deadline = time.monotonic() + 30
    while httpx.get(f"{server.url}/api/v1/health").json()["queue"]["busy"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    server.process.send_signal(signal.SIGTERM)
    client.join(120)
    # uvicorn re-raises SIGTERM once it has shut down gracefully, so the exit status says "terminated".
    assert server.process.wait(60) == -signal.SIGTERM
    response = results["response"]
    assert response.status_code == 200 and response.json()["tokens_generated"] == 60
    log = log_tail(server.process, 20_000)
    assert "Waiting for connections to close" in log or "Shutting down" in log
    # one structured line per request, with its id and latency
    lines = [json.loads(line.split("serving.requests: ", 1)[1]) for line in log.splitlines()
             if "serving.requests: " in line]
    generate = [entry for entry in lines if entry["path"] == "/api/v1/generate"]
    assert generate[0]["status"] == 200 and generate[0]["latency_ms"] > 0
    assert generate[0]["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize("api_key", [None, "k3y"], ids=["no-api-key", "with-api-key"])
def test_admin_shutdown_exits_cleanly(gguf_overrides, api_key):
    # With an API key set too, the admin token alone must reach /shutdown (the key is not the admin token).
    env = {"DOMAIN_LLM_ADMIN_TOKEN": "s3cret", **({"DOMAIN_LLM_API_KEY": api_key} if api_key else {})}
    server = start_server_process(*gguf_overrides, "serve.rerank=false", env=env)
    try:
        assert httpx.post(f"{server.url}/api/v1/shutdown", headers={"Authorization": "Bearer bad"}).status_code == 401
        if api_key:
            key = httpx.post(f"{server.url}/api/v1/shutdown", headers={"Authorization": f"Bearer {api_key}"})
            assert key.status_code == 401 and server.process.poll() is None
        response = httpx.post(f"{server.url}/api/v1/shutdown", headers={"Authorization": "Bearer s3cret"})
        assert response.status_code == 200 and response.json() == {"status": "shutting down"}
        assert server.process.wait(30) == 0
    finally:
        server.stop()
