"""peft LoRA adapter -> GGUF adapter in llama.cpp's format, so a base GGUF plus a small adapter file serves what
the merged model would (llama.cpp's `--lora FILE`, llama-cpp-python's `lora_path`).

    from stages.quantize.lora import convert_lora_to_gguf
    convert_lora_to_gguf(Path("models/adapter"), Path("models/base"), Path("models/gguf/adapter-f16.gguf"))

The format (what llama.cpp's own convert_lora_to_gguf.py writes and its adapter loader reads):
`general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha`, and per adapted weight W (by its GGUF
name) the pair `W.lora_a` (A, rank x in) and `W.lora_b` (B, out x rank), stored untransposed. llama.cpp scales
by alpha / rank, rank read from B, so rsLoRA's alpha / sqrt(rank) is written as alpha * sqrt(rank). What the
family does to W's rows (llama's q/k permutation) is done to B's rows; fused projections (Phi-3 qkv_proj,
gate_up_proj) are one Linear in the checkpoint, so their A and B map onto the fused tensor unchanged.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import gguf
import numpy as np

from stages.errors import StageError
from stages.fileio import atomic_path, read_json
from stages.inference.adapters import add_adapter_facts
from stages.quantize.convert import ModelShape, load_tensor, read_config, safetensors_files

log = logging.getLogger(__name__)

OUTTYPES = {"f32": np.float32, "f16": np.float16}
PREFIX = "base_model.model."


def read_adapter_config(adapter_dir: Path) -> dict:
    path = adapter_dir / "adapter_config.json"
    if not path.is_file():
        raise StageError(f"{path}: not found; expected a peft LoRA adapter folder (save_pretrained of a PeftModel)")
    config = read_json(path)
    if config.get("peft_type", "LORA") != "LORA":
        raise StageError(f"{path}: peft_type {config.get('peft_type')!r}; only LoRA adapters convert to GGUF")
    for key, why in (("use_dora", "DoRA's magnitude vectors"), ("rank_pattern", "a rank per module"),
                     ("alpha_pattern", "an alpha per module"), ("modules_to_save", "fully trained modules")):
        if config.get(key):
            raise StageError(f"{path}: {key} is set; llama.cpp's adapter format has no place for {why}: merge the "
                             "adapter (models/merged) and convert that instead")
    return config


def adapter_alpha(config: dict) -> float:
    """The alpha llama.cpp needs so that alpha / rank equals peft's scale."""
    r, alpha = int(config["r"]), float(config["lora_alpha"])
    return alpha * math.sqrt(r) if config.get("use_rslora") else alpha


def convert_lora_to_gguf(adapter_dir: Path, base_dir: Path, out_path: Path, outtype: str = "f16",
                         facts: dict | None = None) -> Path:
    """Write the adapter in `adapter_dir` (trained on the HF model in `base_dir`) as a GGUF adapter.
    facts: {"domain", "system_prompt", "routing_examples"} for a served domain (stages/inference/adapters.py)."""
    adapter_dir, base_dir, out_path = Path(adapter_dir), Path(base_dir), Path(out_path)
    if outtype not in OUTTYPES:
        raise StageError(f"adapter outtype={outtype!r}: use one of {', '.join(OUTTYPES)}")
    config = read_adapter_config(adapter_dir)
    base_config, family = read_config(base_dir)
    shape = ModelShape.from_config(base_config, base_dir / "config.json")
    name_map = gguf.get_tensor_name_map(family.arch, shape.n_layers)
    from safetensors import safe_open

    pairs: dict[str, dict[str, tuple[Path, str]]] = {}
    for path in safetensors_files(adapter_dir):
        with safe_open(path, framework="pt") as f:
            for key in f.keys():
                module, kind = split_lora_name(key, path)
                if module.endswith("lm_head") and family.drop_lm_head:
                    raise StageError(f"{path}: {key}: {family.name} has no separate output weight in llama.cpp "
                                     "(tied to the embeddings); train without lm_head in target_modules")
                gguf_name = name_map.get_name(module + ".weight", try_suffixes=(".weight",))
                if gguf_name is None:
                    raise StageError(f"{path}: {key}: no llama.cpp tensor for {module!r} ({family.name}); "
                                     "only linear layers of the transformer blocks can be adapters")
                pairs.setdefault(gguf_name, {})[kind] = (path, key)
    if not pairs:
        raise StageError(f"{adapter_dir}: no lora_A/lora_B tensors in the adapter weights")
    dtype = OUTTYPES[outtype]
    with atomic_path(out_path, suffix=".gguf") as tmp:
        writer = gguf.GGUFWriter(tmp, family.arch_name)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, adapter_alpha(config))
        writer.add_name(f"{base_dir.name} LoRA adapter")
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        if facts:
            add_adapter_facts(writer, facts["domain"], facts.get("system_prompt"), facts.get("routing_examples", ()))
        for gguf_name, parts in pairs.items():
            if set(parts) != {"a", "b"}:
                raise StageError(f"{adapter_dir}: {gguf_name} has only lora_{''.join(parts).upper()}; the adapter "
                                 "weights are incomplete")
            a = load_tensor(*parts["a"])
            b = family.transform(gguf_name, "", load_tensor(*parts["b"]), shape)  # row permutations act on B
            writer.add_tensor(gguf_name + ".lora_a", np.ascontiguousarray(a, dtype=dtype))
            writer.add_tensor(gguf_name + ".lora_b", np.ascontiguousarray(b, dtype=dtype))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    log.info("wrote %s (%s LoRA adapter, %d weights, alpha %.3g, %.1f MB)", out_path, family.name, len(pairs),
             adapter_alpha(config), out_path.stat().st_size / 1e6)
    return out_path


def split_lora_name(key: str, path: Path) -> tuple[str, str]:
    """"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" -> ("model.layers.0.self_attn.q_proj",
    "a")."""
    name = key.removeprefix(PREFIX)
    for marker, kind in ((".lora_A.", "a"), (".lora_B.", "b")):
        if marker in name:
            return name.split(marker)[0], kind
    raise StageError(f"{path}: tensor {key!r} is not a LoRA A/B matrix (embedding or bias adapters, or "
                     "modules_to_save); merge the adapter and convert the merged model instead")
