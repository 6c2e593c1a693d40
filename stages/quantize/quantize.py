"""Quantize a GGUF with llama.cpp (in-process, through llama-cpp-python) into any llama.cpp file type.

    from stages.quantize.quantize import quantize_file
    report = quantize_file(Path("model-f16.gguf"), Path("model-q4_k_m.gguf"), "q4_k_m", threads=2,
                           tensor_types={"ffn_down": "q6_k"}, imatrix=None)

Type names are llama.cpp's (`q4_k_m`, `q8_0`, `iq4_xs`, ...), derived from llama_cpp's LLAMA_FTYPE_MOSTLY_*
constants so a new llama.cpp build brings its new types along. `tensor_types` maps a tensor-name regex to a
GGML type, like `llama-quantize --tensor-type`; `imatrix` is the importance matrix of stages/quantize/imatrix.py.
"""

from __future__ import annotations

import ctypes
import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import llama_cpp
import numpy as np

from stages.errors import StageError
from stages.fileio import atomic_path
from stages.inference.gguf import GGUFFile

log = logging.getLogger(__name__)

# i-quants below 3 bits need an importance matrix (llama-imatrix); without one llama.cpp refuses or degrades.
NEEDS_IMATRIX = {"iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "q2_k_s"}


def file_types() -> dict[str, int]:
    """llama.cpp file type name -> LLAMA_FTYPE value, e.g. {"q4_k_m": 15, "f16": 1, ...}."""
    table = {name.removeprefix("LLAMA_FTYPE_MOSTLY_").lower(): int(getattr(llama_cpp, name))
             for name in dir(llama_cpp) if name.startswith("LLAMA_FTYPE_MOSTLY_")}
    table["f32"] = int(llama_cpp.LLAMA_FTYPE_ALL_F32)
    return table


def file_type(name: str, have_imatrix: bool = False) -> int:
    table = file_types()
    key = name.lower()
    if key not in table:
        raise StageError(f"quantize.types: unknown type {name!r}; valid llama.cpp types: {', '.join(sorted(table))}")
    if key in NEEDS_IMATRIX and not have_imatrix:
        raise StageError(f"quantize.types: {name!r} needs an importance matrix; set quantize.imatrix.enabled=true "
                         "or use q3_k_m or larger")
    return table[key]


def tensor_type(name: str, field_name: str) -> int:
    """GGML tensor type by name (q6_k, q8_0, f16, ...) for a per-tensor override."""
    member = gguf.GGMLQuantizationType.__members__.get(str(name).upper())
    if member is None:
        valid = ", ".join(sorted(m.lower() for m in gguf.GGMLQuantizationType.__members__))
        raise StageError(f"{field_name}: unknown tensor type {name!r}; valid GGML types: {valid}")
    return int(member)


def check_tensor_types(tensor_types: Mapping[str, str], tensor_names: list[str], field_name: str) -> dict[str, int]:
    """{regex: GGML type} validated: each pattern compiles and matches at least one tensor of the model,
    so a typo does not silently quantize with the stock mix."""
    checked = {}
    for pattern, type_name in tensor_types.items():
        try:
            regex = re.compile(pattern)
        except re.error as err:
            raise StageError(f"{field_name}: {pattern!r} is not a valid regular expression ({err})") from err
        if not any(regex.search(name) for name in tensor_names):
            raise StageError(f"{field_name}: pattern {pattern!r} matches no tensor of the model (names look like "
                             f"{', '.join(tensor_names[:3])}); fix or remove it")
        checked[pattern] = tensor_type(type_name, f"{field_name}.{pattern}")
    return checked


def imatrix_array(imatrix: Mapping[str, np.ndarray]) -> tuple[ctypes.Array, list]:
    """llama_model_imatrix_data[] ending with a NULL name, and the buffers it points into (keep them alive)."""
    entries = (llama_cpp.llama_model_imatrix_data * (len(imatrix) + 1))()
    buffers = []
    for entry, (name, values) in zip(entries, imatrix.items(), strict=False):
        data = np.ascontiguousarray(values, dtype=np.float32)
        buffers.append(data)
        entry.name = name.encode()
        entry.data = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        entry.size = data.size
    return entries, buffers


def override_array(overrides: Mapping[str, int]) -> ctypes.Array:
    """llama_model_tensor_override[] ending with a NULL pattern."""
    entries = (llama_cpp.llama_model_tensor_override * (len(overrides) + 1))()
    for entry, (pattern, type_id) in zip(entries, overrides.items(), strict=False):
        entry.pattern = pattern.encode()
        entry.type = type_id
    return entries


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
    overrides: dict[str, str] = field(default_factory=dict)
    imatrix_entries: int = 0


def inspect_quantized(path: Path, type_name: str, overridden: Sequence[str] = ()) -> QuantizeReport:
    """Tensor types in the file; matrices matching an `overridden` pattern got their type by request and do
    not count as fallbacks."""
    reader = GGUFFile(path)
    patterns = [re.compile(p) for p in overridden]
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
        requested = any(p.search(tensor.name) for p in patterns)
        if is_matrix and block > 1 and int(tensor.shape[0]) % block != 0 and not requested:
            fallback[kind] += 1
    return QuantizeReport(type=type_name, tensor_types=dict(types), fallback=dict(fallback),
                          fallback_count=sum(fallback.values()), bits_per_weight=8 * n_bytes / max(n_weights, 1))


def quantize_file(src: Path, dst: Path, type_name: str, threads: int = 0,
                  tensor_types: Mapping[str, str] | None = None,
                  imatrix: Mapping[str, np.ndarray] | None = None) -> QuantizeReport:
    """llama_model_quantize(src -> dst) into `type_name`; atomic; warns when tensors fell back.
    `tensor_types` ({regex: GGML type name}) overrides llama.cpp's mix for matching tensors."""
    ftype = file_type(type_name, have_imatrix=bool(imatrix))
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise StageError(f"{src}: GGUF to quantize not found")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    keep_alive: list = []  # ctypes arrays the params point into must outlive the call
    if tensor_types:
        names = [t.name for t in GGUFFile(src).tensors]
        overrides = override_array(check_tensor_types(tensor_types, names, f"quantize.tensor_types.{type_name}"))
        params.tt_overrides = ctypes.cast(overrides, ctypes.POINTER(llama_cpp.llama_model_tensor_override))
        keep_alive.append(overrides)
    if imatrix:
        entries, buffers = imatrix_array(imatrix)
        params.imatrix = ctypes.cast(entries, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
        keep_alive += [entries, buffers]
    with atomic_path(dst, suffix=".gguf") as tmp:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0:
            raise StageError(f"{src}: llama.cpp failed to quantize to {type_name} (code {rc}); check the file "
                             "is a valid GGUF (re-run the conversion)")
    report = inspect_quantized(dst, type_name, overridden=list(tensor_types or {}))
    report.overrides = {str(k): str(v).lower() for k, v in (tensor_types or {}).items()}
    report.imatrix_entries = len(imatrix or {})
    if report.fallback_count:
        primary = primary_ggml_type(type_name)
        log.warning("%s: %d weight matrices have rows not divisible by the %s block size (%d) and fell back "
                    "to %s", dst.name, report.fallback_count, primary.name if primary else "?",
                    gguf.GGML_QUANT_SIZES[primary][0] if primary else 0, report.fallback)
    log.info("%s: %s, %.2f bits/weight, tensor types %s", dst.name, type_name, report.bits_per_weight,
             report.tensor_types)
    return report
