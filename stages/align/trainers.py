"""TRL's preference trainers over the SFT adapter: one small builder per method, the same rows in.

    trainer = build_trainer("dpo", policy, tokenizer, rows, settings, output_dir, callbacks)

`rows` are plain strings rendered with the model's chat contract (stages/align/main.py): the prompt is the
templated conversation with the generation prompt, an answer is its text closed by the end-of-turn token, so
TRL tokenises exactly the ids `train` supervises (tests/stages/align check it). The policy is a PeftModel with
the SFT adapter trainable; DPO, KTO and GRPO keep a frozen copy of that adapter as the reference (TRL's "ref"
adapter), ORPO needs none.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, ListConfig

from stages.errors import StageError

METHODS = ("dpo", "orpo", "kto", "grpo")


def _common(settings: DictConfig, output_dir: str, on_cuda: bool, bf16: bool) -> dict[str, Any]:
    return {
        "output_dir": output_dir, "num_train_epochs": float(settings.epochs), "max_steps": int(settings.max_steps),
        "per_device_train_batch_size": int(settings.batch_size),
        "gradient_accumulation_steps": int(settings.grad_accum), "learning_rate": float(settings.lr),
        "lr_scheduler_type": str(settings.scheduler), "warmup_steps": float(settings.warmup_ratio),  # a float in [0, 1) is a ratio of the steps
        "logging_steps": int(settings.logging_steps), "save_steps": int(settings.save_steps),
        "save_total_limit": 2, "seed": int(settings.seed), "report_to": [], "bf16": bf16,
        "use_cpu": not on_cuda, "dataloader_num_workers": 0, "remove_unused_columns": False,
        "disable_tqdm": True, "save_only_model": False,
        # TRL turns it on by default; on a 135M model it only recomputes activations (train runs without it too)
        "gradient_checkpointing": bool(settings.gradient_checkpointing),
    }


def build_trainer(method: str, policy, tokenizer, rows: list[dict], settings: DictConfig, output_dir: str,
                  callbacks: list, on_cuda: bool = False, bf16: bool = False, reward_funcs: list | None = None):
    """A TRL trainer for `method` on `rows` (paired: prompt/chosen/rejected; kto: prompt/completion/label;
    grpo: prompt + the reward columns)."""
    from datasets import Dataset

    if method not in METHODS:
        raise StageError(f"align.method={method}: use none, {', '.join(METHODS)}")
    if not rows:
        raise StageError(f"align.method={method}: no training rows (no wrong samples were drawn and no "
                         "preference file was given); raise align.questions or add align.preference_files")
    common = _common(settings, output_dir, on_cuda, bf16)
    data = Dataset.from_list(rows)
    max_length = int(settings.max_length)
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        # A list combines TRL's losses: [sigmoid, sft] adds the chosen answers' NLL (RPO), which keeps the
        # policy near the references on prompts the pairs do not cover.
        losses = settings.dpo_loss
        loss_type = [str(x) for x in losses] if isinstance(losses, (list, ListConfig)) else [str(losses)]
        weights = settings.get("dpo_loss_weights")
        args = DPOConfig(**common, beta=float(settings.beta), max_length=max_length, loss_type=loss_type,
                         loss_weights=[float(w) for w in weights] if weights else None)
        return DPOTrainer(model=policy, args=args, train_dataset=data, processing_class=tokenizer,
                          callbacks=callbacks)
    if method == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        args = ORPOConfig(**common, beta=float(settings.orpo_beta), max_length=max_length)
        return ORPOTrainer(model=policy, args=args, train_dataset=data, processing_class=tokenizer,
                           callbacks=callbacks)
    if method == "kto":
        from trl import KTOConfig, KTOTrainer

        good = sum(bool(r["label"]) for r in rows)
        if good in (0, len(rows)):
            raise StageError(f"align.method=kto: {good} of {len(rows)} rows are labelled good; KTO needs both "
                             "good and bad answers")
        # TRL's advice: weight the rarer side so desirable_weight*good ~ undesirable_weight*bad (within 1:1..4:3)
        args = KTOConfig(**common, beta=float(settings.beta), max_length=max_length,
                         desirable_weight=min(1.33, max(1.0, (len(rows) - good) / good)),
                         undesirable_weight=min(1.33, max(1.0, good / (len(rows) - good))))
        return KTOTrainer(model=policy, args=args, train_dataset=data, processing_class=tokenizer,
                          callbacks=callbacks)
    from trl import GRPOConfig, GRPOTrainer

    grpo = settings.grpo
    # One question's generations form a group: a batch holds whole groups.
    args = GRPOConfig(**{**common, "per_device_train_batch_size": int(grpo.num_generations)},
                      beta=float(grpo.beta), num_generations=int(grpo.num_generations),
                      max_completion_length=int(grpo.max_completion_length), temperature=float(grpo.temperature))
    return GRPOTrainer(model=policy, reward_funcs=reward_funcs, args=args, train_dataset=data,
                       processing_class=tokenizer, callbacks=callbacks)
