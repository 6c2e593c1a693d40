"""Which way is better for a metric: the one table that evaluate's comparison deltas, `domain-llm report`'s
verdicts and the dashboard's colours (`/ui`) all read, so they cannot disagree.

    from stages.metric_direction import better, lower_is_better
    lower_is_better("quality.perplexity")    # True: names are matched by their ending
    better("latency_p95_s", -0.2)            # True: a drop in latency is an improvement
    better("rougeL", 0.0)                    # None: no change

A name is matched by its ending, so one entry covers a file's key ("perplexity"), a headline's dotted name
("quality.perplexity", "legal.quality.perplexity"), a further split's key ("validation_perplexity") and a
quantize type's column ("q4_k_m_dppl_pct"). Every other metric is better when higher.
"""

from __future__ import annotations

LOWER_IS_BETTER = (
    "perplexity",                 # eval.json, quantize.json (per GGUF type), headline quality.perplexity
    "repetition_rate",            # share of answers stuck repeating a phrase
    "loss",                       # train.json final_eval_loss / final_train_loss, headline training.eval_loss
    "ppl_pct",                    # quantize.json delta_ppl_pct, headline gguf.<type>_dppl_pct
    "kl_divergence",              # quantize.json: the quantized model's drift from the f16 reference
    "size_mb",                    # headline gguf.<type>_size_mb
    "time_to_first_token_s",      # eval.json speed (stages/evaluate/speed.py)
    "latency_p50_s",
    "latency_p95_s",
)


def lower_is_better(name: str) -> bool:
    """True when a smaller value of metric `name` (a key, or a dotted headline name) is the better one."""
    return name.endswith(LOWER_IS_BETTER)


def better(name: str, delta: float) -> bool | None:
    """Whether a change of `delta` (new - old) in metric `name` is an improvement; None when it is zero."""
    if delta == 0:
        return None
    return delta < 0 if lower_is_better(name) else delta > 0
