"""The one bundled MiniLM is shared by the domain router, the retriever's query embeddings and the bi-encoder
reranker, which a server calls from separate worker threads: hammered from several threads at once, every
result equals the one computed alone, and a reranker's shorter max_length never leaks into the others."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from stages.inference.adapters import DomainRouter
from stages.inference.reranker import BiEncoderReranker, bundled_bi_encoder
from stages.inference.retrieval import embed_with_minilm
from tests.adapter_models import ROUTING_EXAMPLES

# Longer than the reranker's 16 tokens below: an embedding read at 16 tokens would differ.
PASSAGES = [f"Passage {i}: hypertension is persistently high blood pressure, and it is treated with "
            f"lifestyle changes first, then with medicines such as ACE inhibitors or diuretics ({i})."
            for i in range(6)]
QUESTIONS = ["Which medication lowers blood pressure?", "Can my landlord keep the deposit?",
             "What does a vaccine do?"]
ROUNDS = 8


def test_concurrent_router_retriever_and_reranker_calls_equal_the_single_threaded_ones():
    default_length = bundled_bi_encoder().max_seq_length
    router = DomainRouter(ROUTING_EXAMPLES)
    reranker = BiEncoderReranker(max_length=16, batch_size=4)
    pairs = [(q, p) for q in QUESTIONS for p in PASSAGES]
    alone = {"embed": embed_with_minilm(PASSAGES), "rerank": reranker.predict(pairs),
             "route": [router.route(q) for q in QUESTIONS]}
    # The reranker's max_length applied to its own call only.
    assert np.array_equal(embed_with_minilm(PASSAGES), alone["embed"])
    assert bundled_bi_encoder().max_seq_length == default_length > 16
    assert not np.allclose(embed_with_minilm([PASSAGES[0][:60]]), alone["embed"][:1], atol=1e-3), \
        "a truncated passage embeds differently, so a leaked max_length would show"

    results: dict[str, list] = {"embed": [], "rerank": [], "route": []}
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def hammer(kind: str) -> None:
        try:
            start.wait()
            for _ in range(ROUNDS):
                if kind == "embed":
                    results[kind].append(embed_with_minilm(PASSAGES))
                elif kind == "rerank":
                    results[kind].append(reranker.predict(pairs))
                else:
                    results[kind].append([router.route(q) for q in QUESTIONS])
        except BaseException as e:  # e.g. a fast tokenizer's "Already borrowed" under concurrent use
            errors.append(e)

    threads = [threading.Thread(target=hammer, args=(kind,)) for kind in ("embed", "rerank", "route") * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert len(results["embed"]) == len(results["rerank"]) == len(results["route"]) == 2 * ROUNDS
    for vectors in results["embed"]:
        np.testing.assert_allclose(vectors, alone["embed"], atol=1e-5)
    for scores in results["rerank"]:
        np.testing.assert_allclose(scores, alone["rerank"], atol=1e-5)
    for routes in results["route"]:
        assert [domain for domain, _ in routes] == [domain for domain, _ in alone["route"]]
        for (_, scores), (_, expected) in zip(routes, alone["route"], strict=True):
            assert scores == pytest.approx(expected, abs=2e-4)  # rounded to 4 places
    assert bundled_bi_encoder().max_seq_length == default_length
