"""Means and seeded 95% percentile-bootstrap confidence intervals for the evaluate stage's metrics.

    from stages.evaluate.stats import bootstrap_mean
    bootstrap_mean([0.1, 0.5, 0.9], n_resamples=1000, confidence=0.95, seed=42)  # Estimate(mean, low, high)

Per-sample metrics use the mean of resampled examples; corpus metrics (BLEU, perplexity) use
`bootstrap_statistic`, which recomputes the corpus statistic on each resample of example indices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A point estimate with the bounds of its confidence interval (NaN when undefined)."""
    value: float
    low: float
    high: float


def _resample_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    # One generator per call, seeded: the same data and seed always give the same interval.
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def _percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha])
    return float(low), float(high)


def bootstrap_mean(values: Sequence[float], n_resamples: int = 1000, confidence: float = 0.95,
                   seed: int = 0) -> Estimate:
    """Mean of `values` and the percentile-bootstrap interval of the mean: draw `n_resamples` samples
    of size n with replacement (numpy default_rng(seed)), take each sample's mean, report the
    (1-confidence)/2 and 1-(1-confidence)/2 quantiles. NaN values are dropped first; no values -> NaNs;
    one value -> a zero-width interval."""
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if arr.size == 0:
        return Estimate(math.nan, math.nan, math.nan)
    mean = float(arr.mean())
    if arr.size == 1 or n_resamples <= 0:
        return Estimate(mean, mean, mean)
    means = arr[_resample_indices(arr.size, n_resamples, seed)].mean(axis=1)
    low, high = _percentile_interval(means, confidence)
    return Estimate(mean, low, high)


def bootstrap_statistic(n: int, statistic: Callable[[np.ndarray], float], n_resamples: int = 1000,
                        confidence: float = 0.95, seed: int = 0) -> Estimate:
    """A corpus statistic and its percentile-bootstrap interval: `statistic(indices)` is evaluated on
    all examples (`arange(n)`) for the value and on `n_resamples` index resamples for the interval.
    Resamples whose statistic is NaN (e.g. no reference tokens drawn) are left out."""
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan)
    value = float(statistic(np.arange(n)))
    if n == 1 or n_resamples <= 0:
        return Estimate(value, value, value)
    samples = np.asarray([statistic(idx) for idx in _resample_indices(n, n_resamples, seed)], dtype=float)
    samples = samples[~np.isnan(samples)]
    if samples.size == 0:
        return Estimate(value, math.nan, math.nan)
    low, high = _percentile_interval(samples, confidence)
    return Estimate(value, low, high)
