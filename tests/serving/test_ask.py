"""POST /api/v1/ask on a real server (uvicorn on 127.0.0.1, the SmolLM2 GGUF, a real index built by the index
stage): citations are the index's own chunks, an answer that is only in a document comes from it, bad input is
a one-line 422, and citation numbers that do not exist never reach the client."""

from __future__ import annotations

import json

import httpx
import pytest

from stages.inference.grounding import check_citations
from tests.serving.conftest import start_thread_server

FACT = "The Quenth observatory was founded in 1923 by the astronomer Ilsa Marrow on Mount Zorblax."
OTHERS = ["Tidal pools hold anemones, crabs and small fish between the tides.",
          "A violin has four strings tuned in fifths and is played with a bow.",
          "Glaciers carve U-shaped valleys as they move slowly downhill.",
          "Sourdough bread rises because wild yeast and lactic acid bacteria ferment the flour.",
          "Chess openings such as the Sicilian Defence shape the middlegame."]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    from stages.config import compose
    from stages.index.main import main

    root = tmp_path_factory.mktemp("ask")
    docs = root / "docs"
    docs.mkdir()
    (docs / "observatory.md").write_text(f"# Quenth observatory\n\n{FACT}")
    (docs / "others.jsonl").write_text("".join(json.dumps({"id": f"other{i}", "title": t.split()[0], "text": t})
                                               + "\n" for i, t in enumerate(OTHERS)))
    main(compose([f"index.docs_dir={docs}", f"paths.index={root / 'index'}", f"paths.metrics={root}"]))
    return root / "index"


@pytest.fixture(scope="module")
def server(index_dir, gguf_engine_shared):
    running = start_thread_server(f"serve.model={gguf_engine_shared.path}", f"serve.index={index_dir}",
                                  "serve.rerank=false", engine=gguf_engine_shared)
    yield running
    running.stop()


def ask(server, **body) -> httpx.Response:
    return httpx.post(f"{server.url}/api/v1/ask", json=body, timeout=120)


def test_answer_comes_from_the_document_with_real_citations(server, index_dir):
    response = ask(server, question="Who founded the Quenth observatory?", top_k=3, max_tokens=40, temperature=0)
    assert response.status_code == 200, response.text
    body = response.json()
    chunks = {json.loads(line)["text"] for line in (index_dir / "chunks.jsonl").read_text().splitlines()}
    assert [c["number"] for c in body["citations"]] == [1, 2, 3]
    assert all(c["chunk"] in chunks for c in body["citations"])  # citations point at real chunks
    assert body["citations"][0]["doc_id"] == "observatory.md"
    assert set(body["cited"]) <= {1, 2, 3} and body["invalid_citations"] == []
    assert "Marrow" in body["answer"], body["answer"]  # only the document knows this
    assert body["usage"]["prompt_tokens"] > 40 and body["finish_reason"] in ("stop", "length")
    assert body["retrieval"] == {"mode": "hybrid", "reranked": False, "seconds": body["retrieval"]["seconds"],
                                 "passages_dropped": 0}


def test_passages_that_do_not_fit_the_context_are_dropped(index_dir, published_gguf):
    """A 512-token context per sequence: the lowest-ranked passages give way and the answer still comes; when
    not even the best passage fits, a one-line 422 says what to lower."""
    from stages.inference import load_engine

    engine = load_engine("gguf", published_gguf, threads=1, n_ctx=512, parallel=1)
    server = start_thread_server(f"serve.model={published_gguf}", f"serve.index={index_dir}", "serve.rerank=false",
                                 "serve.n_ctx=512", "serve.parallel=1", engine=engine)
    try:
        body = ask(server, question="Who founded the Quenth observatory?", top_k=6, max_tokens=300,
                   temperature=0).json()
        assert 1 <= len(body["citations"]) < 6, body
        assert body["retrieval"]["passages_dropped"] == 6 - len(body["citations"])
        assert body["citations"][0]["doc_id"] == "observatory.md"  # the best one is kept
        too_long = ask(server, question="Who founded the Quenth observatory?", max_tokens=480)
        assert too_long.status_code == 422, too_long.text
        assert "lower max_tokens" in too_long.json()["error"]["message"]
    finally:
        server.stop()
        engine.close()


