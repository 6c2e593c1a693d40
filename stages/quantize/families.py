"""What differs per model family in the HF -> GGUF conversion: small registered pieces over one shared pipeline
(convert.py), looked up by config.json's `architectures`.

    family = family_for(config, config_path)
    family.arch                      # llama.cpp architecture (gguf.MODEL_ARCH)
    family.hparams(writer, shape)    # metadata beyond the common keys
    family.extra_tensors(shape)      # tensors llama.cpp wants that the checkpoint does not store
    family.transform(gguf_name, hf_name, data, shape)

Each entry says what llama.cpp's runtime expects of that architecture (checked by logits parity with transformers
on a tiny random model per family, and by the oracle comparison with llama.cpp's own converter):
- llama / mistral: q/k rows permuted (llama.cpp rotates adjacent pairs, HF rotates halves); Llama 3.1 rope
  scaling as per-frequency factors in `rope_freqs`.
- qwen2 (q/k/v biases), qwen3 (per-head q/k RMS norms), phi3, gemma2, gemma3: NEOX rope, nothing permuted.
- gemma2 / gemma3: Gemma's RMSNorm scales by (1 + w), llama.cpp's by w: every norm is stored as w + 1. The
  embedding scale (sqrt of the width) is applied by llama.cpp at run time, not stored.
- phi3: fused qkv and gate_up projections stay fused (llama.cpp's attn_qkv and ffn_up); LongRoPE factors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from stages.errors import StageError
from stages.quantize.shape import ModelShape

ROPE_FREQS = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight"
ROPE_FACTORS_LONG = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FACTORS_LONG] + ".weight"
ROPE_FACTORS_SHORT = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FACTORS_SHORT] + ".weight"


def no_hparams(writer: gguf.GGUFWriter, shape: ModelShape) -> None:
    pass


def no_tensors(shape: ModelShape) -> dict[str, np.ndarray]:
    return {}


@dataclass(frozen=True)
class Family:
    name: str
    arch: gguf.MODEL_ARCH
    architectures: tuple[str, ...]  # config.json "architectures" values
    permute_qk: bool = False  # llama.cpp's LLAMA rope rotates adjacent pairs; NEOX families need nothing
    norm_plus_one: bool = False  # the checkpoint stores w of an RMSNorm that computes x * (1 + w)
    drop_lm_head: bool = False  # the architecture has no output tensor in llama.cpp (always tied)
    rope_types: tuple[str, ...] = ("default", "linear", "yarn")  # rope_type values this family converts
    hparams: Callable[[gguf.GGUFWriter, ModelShape], None] = no_hparams
    extra_tensors: Callable[[ModelShape], dict[str, np.ndarray]] = no_tensors
    spm_space_prefix: bool | None = None  # SentencePiece "▁" prefix, when the tokenizer does not say
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

    @property
    def arch_name(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.arch]

    def transform(self, gguf_name: str, hf_name: str, data: np.ndarray, shape: ModelShape) -> np.ndarray:
        """A checkpoint tensor as llama.cpp wants it (still float32)."""
        if self.permute_qk and ".attn_q." in gguf_name:
            return permute_rotary(data, shape.n_head)
        if self.permute_qk and ".attn_k." in gguf_name:
            return permute_rotary(data, shape.n_head_kv)
        if self.norm_plus_one and hf_name.endswith("norm.weight"):
            return data + 1.0
        return data


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    for architecture in family.architectures:
        FAMILIES[architecture] = family
    return family


def supported() -> str:
    return ", ".join(sorted({f"{f.name} ({'/'.join(f.architectures)})" for f in FAMILIES.values()}))


def family_for(config: dict, config_path: Path) -> Family:
    architectures = config.get("architectures") or []
    for architecture in architectures:
        if architecture in FAMILIES:
            return FAMILIES[architecture]
    raise StageError(f"{config_path}: architecture {architectures or config.get('model_type')} is not supported by "
                     f"the built-in converter; supported: {supported()}. Or set quantize.llama_cpp_path="
                     "/path/to/llama.cpp to use its convert_hf_to_gguf.py")


def permute_rotary(weight: np.ndarray, n_head: int) -> np.ndarray:
    """HF stores q/k rows as [first halves | second halves] per head for rotate_half; llama.cpp's LLAMA rope
    rotates adjacent pairs. Interleave the halves back: (n_head, 2, d/2, ...) -> (n_head, d/2, 2, ...).
    Works for weights (rows x cols) and biases (rows)."""
    rows = weight.shape[0]
    return (weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


# -- llama / mistral ----------------------------------------------------------------------------------------------
def llama3_rope_factors(shape: ModelShape) -> np.ndarray:
    """Per-frequency scale factors of Llama 3.1's rope scaling, stored as the rope_freqs tensor."""
    rope = shape.rope
    factor, low, high = (float(rope.get("factor", 8.0)), float(rope.get("low_freq_factor", 1.0)),
                         float(rope.get("high_freq_factor", 4.0)))
    old_ctx = float(rope.get("original_max_position_embeddings", 8192))
    freqs = 1.0 / (shape.rope_theta ** (np.arange(0, shape.head_dim, 2, dtype=np.float64) / shape.head_dim))
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old_ctx / high:
            factors.append(1.0)
        elif wavelen > old_ctx / low:
            factors.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            factors.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(factors, dtype=np.float32)


