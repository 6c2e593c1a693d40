"""HF folder (safetensors) -> GGUF (f32/f16/bf16) with gguf-py, streamed tensor by tensor, in process.

    from stages.quantize.convert import convert_hf_to_gguf
    convert_hf_to_gguf(Path("models/merged"), Path("models/gguf/model-f16.gguf"), outtype="f16")

One pipeline for every family (llama, mistral, qwen2, qwen3, gemma2, gemma3, phi3); what differs per family is
a registered piece in families.py. Other architectures are refused in one line that lists the supported ones
and names `quantize.llama_cpp_path`: a user-supplied llama.cpp checkout whose own convert_hf_to_gguf.py is then
run in a subprocess (`convert_with_llama_cpp`).
The output is written to a temp file and renamed only when complete.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import gguf
import numpy as np

from stages.errors import StageError
from stages.fileio import atomic_path, read_json
from stages.quantize.families import Family, family_for
from stages.quantize.shape import ModelShape
from stages.quantize.vocab import write_vocab

log = logging.getLogger(__name__)

OUTTYPES = {
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
}


def read_config(model_dir: Path) -> tuple[dict, Family]:
    """config.json of an HF folder and its family, or StageError listing the supported ones."""
    path = model_dir / "config.json"
    if not path.is_file():
        raise StageError(f"{path}: not found; quantize expects an HF model folder (paths.merged)")
    config = read_json(path)
    return config, family_for(config, path)


def write_hparams(writer: gguf.GGUFWriter, shape: ModelShape, family: Family, name: str, file_type: int) -> None:
    """The keys every family shares, then the family's own."""
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_context_length(shape.n_ctx)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layers)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_layer_norm_rms_eps(shape.rms_eps)
    writer.add_rope_freq_base(shape.rope_theta)
    if shape.explicit_head_dim or shape.head_dim != shape.n_embd // shape.n_head:
        writer.add_key_length(shape.head_dim)
        writer.add_value_length(shape.head_dim)
    writer.add_file_type(int(file_type))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    rope_type = shape.rope_type
    if rope_type not in family.rope_types:
        raise StageError(f"config.json rope_type={rope_type!r} is not supported for {family.name} by the built-in "
                         f"converter ({', '.join(family.rope_types)}); set quantize.llama_cpp_path to a llama.cpp "
                         "checkout")
    if rope_type == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(shape.rope["factor"]))
    elif rope_type == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(shape.rope["factor"]))
        original = shape.rope.get("original_max_position_embeddings") or shape.config.get(
            "original_max_position_embeddings")
        if not original:
            raise StageError("config.json rope_type='yarn' without original_max_position_embeddings (in "
                             "rope_parameters / rope_scaling or at the top level); add the pre-training context length")
        writer.add_rope_scaling_orig_ctx_len(int(original))
    family.hparams(writer, shape)


def safetensors_files(model_dir: Path) -> list[Path]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise StageError(f"{model_dir}: no *.safetensors weights (pickled .bin checkpoints are not loaded for "
                         "safety); re-save the model with save_pretrained(safe_serialization=True)")
    return files


def iter_hf_tensors(model_dir: Path) -> Iterator[tuple[str, Path, tuple[int, ...]]]:
    """(name, file, shape) of every stored tensor, from the safetensors headers (no data read)."""
    from safetensors import safe_open

    for path in safetensors_files(model_dir):
        with safe_open(path, framework="pt") as f:
            for name in f.keys():
                yield name, path, tuple(f.get_slice(name).get_shape())


def load_tensor(path: Path, name: str) -> np.ndarray:
    import torch
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return f.get_tensor(name).to(torch.float32).numpy()


def plan_tensors(model_dir: Path, shape: ModelShape, family: Family) -> list[tuple[str, str, Path, tuple[int, ...]]]:
    """(gguf name, hf name, file, shape) for every tensor we write, in file order."""
    name_map = gguf.get_tensor_name_map(family.arch, shape.n_layers)
    plan = []
    for hf_name, path, dims in iter_hf_tensors(model_dir):
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue  # recomputed by llama.cpp from rope_freq_base
        if hf_name == "lm_head.weight" and (shape.tied or family.drop_lm_head):
            continue  # tied: llama.cpp falls back to token_embd when output.weight is absent
        gguf_name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise StageError(f"{path}: tensor {hf_name!r} has no llama.cpp name for {family.name}; set "
                             "quantize.llama_cpp_path to a llama.cpp checkout to convert this model")
        plan.append((gguf_name, hf_name, path, dims))
    return plan


