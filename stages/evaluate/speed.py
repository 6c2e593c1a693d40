"""Generation speed of one engine: a fixed-length decode, one request at a time, apart from the quality pass.

    timings = time_requests(engine, prompts[:4], SamplingParams(), tokens=16, warmup_prompts=prompts[4:5])
    speed_summary(timings)  # {"tokens_per_second": ..., "latency_p50_s": ..., "latency_p95_s": ..., ...}

Why not time the quality generations: they decode padded batches until the longest answer in the batch ends.
Every example's "latency" was then its batch's wall time (p50 == p95 by construction), and tokens/s divided by
how long each model's answers happened to be: the base model, running to max_new_tokens in every row, looked
three times faster than the fine-tuned one with the same architecture only because it wrote more tokens per
batch step. Neither number described the model.

What is measured instead, per model, on the first `eval.speed_examples` prompts of the first split:
- each prompt is one request alone (a batch of one: what a single user waits for), asking for exactly
  `eval.speed_tokens` new tokens with the end of turn ignored (SamplingParams.ignore_eos), so every model and
  engine does the same work whatever it would have answered; same sampling settings as the quality pass;
- latency_p50_s / latency_p95_s: percentiles of those requests' wall times (prompt processing + decode);
- tokens_per_second: new tokens of all timed requests / their summed wall time (prompt processing included:
  what a user sees; the bare decode rate of the GGUF files is the quantize stage's decode_tokens_per_s);
- speed_completion_tokens: mean new tokens per timed request, equal to eval.speed_tokens when the engine held
  the length (an engine that cannot ignore the end of turn may stop early; this shows it).
The pass runs before the quality pass so the timed prompts are new to the engine (a GGUF engine keeps each
prompt's KV cache and would otherwise skip their prompt processing), after `warmup_prompts` untimed requests:
first calls pay for allocation and kernel selection.
Cost: (speed_examples + warmup_examples) x speed_tokens single-sequence decode steps per model ((4 + 1) x 16
by default). The old warm-up (2 prompts x 8 tokens, batched) is gone: the quality pass is no longer timed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from stages.inference import Engine, SamplingParams


@dataclass(frozen=True)
class RequestTiming:
    """One timed request: its wall time and the new tokens it decoded."""
    seconds: float
    completion_tokens: int


def time_requests(engine: Engine, prompts: list[str], params: SamplingParams, tokens: int,
                  warmup_prompts: Sequence[str] = ()) -> list[RequestTiming]:
    """Each prompt generated alone to exactly `tokens` new tokens (the end of turn ignored), timed."""
    fixed = replace(params, max_new_tokens=tokens, ignore_eos=True)
    for prompt in warmup_prompts:  # the same work as a timed request: every shape it meets is warm
        engine.generate([prompt], fixed)
    timings = []
    for prompt in prompts:
        started = time.perf_counter()
        (generation,) = engine.generate([prompt], fixed)
        timings.append(RequestTiming(time.perf_counter() - started, generation.completion_tokens))
    return timings


def speed_summary(timings: list[RequestTiming]) -> dict[str, float]:
    """eval.json's speed keys from the timed requests (NaN when nothing was timed)."""
    seconds = [t.seconds for t in timings]
    total = sum(seconds)
    new_tokens = sum(t.completion_tokens for t in timings)
    return {
        "tokens_per_second": new_tokens / total if total > 0 else math.nan,
        "latency_p50_s": float(np.percentile(seconds, 50)) if seconds else math.nan,
        "latency_p95_s": float(np.percentile(seconds, 95)) if seconds else math.nan,
        "speed_completion_tokens": new_tokens / len(timings) if timings else math.nan,
    }
