"""GGUF files through llama.cpp: the one place that loads a GGUF, reads its header, and scores continuations.

    llm = load_llama(Path("models/gguf/model-q4_k_m.gguf"), threads=2, n_ctx=512, logits_all=True)
    log_probs = continuation_log_probs(llm, prompt_ids, answer_ids)      # (n_answer, n_vocab), float64
    nll = continuation_nll(llm, prompt_ids, answer_ids)                  # perplexity = exp(nll / n_answer)

Used by the GGUF engine (generation, `score`), the quantize stage's verify and benchmark, and serving.
Scoring needs the logits of every position (`logits_all=True`, n_ctx x n_vocab floats).
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from stages.errors import StageError


class GGUFFile(gguf.GGUFReader):
    """gguf's reader over a plain ndarray view of its memmap: slicing a np.memmap runs __array_finalize__ on
    every one of the ~250k header slices of a 49k-token vocabulary (3-4x slower); the view shares the mapping."""

    @property
    def data(self) -> np.ndarray:
        return self._plain_data

    @data.setter
    def data(self, value: np.ndarray) -> None:
        self._plain_data = value.view(np.ndarray)


def check_gguf_structure(path: Path) -> gguf.GGUFReader:
    """Parse the header and make sure every tensor's bytes lie inside the file (catches truncation)."""
    path = Path(path)
    if not path.is_file():
        raise StageError(f"{path}: GGUF file not found")
    size = path.stat().st_size
    try:
        reader = GGUFFile(path)
    except (ValueError, IndexError, KeyError, OSError) as e:
        raise StageError(f"{path}: not a readable GGUF ({size} bytes; truncated or corrupt: "
                         f"{str(e).splitlines()[0][:120]}); re-run `domain-llm quantize`") from None
    if not reader.tensors:
        raise StageError(f"{path}: GGUF has no tensors; re-run `domain-llm quantize`")
    end = max(int(t.data_offset) + int(t.n_bytes) for t in reader.tensors)
    if end > size:
        raise StageError(f"{path}: truncated GGUF (tensor data needs {end} bytes, file has {size}); "
                         "re-run `domain-llm quantize`")
    return reader


def load_llama(path: Path, threads: int = 0, n_ctx: int = 512, logits_all: bool = False, f32_kv: bool = False,
               vocab_only: bool = False, lora_path: str | None = None, flash_attn: bool = False):
    """llama_cpp.Llama for `path`; StageError (saying what is wrong with the file) when llama.cpp refuses it.

    llama.cpp itself checks that every tensor lies inside the file; the slower GGUFReader walk only runs to
    explain a failure. f32_kv: an f32 KV cache, for exact comparisons with torch (llama.cpp's default is f16).
    lora_path: a GGUF LoRA adapter applied to the context (scale 1)."""
    from llama_cpp import Llama

    path = Path(path)
    if not path.is_file():
        raise StageError(f"{path}: GGUF model file not found; build it with `dvc repro quantize` "
                         "or pass another file (e.g. serve.model=PATH)")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise StageError(f"{path}: not a GGUF file (bad magic bytes); the file is corrupt or of another "
                             "format - rebuild it with `dvc repro quantize`")
    kv = {"type_k": 0, "type_v": 0} if f32_kv else {}  # 0 = GGML_TYPE_F32
    try:
        return Llama(str(path), n_ctx=n_ctx, n_threads=threads or None, n_threads_batch=threads or None,
                     logits_all=logits_all, vocab_only=vocab_only, lora_path=lora_path, verbose=False,
                     flash_attn=flash_attn, **kv)
    except (ValueError, RuntimeError):
        check_gguf_structure(path)  # raises the specific reason (truncated, unreadable header)
        raise StageError(f"{path}: llama.cpp could not load this GGUF (corrupt, truncated or unsupported); "
                         "rebuild it with `dvc repro quantize`") from None


def quantization_name(file_type: str | int | None) -> str:
    """general.file_type (an int) as llama.cpp's name, e.g. 3 -> "Q4_1"."""
    if file_type is None:
        return "unknown"
    try:
        return gguf.LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
    except ValueError:
        return f"file_type {file_type}"


def continuation_log_probs(llm, context: list[int], target: list[int]) -> np.ndarray:
    """log-softmax over the vocabulary at each target position, (len(target), n_vocab) float64, for `target`
    following `context` (at least one token). `llm` must have been loaded with logits_all=True."""
    if not context:
        raise ValueError("context must hold at least one token: nothing predicts the first one")
    if len(context) + len(target) > llm.n_ctx():
        raise StageError(f"prompt + continuation = {len(context) + len(target)} tokens exceed the context window "
                         f"({llm.n_ctx()}); raise n_ctx or shorten the example")
    llm.reset()
    llm.eval(list(context) + list(target))
    start = len(context) - 1  # logits at position i predict token i + 1
    logits = np.asarray(llm.scores[start: start + len(target)], dtype=np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def continuation_nll(llm, context: list[int], target: list[int]) -> float:
    """Sum of -log p(target token | everything before it), in nats."""
    if not target:
        return 0.0
    log_probs = continuation_log_probs(llm, context, target)
    return float(-log_probs[np.arange(len(target)), target].sum())