def to_outtype(data: np.ndarray, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    """Cast; 1-D tensors (norms, biases, rope factors) stay f32 as llama.cpp expects."""
    if data.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
        return np.ascontiguousarray(data, dtype=np.float32)
    if qtype == gguf.GGMLQuantizationType.F16:
        return np.ascontiguousarray(data, dtype=np.float16)
    return gguf.quants.quantize(np.ascontiguousarray(data, dtype=np.float32), qtype)


def card_license(model_dir: Path) -> str | None:
    """The `license:` of the model card's front matter (README.md), which the base and train stages write."""
    card = model_dir / "README.md"
    if not card.is_file():
        return None
    lines = card.read_text(encoding="utf-8", errors="replace").splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    for line in lines[1:]:
        if line.strip() == "---":
            break
        key, _, value = line.partition(":")
        if key.strip() == "license" and value.strip():
            return value.strip().strip("'\"")
    return None


def read_chat_template(model_dir: Path) -> str | None:
    path = model_dir / "chat_template.jinja"
    if path.is_file():
        return path.read_text(encoding="utf-8")
    config = model_dir / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        return template if isinstance(template, str) else None
    return None


def convert_hf_to_gguf(model_dir: Path, out_path: Path, outtype: str = "f16", tokenizer_pre: str = "auto",
                       llama_cpp_path: str | None = None, name: str | None = None) -> Path:
    """Convert an HF folder of a supported family to one GGUF file; returns `out_path`."""
    model_dir, out_path = Path(model_dir), Path(out_path)
    if outtype not in OUTTYPES:
        raise StageError(f"quantize.outtype={outtype!r}: use one of {', '.join(OUTTYPES)}")
    try:
        config, family = read_config(model_dir)
    except StageError:
        if llama_cpp_path:
            return convert_with_llama_cpp(model_dir, out_path, outtype, llama_cpp_path)
        raise
    shape = ModelShape.from_config(config, model_dir / "config.json")
    qtype, file_type = OUTTYPES[outtype]
    plan = plan_tensors(model_dir, shape, family)
    template = read_chat_template(model_dir)
    if template is None:
        log.warning("%s: no chat template; llama.cpp will fall back to its llama-2 chat format", model_dir)

    with atomic_path(out_path, suffix=".gguf") as tmp:
        writer = gguf.GGUFWriter(tmp, family.arch_name)
        write_hparams(writer, shape, family, name or model_dir.name, file_type)
        license_id = card_license(model_dir)
        if license_id:
            writer.add_license(license_id)
        extra = family.extra_tensors(shape)
        pre = write_vocab(writer, model_dir, shape.n_vocab, tokenizer_pre, template, family.spm_space_prefix)
        # Header first (tensor infos: shapes and byte sizes from the safetensors headers), then the data one
        # tensor at a time, so a 7B model never sits in memory whole.
        for extra_name, data in extra.items():
            writer.add_tensor_info(extra_name, data.shape, data.dtype, data.nbytes)
        for gguf_name, _, _, dims in plan:
            tensor_qtype = gguf.GGMLQuantizationType.F32 if len(dims) == 1 else qtype
            nbytes = math.prod(dims) * (4 if tensor_qtype == gguf.GGMLQuantizationType.F32 else 2)
            writer.add_tensor_info(gguf_name, dims, np.dtype(np.float32), nbytes, raw_dtype=tensor_qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for data in extra.values():
            writer.write_tensor_data(data)
        for gguf_name, hf_name, path, _ in plan:
            data = family.transform(gguf_name, hf_name, load_tensor(path, hf_name), shape)
            writer.write_tensor_data(to_outtype(data, qtype))
        writer.close()
    log.info("wrote %s (%s %s, %d tensors, tokenizer pre=%s, %.1f MB)", out_path, family.name, outtype, len(plan),
             pre, out_path.stat().st_size / 1e6)
    return out_path


def convert_with_llama_cpp(model_dir: Path, out_path: Path, outtype: str, llama_cpp_path: str) -> Path:
    """The optional route for architectures we do not convert: the user's llama.cpp checkout's converter."""
    script = Path(llama_cpp_path) / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise StageError(f"quantize.llama_cpp_path={llama_cpp_path}: no convert_hf_to_gguf.py there; point it "
                         "at a llama.cpp checkout")
    with atomic_path(out_path, suffix=".gguf") as tmp:
        cmd = [sys.executable, str(script), str(model_dir), "--outfile", str(tmp), "--outtype", outtype]
        log.info("running %s", " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise StageError(f"{script} failed (exit {proc.returncode}): {tail[0][:300]}")
    return out_path
