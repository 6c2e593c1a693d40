"""The `evaluate` stage: fine-tuned (and base, and GGUF) models on each of eval.splits, every metric with a
95% bootstrap CI, per domain, plus generation speed (stages/evaluate/speed.py).

    domain-llm evaluate --params params.yaml --domain legal  # as dvc.yaml runs evaluate@legal
    domain-llm evaluate model=tiny-random eval.max_examples=8 eval.compare_base=false

Writes (atomically, and only after every model finished, so a crash leaves the previous outputs whole):
    {paths.metrics}/eval.json               flat metrics of the fine-tuned model (first split unprefixed,
                                            others as `<split>_<metric>`); speed keys for the first split only
    {paths.metrics}/model_comparison.json   every model's metrics per split, and the fine-tuned model's deltas
                                            against each other model on the same split (see `comparison`)
    {paths.metrics}/domain_evaluation.json  {split: {model: {domain: metrics}}}
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
from stages.evaluate.speed import speed_summary, time_requests
from stages.evaluate.stats import Estimate, bootstrap_mean
from stages.fileio import write_jsonl, write_text
from stages.inference import SamplingParams, load_engine
from stages.metric_direction import better

log = logging.getLogger(__name__)

FINETUNED = "finetuned"
SPEED_KEYS = ("tokens_per_second", "latency_p50_s", "latency_p95_s")
# Metrics shown per model and compared in the deltas (which way is better: stages/metric_direction.py).
COMPARED = ("rouge1", "rouge2", "rougeL", "bleu", "perplexity", "exact_match", "token_accuracy", "f1",
            "precision", "recall", "semantic_similarity", "numeric_accuracy", "stop_rate", "repetition_rate",
            *SPEED_KEYS)
# Shown per model beside them, not compared: how many new tokens the timed requests decoded (speed.py), and
# how many examples the metrics are over.
SHOWN = ("speed_completion_tokens", "n_examples")


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
    speed_examples: int = 4
    speed_tokens: int = 16
    repeat_penalty: float = 1.0

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
        for name in ("batch_size", "max_new_tokens", "bootstrap_samples", "speed_tokens"):
            if int(getattr(self, name)) < 1:
                raise StageError(f"eval.{name}={getattr(self, name)}: must be >= 1")
        for name in ("speed_examples", "warmup_examples"):
            if int(getattr(self, name)) < 0:
                raise StageError(f"eval.{name}={getattr(self, name)}: must be >= 0 (0 = none)")
        if not self.splits or len(set(self.splits)) != len(self.splits):
            raise StageError(f"eval.splits={list(self.splits)}: name each split once, at least one")


@dataclass
class ModelSpec:
    label: str      # "finetuned" | "base" | "gguf:<file stem>"
    kind: str       # engine kind for load_engine
    path: Path


@dataclass
class SplitResult:
    """One model on one split."""
    run: ModelRun
    samples: list[SampleScores]


def models_to_evaluate(cfg: DictConfig, args: EvalArgs) -> list[ModelSpec]:
    from stages.align.resolve import trained_model

    specs = [ModelSpec(FINETUNED, "hf", trained_model(cfg)[1])]  # align@'s merged model when it tuned one
    if args.compare_base:
        specs.append(ModelSpec("base", "hf", Path(cfg.paths.base_model)))
    specs += [ModelSpec(f"gguf:{Path(f).stem}", "gguf", Path(f)) for f in args.gguf_files]
    return specs


def evaluate_model(spec: ModelSpec, split_examples: dict[str, list[Example]], args: EvalArgs, seed: int,
                   threads: int, similarity: SemanticSimilarity | None
                   ) -> tuple[dict[str, SplitResult], dict[str, float], dict]:
    """Load one engine once; time it (speed.py, on the first split's first prompts); generate + score every
    split; free it. Returns {split: result}, the speed keys ({} when eval.speed_examples is 0) and info()."""
    engine = load_engine(spec.kind, spec.path, threads=threads, n_ctx=args.n_ctx, batch_size=args.batch_size,
                         parallel=args.batch_size)  # GGUF: that many sequences decode together
    try:
        info = engine.info()
        params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                top_p=args.top_p, top_k=args.top_k, seed=seed, repeat_penalty=args.repeat_penalty)
        speed: dict[str, float] = {}
        if args.speed_examples > 0:
            # Before the quality pass: the timed prompts must be new to the engine (speed.py says why).
            prompts = [engine.apply_chat_template(ex.messages) for ex in next(iter(split_examples.values()))]
            timed, rest = prompts[:args.speed_examples], prompts[args.speed_examples:]
            # Warm up on prompts that are not timed; a split too small for that warms up on the timed ones.
            warmup = (rest or timed)[:args.warmup_examples]
            speed = speed_summary(time_requests(engine, timed, params, args.speed_tokens, warmup))
            log.info("%s: %.1f tokens/s, latency p50 %.3f s for %d new tokens, one request at a time",
                     spec.label, speed["tokens_per_second"], speed["latency_p50_s"], args.speed_tokens)
        runs = {split: run_model(engine, examples, params, args.batch_size, score_references=args.perplexity,
                                 label=f"{spec.label} {split}")
                for split, examples in split_examples.items()}
    finally:
        if hasattr(engine, "close"):
            engine.close()
        del engine
        gc.collect()
    results = {}
    for split, run in runs.items():
        examples = split_examples[split]
        samples = score_samples([g.text for g in run.generations], [ex.reference for ex in examples],
                                run.nll_sums, run.ref_token_counts, [ex.expected_number for ex in examples],
                                [ex.domain for ex in examples], similarity, args.case_sensitive,
                                args.numeric_abs_tol, args.numeric_rel_tol,
                                finish_reasons=[g.finish_reason for g in run.generations])
        results[split] = SplitResult(run, samples)
    return results, speed, info


def model_deltas(finetuned: dict, other: dict, label: str, paired: dict[str, Estimate] | None = None) -> dict:
    """For each COMPARED metric both models have: both values, `delta` = finetuned - other, and
    `finetuned_better` (the delta's sign read with stages/metric_direction.py); for per-sample metrics also
    the paired bootstrap interval of the delta (`delta_ci_low`, `delta_ci_high`): both models answered the same
    questions, so the interval of their per-question difference is much narrower than two separate ones."""
    deltas = {}
    for key in COMPARED:
        if finetuned.get(key) is not None and other.get(key) is not None:
            delta = finetuned[key] - other[key]
            deltas[key] = {FINETUNED: finetuned[key], label: other[key], "delta": delta,
                           "finetuned_better": bool(better(key, delta))}  # no change: not better
            if paired and key in paired:
                deltas[key].update(delta_ci_low=paired[key].low, delta_ci_high=paired[key].high)
    return deltas


def paired_deltas(finetuned: list[SampleScores], other: list[SampleScores], n_resamples: int, confidence: float,
                  seed: int) -> dict[str, Estimate]:
    """Per-sample metric -> bootstrap of (finetuned - other) over the same examples, in order."""
    keys = set(finetuned[0].scores) & set(other[0].scores) if finetuned and other else set()
    out = {}
    for key in sorted(k for k in keys if k in COMPARED):
        diffs = [a.scores[key] - b.scores[key] for a, b in zip(finetuned, other, strict=True)
                 if a.scores.get(key) is not None and b.scores.get(key) is not None]
        out[key] = bootstrap_mean(diffs, n_resamples, confidence, seed)
    return out


def comparison(summaries: dict[str, dict[str, dict]], infos: dict[str, dict],
               paired: dict[str, dict[str, dict[str, Estimate]]] | None = None) -> dict:
    """model_comparison.json from {split: {model: summary}} (splits in eval.splits order):

        {"splits": ["test", ...],                       # the first is eval.json's unprefixed one
         "models": {model: {"engine", "path"}},
         "metrics": {split: {model: {metric: value, ..., "n_examples": n}}},
         "deltas": {split: {"finetuned_vs_<model>": {metric: {"finetuned", "<model>", "delta",
                                                              "finetuned_better", "delta_ci_low",
                                                              "delta_ci_high"}}}}}

    Both sides of every delta are on the same split. Speed keys are in the first split only (measured once,
    on its prompts). Fine-tuning worked when deltas[first]["finetuned_vs_base"]["rougeL"]["delta"] > 0 and
    ["perplexity"]["delta"] < 0."""
    out: dict = {"splits": list(summaries), "models": {}, "metrics": {}, "deltas": {}}
    for label, info in infos.items():
        out["models"][label] = {"engine": info.get("type"), "path": info.get("path")}
    for split, by_model in summaries.items():
        out["metrics"][split] = {label: {k: summary[k] for k in (*COMPARED, *SHOWN) if k in summary}
                                 for label, summary in by_model.items()}
        finetuned = by_model[FINETUNED]
        out["deltas"][split] = {f"finetuned_vs_{label}": model_deltas(finetuned, summary, label,
                                                                      (paired or {}).get(split, {}).get(label))
                                for label, summary in by_model.items() if label != FINETUNED}
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
    threads, seed = int(cfg.threads), int(cfg.seed)
    split_examples = {split: load_examples(data_dir / f"{split}.jsonl", args.max_examples) for split in args.splits}
    first_split = args.splits[0]
    similarity = SemanticSimilarity() if args.semantic_similarity else None

    eval_flat: dict = {}
    summaries: dict[str, dict[str, dict]] = {split: {} for split in args.splits}
    by_domain: dict[str, dict[str, dict]] = {split: {} for split in args.splits}
    infos: dict[str, dict] = {}
    predictions: list[dict] = []
    samples: dict[str, dict[str, list[SampleScores]]] = {split: {} for split in args.splits}
    for spec in models_to_evaluate(cfg, args):
        log.info("evaluating %s (%s) on %s", spec.label, spec.path,
                 ", ".join(f"{split} ({len(ex)} examples)" for split, ex in split_examples.items()))
        results, speed, infos[spec.label] = evaluate_model(spec, split_examples, args, seed, threads, similarity)
        for split, result in results.items():
            summary = aggregate(result.samples, args.bootstrap_samples, args.confidence, seed)
            if split == first_split:
                summary.update(speed)  # measured once per model, on this split's prompts
            summaries[split][spec.label] = summary
            samples[split][spec.label] = result.samples
            by_domain[split][spec.label] = aggregate_by_domain(result.samples, args.bootstrap_samples,
                                                               args.confidence, seed)
            predictions += prediction_records(spec.label, split, split_examples[split], result.run, result.samples)
            if spec.label == FINETUNED:
                prefix = "" if split == first_split else f"{split}_"
                eval_flat.update({f"{prefix}{k}": v for k, v in summary.items()})

    paired = {split: {label: paired_deltas(by_model[FINETUNED], scores, args.bootstrap_samples, args.confidence,
                                           seed)
                      for label, scores in by_model.items() if label != FINETUNED}
              for split, by_model in samples.items()}
    # Serialise everything before writing anything: an error here must not leave a mix of old and new files.
    texts = {
        metrics_dir / "eval.json": json.dumps(json_safe(eval_flat), indent=2, allow_nan=False) + "\n",
        metrics_dir / "model_comparison.json": json.dumps(json_safe(comparison(summaries, infos, paired)), indent=2,
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
