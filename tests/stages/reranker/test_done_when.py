"""Done-when (slow, ~6-10 min on a busy 2-core CPU): on 600 synthetic healthcare samples the trained
cross-encoder beats BM25 and the bi-encoder on MRR@10 over questions about held-out facts (no training question
asks them), each ranked against the other facts about its subject first (the hard candidates), with passage
pairs from the fact-sheet index.

    pytest tests/stages/reranker/test_done_when.py -m slow
"""

from __future__ import annotations

import json

import pytest

from stages.fileio import write_jsonl
from stages.index.main import main as index_stage
from stages.prepare.synthetic.generator import generate_synthetic
from stages.reranker.main import main


@pytest.mark.slow
def test_trained_cross_encoder_beats_bm25_and_bi_encoder(cfg_factory, tmp_path):
    records = generate_synthetic(["healthcare"], num_samples=600, seed=42, held_out_facts=0.15)
    unseen = [r for r in records if r.get("unseen_fact")]
    test = [r for r in records if r["held_out"] and not r.get("unseen_fact")]
    rest = [r for r in records if not r["held_out"]]
    data = tmp_path / "processed" / "healthcare"
    write_jsonl(data / "train.jsonl", rest[60:])
    write_jsonl(data / "validation.jsonl", rest[:60])
    write_jsonl(data / "test.jsonl", test)
    write_jsonl(data / "test_facts.jsonl", unseen)
    index_stage(cfg_factory("domains=[healthcare]", f"paths.index={tmp_path / 'index'}",
                            f"paths.metrics={tmp_path / 'metrics'}",
                            f"index.docs_dir={tmp_path / 'no_docs'}"))  # the healthcare fact sheets
    main(cfg_factory("domains=[healthcare]", f"paths.processed={tmp_path / 'processed'}",
                     f"paths.reranker={tmp_path / 'reranker'}",
                     f"paths.metrics={tmp_path / 'metrics'}", f"paths.index={tmp_path / 'index'}", "threads=1"))
    metrics = json.loads((tmp_path / "metrics" / "reranker.json").read_text())
    assert metrics["benchmark_split"] == "test_facts" and metrics["test_questions"] == len(unseen) > 40
    assert metrics["paraphrase_questions"] == len(test) and metrics["chunk_pairs"] > 400
    assert metrics["trained_mrr_at_10"] > metrics["bm25_mrr_at_10"], metrics
    assert metrics["trained_mrr_at_10"] > metrics["biencoder_mrr_at_10"], metrics
