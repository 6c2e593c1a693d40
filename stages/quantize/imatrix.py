"""Importance matrix for llama.cpp quantization, computed with transformers on calibration chats.

For every weight matrix the mean square of its input activations, per input column: what `llama-imatrix`
computes. llama.cpp weights each column's rounding error by it, and the i-quants below 3 bits (iq2_xxs, ...)
refuse to run without it. Calibration uses the train split, never the test split the benchmark scores.

    from stages.quantize.imatrix import compute_imatrix
    imatrix = compute_imatrix(Path("models/merged"), read_jsonl(Path("data/processed/healthcare/train.jsonl")))
    # {"blk.0.attn_q.weight": float32[576], ..., "token_embd.weight": float32[576]}
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import gguf
import numpy as np
import torch

from stages.errors import StageError
from stages.inference.chat import ChatContract, hf_tokenizer

log = logging.getLogger(__name__)


def gguf_weight_name(hf_module: str, n_layers: int, tied: bool) -> str | None:
    """llama.cpp's name for the weight of an HF Linear module; with tied embeddings the output projection
    is token_embd itself, which is where llama.cpp looks for its importance data."""
    if hf_module == "lm_head":
        return "token_embd.weight" if tied else "output.weight"
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    return name_map.get_name(hf_module + ".weight", try_suffixes=(".weight",))


def compute_imatrix(model_dir: Path, records: Sequence[dict], max_examples: int = 200,
                    max_tokens: int = 512) -> dict[str, np.ndarray]:
    """{gguf tensor name: mean squared input activation per column (float32)} over `max_examples` chats
    rendered with the model's own chat template."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    chats = [r["messages"] for r in records if r.get("messages")][:max_examples]
    if not chats:
        raise StageError(f"{model_dir}: no calibration chats for the importance matrix; check "
                         "quantize.imatrix.split names a non-empty split of data/processed/<domain>/")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, trust_remote_code=False).eval()
    n_layers, tied = model.config.num_hidden_layers, bool(model.config.tie_word_embeddings)
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def collect(name: str):
        def hook(_module, inputs, _output):
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).to(torch.float64)
            sums[name] = sums.get(name, 0) + (x * x).sum(dim=0)
            counts[name] = counts.get(name, 0) + x.shape[0]
        return hook

    handles = []
    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            name = gguf_weight_name(module_name, n_layers, tied)
            if name is not None:
                handles.append(module.register_forward_hook(collect(name)))
    contract = ChatContract.from_hf(tokenizer, model.generation_config)
    tokenize, plain = hf_tokenizer(tokenizer), hf_tokenizer(tokenizer, control=False)  # message text stays text
    try:
        with torch.inference_mode():
            for messages in chats:  # whole chats, tokenized as the engines and training do (BOS once)
                ids = contract.prompt_ids(contract.render(messages, add_generation_prompt=False), tokenize, plain)
                model(input_ids=torch.tensor([ids[:max_tokens]]))
    finally:
        for handle in handles:
            handle.remove()
    log.info("importance matrix: %d tensors from %d calibration chats", len(sums), len(chats))
    return {name: (total / counts[name]).to(torch.float32).numpy() for name, total in sums.items()}