def llama_hparams(writer: gguf.GGUFWriter, shape: ModelShape) -> None:
    writer.add_vocab_size(shape.n_vocab)
    writer.add_rope_dimension_count(shape.head_dim)


def llama_tensors(shape: ModelShape) -> dict[str, np.ndarray]:
    return {ROPE_FREQS: llama3_rope_factors(shape)} if shape.rope_type == "llama3" else {}


register(Family("llama", gguf.MODEL_ARCH.LLAMA, ("LlamaForCausalLM", "MistralForCausalLM"), permute_qk=True,
                rope_types=("default", "linear", "yarn", "llama3"), hparams=llama_hparams,
                extra_tensors=llama_tensors))

# -- qwen2 / qwen3 ------------------------------------------------------------------------------------------------
register(Family("qwen2", gguf.MODEL_ARCH.QWEN2, ("Qwen2ForCausalLM",)))
register(Family("qwen3", gguf.MODEL_ARCH.QWEN3, ("Qwen3ForCausalLM",)))


# -- gemma2 / gemma3 ----------------------------------------------------------------------------------------------
def gemma2_hparams(writer: gguf.GGUFWriter, shape: ModelShape) -> None:
    config = shape.config
    writer.add_attn_logit_softcapping(float(config.get("attn_logit_softcapping") or 50.0))
    writer.add_final_logit_softcapping(float(config.get("final_logit_softcapping") or 30.0))
    writer.add_sliding_window(int(config.get("sliding_window") or 4096))


def sliding_layers(shape: ModelShape) -> list[bool] | None:
    """Which layers attend through the sliding window (config.json `layer_types`), or None if not given."""
    types = shape.config.get("layer_types")
    return [t == "sliding_attention" for t in types] if types else None


def gemma3_hparams(writer: gguf.GGUFWriter, shape: ModelShape) -> None:
    config = shape.config
    if config.get("final_logit_softcapping") is not None:
        writer.add_final_logit_softcapping(float(config["final_logit_softcapping"]))
    if config.get("attn_logit_softcapping") is not None:
        raise StageError("config.json attn_logit_softcapping is set, but llama.cpp's gemma3 never applies it: the "
                         "GGUF would not compute what the checkpoint does; set it to null only if the model was "
                         "trained without it")
    writer.add_sliding_window(int(config.get("sliding_window") or 512))
    writer.add_rope_freq_base_swa(shape.rope_theta_swa or 10000.0)
    pattern = sliding_layers(shape)
    if pattern is not None:  # llama.cpp assumes 5 local : 1 global when absent; the config says it exactly
        writer.add_sliding_window_pattern(pattern)


register(Family("gemma2", gguf.MODEL_ARCH.GEMMA2, ("Gemma2ForCausalLM",), norm_plus_one=True, drop_lm_head=True,
                hparams=gemma2_hparams, spm_space_prefix=False))
register(Family("gemma3", gguf.MODEL_ARCH.GEMMA3, ("Gemma3ForCausalLM",), norm_plus_one=True,
                hparams=gemma3_hparams, spm_space_prefix=False))


# -- phi3 ---------------------------------------------------------------------------------------------------------
def phi3_rope_dims(shape: ModelShape) -> int:
    return int(float(shape.config.get("partial_rotary_factor", 1.0)) * shape.n_embd) // shape.n_head


def phi3_hparams(writer: gguf.GGUFWriter, shape: ModelShape) -> None:
    config = shape.config
    writer.add_rope_dimension_count(phi3_rope_dims(shape))
    writer.add_rope_scaling_orig_ctx_len(int(config.get("original_max_position_embeddings") or shape.n_ctx))
    writer.add_sliding_window(int(config.get("sliding_window") or 0))
    long = shape.rope.get("long_factor")
    if long is not None:  # LongRoPE: the attention factor for contexts beyond the original length
        original = int(config.get("original_max_position_embeddings") or shape.n_ctx)
        scale = shape.n_ctx / original
        if shape.rope_type == "yarn":
            attn_factor = 0.1 * math.log(scale) + 1.0
        else:
            attn_factor = math.sqrt(1 + math.log(scale) / math.log(original)) if scale > 1.0 else 1.0
        writer.add_rope_scaling_attn_factors(attn_factor)


def phi3_tensors(shape: ModelShape) -> dict[str, np.ndarray]:
    long, short = shape.rope.get("long_factor"), shape.rope.get("short_factor")
    if long is None or short is None:
        return {}
    half = phi3_rope_dims(shape) // 2
    if len(long) != half or len(short) != half:
        raise StageError(f"config.json rope_scaling long_factor/short_factor have {len(long)}/{len(short)} values; "
                         f"llama.cpp needs rope dimensions / 2 = {half}")
    return {ROPE_FACTORS_LONG: np.asarray(long, dtype=np.float32),
            ROPE_FACTORS_SHORT: np.asarray(short, dtype=np.float32)}


register(Family("phi3", gguf.MODEL_ARCH.PHI3, ("Phi3ForCausalLM",), rope_types=("default", "longrope", "su"),
                hparams=phi3_hparams, extra_tensors=phi3_tensors,
                lora_targets=("qkv_proj", "o_proj", "gate_up_proj", "down_proj")))
