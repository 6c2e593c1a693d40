"""The training loop: transformers Trainer configured from TrainSettings, curves logged with DVCLive.

    trainer = build_trainer(model, tokenizer, train_examples, val_examples, settings, on_cuda=False)
    result = run_training(trainer, resume_from=None)     # dict: losses, steps, tokens/s, wall time

No loop of our own: Trainer already does gradient accumulation, clipping, cosine warmup, eval, checkpoints with
optimizer + RNG state (exact resume) and DDP/FSDP under `accelerate launch`. We add length-grouped sampling of
dynamically padded batches, token counting, and DVCLive curves keyed by the optimizer step.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path

from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from stages.fileio import write_text
from stages.train.data import ChatCollator, ChatExamples
from stages.train.settings import TrainSettings

log = logging.getLogger(__name__)


class DVCLiveCurves(TrainerCallback):
    """Train/eval loss, learning rate and grad norm per optimizer step into DVCLive TSVs (`dvc plots show`).

    Written by us rather than dvclive's HF callback: that one numbers rows by log call, so train and eval rows of
    the same step land at different x, and on resume the steps restart."""

    NAMES = {"loss": "train/loss", "learning_rate": "train/learning_rate", "grad_norm": "train/grad_norm",
             "eval_loss": "eval/loss"}

    def __init__(self, live_dir: Path, resume_step: int | None = None):
        from dvclive import Live

        if resume_step is not None:
            drop_rows_after(live_dir / "plots" / "metrics", resume_step)
        # dvcyaml=None: the project's dvc.yaml is hand-written; save_dvc_exp=False: `dvc exp run` owns experiments.
        self.live = Live(dir=str(live_dir), resume=resume_step is not None, save_dvc_exp=False, dvcyaml=None,
                         report=None)

    def on_log(self, args, state, control, logs=None, **kwargs):
        values = {self.NAMES[k]: float(v) for k, v in (logs or {}).items() if k in self.NAMES and math.isfinite(v)}
        if values:
            self.live.step = int(state.global_step)
            for name, value in values.items():
                self.live.log_metric(name, value)
            self.live.make_summary()


def drop_rows_after(plots_dir: Path, step: int) -> None:
    """A killed run logged steps past its last checkpoint; the resumed run logs them again, so drop the old rows."""
    for tsv in plots_dir.rglob("*.tsv"):
        header, *rows = tsv.read_text().splitlines()
        kept = [row for row in rows if int(float(row.split("\t")[0])) <= step]
        if len(kept) != len(rows):
            write_text(tsv, "\n".join([header, *kept]) + "\n")


class LogToLogger(TrainerCallback):
    """One readable log line per Trainer log event (instead of tqdm bars inside DVC's output)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in logs.items()}
            log.info("step %d/%d %s", state.global_step, state.max_steps, shown)


def optimizer_name(settings: TrainSettings, on_cuda: bool) -> str:
    """paged_adamw_32bit pages optimizer state through unified memory on CUDA; on CPU it only warns and falls back."""
    if settings.optimizer == "auto":
        return "paged_adamw_32bit" if on_cuda else "adamw_torch"
    return settings.optimizer


def training_arguments(settings: TrainSettings, on_cuda: bool, has_eval: bool,
                       eval_on_start: bool = False) -> TrainingArguments:
    # CUDA: bf16 for LoRA and QLoRA; CPU: bf16 autocast over fp32 weights for LoRA where the CPU has it natively.
    bf16 = settings.resolved_mode(on_cuda) in ("lora", "qlora") if on_cuda else (
        settings.resolved_mode(on_cuda) == "lora" and settings.bf16_on_cpu())
    return TrainingArguments(
        output_dir=settings.checkpoint_dir,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        learning_rate=settings.lr,
        weight_decay=settings.weight_decay,
        max_grad_norm=settings.max_grad_norm,
        warmup_steps=settings.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        lr_scheduler_type=settings.scheduler,
        optim=optimizer_name(settings, on_cuda),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        logging_steps=settings.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if has_eval else "no",
        eval_on_start=has_eval and eval_on_start,
        prediction_loss_only=True,  # else evaluate() keeps every eval logit (rows x tokens x 49k vocab) in RAM  # the base model's eval loss: the curve's starting point
        eval_steps=settings.eval_steps,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        seed=settings.seed,
        data_seed=settings.seed,
        use_cpu=not on_cuda,
        bf16=bf16,
        activation_checkpointing=settings.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if settings.gradient_checkpointing else None,
        train_sampling_strategy="group_by_length" if settings.group_by_length else "random",
        remove_unused_columns=False,  # our collator builds exactly the model inputs
        include_num_input_tokens_seen="non_padding",  # tokens/s counts real tokens, not padding
        report_to="none",
        dataloader_num_workers=0,
        disable_tqdm=not sys.stderr.isatty(),
        ddp_backend="gloo" if not on_cuda and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        ddp_find_unused_parameters=False,
    )


def build_trainer(model, tokenizer, train_examples: list[dict], val_examples: list[dict] | None,
                  settings: TrainSettings, on_cuda: bool, resume_step: int | None = None,
                  log_curves: bool = True) -> Trainer:
    """resume_step: continue the DVCLive curves after that step and skip the step-0 eval;
    log_curves=False writes no DVCLive files."""
    args = training_arguments(settings, on_cuda, has_eval=bool(val_examples), eval_on_start=resume_step is None)
    # Validation sorted by length: eval batches pad little too (eval order does not matter).
    val = ChatExamples(sorted(val_examples, key=lambda e: len(e["input_ids"]))) if val_examples else None
    callbacks: list[TrainerCallback] = [LogToLogger()]
    if log_curves and args.process_index == 0:
        callbacks.append(DVCLiveCurves(Path(settings.live_dir), resume_step))
    trainer = Trainer(model=model, args=args, data_collator=ChatCollator(pad_token_id=int(tokenizer.pad_token_id)),
                      train_dataset=ChatExamples(train_examples), eval_dataset=val, processing_class=tokenizer,
                      callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # LogToLogger says the same through logging
    return trainer


def last_logged(history: list[dict], key: str) -> float | None:
    values = [entry[key] for entry in history if key in entry]
    return float(values[-1]) if values else None


def run_training(trainer: Trainer, resume_from: Path | None) -> dict:
    """Train (resuming when given a checkpoint), then make sure the final eval loss is measured."""
    start = time.perf_counter()
    tokens_before = 0
    runtime = None
    saved = None
    if resume_from is not None:
        from transformers.trainer_callback import TrainerState

        saved = TrainerState.load_from_json(str(resume_from / "trainer_state.json"))
        tokens_before = saved.num_input_tokens_seen
    if saved is not None and saved.max_steps > 0 and saved.global_step >= saved.max_steps:
        # The run had finished (e.g. killed in merge, or rerun by DVC): Trainer.train would still take one more
        # optimizer step before it checks max_steps, so load the final checkpoint instead of training.
        trainer._load_from_checkpoint(str(resume_from))
        trainer.state = saved
        log.info("%s is the final step (%d): nothing left to train", resume_from.name, saved.global_step)
    else:
        output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        runtime = output.metrics.get("train_runtime")
    train_seconds = time.perf_counter() - start
    state = trainer.state
    history = state.log_history
    eval_loss = None
    if trainer.eval_dataset is not None:
        evals = [e for e in history if "eval_loss" in e]
        if evals and evals[-1]["step"] == state.global_step:
            eval_loss = float(evals[-1]["eval_loss"])
        else:
            eval_loss = float(trainer.evaluate()["eval_loss"])
    tokens_this_run = int(state.num_input_tokens_seen - tokens_before)
    first_eval = next((e["eval_loss"] for e in history if "eval_loss" in e), None)
    return {
        "final_train_loss": last_logged(history, "loss"),
        "first_train_loss": next((float(e["loss"]) for e in history if "loss" in e), None),
        "eval_loss": eval_loss,
        "first_eval_loss": float(first_eval) if first_eval is not None else None,
        "global_step": int(state.global_step),
        "epochs": float(state.epoch or 0.0),
        "resumed_from_step": int(resume_from.name.split("-")[-1]) if resume_from else 0,
        "train_tokens": int(state.num_input_tokens_seen),
        "train_tokens_this_run": tokens_this_run,
        "train_seconds": round(train_seconds, 2),
        # None when this run trained nothing (resumed from the final checkpoint, e.g. after a crash in merge).
        "train_tokens_per_second": round(tokens_this_run / runtime, 2) if tokens_this_run and runtime else None,
    }