@pytest.mark.parametrize("body, field", [
    ({"question": ""}, "question"),
    ({"question": "Who?", "top_k": 0}, "top_k"),
    ({"question": "Who?", "top_k": 11}, "top_k"),
    ({"question": "Who?", "domain": "legal"}, "domain"),
    ({"question": "Who?", "max_tokens": 100000}, "max_tokens"),
])
def test_bad_input_is_a_one_line_422(server, body, field):
    response = ask(server, **body)
    # a domain this server does not serve is a 404 (serving/domains.py), the rest are 422
    assert response.status_code == (404 if field == "domain" else 422), response.text
    message = response.json()["error"]["message"]
    assert message.startswith(field) and "\n" not in message, message


def test_citation_numbers_that_do_not_exist_are_removed():
    answer, cited, invalid = check_citations("Founded in 1923 [1], by Ilsa Marrow [7][2].", available=3)
    assert answer == "Founded in 1923 [1], by Ilsa Marrow [2]." and cited == [1, 2] and invalid == [7]


def test_reranked_ask_and_a_missing_index(index_dir, gguf_engine_shared, tmp_path):
    reranked = start_thread_server(f"serve.model={gguf_engine_shared.path}", f"serve.index={index_dir}",
                                   "serve.ask_rerank=true", "serve.reranker=null",
                                   engine=gguf_engine_shared)
    try:
        body = ask(reranked, question="Who founded the Quenth observatory?", top_k=2, max_tokens=8).json()
        assert body["retrieval"]["reranked"] and body["citations"][0]["doc_id"] == "observatory.md"
        best = body["citations"][0]
        assert 0 <= best["rerank_score"] <= 1 and best["score"] >= body["citations"][1]["score"] > 0
    finally:
        reranked.stop()
    missing = start_thread_server(f"serve.model={gguf_engine_shared.path}", f"serve.index={tmp_path / 'none'}",
                                  "serve.rerank=false", "serve.require=[model]", engine=gguf_engine_shared)
    try:
        response = ask(missing, question="Who?")
        assert response.status_code == 503 and "run `dvc repro index`" in response.json()["error"]["message"]
    finally:
        missing.stop()


def test_chat_completions_retrieval_extension(server):
    """`retrieval` on /v1/chat/completions (through the openai client's extra_body): the answer comes from the
    passages and the response carries them as citations; without it nothing changes."""
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    messages = [{"role": "user", "content": "Who founded the Quenth observatory?"}]
    reply = client.chat.completions.create(model="auto", messages=messages, max_tokens=40, temperature=0,
                                           extra_body={"retrieval": {"top_k": 2}})
    extra = reply.model_extra
    assert [c["number"] for c in extra["citations"]] == [1, 2]
    assert extra["citations"][0]["doc_id"] == "observatory.md" and extra["invalid_citations"] == []
    assert "Marrow" in reply.choices[0].message.content
    plain = client.chat.completions.create(model="auto", messages=messages, max_tokens=4, temperature=0)
    assert "citations" not in (plain.model_extra or {})


def test_streamed_chat_with_retrieval_sends_citations_first_and_checks_them_last(server):
    body = {"messages": [{"role": "user", "content": "Who founded the Quenth observatory?"}], "max_tokens": 24,
            "temperature": 0, "stream": True, "retrieval": {"top_k": 2}}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        events = [json.loads(line[6:]) for line in response.iter_lines()
                  if line.startswith("data: ") and line != "data: [DONE]"]
    assert events[0]["citations"][0]["doc_id"] == "observatory.md"
    finish = next(e for e in events if e["choices"] and e["choices"][0]["finish_reason"])
    assert finish["invalid_citations"] == [] and set(finish["cited"]) <= {1, 2}
    no_user = httpx.post(f"{server.url}/v1/chat/completions", timeout=60, json={
        "messages": [{"role": "system", "content": "Be brief."}], "retrieval": {"top_k": 2}})
    assert no_user.status_code == 422 and "needs a user message" in no_user.json()["error"]["message"]
    bad_k = httpx.post(f"{server.url}/v1/chat/completions", timeout=60, json={**body, "retrieval": {"top_k": 50}})
    assert bad_k.status_code == 422
