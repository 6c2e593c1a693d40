"""Bootstrap intervals and the aggregation of per-sample scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sacrebleu

from stages.evaluate import metrics as m
from stages.evaluate.scoring import aggregate, aggregate_by_domain, json_safe, score_samples
from stages.evaluate.stats import bootstrap_mean, bootstrap_statistic


def test_bootstrap_mean_contains_mean_and_is_deterministic():
    values = list(np.random.default_rng(1).normal(0.5, 0.2, size=50))
    est = bootstrap_mean(values, n_resamples=1000, confidence=0.95, seed=7)
    assert est.value == pytest.approx(float(np.mean(values)))
    assert est.low < est.value < est.high
    assert bootstrap_mean(values, 1000, 0.95, seed=7) == est
    assert bootstrap_mean(values, 1000, 0.95, seed=8) != est
    # a 95% interval of a mean is about 2 * 1.96 * sd / sqrt(n) wide
    expected_width = 2 * 1.96 * np.std(values) / math.sqrt(len(values))
    assert est.high - est.low == pytest.approx(expected_width, rel=0.2)


def test_bootstrap_width_shrinks_with_n():
    rng = np.random.default_rng(3)
    small = bootstrap_mean(list(rng.random(20)), 1000, 0.95, seed=0)
    large = bootstrap_mean(list(rng.random(2000)), 1000, 0.95, seed=0)
    assert (large.high - large.low) < (small.high - small.low) / 4


def test_bootstrap_degenerate_inputs():
    assert bootstrap_mean([0.3], 1000, 0.95, 0) == (e := bootstrap_mean([0.3], 1000, 0.95, 0))
    assert (e.value, e.low, e.high) == (0.3, 0.3, 0.3)
    empty = bootstrap_mean([], 1000, 0.95, 0)
    assert all(math.isnan(x) for x in (empty.value, empty.low, empty.high))
    assert bootstrap_mean([1.0, float("nan"), 0.0], 100, 0.95, 0).value == 0.5
    const = bootstrap_mean([0.4] * 10, 100, 0.95, 0)
    assert const.low == pytest.approx(0.4) and const.high == pytest.approx(0.4)


def test_bootstrap_statistic_ratio():
    num, den = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 1.0, 2.0, 4.0])
    est = bootstrap_statistic(4, lambda idx: num[idx].sum() / den[idx].sum(), 500, 0.95, seed=0)
    assert est.value == pytest.approx(10 / 8)
    assert est.low <= est.value <= est.high


def _scored(preds, refs, domains, expected=None, nll=None, ntok=None):
    n = len(preds)
    return score_samples(preds, refs, nll or [None] * n, ntok or [None] * n, expected or [None] * n, domains,
                         similarity=None)


def test_aggregate_flat_keys_and_corpus_values():
    preds = ["the cat sat on the mat", "hello world", "the payment is 1,234.56"]
    refs = ["the cat sat on a mat", "hello there world", "The payment is 1234.56."]
    samples = _scored(preds, refs, ["a", "a", "b"], expected=[None, None, 1234.56],
                      nll=[2.0, 4.0, 0.0], ntok=[1, 3, 4])
    out = aggregate(samples, n_resamples=200, confidence=0.95, seed=0)
    assert out["n_examples"] == 3
    assert out["bleu"] == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score / 100)
    assert out["perplexity"] == pytest.approx(math.exp(6 / 8))
    assert out["exact_match"] == pytest.approx(2 / 3)   # articles and punctuation dropped: 1st and 3rd match
    assert out["numeric_accuracy"] == 1.0 and out["n_numeric"] == 1
    expected_f1 = np.mean([m.token_prf(p, r).f1 for p, r in zip(preds, refs, strict=True)])
    assert out["f1"] == pytest.approx(expected_f1)
    for key in ("rouge1", "rouge2", "rougeL", "bleu", "perplexity", "exact_match", "token_accuracy", "f1"):
        assert out[f"{key}_ci_low"] <= out[key] <= out[f"{key}_ci_high"], key
    assert "semantic_similarity" not in out                    # similarity=None: skipped, not faked

    by_domain = aggregate_by_domain(samples, n_resamples=50)
    assert list(by_domain) == ["a", "b"]
    assert by_domain["a"]["n_examples"] == 2 and "numeric_accuracy" not in by_domain["a"]
    assert by_domain["b"]["exact_match"] == 1.0


def test_json_safe_replaces_nan():
    assert json_safe({"a": float("nan"), "b": [1.0, float("inf")], "c": 2}) == {"a": None, "b": [1.0, None], "c": 2}
