"""One generation interface over transformers (HF folder) and llama.cpp (GGUF file).

Used by `evaluate`, `serving` and `domain-llm generate`; callers never branch on the engine kind.

    from stages.generation import SamplingParams, load_engine
    engine = load_engine("gguf", "models/gguf/model-q4_k_m.gguf", threads=2)
    [g] = engine.chat([[{"role": "user", "content": "What is hypertension?"}]], SamplingParams(max_new_tokens=64))
    print(g.text, g.finish_reason)
    nll, n = engine.score(prompt, " reference answer")     # perplexity = exp(nll / n)

Engines are not thread-safe (a llama.cpp context must never be used from two threads): the server gives
one engine to one worker thread. Heavy libraries (torch, transformers) are imported only by the HF engine,
so the GGUF engine starts in about a second.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from stages.errors import StageError

# SmolLM2/ChatML end-of-turn marker; generation stops there even when a tokenizer does not list it as eos.
END_OF_TURN = "<|im_end|>"
# Used only when a model carries no chat template (a warning is logged): plain ChatML.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

ShouldStop = Callable[[], bool]


@dataclass
class SamplingParams:
    """How to sample. temperature 0 means greedy; top_k 0 means no top-k cut."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (eos, end of turn, a stop string or cancelled) | "length"


class Engine(Protocol):
    name: str  # "hf" | "gguf" | "openai_upstream"

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str: ...

    def generate(self, prompts: list[str], params: SamplingParams,
                 should_stop: ShouldStop | None = None) -> list[Generation]: ...

    def chat(self, conversations: list[list[dict]], params: SamplingParams,
             should_stop: ShouldStop | None = None) -> list[Generation]: ...

    def stream(self, prompt: str, params: SamplingParams) -> TextStream: ...

    def stream_chat(self, messages: list[dict], params: SamplingParams) -> TextStream: ...

    def score(self, prompt: str, continuation: str) -> tuple[float, int]: ...

    def count_tokens(self, text: str) -> int: ...

    def info(self) -> dict: ...


class TextStream(Iterator[str]):
    """Text pieces of one generation. Once exhausted, `.result` holds the Generation (counts, finish_reason).

    `close()` (from the consuming thread) stops the generation after the current token: a server calls it
    when its client disconnects or the request times out.
    """

    def __init__(self, pieces: Generator[str, None, Generation], cancel: threading.Event | None = None):
        self._pieces = pieces
        self.cancel = cancel or threading.Event()
        self.result: Generation | None = None
        self.text = ""

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        try:
            piece = next(self._pieces)
        except StopIteration as done:
            self.result = done.value
            raise
        self.text += piece
        return piece

    def close(self) -> None:
        self.cancel.set()
        self._pieces.close()


class StopStringFilter:
    """Cuts streamed text at the first stop string, holding back just enough characters that a stop string
    split across two pieces is never emitted."""

    def __init__(self, stop: tuple[str, ...]):
        self.stop = tuple(s for s in stop if s)
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.buffer = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        self.buffer += piece
        cut = min((i for i in (self.buffer.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            out, self.buffer, self.stopped = self.buffer[:cut], "", True
            return out
        keep = min(self.hold, len(self.buffer))
        out, self.buffer = self.buffer[:len(self.buffer) - keep], self.buffer[len(self.buffer) - keep:]
        return out

    def flush(self) -> str:
        out, self.buffer = self.buffer, ""
        return out


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Text up to the first stop string, and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[:min(cuts)], True) if cuts else (text, False)


class ChatMixin:
    """`chat` and `stream_chat` in terms of `apply_chat_template`, `generate` and `stream`."""

    def chat(self, conversations: list[list[dict]], params: SamplingParams,
             should_stop: ShouldStop | None = None) -> list[Generation]:
        prompts = [self.apply_chat_template(messages) for messages in conversations]
        return self.generate(prompts, params, should_stop)

    def stream_chat(self, messages: list[dict], params: SamplingParams) -> TextStream:
        return self.stream(self.apply_chat_template(messages), params)


def check_model_path(kind: str, path: Path) -> None:
    """Fail with one clear line before a library prints pages of errors about a bad path."""
    if kind == "gguf":
        if not path.is_file():
            raise StageError(f"{path}: GGUF model file not found; build it with `dvc repro quantize` "
                             "or pass another file (e.g. serve.model=PATH)")
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise StageError(f"{path}: not a GGUF file (bad magic bytes); the file is corrupt or of "
                                 "another format - rebuild it with `dvc repro quantize`")
    elif kind == "hf":
        if not (path / "config.json").is_file():
            raise StageError(f"{path}: no HF model folder here (config.json missing); run `dvc repro train` "
                             "or pass a folder holding config.json + *.safetensors")
    else:
        raise StageError(f"unknown engine kind {kind!r}: use 'hf' (model folder) or 'gguf' (file)")


def load_engine(kind: str, path: str | Path, *, threads: int = 0, n_ctx: int = 2048, batch_size: int = 8,
                adapter: str | Path | None = None) -> Engine:
    """Load an engine. kind "hf": a transformers folder (+ optional LoRA adapter folder), batched;
    kind "gguf": a llama.cpp file. threads 0 = library default. Missing or corrupt model -> StageError."""
    path = Path(path)
    check_model_path(kind, path)
    if kind == "gguf":
        from stages.generation_gguf import GGUFEngine

        return GGUFEngine(path, threads=threads, n_ctx=n_ctx)
    from stages.generation_hf import HFEngine

    return HFEngine(path, threads=threads, batch_size=batch_size, adapter=adapter)
