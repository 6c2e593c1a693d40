"""The seed's convenience API as plain functions over the train stage's modules (no framework of our own).

    from stages.train import api
    model, tokenizer = api.load_model_and_tokenizer("models/base", mode="qlora")
    model = api.setup_lora(model, r=8)
    api.train(model, tokenizer, train_rows, validation_rows, max_steps=20, checkpoint_dir="/tmp/ckpt")
    print(api.evaluate(model, tokenizer, validation_rows))          # {"eval_loss", "perplexity", "tokens"}
    print(api.generate(model, tokenizer, "What is a normal body temperature?"))
    api.save(model, tokenizer, "models/adapter")
    api.merge_and_save("models/base", "models/adapter", "models/merged")
    model, tokenizer = api.load_trained_model("models/merged")       # or an adapter folder

Rows are prepared records ({"messages": [...]}) or bare message lists.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from stages.errors import StageError
from stages.fileio import atomic_dir
from stages.train.data import ChatCollator, tokenize_chat_records, validate_messages
from stages.train.merge import load_adapter_model, merge_adapter_into_base
from stages.train.model import apply_lora, check_model_dir, load_base_model, load_tokenizer
from stages.train.settings import LoraSettings, QuantSettings, TrainSettings


def _conversations(rows: list) -> list[list[dict]]:
    return [validate_messages(row["messages"] if isinstance(row, dict) else row, f"row {i}")
            for i, row in enumerate(rows, start=1)]


def load_model_and_tokenizer(path: str | Path = "models/base", mode: str = "auto",
                             quantization: QuantSettings | None = None, trust_remote_code: bool = False):
    """Base model + tokenizer; mode auto = QLoRA on CUDA, fp32 LoRA-ready base on CPU."""
    on_cuda = torch.cuda.is_available()
    resolved = TrainSettings(mode=mode).resolved_mode(on_cuda)
    model = load_base_model(Path(path), resolved, quantization or QuantSettings(), on_cuda, trust_remote_code)
    return model, load_tokenizer(Path(path), trust_remote_code)


def setup_lora(model: nn.Module, r: int = 16, alpha: int = 32, dropout: float = 0.05,
               target_modules: list[str] | str | None = None, bias: str = "none",
               gradient_checkpointing: bool = False, seed: int = 42) -> nn.Module:
    from transformers import set_seed

    set_seed(seed)  # lora_A's random init
    targets = target_modules or ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    return apply_lora(model, LoraSettings(r=r, alpha=alpha, dropout=dropout, bias=bias, target_modules=targets),
                      gradient_checkpointing)


def train(model: nn.Module, tokenizer, train_rows: list, validation_rows: list | None = None,
          settings: TrainSettings | None = None, **overrides) -> dict:
    """Train in place with transformers Trainer; `overrides` set TrainSettings fields (max_steps=20, lr=1e-4, ...).
    Writes checkpoints to settings.checkpoint_dir and no DVCLive curves."""
    from stages.train.loop import build_trainer, run_training

    settings = replace(settings or TrainSettings(), **overrides)
    settings.validate()
    if settings.threads > 0:
        torch.set_num_threads(settings.threads)
    train_examples = tokenize_chat_records(_conversations(train_rows), tokenizer, settings.max_seq_length, "train")
    val_examples = (tokenize_chat_records(_conversations(validation_rows), tokenizer, settings.max_seq_length,
                                          "validation") if validation_rows else None)
    trainer = build_trainer(model, tokenizer, train_examples, val_examples, settings, torch.cuda.is_available(),
                            log_curves=False)
    return run_training(trainer, resume_from=None)


@torch.no_grad()
def evaluate(model: nn.Module, tokenizer, rows: list, batch_size: int = 8, max_seq_length: int = 1024) -> dict:
    """Mean cross-entropy over answer tokens (+ end-of-turn), token-weighted, and its perplexity."""
    examples = tokenize_chat_records(_conversations(rows), tokenizer, max_seq_length, "evaluate")
    collate = ChatCollator(pad_token_id=int(tokenizer.pad_token_id))
    model.eval()
    device = next(model.parameters()).device
    total_nll, total_tokens = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in collate(examples[start:start + batch_size]).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        targets = batch["labels"][:, 1:]
        nll = nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), targets, ignore_index=-100,
                                          reduction="sum")
        total_nll += float(nll)
        total_tokens += int((targets != -100).sum())
    loss = total_nll / max(total_tokens, 1)
    return {"eval_loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": total_tokens}


def generate_completion(model: nn.Module, tokenizer, question: str | list[dict], max_new_tokens: int = 128,
                        system_prompt: str | None = None) -> dict:
    """Greedy chat completion through the HF engine (same prompt ids and stop tokens as evaluation and serving):
    {"text", "completion_tokens", "finish_reason": "stop" | "length"}."""
    from stages.inference import SamplingParams
    from stages.inference.hf import HFEngine

    messages = question if isinstance(question, list) else (
        ([{"role": "system", "content": system_prompt}] if system_prompt else [])
        + [{"role": "user", "content": question}])
    [g] = HFEngine.from_model(model, tokenizer).chat([messages], SamplingParams(max_new_tokens=max_new_tokens))
    return {"text": g.text.strip(), "completion_tokens": g.completion_tokens, "finish_reason": g.finish_reason}


def generate(model: nn.Module, tokenizer, question: str | list[dict], max_new_tokens: int = 128,
             system_prompt: str | None = None) -> str:
    return generate_completion(model, tokenizer, question, max_new_tokens, system_prompt)["text"]


def save(model: nn.Module, tokenizer, out: str | Path) -> None:
    """Save an adapter (PeftModel) or a full model, with its tokenizer, atomically."""
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)


def merge_and_save(base: str | Path, adapter: str | Path, out: str | Path) -> None:
    with atomic_dir(out) as tmp:
        merge_adapter_into_base(Path(base), Path(adapter), tmp, on_cuda=torch.cuda.is_available())


def load_trained_model(path: str | Path, base: str | Path | None = None):
    """(model, tokenizer) from a merged folder, or from an adapter folder over its base (fp32 on CPU)."""
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if (path / "adapter_config.json").is_file():
        base = Path(base or json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"])
        dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
        model = load_adapter_model(base, path, dtype)
        tokenizer = load_tokenizer(path if (path / "tokenizer_config.json").is_file() else base)
        return model, tokenizer
    check_model_dir(path, "trained model")
    try:
        model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, dtype=torch.float32)
    except OSError as e:
        raise StageError(f"{path}: cannot load the model ({str(e).splitlines()[0][:200]})") from None
    return model.eval(), load_tokenizer(path)
