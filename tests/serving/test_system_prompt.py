"""The default system prompt is the one the served model was trained with (its manifest), not the current
config's domain; serve.system_prompt overrides it explicitly."""

from __future__ import annotations

import os

import httpx
import pytest

from stages.inference import load_engine
from stages.manifest import write_manifest
from tests.serving.conftest import start_thread_server

LEGAL = "You are a legal information assistant. You do not give legal advice."
QUESTION = "What is consideration in contract law?"


@pytest.fixture(scope="module")
def legal_gguf(smollm2_gguf, tmp_path_factory):
    """The SmolLM2 GGUF published as a model trained for `legal` (a manifest beside it)."""
    folder = tmp_path_factory.mktemp("legal_gguf")
    path = folder / "model-q4_1.gguf"
    os.symlink(smollm2_gguf, path)
    write_manifest(folder, {}, {}, {"domain": "legal"}, {}, served={"domain": "legal", "system_prompt": LEGAL})
    return path


def prompt_tokens(engine, system: str | None) -> int:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": QUESTION}]
    return len(engine.prompt_ids(engine.apply_chat_template(messages)))


@pytest.mark.parametrize("override", [None, "Answer in one word."])
def test_served_model_system_prompt_unless_overridden(legal_gguf, override):
    engine = load_engine("gguf", legal_gguf, threads=1, n_ctx=512)
    overrides = ["serve.rerank=false", f"serve.model={legal_gguf}"]  # the config's domain stays healthcare
    if override is not None:
        overrides.append(f"serve.system_prompt={override}")
    expected = prompt_tokens(engine, override or LEGAL)
    assert expected != prompt_tokens(engine, None)  # the test can tell the prompts apart
    server = start_thread_server(*overrides, engine=engine)
    try:
        body = {"prompt": QUESTION, "max_tokens": 2, "temperature": 0}
        seed = httpx.post(f"{server.url}/api/v1/generate", json=body, timeout=60).json()
        assert seed["prompt_tokens"] == expected
        chat = httpx.post(f"{server.url}/v1/chat/completions", json={
            "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 2, "temperature": 0}, timeout=60)
        assert chat.json()["usage"]["prompt_tokens"] == expected
        info = httpx.get(f"{server.url}/api/v1/model/info", timeout=10).json()
        assert info["domain"] == "legal" and info["system_prompt"] == LEGAL
        assert info["default_system_prompt"] == (override or LEGAL)  # what the playground pre-fills
    finally:
        server.stop()
