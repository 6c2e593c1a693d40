"""The headline stage: a few numbers from the stages' metrics files, at most MAX_HEADLINE, and one-line errors."""

from __future__ import annotations

import json

import pytest

from stages.errors import StageError
from stages.headline import MAX_HEADLINE, headline_metrics

EVAL = {"rougeL": 0.49, "rougeL_ci_low": 0.44, "exact_match": 0.05, "semantic_similarity": 0.87,
        "perplexity": 3.75, "stop_rate": 0.983, "repetition_rate": 0.033, "bleu": 0.24}


def write_metrics(folder, quantize_types=("q4_k_m", "q8_0")) -> None:
    files = {
        "eval.json": EVAL,
        "train.json": {"final_eval_loss": 1.36, "train_tokens_per_second": 94.7, "mode": "lora"},
        "reranker.json": {"trained_mrr_at_10": 0.97, "bm25_mrr_at_10": 0.72, "biencoder_mrr_at_10": 0.95},
        # evaluate's shape: deltas per split, both models on that split; the first split is the headline's
        "model_comparison.json": {"splits": ["test", "validation"],
                                  "deltas": {"test": {"finetuned_vs_base": {"rougeL": {"delta": 0.30}}},
                                             "validation": {"finetuned_vs_base": {"rougeL": {"delta": 0.12}}}}},
        "retrieval.json": {"hybrid": {"mrr_at_10": 0.91}, "hybrid_rerank": {"mrr_at_10": 0.71}, "questions": 60},
        "grounded.json": {"closed_book": {"rougeL": 0.21, "f1": 0.3}, "retrieval": {"rougeL": 0.63}, "questions": 58},
        "lmeval.json": {"served": {"mc_accuracy": 0.81, "gen_rougeL": 0.4}, "merged": {"mc_accuracy": 0.83},
                        "mc_accuracy_difference_points": -2.0, "within_tolerance": True},
        "quantize.json": {"f16": {"size_mb": 270.9, "delta_ppl_pct": 0.0},
                          **{t: {"size_mb": 100.0 + i, "delta_ppl_pct": 1.0 + i, "decode_tokens_per_s": 110.0}
                             for i, t in enumerate(quantize_types)}},
    }
    folder.mkdir(exist_ok=True)
    for name, content in files.items():  # the shared reranker's metrics sit beside the domains' folders
        (folder.parent if name == "reranker.json" else folder).joinpath(name).write_text(json.dumps(content))


def test_headline_picks_the_few_numbers(tmp_path):
    write_metrics(tmp_path / "legal")
    headline = headline_metrics(tmp_path / "legal")
    # ROUGE, BLEU and perplexity: what `dvc metrics diff` compares with its default targets (the design card)
    assert headline["quality"] == {"rougeL": 0.49, "bleu": 0.24, "semantic_similarity": 0.87,
                                   "perplexity": 3.75, "stop_rate": 0.983, "repetition_rate": 0.033,
                                   "rougeL_vs_base": 0.3}
    assert headline["training"] == {"eval_loss": 1.36, "tokens_per_s": 94.7}
    # the served type's size, speed and ΔPPL; q8_0's ΔPPL is over the column budget (it stays in quantize.json)
    assert headline["gguf"] == {"q4_k_m_size_mb": 100.0, "q4_k_m_decode_tok_s": 110.0, "q4_k_m_dppl_pct": 1.0}
    assert headline["rerank"]["mrr_at_10"] == 0.97
    assert headline["retrieval"] == {"hybrid_mrr_at_10": 0.91, "rerank_mrr_at_10": 0.71}
    assert headline["grounded"] == {"rougeL_closed_book": 0.21, "rougeL_with_retrieval": 0.63}
    assert headline["lm_eval"] == {"served_mc_accuracy": 0.81, "served_vs_merged_points": -2.0}
    assert headline["rerank"] == {"mrr_at_10": 0.97, "biencoder_mrr_at_10": 0.95}  # BM25's is in reranker.json
    assert "ci_low" not in json.dumps(headline)
    assert sum(len(v) for v in headline.values()) <= MAX_HEADLINE


def test_headline_stays_within_its_column_budget(tmp_path):
    many = ("q2_k", "q3_k_m", "q4_0", "q4_k_m", "q5_0", "q5_k_m", "q6_k", "q8_0", "iq4_xs")
    write_metrics(tmp_path / "legal", many)
    headline = headline_metrics(tmp_path / "legal")
    assert sum(len(v) for v in headline.values()) == MAX_HEADLINE
    assert "q4_k_m_size_mb" in headline["gguf"]  # the served type's size and speed are kept


def test_missing_or_broken_metrics_file_is_one_line(tmp_path):
    tmp_path = tmp_path / "legal"
    write_metrics(tmp_path)
    (tmp_path / "train.json").unlink()
    with pytest.raises(StageError, match=r"train.json: missing; run the stage that writes it"):
        headline_metrics(tmp_path)
    write_metrics(tmp_path)
    (tmp_path / "eval.json").write_text('{"rougeL": 0.4,\n oops}')
    with pytest.raises(StageError, match=r"eval.json:2: not valid JSON") as err:
        headline_metrics(tmp_path)
    assert "\n" not in str(err.value)


def test_rougeL_vs_base_is_read_from_the_first_split(tmp_path):
    folder = tmp_path / "legal"
    write_metrics(folder)
    comparison = {"splits": ["validation", "test"],
                  "deltas": {"test": {"finetuned_vs_base": {"rougeL": {"delta": 0.30}}},
                             "validation": {"finetuned_vs_base": {"rougeL": {"delta": 0.12}}}}}
    (folder / "model_comparison.json").write_text(json.dumps(comparison))
    assert headline_metrics(folder)["quality"]["rougeL_vs_base"] == 0.12
    # no base model evaluated (eval.compare_base=false): no delta, the rest stays
    comparison["deltas"] = {"validation": {}, "test": {}}
    (folder / "model_comparison.json").write_text(json.dumps(comparison))
    quality = headline_metrics(folder)["quality"]
    assert "rougeL_vs_base" not in quality and quality["bleu"] == 0.24
