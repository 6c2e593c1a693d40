"""The inference package: one way to run a model, shared by evaluate, quantize, `domain-llm generate` and serving.

    from stages.inference import SamplingParams, load_engine
    engine = load_engine("gguf", "models/gguf/model-q4_k_m.gguf", threads=2)
    [g] = engine.chat([[{"role": "user", "content": "What is hypertension?"}]], SamplingParams(max_new_tokens=64))
    print(g.text, g.finish_reason)
    nll, n = engine.score(prompt, " reference answer")     # perplexity = exp(nll / n)

Modules: `types` (SamplingParams, Generation, Engine, TextStream), `chat` (ChatContract: template, BOS,
end of turn, read from the model), `hf` (transformers), `gguf` (llama.cpp: loading, generation, scoring),
`upstream` (an OpenAI-compatible server), `reranker` (cross-/bi-encoder). Heavy libraries (torch,
transformers) are imported only by `hf` and `reranker`, so the GGUF engine starts in about a second.
"""

from __future__ import annotations

from pathlib import Path

from stages.errors import StageError
from stages.inference.types import (
    ChatMixin,
    Engine,
    Generation,
    SamplingParams,
    ShouldStop,
    StopStringFilter,
    TextStream,
    cut_at_stop,
)

__all__ = ["ChatMixin", "Engine", "Generation", "SamplingParams", "ShouldStop", "StopStringFilter", "TextStream",
           "cut_at_stop", "load_engine"]


def load_engine(kind: str, path: str | Path, *, threads: int = 0, n_ctx: int = 2048, batch_size: int = 8,
                adapter: str | Path | None = None, parallel: int | None = None, kv_unified: bool = False,
                flash_attn: str = "auto", adapters: dict[str, Path] | None = None) -> Engine:
    """Load an engine. kind "hf": a transformers folder (+ optional LoRA adapter folder), `batch_size` prompts
    per forward pass; kind "gguf": a llama.cpp file, `parallel` sequences decoded together (default 1),
    each with `n_ctx` tokens of context, and `adapters` (name -> GGUF LoRA adapter) chosen per request through
    `engine.for_adapter(name)`. threads 0 = library default.
    Missing or corrupt model -> StageError."""
    path = Path(path)
    if kind == "gguf":  # load_llama names a missing, foreign or truncated file in one line
        from stages.inference.gguf_engine import GGUFEngine

        return GGUFEngine(path, threads=threads, n_ctx=n_ctx, parallel=parallel or 1,
                          kv_unified=kv_unified, flash_attn=flash_attn, adapters=adapters)
    if adapters:
        raise StageError("per-request LoRA adapters need the gguf engine (llama.cpp); with hf, merge one "
                         "adapter at load (adapter=FOLDER)")
    if kind != "hf":
        raise StageError(f"unknown engine kind {kind!r}: use 'hf' (model folder) or 'gguf' (file)")
    # Before transformers prints pages of errors about a bad path: one line.
    if not (path / "config.json").is_file():
        raise StageError(f"{path}: no HF model folder here (config.json missing); run `dvc repro train` "
                         "or pass a folder holding config.json + *.safetensors")
    from stages.inference.hf import HFEngine

    return HFEngine(path, threads=threads, batch_size=batch_size, adapter=adapter)
