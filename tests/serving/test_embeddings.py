"""POST /v1/embeddings through the official `openai` client (which asks for base64 and decodes it) and raw JSON,
on a real server: the vectors are the bundled MiniLM's own, in order, with usage counting the tokens read."""

from __future__ import annotations

import httpx
import numpy as np
import openai
import pytest

from tests.serving.conftest import start_thread_server, wait_for

MODEL = "all-MiniLM-L6-v2"
TEXTS = ["What is asthma?", "Asthma is a chronic disease of the airways.", "Tenancy deposits are protected."]


@pytest.fixture(scope="module")
def served(gguf_overrides):
    server = start_thread_server(*gguf_overrides, "serve.embeddings=true", "serve.rerank=false",
                                 "serve.max_documents=4", "serve.max_document_chars=200")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def minilm():
    from sentence_transformers import SentenceTransformer

    from stages.embedder import minilm_path

    return SentenceTransformer(str(minilm_path()), device="cpu", local_files_only=True)


def test_the_openai_client_gets_minilms_vectors_in_order(served, minilm):
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0)
    response = client.embeddings.create(model=MODEL, input=TEXTS)  # encoding_format base64 on the wire
    got = np.array([d.embedding for d in response.data], dtype=np.float32)
    expected = minilm.encode(TEXTS, normalize_embeddings=True)
    assert [d.index for d in response.data] == [0, 1, 2] and got.shape == (3, 384)
    assert np.abs(got - expected).max() < 1e-5
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    tokens = sum(len(ids) for ids in minilm.tokenizer(TEXTS)["input_ids"])
    assert response.usage.prompt_tokens == response.usage.total_tokens == tokens
    assert response.model == MODEL


def test_float_json_and_one_string(served, minilm):
    body = httpx.post(f"{served.url}/v1/embeddings", timeout=60, json={
        "model": MODEL, "input": TEXTS[0], "encoding_format": "float", "dimensions": 384}).json()
    [item] = body["data"]
    assert body["object"] == "list" and item["object"] == "embedding" and len(item["embedding"]) == 384
    assert np.abs(np.array(item["embedding"]) - minilm.encode([TEXTS[0]], normalize_embeddings=True)[0]).max() < 1e-5


@pytest.mark.parametrize("body, status, message", [
    ({"model": "text-embedding-3-small", "input": "x"}, 404, "use 'all-MiniLM-L6-v2'"),
    ({"model": MODEL, "input": ["a"] * 5}, 422, "input"),
    ({"model": MODEL, "input": "x" * 201}, 422, "input"),
    ({"model": MODEL, "input": [1, 2, 3]}, 422, "input"),
    ({"model": MODEL, "input": "x", "dimensions": 256}, 422, "384-dimensional vectors only"),
    ({"model": MODEL, "input": []}, 422, "input"),
])
def test_bad_requests_are_named(served, body, status, message):
    response = httpx.post(f"{served.url}/v1/embeddings", json=body, timeout=60)
    assert response.status_code == status and message in response.json()["error"]["message"], response.text


def test_a_configured_sentence_transformers_folder_is_served_under_its_name(gguf_overrides, minilm, tmp_path):
    import shutil

    from stages.embedder import minilm_path

    folder = tmp_path / "my-embedder"
    shutil.copytree(minilm_path(), folder)
    server = start_thread_server(*gguf_overrides, "serve.embeddings=true", "serve.rerank=false",
                                 f"serve.embedding_model={folder}")
    try:
        body = httpx.post(f"{server.url}/v1/embeddings", timeout=60, json={
            "model": "my-embedder", "input": TEXTS[:2], "encoding_format": "float"}).json()
        got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
        assert body["model"] == "my-embedder"
        assert np.abs(got - minilm.encode(TEXTS[:2], normalize_embeddings=True)).max() < 1e-5
        assert httpx.post(f"{server.url}/v1/embeddings", timeout=60, json={
            "model": MODEL, "input": "x"}).status_code == 404  # the bundled one is not what this server serves
    finally:
        server.stop()


def test_langchains_openai_embeddings_get_the_same_vectors(served, minilm):
    from langchain_openai import OpenAIEmbeddings

    # check_embedding_ctx_length=False: the texts go as they are (by default LangChain sends tiktoken ids,
    # which mean nothing to MiniLM and are refused with a 422)
    client = OpenAIEmbeddings(base_url=f"{served.url}/v1", api_key="unused", model=MODEL,
                              check_embedding_ctx_length=False, max_retries=0)
    got = np.array(client.embed_documents(TEXTS), dtype=np.float32)
    assert np.abs(got - minilm.encode(TEXTS, normalize_embeddings=True)).max() < 1e-5
    assert np.abs(np.array(client.embed_query(TEXTS[0])) - got[0]).max() < 1e-6



def test_a_configured_folder_without_a_model_is_a_503_naming_it(gguf_overrides, tmp_path):
    server = start_thread_server(*gguf_overrides, "serve.embeddings=true", "serve.rerank=false",
                                 f"serve.embedding_model={tmp_path}")
    try:
        def answer() -> httpx.Response:
            return httpx.post(f"{server.url}/v1/embeddings", timeout=60, json={"model": tmp_path.name, "input": "x"})
        # the worker fails to load on its own thread; until then it says "still loading"
        wait_for(lambda: "still loading" not in answer().text, timeout_s=30)
        response = answer()
        assert response.status_code == 503
        assert f"serve.embedding_model={tmp_path}: no sentence-transformers folder here" in response.json()["error"]["message"]
    finally:
        server.stop()
