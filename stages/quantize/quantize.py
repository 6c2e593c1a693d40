"""Quantize a GGUF with llama.cpp (in-process, through llama-cpp-python) into any llama.cpp file type.

    from stages.quantize.quantize import quantize_file
    report = quantize_file(Path("model-f16.gguf"), Path("model-q4_k_m.gguf"), "q4_k_m", threads=2)

Type names are llama.cpp's (`q4_k_m`, `q8_0`, `iq4_xs`, ...), derived from llama_cpp's LLAMA_FTYPE_MOSTLY_*
constants so a new llama.cpp build brings its new types along.
"""

from __future__ import annotations

import ctypes
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import llama_cpp

from stages.errors import StageError
from stages.fileio import atomic_path
from stages.quantize.verify import GGUFFile

log = logging.getLogger(__name__)

# i-quants below 3 bits need an importance matrix (llama-imatrix); without one llama.cpp refuses or degrades.
NEEDS_IMATRIX = {"iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "q2_k_s"}


def file_types() -> dict[str, int]:
    """llama.cpp file type name -> LLAMA_FTYPE value, e.g. {"q4_k_m": 15, "f16": 1, ...}."""
    table = {name.removeprefix("LLAMA_FTYPE_MOSTLY_").lower(): int(getattr(llama_cpp, name))
             for name in dir(llama_cpp) if name.startswith("LLAMA_FTYPE_MOSTLY_")}
    table["f32"] = int(llama_cpp.LLAMA_FTYPE_ALL_F32)
    return table


def file_type(name: str) -> int:
    table = file_types()
    key = name.lower()
    if key not in table:
        raise StageError(f"quantize.types: unknown type {name!r}; valid llama.cpp types: {', '.join(sorted(table))}")
    if key in NEEDS_IMATRIX:
        raise StageError(f"quantize.types: {name!r} needs an importance matrix, which this stage does not "
                         "compute; use q3_k_m or larger")
    return table[key]


def primary_ggml_type(ftype_name: str) -> gguf.GGMLQuantizationType | None:
    """The GGML tensor type a file type mostly uses (q4_k_m -> Q4_K), to know its block size."""
    base = ftype_name.upper()
    for suffix in ("_S", "_M", "_L", "_XS", "_XXS", "_NL"):
        candidate = base.removesuffix(suffix)
        if candidate in gguf.GGMLQuantizationType.__members__:
            return gguf.GGMLQuantizationType[candidate]
    return gguf.GGMLQuantizationType.__members__.get(base)


@dataclass
class QuantizeReport:
    """What llama.cpp wrote: tensor types, and the weight matrices that fell back to another type
    because their rows are not a multiple of the type's block size (576 % 256 != 0 in SmolLM2)."""
    type: str
    tensor_types: dict[str, int]
    fallback: dict[str, int] = field(default_factory=dict)
    fallback_count: int = 0
    bits_per_weight: float = 0.0


def inspect_quantized(path: Path, type_name: str) -> QuantizeReport:
    reader = GGUFFile(path)
    primary = primary_ggml_type(type_name)
    block = gguf.GGML_QUANT_SIZES[primary][0] if primary is not None else 1
    types: Counter[str] = Counter()
    fallback: Counter[str] = Counter()
    n_weights = n_bytes = 0
    for tensor in reader.tensors:
        kind = tensor.tensor_type.name
        types[kind] += 1
        n_weights += int(tensor.n_elements)
        n_bytes += int(tensor.n_bytes)
        is_matrix = len(tensor.shape) >= 2
        if is_matrix and block > 1 and int(tensor.shape[0]) % block != 0:
            fallback[kind] += 1
    return QuantizeReport(type=type_name, tensor_types=dict(types), fallback=dict(fallback),
                          fallback_count=sum(fallback.values()), bits_per_weight=8 * n_bytes / max(n_weights, 1))


def quantize_file(src: Path, dst: Path, type_name: str, threads: int = 0) -> QuantizeReport:
    """llama_model_quantize(src -> dst) into `type_name`; atomic; warns when tensors fell back."""
    ftype = file_type(type_name)
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise StageError(f"{src}: GGUF to quantize not found")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    with atomic_path(dst, suffix=".gguf") as tmp:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0:
            raise StageError(f"{src}: llama.cpp failed to quantize to {type_name} (code {rc}); check the file "
                             "is a valid GGUF (re-run the conversion)")
    report = inspect_quantized(dst, type_name)
    if report.fallback_count:
        primary = primary_ggml_type(type_name)
        log.warning("%s: %d weight matrices have rows not divisible by the %s block size (%d) and fell back "
                    "to %s", dst.name, report.fallback_count, primary.name if primary else "?",
                    gguf.GGML_QUANT_SIZES[primary][0] if primary else 0, report.fallback)
    log.info("%s: %s, %.2f bits/weight, tensor types %s", dst.name, type_name, report.bits_per_weight,
             report.tensor_types)
    return report
