"""`domain-llm headline` (headline@<domain>): one domain's few numbers worth a column in `dvc exp show`.

    dvc exp show --only-changed        # changed params + these metrics, one row per experiment
    dvc metrics diff                   # these metrics against the last commit
    dvc metrics diff --targets metrics/eval.json metrics/quantize.json   # the detail, when you need it

Every stage keeps writing its full metrics file (CIs, per-domain tables, timings: 350+ numbers); those stay
versioned outputs in git, read by `domain-llm report` and the dashboard (`/ui`). Only this file is declared as
DVC metrics, so an experiment row carries at most MAX_HEADLINE numbers instead of all of them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig

from stages.errors import StageError
from stages.fileio import write_json

log = logging.getLogger(__name__)

MAX_HEADLINE = 20
# (section, file, key in the file, headline name). Quality is the fine-tuned model on the first of eval.splits
# (test): ROUGE-L, BLEU and perplexity are the design card's comparison. Section names differ from the param
# groups (train, reranker, ...): `dvc exp show` prints both without their file.
PICKS = (
    ("quality", "eval.json", "rougeL", "rougeL"),
    ("quality", "eval.json", "bleu", "bleu"),
    ("quality", "eval.json", "semantic_similarity", "semantic_similarity"),
    ("quality", "eval.json", "perplexity", "perplexity"),
    ("quality", "eval.json", "stop_rate", "stop_rate"),
    ("quality", "eval.json", "repetition_rate", "repetition_rate"),
    ("training", "train.json", "final_eval_loss", "eval_loss"),
    ("training", "train.json", "train_tokens_per_second", "tokens_per_s"),
    ("rerank", "reranker.json", "trained_mrr_at_10", "mrr_at_10"),
    ("rerank", "reranker.json", "biencoder_mrr_at_10", "biencoder_mrr_at_10"),
)
# Answers to held-out facts by the served GGUF alone and with retrieved passages (metrics/grounded.json).
GROUNDED_PICKS = (("closed_book", "rougeL", "rougeL_closed_book"), ("retrieval", "rougeL", "rougeL_with_retrieval"))
# lm-evaluation-harness on what is served (metrics/<d>/lmeval.json): multiple-choice accuracy of the served GGUF +
# adapter through the API, and its difference to the merged HF model in points. (Exact match, ~0.01 on free-text
# answers, gave its column up for these; it stays in eval.json.)
LMEVAL_PICKS = (("served", "mc_accuracy", "served_mc_accuracy"),
                (None, "mc_accuracy_difference_points", "served_vs_merged_points"))
# Chunk-level retrieval on the held-out-facts questions (metrics/retrieval.json: {retriever: {metric: value}}).
RETRIEVAL_PICKS = (("hybrid", "mrr_at_10", "hybrid_mrr_at_10"), ("hybrid_rerank", "mrr_at_10", "rerank_mrr_at_10"))
# What `domain-llm serve` runs for a domain by default: its adapter on the q4_k_m base (metrics/<d>/quantize.json
# from adapter@<d>); its size and speed are headline, every entry's quality loss (ΔPPL %) too.
SERVED_TYPES = ("adapter_q4_k_m", "q4_k_m")  # a domain's adapter on the base; a plain quantized model
SHARED = {"reranker.json"}  # written by shared stages into metrics/, beside the domains' folders


def read_metrics(folder: Path, name: str) -> dict:
    path = folder / name
    if not path.is_file():
        raise StageError(f"{path}: missing; run the stage that writes it first (`dvc repro`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise StageError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); rerun the stage that writes it") from None


def headline_metrics(folder: Path) -> dict:
    """{section: {name: number}} from the stages' metrics files in `folder` (metrics/<domain>; shared ones in
    its parent)."""
    files = {name: read_metrics(folder.parent if name in SHARED else folder, name)
             for name in {p[1] for p in PICKS} | {"model_comparison.json", "quantize.json", "retrieval.json",
                                                    "grounded.json", "lmeval.json"}}
    out: dict[str, dict] = {}
    for section, file, key, name in PICKS:
        value = files[file].get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out.setdefault(section, {})[name] = round(value, 4)
    for retriever, key, name in RETRIEVAL_PICKS:
        value = (files["retrieval.json"].get(retriever) or {}).get(key)
        if isinstance(value, int | float):
            out.setdefault("retrieval", {})[name] = value
    for condition, key, name in GROUNDED_PICKS:
        value = (files["grounded.json"].get(condition) or {}).get(key)
        if isinstance(value, int | float):
            out.setdefault("grounded", {})[name] = round(value, 4)
    for section, key, name in LMEVAL_PICKS:
        value = (files["lmeval.json"].get(section) or {}).get(key) if section else files["lmeval.json"].get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out.setdefault("lm_eval", {})[name] = value
    # Fine-tuned minus base, both on the first split (model_comparison.json: deltas[split][pair][metric]).
    comparison = files["model_comparison.json"]
    first_split = next(iter(comparison.get("splits") or []), None)
    delta = comparison.get("deltas", {}).get(first_split, {}).get("finetuned_vs_base", {}).get("rougeL", {})
    if isinstance(delta.get("delta"), int | float):
        out["quality"]["rougeL_vs_base"] = round(delta["delta"], 4)
    quantized = {t: m for t, m in sorted(files["quantize.json"].items())
                 if isinstance(m, dict) and not (t == "f16" or t.endswith("_f16"))}  # not the reference
    served = next((t for t in SERVED_TYPES if t in quantized), next(iter(quantized), None))
    gguf: dict[str, float] = {}
    if served:
        gguf = {f"{served}_size_mb": quantized[served].get("size_mb"),
                f"{served}_decode_tok_s": quantized[served].get("decode_tokens_per_s")}
    room = MAX_HEADLINE - sum(len(v) for v in out.values()) - len(gguf)
    for qtype, m in quantized.items():
        if "delta_ppl_pct" not in m:
            continue
        if room <= 0:  # a long quantize.types list: keep the table readable, say where the rest is
            log.warning("headline: %s ΔPPL left out (over %d columns); see metrics/quantize.json", qtype,
                        MAX_HEADLINE)
            continue
        gguf[f"{qtype}_dppl_pct"], room = m["delta_ppl_pct"], room - 1
    if gguf:
        out["gguf"] = gguf
    return out


def main(cfg: DictConfig) -> None:
    folder = Path(str(cfg.paths.metrics))
    metrics = headline_metrics(folder)
    write_json(folder / "headline.json", metrics)
    log.info("%s: %d headline metrics", folder / "headline.json", sum(len(v) for v in metrics.values()))
