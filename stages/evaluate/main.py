"""The `evaluate` stage: fine-tuned (and base, and GGUF) models on the test split, every metric with a
95% bootstrap CI, per domain, plus generation speed.

    domain-llm evaluate --params params.yaml --domain legal  # as dvc.yaml runs evaluate@legal
    domain-llm evaluate model=tiny-random eval.max_examples=8 eval.compare_base=false

Writes (atomically, and only after every model finished, so a crash leaves the previous outputs whole):
    {paths.metrics}/eval.json               flat metrics of the fine-tuned model (dvc metrics diff)
    {paths.metrics}/model_comparison.json   every model's metrics and the deltas against the fine-tuned one
    {paths.metrics}/domain_evaluation.json  per-domain breakdown per model
    {paths.metrics}/eval/predictions.jsonl  prompt, reference, prediction and per-sample scores
"""

from __future__ import annotations

import gc
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from stages.errors import StageError
from stages.evaluate.metrics import SemanticSimilarity
from stages.evaluate.runner import Example, ModelRun, load_examples, run_model
from stages.evaluate.scoring import SampleScores, aggregate, aggregate_by_domain, json_safe, score_samples
from stages.fileio import write_jsonl, write_text
from stages.inference import SamplingParams, load_engine

log = logging.getLogger(__name__)

FINETUNED = "finetuned"
SPEED_KEYS = ("tokens_per_second", "examples_per_second", "latency_p50_s", "latency_p95_s")
# Headline metrics shown in the comparison deltas (higher is better except perplexity and latency).
COMPARED = ("rouge1", "rouge2", "rougeL", "bleu", "perplexity", "exact_match", "token_accuracy", "f1",
            "precision", "recall", "semantic_similarity", "numeric_accuracy", "stop_rate", "repetition_rate",
            *SPEED_KEYS)
LOWER_IS_BETTER = frozenset({"perplexity", "repetition_rate", "latency_p50_s", "latency_p95_s"})


@dataclass
class EvalArgs:
    """cfg.eval (conf/eval/default.yaml documents each key)."""
    splits: list[str]
    compare_base: bool
    gguf_files: list[str]
    max_examples: int | None
    batch_size: int
    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    case_sensitive: bool
    bootstrap_samples: int
    confidence: float
    warmup_examples: int
    n_ctx: int = 2048
    numeric_abs_tol: float = 0.01
    numeric_rel_tol: float = 1e-4
    semantic_similarity: bool = True
    perplexity: bool = True

    @classmethod
    def from_cfg(cls, section: DictConfig) -> EvalArgs:
        values = OmegaConf.to_container(section, resolve=True)
        known = set(cls.__dataclass_fields__)
        args = cls(**{k: v for k, v in values.items() if k in known})
        args.validate()
        return args

    def validate(self) -> None:
        # A negative max_examples would slice examples[:-3] and silently evaluate fewer; 0 would mean "all".
        if self.max_examples is not None and int(self.max_examples) < 1:
            raise StageError(f"eval.max_examples={self.max_examples}: must be >= 1 (or null for the whole split)")
        for name in ("batch_size", "max_new_tokens", "bootstrap_samples"):
            if int(getattr(self, name)) < 1:
                raise StageError(f"eval.{name}={getattr(self, name)}: must be >= 1")


@dataclass
class ModelSpec:
    label: str      # "finetuned" | "base" | "gguf:<file stem>"
    kind: str       # engine kind for load_engine
    path: Path


def models_to_evaluate(cfg: DictConfig, args: EvalArgs) -> list[ModelSpec]:
    specs = [ModelSpec(FINETUNED, "hf", Path(cfg.paths.merged))]
    if args.compare_base:
        specs.append(ModelSpec("base", "hf", Path(cfg.paths.base_model)))
    specs += [ModelSpec(f"gguf:{Path(f).stem}", "gguf", Path(f)) for f in args.gguf_files]
    return specs


def evaluate_model(spec: ModelSpec, examples: list[Example], args: EvalArgs, seed: int, threads: int,
                   similarity: SemanticSimilarity | None) -> tuple[ModelRun, list[SampleScores], dict]:
    """Load one engine, generate + score every example, free the engine; returns the run, per-sample
    scores and the engine's info()."""
    engine = load_engine(spec.kind, spec.path, threads=threads, n_ctx=args.n_ctx, batch_size=args.batch_size,
                         parallel=args.batch_size)  # GGUF: that many sequences decode together
    try:
        info = engine.info()
        params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                top_p=args.top_p, top_k=args.top_k, seed=seed)
        run = run_model(engine, examples, params, args.batch_size, args.warmup_examples,
                        score_references=args.perplexity, label=spec.label)
    finally:
        if hasattr(engine, "close"):
            engine.close()
        del engine
        gc.collect()
    samples = score_samples([g.text for g in run.generations], [ex.reference for ex in examples],
                            run.nll_sums, run.ref_token_counts, [ex.expected_number for ex in examples],
                            [ex.domain for ex in examples], similarity, args.case_sensitive,
                            args.numeric_abs_tol, args.numeric_rel_tol,
                            finish_reasons=[g.finish_reason for g in run.generations])
    return run, samples, info


