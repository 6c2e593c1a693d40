"""The `align` stage (align@<domain>): preference tuning of the SFT adapter with TRL (DPO, ORPO, KTO or GRPO),
writing the next adapter and merged model that evaluate, adapter, lmeval (and through them grounded and the
server) use. Off by default: `align.method: none` writes only models/aligned/<domain>/alignment.json, which
tells those stages to keep train's adapter (stages/align/resolve.py).

    domain-llm align --domain legal align.method=dpo
    dvc exp run -S align.method=dpo              # every domain; evaluate/adapter/grounded/lmeval follow
    dvc exp run -S align.method=kto -S 'align.preference_files=[data/preferences/legal.jsonl]'

Reads  models/base, models/adapter/<d> + models/merged/<d> (train@<d>), data/processed/<d>/train.jsonl,
       data/feedback/<d>.jsonl (the server's 👍/👎, KTO only), align.preference_files
Writes models/aligned/<d>/{alignment.json, adapter/, merged/}, metrics/<d>/align.json (+ preference counts by
       reason), metrics/<d>/align_live/ (DVCLive curves); checkpoints in models/align_checkpoints/<d> (resumed).
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import random
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from stages.align.preferences import (
    Judge,
    build_pairs,
    gold_passages,
    is_grounded,
    load_feedback,
    load_preference_file,
    numbered_passages,
    one_passage_variant,
)
from stages.align.resolve import ALIGNMENT_FILE
from stages.align.rewards import REWARDS
from stages.align.trainers import METHODS, build_trainer
from stages.errors import StageError
from stages.fileio import atomic_dir, read_jsonl, write_json, write_text
from stages.train.checkpoints import checkpoint_step, file_digest, prepare_checkpoint_dir

log = logging.getLogger(__name__)


def sample_answers(merged: Path, records: list[dict], settings: DictConfig, threads: int,
                   seed: int) -> list[list[tuple[str, bool]]]:
    """`samples_per_question` sampled answers of the SFT model to each record's prompt: (text, ended its turn)."""
    from stages.inference import SamplingParams, load_engine

    engine = load_engine("hf", merged, threads=threads, batch_size=int(settings.sample_batch_size))
    prompts = [r["messages"][:-1] for r in records]
    out: list[list[tuple[str, bool]]] = [[] for _ in records]
    for k in range(int(settings.samples_per_question)):
        params = SamplingParams(max_new_tokens=int(settings.max_new_tokens), temperature=float(settings.temperature),
                                top_p=float(settings.top_p), seed=seed + k)
        for i, g in enumerate(engine.chat(prompts, params)):
            out[i].append((g.text, g.finish_reason == "stop"))
    del engine
    gc.collect()
    return out


def rendered(contract, messages: list[dict]) -> str:
    return str(contract.render(messages))


def paired_rows(contract, pairs: list[dict], local: list[dict]) -> list[dict]:
    """prompt / chosen / rejected strings: the templated prompt, answers closed by the end-of-turn token."""
    eot = contract.stop_strings[0]
    rows = [{"prompt": rendered(contract, p["record"]["messages"][:-1]), "chosen": p["chosen"] + eot,
             "rejected": p["rejected"] + eot} for p in pairs]
    rows += [{"prompt": rendered(contract, r["messages"]), "chosen": r["chosen"] + eot,
              "rejected": r["rejected"] + eot} for r in local if "chosen" in r]
    return rows


def unpaired_rows(contract, pairs: list[dict], local: list[dict]) -> list[dict]:
    """KTO's prompt / completion / label: each pair as a good and a bad answer, plus unpaired files and feedback."""
    eot = contract.stop_strings[0]
    rows, seen = [], set()
    for p in pairs:
        prompt = rendered(contract, p["record"]["messages"][:-1])
        for text, label in ((p["chosen"], True), (p["rejected"], False)):
            if (prompt, text) not in seen:
                seen.add((prompt, text))
                rows.append({"prompt": prompt, "completion": text + eot, "label": label})
    for r in local:
        prompt = rendered(contract, r["messages"])
        if "chosen" in r:
            rows += [{"prompt": prompt, "completion": r["chosen"] + eot, "label": True},
                     {"prompt": prompt, "completion": r["rejected"] + eot, "label": False}]
        else:
            rows.append({"prompt": prompt, "completion": r["completion"] + eot, "label": bool(r["label"])})
    return rows


