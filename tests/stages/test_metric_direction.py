"""One "lower is better" table: evaluate's deltas, the report's verdicts and the dashboard's colours agree on it."""

from __future__ import annotations

import pytest

from serving.ui.experiments import ExperimentRow, compare_rows
from stages.evaluate.main import COMPARED, model_deltas
from stages.metric_direction import better, lower_is_better
from stages.report import HEADLINE, _verdict

LOWER = ("perplexity", "repetition_rate", "latency_p50_s", "latency_p95_s",
         # as the headline, a further split, quantize.json and train.json name them
         "quality.perplexity", "legal.quality.repetition_rate", "validation_perplexity", "gguf.q4_k_m_dppl_pct",
         "delta_ppl_pct", "kl_divergence", "training.eval_loss", "final_eval_loss", "gguf.adapter_q4_k_m_size_mb")
HIGHER = ("rougeL", "rouge1", "bleu", "f1", "exact_match", "semantic_similarity", "numeric_accuracy", "stop_rate",
          "tokens_per_second", "quality.rougeL_vs_base", "gguf.q4_k_m_decode_tok_s", "rerank.mrr_at_10",
          "training.tokens_per_s", "grounded.rougeL_with_retrieval")


@pytest.mark.parametrize("name", LOWER)
def test_lower_is_better(name):
    assert lower_is_better(name)
    assert better(name, -0.1) is True and better(name, 0.1) is False


@pytest.mark.parametrize("name", HIGHER)
def test_higher_is_better(name):
    assert not lower_is_better(name)
    assert better(name, 0.1) is True and better(name, -0.1) is False


def test_no_change_is_neither():
    assert better("perplexity", 0.0) is None and better("rougeL", 0) is None


@pytest.mark.parametrize("name", sorted(set(COMPARED) | set(HEADLINE)))
def test_evaluate_report_and_dashboard_agree(name):
    # each reader, on a value that went from 2 to 1 (a drop)
    evaluate = model_deltas({name: 1.0}, {name: 2.0}, "base")[name]["finetuned_better"]
    report = _verdict(name, 2.0, 1.0, None, "main") == "better"
    a = ExperimentRow("a" * 40, "a", "commit", None, metrics={f"quality.{name}": 2.0})
    b = ExperimentRow("b" * 40, "b", "commit", None, metrics={f"quality.{name}": 1.0})
    dashboard = compare_rows(a, b)["metrics"][0]["better"]
    assert evaluate is report is dashboard is lower_is_better(name), name
