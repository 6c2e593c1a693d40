"""Load the base model (fp32 / bf16 / bitsandbytes 4-bit or 8-bit) and wrap it with a peft LoRA adapter.

    model, tokenizer = load_base_model(Path("models/base"), mode="qlora", quant=QuantSettings(), on_cuda=False)
    model = apply_lora(model, LoraSettings(r=8), gradient_checkpointing=False)

dtypes: CPU trains in fp32 (bf16 on an AVX2 CPU was 10-15x slower, see shared/FINDINGS.md; QLoRA on CPU computes
in fp32 too); CUDA uses bf16 weights/compute.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from stages.errors import StageError
from stages.train.settings import LoraSettings, QuantSettings

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_model_dir(path: Path, what: str = "base model") -> None:
    if not (Path(path) / "config.json").is_file():
        raise StageError(f"{path}: {what} not found (no config.json); run `domain-llm base` (or `dvc repro base`) "
                         "or set paths.base_model to an HF model folder")


def compute_dtype(name: str, on_cuda: bool) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if on_cuda else torch.float32
    if name not in DTYPES:
        raise StageError(f"train.quantization.compute_dtype={name!r}: use auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def load_tokenizer(path: Path, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    check_model_dir(path)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def quantization_config(quant: QuantSettings, on_cuda: bool):
    from transformers import BitsAndBytesConfig

    if quant.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant.quant_type,
                              bnb_4bit_use_double_quant=quant.double_quant,
                              bnb_4bit_compute_dtype=compute_dtype(quant.compute_dtype, on_cuda))


def load_base_model(path: Path, mode: str, quant: QuantSettings, on_cuda: bool, trust_remote_code: bool = False,
                    device_index: int = 0) -> nn.Module:
    """mode 'lora': full-precision base (fp32 CPU / bf16 CUDA); 'qlora': bitsandbytes-quantised base."""
    from transformers import AutoModelForCausalLM

    check_model_dir(path)
    kwargs: dict = {"use_safetensors": True, "trust_remote_code": trust_remote_code,
                    "dtype": torch.bfloat16 if on_cuda else torch.float32}
    if mode == "qlora":
        kwargs["quantization_config"] = quantization_config(quant, on_cuda)
        kwargs["dtype"] = compute_dtype(quant.compute_dtype, on_cuda)
        # bitsandbytes quantises while placing weights; without a device map they would stay on CPU.
        kwargs["device_map"] = {"": device_index if on_cuda else "cpu"}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as e:
        raise StageError(f"{path}: cannot load the base model ({str(e).splitlines()[0][:200]}); "
                         "re-run `domain-llm base`") from None
    if on_cuda and mode != "qlora":
        model = model.to(f"cuda:{device_index}")
    if mode == "qlora" and not on_cuda:
        keep_4bit_weights_trainable_on_cpu(model)
    return model


def keep_4bit_weights_trainable_on_cpu(model: nn.Module) -> None:
    """bitsandbytes 0.50 repacks Linear4bit weights into an AVX512-BF16 inference layout on the first eval-mode
    forward on CPUs that have it; that layout's kernel has no autograd, so after the first evaluation no gradient
    flows back through the frozen 4-bit layers and earlier LoRA layers silently stop learning (measured: layer-0
    lora_A.grad None after one eval). Opt every layer out of the repacking."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def linear_module_names(model: nn.Module) -> list[str]:
    """Short names (last path component) of the Linear layers LoRA can target; bnb Linear4bit/8bitLt subclass it."""
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, nn.Linear)})


def check_target_modules(model: nn.Module, targets: list[str] | str) -> None:
    if isinstance(targets, str):
        if targets != "all-linear":
            raise StageError(f"train.lora.target_modules={targets!r}: give a list of module names or 'all-linear'")
        return
    available = linear_module_names(model)
    missing = [t for t in targets if t not in available]
    if missing:
        raise StageError(f"train.lora.target_modules: {', '.join(missing)} not in the base model; "
                         f"available Linear modules: {', '.join(available)}")


def lora_config(lora: LoraSettings):
    from peft import LoraConfig

    targets = lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules)
    return LoraConfig(r=int(lora.r), lora_alpha=int(lora.alpha), lora_dropout=float(lora.dropout), bias=lora.bias,
                      target_modules=targets, task_type="CAUSAL_LM")


def apply_lora(model: nn.Module, lora: LoraSettings, gradient_checkpointing: bool = False) -> nn.Module:
    """Wrap with a fresh LoRA adapter; a quantised base first gets peft's k-bit preparation (fp32 norms, input grads)."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    check_target_modules(model, lora.target_modules)
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    elif gradient_checkpointing:
        model.enable_input_require_grads()  # checkpointed blocks need an input that requires grad
    return get_peft_model(model, lora_config(lora))


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total); peft counts 4-bit packed weights at their unpacked size."""
    if hasattr(model, "get_nb_trainable_parameters"):
        trainable, total = model.get_nb_trainable_parameters()
        return int(trainable), int(total)
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