def grpo_rows(contract, records: list[dict]) -> list[dict]:
    """Questions whose answers a reward can check: a numeric answer or numbered passages with the answer."""
    rows = []
    for r in records:
        numeric = r.get("numeric_answer")
        gold = gold_passages(r) if is_grounded(r) else []
        if numeric is None and not gold:
            continue
        rows.append({"prompt": rendered(contract, r["messages"][:-1]),
                     "numeric_answer": None if numeric is None else float(numeric), "gold_passages": gold,
                     "n_passages": len(numbered_passages(r)) if gold else 0,
                     "end_of_turn_id": contract.end_of_turn_id})
    return rows


def local_rows(cfg: DictConfig, method: str, domain: str) -> tuple[list[dict], dict]:
    """Rows of align.preference_files and (KTO) the server's feedback file; and how many came from each."""
    rows, counts = [], {}
    for name in cfg.align.preference_files or []:
        found = load_preference_file(Path(str(name)))
        counts[str(name)] = len(found)
        rows += found
    feedback = Path(str(cfg.align.feedback_dir)) / f"{domain}.jsonl"
    if bool(cfg.align.use_feedback) and feedback.is_file():
        if method == "kto":
            found = load_feedback(feedback, cfg.domain.get("system_prompt"))
            counts[str(feedback)] = len(found)
            rows += found
        else:
            log.info("%s: feedback is unpaired (👍/👎 per answer); only align.method=kto trains on it", feedback)
    if method in ("dpo", "orpo") and any("label" in r for r in rows):
        raise StageError(f"align.method={method}: a preference file holds unpaired rows (prompt/completion/label); "
                         "use align.method=kto for those, or give prompt/chosen/rejected rows")
    return rows, counts


class DropEmptyLogs:
    """A Trainer callback, first in the list: removes the None values GRPO logs for a reward that applied to no
    completion of the step (DVCLive refuses them); the callbacks after it see the same dict."""

    def __getattr__(self, name: str):
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        for key in [k for k, v in (logs or {}).items() if v is None]:
            del logs[key]


