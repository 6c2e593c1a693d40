"""The GPU training path in one command: LoRA bf16 and QLoRA (nf4 + bf16 compute) on a ~1B-parameter random
Qwen2 or Llama shape, paged AdamW, gradient checkpointing; tokens/s and peak memory of each; then merged-vs-adapter
logits parity of a bf16 merge and of the pipeline's fp32 merge (the trained adapter over the base reloaded in fp32). Needs only torch, transformers and peft (+ bitsandbytes for QLoRA and the
paged optimizer), none of domain-llm's other dependencies, so it can be copied to a bare CUDA machine:

    python bench/gpu_check.py                              # CUDA: ~1B shape, < 8 minutes on one GPU
    python bench/gpu_check.py --shape tiny --steps 2       # CPU smoke (the test suite runs this)
    python bench/gpu_check.py --family llama --output bench/results/gpu_check.json

On CPU the variants run in fp32 (bf16 matmuls are slow there) with torch's AdamW when bitsandbytes has no paged
optimizer for the device; the JSON says what ran and what was skipped and why.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

SHAPES = {
    # ~1B parameters (Qwen2.5-1.5B-like width, fewer layers): fits every variant on a 24 GB GPU.
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=16,
               num_key_value_heads=4, vocab_size=32000),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=512),
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def random_model_dir(family: str, shape: dict, out: Path, dtype: torch.dtype) -> tuple[Path, int]:
    import transformers

    config_class = {"qwen2": transformers.Qwen2Config, "llama": transformers.LlamaConfig}[family]
    config = config_class(max_position_embeddings=4096, tie_word_embeddings=False, **shape)
    torch.manual_seed(0)
    model = (transformers.Qwen2ForCausalLM if family == "qwen2" else transformers.LlamaForCausalLM)(config)
    model.to(dtype).save_pretrained(out, safe_serialization=True)
    return out, sum(p.numel() for p in model.parameters())


def has_bitsandbytes() -> str | None:
    """None when bitsandbytes is importable, else why not."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as e:  # ImportError, or a CUDA setup error inside it
        return f"bitsandbytes not usable: {type(e).__name__}: {str(e)[:120]}"
    return None


def load(model_dir: Path, quantized: bool, dtype: torch.dtype, device: str):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs: dict = {"dtype": dtype}
    if quantized:
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_use_double_quant=True,
                                                           bnb_4bit_compute_dtype=dtype)
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    return model if quantized else model.to(device)


def optimizer_for(params, device: str) -> tuple[torch.optim.Optimizer, str]:
    if device == "cuda" and has_bitsandbytes() is None:
        import bitsandbytes

        return bitsandbytes.optim.PagedAdamW32bit(params, lr=2e-4), "paged_adamw_32bit"
    return torch.optim.AdamW(params, lr=2e-4), "adamw_torch"


def train_variant(name: str, model_dir: Path, quantized: bool, args, dtype: torch.dtype, device: str) -> dict:
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = load(model_dir, quantized, dtype, device)
    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=TARGETS, lora_dropout=0.0))
    optimizer, optimizer_name = optimizer_for([p for p in model.parameters() if p.requires_grad], device)
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(1)
    # One batch again and again: throughput does not depend on the data, and the loss must then go down.
    batch = torch.randint(0, vocab, (args.batch_size, args.seq_len), generator=generator)
    batches = [batch] * (args.steps + 1)
    model.train()

    def step(ids: torch.Tensor) -> float:
        ids = ids.to(device)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    step(batches[0])  # warm-up (allocation, kernel choice): not timed
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    losses = [step(ids) for ids in batches[1:]]
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    result = {"variant": name, "quantized": quantized, "optimizer": optimizer_name, "steps": args.steps,
              "tokens_per_second": round(args.steps * args.batch_size * args.seq_len / seconds, 1),
              "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4),
              "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None}
    with tempfile.TemporaryDirectory(prefix="gpu-check-adapter.") as adapter_dir:
        model.save_pretrained(adapter_dir)
        if not quantized:
            result.update(merge_parity(model, batches[0][:1].to(device)))
        result.update(fp32_merge_parity(model_dir, Path(adapter_dir), batches[0][:1], device))
    return result


@torch.no_grad()
def merge_parity(model, ids: torch.Tensor) -> dict:
    """Logits of the adapter model vs the same weights merged (in the training dtype)."""
    model.eval()
    with_adapter = model(input_ids=ids).logits.float()
    with model.disable_adapter():
        without = model(input_ids=ids).logits.float()
    merged = model.merge_and_unload()
    merged_logits = merged(input_ids=ids).logits.float()
    worst = float((with_adapter - merged_logits).abs().max())
    scale = float(with_adapter.abs().max())
    return {"adapter_effect_max_abs": float((with_adapter - without).abs().max()),  # > 0: the check means something
            "merge_max_abs_diff": round(worst, 5), "merge_relative_diff": round(worst / max(scale, 1e-9), 5),
            "merge_argmax_agreement": float((with_adapter.argmax(-1) == merged_logits.argmax(-1)).float().mean())}


@torch.no_grad()
def fp32_merge_parity(model_dir: Path, adapter_dir: Path, ids: torch.Tensor, device: str) -> dict:
    """The pipeline's merge (stages/train/merge.py): the trained adapter over the base reloaded in fp32."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    if device == "cuda":
        torch.cuda.empty_cache()
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device)
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    ids = ids.to(device)
    with_adapter = model(input_ids=ids).logits
    merged_logits = model.merge_and_unload()(input_ids=ids).logits
    worst = float((with_adapter - merged_logits).abs().max())
    return {"fp32_merge_max_abs_diff": round(worst, 7),
            "fp32_merge_relative_diff": round(worst / max(float(with_adapter.abs().max()), 1e-9), 8),
            "fp32_merge_argmax_agreement": float((with_adapter.argmax(-1) == merged_logits.argmax(-1)).float().mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=SHAPES, default=None, help="default: 1b on CUDA, tiny on CPU")
    parser.add_argument("--family", choices=("qwen2", "llama"), default="qwen2")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / "gpu_check.json")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    shape_name = args.shape or ("1b" if device == "cuda" else "tiny")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    started = time.perf_counter()
    result: dict = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "device": device,
                    "gpu": torch.cuda.get_device_name(0) if device == "cuda" else f"none ({platform.machine()} CPU)",
                    "torch": torch.__version__, "family": args.family, "shape": shape_name, "dtype": str(dtype),
                    "variants": [], "skipped": {}}
    import peft
    import transformers

    result.update(transformers=transformers.__version__, peft=peft.__version__)
    with tempfile.TemporaryDirectory(prefix="gpu-check.") as tmp:
        model_dir, result["parameters"] = random_model_dir(args.family, SHAPES[shape_name], Path(tmp) / "model", dtype)
        result["variants"].append(train_variant("lora_" + ("bf16" if device == "cuda" else "fp32"), model_dir,
                                                False, args, dtype, device))
        why_not = has_bitsandbytes()
        if why_not is None:
            try:
                result["variants"].append(train_variant("qlora_nf4", model_dir, True, args, dtype, device))
            except Exception as e:  # e.g. a bitsandbytes build without this device's 4-bit kernels
                result["skipped"]["qlora_nf4"] = f"{type(e).__name__}: {str(e)[:200]}"
        else:
            result["skipped"]["qlora_nf4"] = why_not
    result["seconds"] = round(time.perf_counter() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.output.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    tmp_out.replace(args.output)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
