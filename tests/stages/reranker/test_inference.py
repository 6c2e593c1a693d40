"""The Reranker API on a tiny real cross-encoder, the bi-encoder fallback, and loading errors."""

from __future__ import annotations

import math

import pytest

from stages.errors import StageError
from stages.inference.reranker import (
    MAX_BATCH_SIZE,
    BiEncoderReranker,
    Reranker,
    clip_to_tokens,
    load_reranker,
)

DOCS = ["Metformin is first-line for type 2 diabetes.", "Asthma causes wheezing.", "Influenza causes fever.",
        "Triptans treat migraine."]


@pytest.fixture(scope="module")
def reranker(tiny_cross_encoder_dir) -> Reranker:
    return Reranker.load(tiny_cross_encoder_dir, max_length=32, batch_size=2)


def test_predict_scores_are_sigmoid_of_logits(reranker):
    import torch

    pairs = [("diabetes drug?", d) for d in DOCS]
    scores = reranker.predict(pairs)
    assert len(scores) == 4 and all(0.0 < s < 1.0 for s in scores)
    features = reranker.model.preprocess(pairs)
    with torch.no_grad():
        logits = reranker.model(features)["scores"].squeeze(-1).tolist()
    assert scores == pytest.approx([1 / (1 + math.exp(-z)) for z in logits], abs=1e-5)
    assert reranker.predict([]) == []


def test_rerank_sorts_and_reports_ranks(reranker):
    results = reranker.rerank("diabetes drug?", DOCS)
    scores = reranker.predict([("diabetes drug?", d) for d in DOCS])
    assert [r["rank"] for r in results] == [1, 2, 3, 4]
    assert [r["score"] for r in results] == sorted(scores, reverse=True)
    assert sorted(r["original_index"] for r in results) == [0, 1, 2, 3]
    for r in results:
        assert r["document"] == DOCS[r["original_index"]]
        assert r["score"] == pytest.approx(scores[r["original_index"]])
    top = reranker.rerank("diabetes drug?", DOCS, top_k=2, return_scores=False)
    assert [r["original_index"] for r in top] == [r["original_index"] for r in results[:2]]
    assert "score" not in top[0]
    assert reranker.rerank("q", []) == [] and reranker.rerank("q", DOCS, top_k=0) == []
    with pytest.raises(ValueError, match="top_k"):
        reranker.rerank("q", DOCS, top_k=-1)


def test_batch_rerank_matches_rerank(reranker):
    queries = ["diabetes drug?", "fever?"]
    batched = reranker.batch_rerank(queries, [DOCS, DOCS[:2]], top_k=3)
    assert len(batched) == 2 and len(batched[1]) == 2
    for q, docs, got in zip(queries, [DOCS, DOCS[:2]], batched, strict=True):
        single = reranker.rerank(q, docs, top_k=3)
        assert [r["original_index"] for r in got] == [r["original_index"] for r in single]
        assert [r["score"] for r in got] == pytest.approx([r["score"] for r in single], abs=1e-5)
    assert reranker.batch_rerank([], []) == []
    with pytest.raises(ValueError, match="2 queries but 1"):
        reranker.batch_rerank(queries, [DOCS])


def test_top_documents_compare_and_threshold(reranker):
    ranked = reranker.rerank("diabetes drug?", DOCS)
    assert reranker.get_top_documents("diabetes drug?", DOCS, top_k=2) == [r["document"] for r in ranked[:2]]
    cmp = reranker.compare_documents("diabetes drug?", DOCS[0], DOCS[1])
    assert cmp["margin"] == pytest.approx(cmp["score_a"] - cmp["score_b"])
    assert cmp["preferred"] == ("a" if cmp["score_a"] >= cmp["score_b"] else "b")
    middle = sorted(r["score"] for r in ranked)[1]
    kept = reranker.filter_by_threshold("diabetes drug?", DOCS, threshold=middle)
    assert [r["score"] for r in kept] == [r["score"] for r in ranked if r["score"] >= middle]
    assert len(kept) == 3
    assert reranker.filter_by_threshold("q", DOCS, threshold=1.0) == []
    with pytest.raises(ValueError, match="threshold"):
        reranker.filter_by_threshold("q", DOCS, threshold=1.5)