def digest(rows: list[dict]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


def main(cfg: DictConfig) -> dict:
    settings, domain, seed = cfg.align, str(cfg.domain.name), int(cfg.seed)
    method = str(settings.method)
    out_dir, metrics_dir = Path(str(cfg.paths.aligned)), Path(str(cfg.paths.metrics))
    checkpoints = Path(str(settings.checkpoint_dir)) / domain
    if method == "none":  # the later stages keep train's adapter
        checkpoints.mkdir(parents=True, exist_ok=True)  # declared (persisted) outputs, empty when off
        (metrics_dir / "align_live" / "plots" / "metrics").mkdir(parents=True, exist_ok=True)
        with atomic_dir(out_dir) as tmp:
            write_json(tmp / ALIGNMENT_FILE, {"method": "none", "domain": domain})
        metrics = {"method": "none"}
        write_json(metrics_dir / "align.json", metrics)
        return metrics
    if method not in METHODS:
        raise StageError(f"align.method={method}: use none, {', '.join(METHODS)}")
    if method == "grpo" and (not settings.grpo.rewards or any(n not in REWARDS for n in settings.grpo.rewards)):
        raise StageError(f"align.grpo.rewards={list(settings.grpo.rewards)}: name one or more of {', '.join(REWARDS)}")
    started = time.perf_counter()
    base, sft_adapter, sft_merged = Path(cfg.paths.base_model), Path(cfg.paths.adapter), Path(cfg.paths.merged)
    for path, what in ((sft_adapter, "the SFT adapter"), (sft_merged, "the SFT merged model")):
        if not path.is_dir():
            raise StageError(f"{path}: {what} is missing; run `dvc repro train@{domain}` first")
    threads = int(cfg.threads)
    if threads > 0:
        torch.set_num_threads(threads)
    train_path = Path(str(cfg.paths.processed)) / domain / "train.jsonl"
    records = read_jsonl(train_path)
    if not records:
        raise StageError(f"{train_path}: no rows; run prepare@{domain} first")
    if method == "grpo":  # only questions a reward can check
        records = [r for r in records if r.get("numeric_answer") is not None or (is_grounded(r) and gold_passages(r))]
        if not records:
            raise StageError(f"{train_path}: no question with a numeric_answer or numbered passages holding the "
                             "answer; GRPO's rewards (align.grpo.rewards) cannot check any; use dpo, orpo or kto")
    wanted = int(settings.grpo.questions if method == "grpo" else settings.questions)
    chosen_records = random.Random(f"{seed}:align").sample(records, min(len(records), wanted))
    if bool(settings.one_passage_variants):  # grounded questions also asked with their one passage, as [1]
        chosen_records += [v for r in chosen_records if (v := one_passage_variant(r)) is not None]

    from transformers import AutoTokenizer

    from stages.train.data import hf_contract

    tokenizer = AutoTokenizer.from_pretrained(sft_adapter)
    contract, _ = hf_contract(tokenizer)
    local, local_counts = local_rows(cfg, method, domain)
    report: dict = {}
    if method == "grpo":
        rows = grpo_rows(contract, chosen_records)
        report = {"questions": len(rows), "rewards": list(settings.grpo.rewards)}
    else:
        t0 = time.perf_counter()
        samples = sample_answers(sft_merged, chosen_records, settings, threads, seed)
        rules = Judge(float(settings.judge.min_f1), float(cfg.eval.numeric_abs_tol), float(cfg.eval.numeric_rel_tol))
        pairs, report = build_pairs(chosen_records, samples, rules)
        report["sampling_seconds"] = round(time.perf_counter() - t0, 1)
        rows = unpaired_rows(contract, pairs, local) if method == "kto" else paired_rows(contract, pairs, local)
    report["local_rows"] = local_counts
    log.info("align@%s: %s rows for %s (%s)", domain, len(rows), method, json.dumps(report))

    from peft import PeftModel

    from stages.train.model import load_base_model

    on_cuda = torch.cuda.is_available()
    torch.manual_seed(seed)
    model = load_base_model(base, "lora", None, on_cuda, bool(cfg.model.trust_remote_code))
    policy = PeftModel.from_pretrained(model, sft_adapter, is_trainable=True)
    fingerprint = {"method": method, "settings": OmegaConf.to_container(settings, resolve=True), "rows": digest(rows),
                   "sft_adapter": {p.name: file_digest(p) for p in sorted(sft_adapter.glob("*.safetensors"))}}
    resume = prepare_checkpoint_dir(checkpoints, fingerprint)
    from dvclive import Live
    from dvclive.huggingface import DVCLiveCallback

    # dvcyaml=None: dvc.yaml declares these plots itself; by default DVCLive rewrites dvc.yaml with its own entries
    live = Live(dir=str(metrics_dir / "align_live"), resume=resume is not None, save_dvc_exp=False, dvcyaml=None,
                report=None)
    callbacks = [DropEmptyLogs(), DVCLiveCallback(live=live)]
    reward_funcs = None
    if method == "grpo":
        reward_funcs = [REWARDS[name] for name in settings.grpo.rewards]
    trainer = build_trainer(method, policy, tokenizer, rows, settings, str(checkpoints), callbacks, on_cuda,
                            bf16=_cpu_bf16(cfg) and not on_cuda, reward_funcs=reward_funcs)
    objective = getattr(trainer.args, "loss_type", None) or method  # the losses as TRL took them (DPO: a list)
    objective = [objective] if isinstance(objective, str) else [str(x) for x in objective]
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    history = [h for h in trainer.state.log_history if "loss" in h]
    last = history[-1] if history else {}
    metrics = {"method": method, "objective": objective, "rows": len(rows), "preferences": report,
               "steps": trainer.state.global_step,
               "resumed_from_step": checkpoint_step(resume) if resume else None,
               "train_loss": round(float(result.training_loss), 4),
               "final": {k: round(float(v), 4) for k, v in last.items() if isinstance(v, (int, float))},
               "train_seconds": round(float(result.metrics.get("train_runtime", 0.0)), 1)}
    with atomic_dir(out_dir) as tmp:
        # only the tuned adapter: TRL added the frozen reference copy as a second one ("ref")
        trainer.model.save_pretrained(tmp / "adapter", safe_serialization=True, selected_adapters=["default"])
        tokenizer.save_pretrained(tmp / "adapter")
        del trainer, policy, model
        gc.collect()
        from stages.train.merge import merge_adapter_into_base

        merge_adapter_into_base(base, tmp / "adapter", tmp / "merged", bool(cfg.model.trust_remote_code))
        if (sft_merged / "manifest.json").is_file():  # train's facts (served system prompt, its params) + align's
            manifest = json.loads((sft_merged / "manifest.json").read_text(encoding="utf-8"))
            manifest.setdefault("source_model", {}).update({"adapter": str(out_dir / "adapter"),
                                                            "sft_adapter": str(sft_adapter)})
            manifest.setdefault("params", {})["align"] = {"method": method, "beta": float(settings.beta),
                                                          "lr": float(settings.lr), "steps": metrics["steps"]}
            write_json(tmp / "merged" / "manifest.json", manifest)
        card = (sft_merged / "README.md").read_text(encoding="utf-8") if (sft_merged / "README.md").is_file() else ""
        write_text(tmp / "merged" / "README.md", card + alignment_card(method, report, metrics, settings))
        metrics["wall_seconds"] = round(time.perf_counter() - started, 1)
        write_json(tmp / ALIGNMENT_FILE, {"method": method, "domain": domain, "adapter": "adapter",
                                          "merged": "merged", "sft_adapter": str(sft_adapter)})
    write_json(metrics_dir / "align.json", metrics)
    log.info("align@%s: %s, %d rows, %d steps, loss %.4f, %.0f s", domain, method, len(rows), metrics["steps"],
             metrics["train_loss"], metrics["wall_seconds"])
    return metrics


def _cpu_bf16(cfg: DictConfig) -> bool:
    """bf16 autocast on CPU: align.cpu_bf16 (auto = where the CPU computes bf16 natively, like train's)."""
    from stages.train.settings import native_cpu_bf16

    value = cfg.align.cpu_bf16
    return native_cpu_bf16() if str(value) == "auto" else bool(value)


def alignment_card(method: str, report: dict, metrics: dict, settings: DictConfig) -> str:
    reasons = report.get("wrong_by_reason") or {}
    lines = [f"\n## Alignment\n\nAfter the SFT adapter above, `align@` ({method.upper()}, TRL) tuned the same adapter on "
             f"{metrics['rows']} rows: preference pairs the pipeline made from the SFT model's own sampled answers "
             f"to {report.get('questions', 0)} training questions, judged against the reference answers"]
    if reasons:
        lines.append(" (rejected for: " + ", ".join(f"{k} {v}" for k, v in reasons.items() if v) + ")")
    if report.get("local_rows"):
        lines.append("; plus " + ", ".join(f"`{k}` ({v} rows)" for k, v in report["local_rows"].items()))
    lines.append(f". Loss {' + '.join(metrics.get('objective') or [method])}, beta {settings.beta}, lr {settings.lr}, "
                 f"{metrics['steps']} steps.\n")
    return "".join(lines)
