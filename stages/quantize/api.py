"""The seed's GGUF API as plain functions (each output written to a temp file, verified, then renamed).

    from stages.quantize.api import convert_and_quantize, benchmark_quantization, test_quantized_model
    files = convert_and_quantize("models/merged", "models/gguf", types=["q4_k_m", "q8_0"], threads=2)
    print(test_quantized_model(files["q4_k_m"], "What is hypertension?"))
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from stages.errors import StageError
from stages.inference.gguf import load_llama
from stages.quantize.benchmark import BenchmarkArgs, benchmark_files
from stages.quantize.convert import convert_hf_to_gguf
from stages.quantize.quantize import QuantizeReport, file_type, quantize_file
from stages.quantize.verify import check_tokenizer_parity, verify_gguf

log = logging.getLogger(__name__)

DEFAULT_TYPES = ("q4_k_m", "q5_k_m", "q8_0")


def convert_to_gguf(model_dir: str | Path, output_path: str | Path, outtype: str = "f16",
                    llama_cpp_path: str | None = None, tokenizer_pre: str = "auto", threads: int = 0,
                    probe_texts: Sequence[str] = ()) -> Path:
    """HF folder -> GGUF; the file is only moved into place after it loads, generates, and tokenizes like
    the HF tokenizer."""
    model_dir, output_path = Path(model_dir), Path(output_path)
    with tempfile.TemporaryDirectory(prefix=".convert.", dir=output_path.parent if output_path.parent.exists()
                                     else None) as tmp:
        staged = Path(tmp) / output_path.name
        convert_hf_to_gguf(model_dir, staged, outtype=outtype, tokenizer_pre=tokenizer_pre,
                           llama_cpp_path=llama_cpp_path)
        verify_gguf(staged, threads=threads)
        mismatches = check_tokenizer_parity(model_dir, staged, probe_texts)
        if mismatches:
            text, hf_ids, gguf_ids = mismatches[0]
            raise StageError(f"{model_dir}: the GGUF tokenizes {len(mismatches)} probe strings differently from "
                             f"the HF tokenizer (first: {text!r}: {hf_ids[:12]} vs {gguf_ids[:12]}); set "
                             "quantize.tokenizer_pre to llama.cpp's pre-tokenizer name for this model")
        log.info("tokenizer parity with %s: all probe strings tokenize identically", model_dir)
        output_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(staged, output_path)
    return output_path


def quantize_gguf(gguf_path: str | Path, output_path: str | Path, quant_type: str = "q4_k_m",
                  threads: int = 0, tensor_types: Mapping[str, str] | None = None,
                  imatrix: Mapping[str, np.ndarray] | None = None) -> QuantizeReport:
    """GGUF -> quantized GGUF of `quant_type` (any llama.cpp type name), with optional per-tensor type
    overrides ({regex: GGML type}) and importance matrix; verified before it is kept."""
    output_path = Path(output_path)
    report = quantize_file(Path(gguf_path), output_path, quant_type, threads=threads, tensor_types=tensor_types,
                           imatrix=imatrix)
    try:
        verify_gguf(output_path, threads=threads)
    except StageError:
        output_path.unlink(missing_ok=True)
        raise
    return report


def convert_and_quantize(model_dir: str | Path, output_dir: str | Path, types: Sequence[str] = DEFAULT_TYPES,
                         outtype: str = "f16", threads: int = 0, llama_cpp_path: str | None = None,
                         tokenizer_pre: str = "auto", probe_texts: Sequence[str] = (),
                         tensor_types: Mapping[str, Mapping[str, str]] | None = None,
                         imatrix: Mapping[str, np.ndarray] | None = None
                         ) -> tuple[dict[str, Path], dict[str, dict]]:
    """model-<outtype>.gguf plus model-<type>.gguf for each type in `output_dir`; `tensor_types` is
    {type: {tensor regex: GGML type}}. Returns ({type: path} with the reference first, {type: quantize report})."""
    tensor_types = tensor_types or {}
    for name in types:
        file_type(name, have_imatrix=bool(imatrix))  # reject unknown names before minutes of conversion
    for name in tensor_types:
        try:
            file_type(name, have_imatrix=True)
        except StageError as err:
            raise StageError(f"quantize.tensor_types.{name}: keys are quantize.types names; {err}") from err
        if name not in types:
            log.info("quantize.tensor_types.%s: %s is not in quantize.types, overrides unused", name, name)
    output_dir = Path(output_dir)
    reference = convert_to_gguf(model_dir, output_dir / f"model-{outtype}.gguf", outtype=outtype,
                                llama_cpp_path=llama_cpp_path, tokenizer_pre=tokenizer_pre, threads=threads,
                                probe_texts=probe_texts)
    files, reports = {outtype: reference}, {}
    for name in types:
        if name == outtype:
            continue
        started = time.perf_counter()
        report = quantize_gguf(reference, output_dir / f"model-{name}.gguf", name, threads=threads,
                               tensor_types=tensor_types.get(name), imatrix=imatrix)
        reports[name] = asdict(report)
        files[name] = output_dir / f"model-{name}.gguf"
        log.info("quantized %s in %.1f s", name, time.perf_counter() - started)
    return files, reports


def benchmark_quantization(reference: str | Path, quantized: dict[str, str | Path], records: list[dict],
                           args: BenchmarkArgs | None = None, reference_type: str = "f16") -> dict[str, dict]:
    """Size, ΔPPL, KL, top-1 agreement and speed of each quantized file vs the reference."""
    return benchmark_files(Path(reference), {k: Path(v) for k, v in quantized.items()}, records,
                           args or BenchmarkArgs(), reference_type=reference_type)


def load_quantized_model(path: str | Path, threads: int = 0, n_ctx: int = 2048):
    """A llama_cpp.Llama for the GGUF (StageError for a missing, truncated or corrupt file)."""
    return load_llama(Path(path), threads=threads, n_ctx=n_ctx)


def test_quantized_model(path: str | Path, question: str = "What is hypertension?", system: str | None = None,
                         max_tokens: int = 64, threads: int = 0) -> dict:
    """One greedy chat answer through the GGUF engine (the model's own chat contract):
    {"text", "completion_tokens", "finish_reason", "seconds"}."""
    from stages.inference import SamplingParams
    from stages.inference.gguf_engine import GGUFEngine

    engine = GGUFEngine(Path(path), threads=threads, n_ctx=1024)
    try:
        messages = ([{"role": "system", "content": system}] if system else []) + \
            [{"role": "user", "content": question}]
        started = time.perf_counter()
        [g] = engine.chat([messages], SamplingParams(max_new_tokens=max_tokens))
        seconds = time.perf_counter() - started
    finally:
        engine.close()
    return {"text": g.text, "completion_tokens": g.completion_tokens, "finish_reason": g.finish_reason,
            "seconds": round(seconds, 3)}


test_quantized_model.__test__ = False  # a public API name, not a pytest test
