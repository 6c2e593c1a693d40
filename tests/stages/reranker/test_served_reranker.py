"""The reranker every consumer uses (server, retrieval@, grounded@): the trained cross-encoder, unless its own
benchmark (reranker_info.json, written by train_reranker) put it below the bi-encoder on a split; then the
bi-encoder, with the reason. Real models: the tiny cross-encoder fixture and the bundled MiniLM.

    pytest tests/stages/reranker/test_served_reranker.py -q
"""

from __future__ import annotations

import json
import shutil

from stages.inference.reranker import BiEncoderReranker, Reranker, served_reranker


def with_benchmark(source, folder, trained: float, bi: float):
    shutil.copytree(source, folder)
    (folder / "reranker_info.json").write_text(json.dumps({"benchmark": {
        "test_facts": {"trained_mrr_at_10": trained, "biencoder_mrr_at_10": bi},
        "test": {"trained_mrr_at_10": 0.9, "biencoder_mrr_at_10": 0.8}}}))
    return folder


def test_a_reranker_below_its_bi_encoder_is_not_served(tiny_cross_encoder_dir, tmp_path):
    below = with_benchmark(tiny_cross_encoder_dir, tmp_path / "below", trained=0.693, bi=0.750)
    served, note = served_reranker(below)
    assert isinstance(served, BiEncoderReranker)
    assert note.startswith("trained cross-encoder below its bi-encoder on test_facts (MRR@10 0.693 < 0.750)")
    forced, forced_note = served_reranker(below, below_biencoder=True)
    assert isinstance(forced, Reranker) and forced_note is None
    above = with_benchmark(tiny_cross_encoder_dir, tmp_path / "above", trained=0.80, bi=0.75)
    kept, kept_note = served_reranker(above)
    assert isinstance(kept, Reranker) and kept_note is None
