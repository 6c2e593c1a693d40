"""Merge a LoRA adapter into its base and save a plain HF folder (safetensors + tokenizer + chat template).

    merge_adapter_into_base(Path("models/base"), Path("models/adapter"), out_dir)

The base is reloaded in fp32 on the CPU, whatever the training device and dtype: merging into 4-bit weights
re-quantises them (logits moved by up to 0.67 in a probe), and a bf16 merge of a ~1B model trained on an H200
moved logits by ~2% of their range and changed 0.2% of greedy tokens (bench/results/gpu_check.md); fp32 matches
the adapter model to ~1e-5. The merged folder is saved in fp32; the GGUF recipe chooses the served precision.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from stages.errors import StageError
from stages.inference.chat import ChatContract
from stages.train.model import check_model_dir

log = logging.getLogger(__name__)


def load_adapter_model(base: Path, adapter: Path, dtype: torch.dtype = torch.float32,
                       trust_remote_code: bool = False):
    """Base + adapter as a PeftModel (unmerged), in eval mode."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    check_model_dir(base)
    if not (adapter / "adapter_config.json").is_file():
        raise StageError(f"{adapter}: no adapter_config.json; run `domain-llm train` first")
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype, use_safetensors=True,
                                                 trust_remote_code=trust_remote_code)
    return PeftModel.from_pretrained(model, adapter).eval()


def merge_adapter_into_base(base: Path, adapter: Path, out: Path, trust_remote_code: bool = False) -> int:
    """Write the merged model to `out` (an empty dir: the caller publishes it atomically); returns #params."""
    from transformers import AutoTokenizer

    dtype = torch.float32
    merged = load_adapter_model(base, adapter, dtype, trust_remote_code).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(adapter if (adapter / "tokenizer_config.json").exists() else base)
    # Every token that ends a turn (the template's end of turn, EOS, the base's own list), never one id.
    contract = ChatContract.from_hf(tokenizer, merged.generation_config)
    merged.generation_config.eos_token_id = list(contract.end_of_turn_ids)
    merged.generation_config.pad_token_id = tokenizer.pad_token_id
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)  # transformers 5 writes the chat template as chat_template.jinja
    n_params = sum(p.numel() for p in merged.parameters())
    log.info("merged %s + %s -> %s (%s params, %s)", base, adapter, out, f"{n_params:,}", dtype)
    return n_params