def comparison(summaries: dict[str, dict], infos: dict[str, dict]) -> dict:
    """Every model's headline metrics, and per other model `finetuned_vs_<model>`: for each metric both
    values, `delta` = finetuned - other, and `finetuned_better` (delta > 0, or < 0 for perplexity and
    latency). Fine-tuning worked when `finetuned_vs_base.rougeL.delta` > 0 and `.perplexity.delta` < 0."""
    out: dict = {"models": {}, "deltas": {}}
    for label, summary in summaries.items():
        out["models"][label] = {"engine": infos[label].get("type"), "path": infos[label].get("path"),
                                **{k: summary[k] for k in COMPARED if k in summary},
                                "n_examples": summary["n_examples"]}
    ft = summaries[FINETUNED]
    for label, summary in summaries.items():
        if label == FINETUNED:
            continue
        deltas = {}
        for key in COMPARED:
            if key in ft and key in summary and ft[key] is not None and summary[key] is not None:
                delta = ft[key] - summary[key]
                better = delta < 0 if key in LOWER_IS_BETTER else delta > 0
                deltas[key] = {FINETUNED: ft[key], label: summary[key], "delta": delta,
                               "finetuned_better": bool(better)}
        out["deltas"][f"finetuned_vs_{label}"] = deltas
    return out


def prediction_records(label: str, split: str, examples: list[Example], run: ModelRun,
                       samples: list[SampleScores]) -> list[dict]:
    return [{"model": label, "split": split, "id": ex.id, "domain": ex.domain, "prompt": prompt,
             "reference": ex.reference, "prediction": gen.text, "finish_reason": gen.finish_reason,
             "prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
             "scores": s.scores}
            for ex, prompt, gen, s in zip(examples, run.prompts, run.generations, samples, strict=True)]


def main(cfg: DictConfig) -> dict:
    """Evaluate every configured model on every configured split; returns eval.json's content."""
    args = EvalArgs.from_cfg(cfg.eval)
    metrics_dir = Path(cfg.paths.metrics)
    data_dir = Path(cfg.paths.processed) / cfg.domain.name
    threads = int(cfg.threads)
    split_examples = {split: load_examples(data_dir / f"{split}.jsonl", args.max_examples) for split in args.splits}
    similarity = SemanticSimilarity() if args.semantic_similarity else None

    eval_flat: dict = {}
    summaries: dict[str, dict] = {}
    by_domain: dict[str, dict] = {}
    infos: dict[str, dict] = {}
    predictions: list[dict] = []
    for spec in models_to_evaluate(cfg, args):
        for split_index, (split, examples) in enumerate(split_examples.items()):
            log.info("evaluating %s (%s) on %s: %d examples", spec.label, spec.path, split, len(examples))
            run, samples, infos[spec.label] = evaluate_model(spec, examples, args, int(cfg.seed), threads,
                                                             similarity)
            summary = aggregate(samples, args.bootstrap_samples, args.confidence, int(cfg.seed))
            summary.update({k: run.speed[k] for k in SPEED_KEYS})
            predictions += prediction_records(spec.label, split, examples, run, samples)
            # The first split is the headline; further splits go to eval.json with a `<split>_` prefix.
            key = spec.label if split_index == 0 else f"{spec.label}@{split}"
            summaries[key] = summary
            infos[key] = infos[spec.label]
            by_domain[key] = aggregate_by_domain(samples, args.bootstrap_samples, args.confidence, int(cfg.seed))
            if spec.label == FINETUNED:
                prefix = "" if split_index == 0 else f"{split}_"
                eval_flat.update({f"{prefix}{k}": v for k, v in summary.items()})

    # Serialise everything before writing anything: an error here must not leave a mix of old and new files.
    texts = {
        metrics_dir / "eval.json": json.dumps(json_safe(eval_flat), indent=2, allow_nan=False) + "\n",
        metrics_dir / "model_comparison.json": json.dumps(json_safe(comparison(summaries, infos)), indent=2,
                                                          allow_nan=False, ensure_ascii=False) + "\n",
        metrics_dir / "domain_evaluation.json": json.dumps(json_safe(by_domain), indent=2, allow_nan=False,
                                                           ensure_ascii=False) + "\n",
    }
    write_jsonl(metrics_dir / "eval" / "predictions.jsonl", json_safe(predictions))
    for path, text in texts.items():
        write_text(path, text)
    log.info("fine-tuned: rougeL %.4f, bleu %.4f, perplexity %s -> %s", eval_flat.get("rougeL", float("nan")),
             eval_flat.get("bleu", float("nan")), eval_flat.get("perplexity"), metrics_dir / "eval.json")
    return eval_flat
