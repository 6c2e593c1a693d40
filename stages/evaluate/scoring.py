"""Per-sample scores and their aggregation (means, corpus BLEU/perplexity, bootstrap CIs, per domain).

    samples = score_samples(predictions, references, nll, n_tokens, expected_numbers, similarity)
    summary = aggregate(samples, n_resamples=1000, confidence=0.95, seed=42)   # flat dict for eval.json

The flat keys are stable (dvc metrics diff compares them across runs); see `MEAN_METRICS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from stages.evaluate import metrics as m
from stages.evaluate.stats import Estimate, bootstrap_mean, bootstrap_statistic

# Metrics reported as the mean of per-sample scores.
MEAN_METRICS = ("exact_match", "token_accuracy", "precision", "recall", "f1", "rouge1", "rouge2", "rougeL",
                "semantic_similarity", "stop_rate", "repetition_rate")


@dataclass
class SampleScores:
    """Everything measured on one example; `scores` is what predictions.jsonl shows per sample."""
    domain: str
    scores: dict[str, float]
    bleu_stats: m.BleuStats
    nll_sum: float | None = None
    n_ref_tokens: int | None = None
    numeric_correct: float | None = None   # None: not a numeric question
    extra: dict = field(default_factory=dict)


def score_samples(predictions: Sequence[str], references: Sequence[str],
                  nll_sums: Sequence[float | None], ref_token_counts: Sequence[int | None],
                  expected_numbers: Sequence[float | None], domains: Sequence[str],
                  similarity: Callable[[Sequence[str], Sequence[str]], list[float]] | None,
                  case_sensitive: bool = False, abs_tol: float = 0.01, rel_tol: float = 1e-4,
                  finish_reasons: Sequence[str] | None = None) -> list[SampleScores]:
    """Score aligned predictions/references with every metric in metrics.py.
    `nll_sums`/`ref_token_counts` come from Engine.score (None: not scored); `expected_numbers` is the
    record's numeric_answer for answer_type == "numeric", else None; `similarity` may be None (skipped).
    `finish_reasons` (the generations'): stop_rate is the share that ended on the end of turn ("stop") before
    max_new_tokens; repetition_rate the share stuck repeating a phrase (metrics.repeats)."""
    sims = similarity(predictions, references) if similarity is not None else [None] * len(predictions)
    out = []
    for i, (pred, ref) in enumerate(zip(predictions, references, strict=True)):
        prf = m.token_prf(pred, ref, case_sensitive)
        scores = {
            "exact_match": m.exact_match(pred, ref, case_sensitive),
            "token_accuracy": m.token_accuracy(pred, ref, case_sensitive),
            "precision": prf.precision, "recall": prf.recall, "f1": prf.f1,
            **m.rouge(pred, ref),
            "bleu": m.sentence_bleu(pred, ref),
        }
        if sims[i] is not None:
            scores["semantic_similarity"] = sims[i]
        if finish_reasons is not None:
            scores["stop_rate"] = 1.0 if finish_reasons[i] == "stop" else 0.0
        scores["repetition_rate"] = m.repeats(pred)
        nll, n_tok = nll_sums[i], ref_token_counts[i]
        if nll is not None and n_tok is not None:
            scores["perplexity"] = m.sample_perplexity(nll, n_tok)
        numeric = None
        if expected_numbers[i] is not None:
            numeric = m.numeric_match(pred, float(expected_numbers[i]), abs_tol, rel_tol)
            scores["numeric_correct"] = numeric
        out.append(SampleScores(domains[i], scores, m.bleu_stats(pred, ref), nll, n_tok, numeric))
    return out


def _put(summary: dict, name: str, est: Estimate) -> None:
    summary[name] = est.value
    summary[f"{name}_ci_low"] = est.low
    summary[f"{name}_ci_high"] = est.high


def aggregate(samples: Sequence[SampleScores], n_resamples: int = 1000, confidence: float = 0.95,
              seed: int = 0) -> dict[str, float]:
    """Flat metrics of a set of scored samples:
    - each of MEAN_METRICS: the mean over samples with its bootstrap CI (`_ci_low`, `_ci_high`);
    - bleu (+ bleu_precision_1..4): corpus BLEU from summed n-gram statistics, CI by resampling examples;
    - perplexity: token-weighted corpus perplexity (metrics.corpus_perplexity), CI by resampling examples;
    - numeric_accuracy (+ n_numeric): mean of numeric_correct over numeric questions, when there are any;
    - n_examples. NaN (JSON null) marks a metric that could not be computed."""
    summary: dict[str, float] = {"n_examples": len(samples)}
    for name in MEAN_METRICS:
        values = [s.scores[name] for s in samples if name in s.scores]
        if values:
            _put(summary, name, bootstrap_mean(values, n_resamples, confidence, seed))

    stats = [s.bleu_stats for s in samples]
    if stats:
        _put(summary, "bleu", bootstrap_statistic(
            len(stats), lambda idx: m.corpus_bleu_from_stats([stats[i] for i in idx])["bleu"],
            n_resamples, confidence, seed))
        corpus = m.corpus_bleu_from_stats(stats)
        summary.update({k: v for k, v in corpus.items() if k.startswith("bleu_precision_")})

    scored = [s for s in samples if s.nll_sum is not None and s.n_ref_tokens is not None]
    if scored:
        nll = np.asarray([s.nll_sum for s in scored], dtype=float)
        ntok = np.asarray([s.n_ref_tokens for s in scored], dtype=float)
        _put(summary, "perplexity", bootstrap_statistic(
            len(scored), lambda idx: m.corpus_perplexity(nll[idx], ntok[idx]), n_resamples, confidence, seed))

    numeric = [s.numeric_correct for s in samples if s.numeric_correct is not None]
    if numeric:
        _put(summary, "numeric_accuracy", bootstrap_mean(numeric, n_resamples, confidence, seed))
        summary["n_numeric"] = len(numeric)
    return summary


def aggregate_by_domain(samples: Sequence[SampleScores], n_resamples: int = 1000, confidence: float = 0.95,
                        seed: int = 0) -> dict[str, dict[str, float]]:
    """`aggregate` per value of the records' `domain` field, domains sorted by name."""
    domains = sorted({s.domain for s in samples})
    return {d: aggregate([s for s in samples if s.domain == d], n_resamples, confidence, seed) for d in domains}


def json_safe(obj):
    """Replace NaN/inf floats by None so the JSON is valid (json.dumps would write bare NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj
