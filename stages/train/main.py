"""The `train` stage: LoRA/QLoRA fine-tune of models/base on the prepared chat data, then merge.

    domain-llm train                                  # conf/train/lora.yaml, mode auto (LoRA fp32 on CPU)
    domain-llm train train=qlora                      # 4-bit base (nf4, double quant), fp32 compute on CPU
    domain-llm train train.max_steps=10 train.lora.r=8
    domain-llm train train.launcher=accelerate train.num_processes=2    # DDP
    dvc repro train  |  dvc exp run -S 'train.lora.r=8'

Reads  models/base (paths.base_model), data/processed/<domain>/{train,validation}.jsonl
Writes models/adapter (adapter + tokenizer), models/merged (merged safetensors + tokenizer + README.md card),
       metrics/train.json, metrics/train_live/ (DVCLive curves), models/checkpoints/ (persisted; auto-resume).
A rerun after a crash or kill -9 resumes from the newest complete checkpoint of the same experiment.
"""

from __future__ import annotations

import gc
import logging
import os
import resource
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from stages.fileio import atomic_dir, read_jsonl, write_json, write_text
from stages.manifest import write_manifest
from stages.prepare.records import trained_system_prompt
from stages.train.card import ModelCardFacts, model_card
from stages.train.checkpoints import checkpoint_step, experiment_fingerprint, prepare_checkpoint_dir
from stages.train.data import drop_system_prompts, load_chat_records, tokenize_chat_records
from stages.train.launch import is_launched_worker, process_rank, relaunch_with_accelerate, world_size
from stages.train.merge import merge_adapter_into_base
from stages.train.model import apply_lora, check_model_dir, load_base_model, load_tokenizer, parameter_counts
from stages.train.settings import TrainSettings

log = logging.getLogger(__name__)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux reports KiB


def set_threads(settings: TrainSettings) -> None:
    if settings.threads > 0:
        torch.set_num_threads(max(1, settings.threads // world_size()))


def split_paths(cfg: DictConfig) -> tuple[Path, Path]:
    folder = Path(cfg.paths.processed) / str(cfg.domain.name)
    return folder / "train.jsonl", folder / "validation.jsonl"


def load_validation(path: Path) -> list[list[dict]] | None:
    """Validation is optional: without it there is no eval loss, which we say rather than fail."""
    if not path.is_file() or not read_jsonl(path):
        log.warning("%s: missing or empty; training without eval loss", path)
        return None
    return load_chat_records(path)


def main(cfg: DictConfig) -> None:
    settings = TrainSettings.from_config(cfg)
    if settings.launcher == "accelerate" and not is_launched_worker():
        relaunch_with_accelerate(cfg, settings)
        return
    train_stage(cfg, settings)


def train_stage(cfg: DictConfig, settings: TrainSettings) -> dict | None:
    started = time.perf_counter()
    set_threads(settings)
    on_cuda = torch.cuda.is_available()
    mode = settings.resolved_mode(on_cuda)
    base = Path(cfg.paths.base_model)
    check_model_dir(base)
    train_path, val_path = split_paths(cfg)
    train_conversations = drop_system_prompts(load_chat_records(train_path), settings.no_system_prompt_share,
                                              settings.seed)
    val_conversations = load_validation(val_path)

    tokenizer = load_tokenizer(base, settings.trust_remote_code)
    train_examples = tokenize_chat_records(train_conversations, tokenizer, settings.max_seq_length, str(train_path))
    val_examples = (tokenize_chat_records(val_conversations, tokenizer, settings.max_seq_length, str(val_path))
                    if val_conversations else None)

    is_main = process_rank() == 0
    data_files = [train_path] + ([val_path] if val_conversations else [])
    fingerprint = experiment_fingerprint(settings, data_files, base, world_size())

    # The adapter's random init (lora_A) must not depend on what ran before in this process: seed it, so a
    # run is reproducible and a killed-then-resumed run equals an uninterrupted one.
    from transformers import set_seed

    set_seed(settings.seed)
    model = load_base_model(base, mode, settings.quantization, on_cuda, settings.trust_remote_code,
                            device_index=int(os.environ.get("LOCAL_RANK", "0")))
    model = apply_lora(model, settings.lora, settings.gradient_checkpointing)
    # Only now, with the model and LoRA settings validated: a fingerprint change deletes the checkpoints there,
    # and a typo in train.lora.target_modules must not cost another experiment its resumable checkpoints.
    resume_from = prepare_checkpoint_dir(Path(settings.checkpoint_dir), fingerprint, is_main=is_main)
    trainable, total = parameter_counts(model)
    log.info("mode %s on %s: %s trainable of %s params; %d train / %d validation examples",
             mode, "cuda" if on_cuda else "cpu", f"{trainable:,}", f"{total:,}", len(train_examples),
             len(val_examples or []))

    from stages.train.loop import build_trainer, run_training

    trainer = build_trainer(model, tokenizer, train_examples, val_examples, settings, on_cuda,
                            resume_step=checkpoint_step(resume_from) if resume_from else None)
    result = run_training(trainer, resume_from)
    peak_training = peak_rss_mb()
    if not trainer.is_world_process_zero():
        return None

    adapter_dir, merged_dir = Path(cfg.paths.adapter), Path(cfg.paths.merged)
    with atomic_dir(adapter_dir) as tmp:
        trainer.model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    del trainer, model
    gc.collect()

    metrics = {
        "mode": mode, "device": "cuda" if on_cuda else "cpu", "world_size": world_size(),
        "train_rows": len(train_examples), "validation_rows": len(val_examples or []),
        # initial_eval_loss is the step-0 evaluation (the base model), first_step_train_loss the loss of step 1.
        "final_train_loss": result["final_train_loss"], "final_eval_loss": result["eval_loss"],
        "initial_eval_loss": result["first_eval_loss"], "first_step_train_loss": result["first_train_loss"],
        "steps": result["global_step"], "epochs": round(result["epochs"], 3),
        "resumed_from_step": result["resumed_from_step"],
        "trainable_params": trainable, "total_params": total,
        "trainable_percent": round(100 * trainable / total, 3),
        "train_tokens": result["train_tokens"], "train_tokens_per_second": result["train_tokens_per_second"],
        "train_seconds": result["train_seconds"], "peak_rss_mb_training": peak_training,
    }
    # What the model was trained with, for whoever serves it (quantize carries it into the GGUF manifest).
    served = {"domain": str(cfg.domain.name),
              "system_prompt": trained_system_prompt([{"messages": m} for m in train_conversations])}
    with atomic_dir(merged_dir) as tmp:
        merge_adapter_into_base(base, adapter_dir, tmp, settings.trust_remote_code)
        metrics["wall_seconds"] = round(time.perf_counter() - started, 2)
        metrics["peak_rss_mb"] = peak_rss_mb()
        write_manifest(tmp, {}, {"base_model": str(base), "adapter": str(adapter_dir)},
                       {"train": hyper_parameter_table(settings, mode), "domain": str(cfg.domain.name)}, {},
                       served=served)
        write_text(tmp / "README.md", model_card(ModelCardFacts(
            base_dir=base, domain=str(cfg.domain.name), system_prompt=served["system_prompt"] or "(none)",
            data_files={str(train_path): len(train_examples), **({str(val_path): len(val_examples)}
                                                                  if val_examples else {})},
            hyper_parameters=hyper_parameter_table(settings, mode), metrics=metrics)))
    write_json(Path(cfg.paths.metrics) / "train.json", metrics)
    log.info("train: loss %s, eval loss %s (step 0: %s), %d steps, %.0f train tok/s, %.0fs, peak RSS %.0f MB",
             metrics["final_train_loss"], metrics["final_eval_loss"], metrics["initial_eval_loss"], metrics["steps"],
             metrics["train_tokens_per_second"] or 0, metrics["wall_seconds"], metrics["peak_rss_mb"])
    return metrics


def hyper_parameter_table(settings: TrainSettings, mode: str) -> dict:
    lora, quant = settings.lora, settings.quantization
    table = {
        "mode": mode, "lora.r": lora.r, "lora.alpha": lora.alpha, "lora.dropout": lora.dropout,
        "lora.bias": lora.bias, "lora.target_modules": lora.target_modules if isinstance(lora.target_modules, str)
        else ", ".join(lora.target_modules),
        "epochs": settings.epochs, "max_steps": settings.max_steps, "batch_size": settings.batch_size,
        "grad_accum": settings.grad_accum, "lr": settings.lr, "weight_decay": settings.weight_decay,
        "max_grad_norm": settings.max_grad_norm, "warmup_ratio": settings.warmup_ratio,
        "scheduler": settings.scheduler, "max_seq_length": settings.max_seq_length, "seed": settings.seed,
    }
    if mode == "qlora":
        table.update({"quant.bits": quant.bits, "quant.type": quant.quant_type,
                      "quant.double_quant": quant.double_quant, "quant.compute_dtype": quant.compute_dtype})
    return table