def test_oversized_inputs_are_truncated_to_max_length(reranker):
    import time

    query, doc = "q " * 3000, "diabetes mellitus " * 5000
    tokenizer = reranker.model.tokenizer
    features = reranker.model.preprocess([(clip_to_tokens(tokenizer, query, 32), clip_to_tokens(tokenizer, doc, 32))])
    assert features["input_ids"].shape[1] == 32
    start = time.perf_counter()
    [score] = reranker.predict([(query, doc)])
    # without clipping, the tokenizer's pair truncation takes ~10 s on this input
    assert time.perf_counter() - start < 2.0
    assert 0.0 < score < 1.0
    # the score only depends on the first 32 tokens: a different tail changes nothing
    [score_other_tail] = reranker.predict([(query, doc + " asthma" * 100)])
    assert score == pytest.approx(score_other_tail, abs=1e-6)


def test_clipping_keeps_exactly_what_the_model_sees(reranker):
    tokenizer = reranker.model.tokenizer
    text = "Antidisestablishmentarianism hyperglycaemia " * 40
    clipped = clip_to_tokens(tokenizer, text, 32)
    assert len(clipped) < len(text)
    full_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    clipped_ids = tokenizer(clipped, add_special_tokens=False)["input_ids"]
    assert clipped_ids[:32] == full_ids[:32] and len(clipped_ids) >= 32
    assert clip_to_tokens(tokenizer, "short text", 32) == "short text"
    pair = ("hyperglycaemia " * 30, text)
    direct = reranker.model.predict([pair], activation_fn=None, show_progress_bar=False)
    via_clip = reranker.model.predict([(clip_to_tokens(tokenizer, pair[0], 32), clipped)], activation_fn=None,
                                      show_progress_bar=False)
    assert float(direct[0]) == pytest.approx(float(via_clip[0]), abs=1e-6)


def test_batch_size_is_bounded(tiny_cross_encoder_dir):
    assert Reranker.load(tiny_cross_encoder_dir, batch_size=10_000).batch_size == MAX_BATCH_SIZE
    with pytest.raises(ValueError, match="batch_size"):
        Reranker.load(tiny_cross_encoder_dir, batch_size=0)


def test_missing_or_corrupt_model_is_a_clear_error(tmp_path, tiny_cross_encoder_dir):
    with pytest.raises(StageError, match=r"no cross-encoder here \(missing config.json, model.safetensors\)"):
        Reranker.load(tmp_path / "nope")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (broken / name).write_bytes((tiny_cross_encoder_dir / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(StageError, match="cannot load the cross-encoder"):
        load_reranker(broken)  # model files present but unreadable: an error, never a silent fallback


def test_load_reranker_picks_cross_encoder_or_fallback(tmp_path, tiny_cross_encoder_dir):
    cross = load_reranker(tiny_cross_encoder_dir)
    assert cross.info()["type"] == "cross-encoder" and cross.info()["fallback"] is False
    fallback = load_reranker(tmp_path / "absent")
    assert isinstance(fallback, BiEncoderReranker)
    assert fallback.info() | {"path": None} == {"type": "bi-encoder", "path": None, "fallback": True,
                                                  "max_length": 256, "batch_size": 32}
    assert isinstance(load_reranker(None), BiEncoderReranker)


def test_bi_encoder_fallback_ranks_by_meaning():
    bi = BiEncoderReranker(max_length=64, batch_size=8)
    results = bi.rerank("Which medicine treats type 2 diabetes?", DOCS)
    assert results[0]["original_index"] == 0
    assert all(0.0 <= r["score"] <= 1.0 for r in results)
    assert bi.predict([]) == [] and bi.rerank("q", []) == []
    [long_score] = bi.predict([("q", "diabetes " * 5000)])
    assert 0.0 <= long_score <= 1.0
    assert bi.get_top_documents("fever", DOCS, top_k=1) == ["Influenza causes fever."]
