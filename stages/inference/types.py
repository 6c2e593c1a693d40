"""Shared types of the inference package: sampling parameters, results, the Engine protocol, text streams.

Every consumer (evaluate, quantize, `domain-llm generate`, serving) talks to an Engine and never branches on
its kind. Engines are not thread-safe (a llama.cpp context must never be used from two threads): the server
gives one engine to one worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from stages.inference.chat import ChatContract

ShouldStop = Callable[[], bool]


class EngineClosed(RuntimeError):
    """The engine stopped (shutdown) before or while this request ran."""


# Generated tokens the repeat/frequency/presence penalties look back over (llama.cpp's default window). Only the
# completion: an answer repeats its question's words by design ("Psoriasis causes ..."), and a penalty primed with
# the prompt (transformers' repetition_penalty; llama.cpp primed with the prompt's tail) cut the fine-tuned
# healthcare model's test ROUGE-L from 0.448 to 0.420 at 1.1, where over the completion alone it rose to 0.476.
PENALTY_LAST_N = 64


@dataclass
class SamplingParams:
    """How to sample. temperature 0 means greedy; top_k 0, min_p 0 and penalties 1/0/0 are off.
    Penalties look at the last PENALTY_LAST_N generated tokens, never at the prompt (both engines).
    grammar: llama.cpp GBNF the output must match (GGUF engine; e.g. from a JSON schema)."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    grammar: str | None = None
    # Never end on the end of turn: decode exactly max_new_tokens (evaluate's fixed-length timing pass). An
    # engine that does not honour it ends as usual; Generation.completion_tokens says how many were decoded.
    ignore_eos: bool = False
    # Record each generated token's log-probability and this many alternatives (0-20; None = off): the
    # GGUF engine fills Generation.logprobs and gives streamed pieces as logprobs.Piece.
    logprobs: int | None = None


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (eos, end of turn, a stop string or cancelled) | "length"
    logprobs: list | None = None  # logprobs.TokenLogprob per generated token, when params.logprobs was set
    # time.monotonic() when the first token was sampled and when the generation ended (GGUF engine): a
    # server's time-to-first-token and per-token time of non-streamed answers too
    first_token_at: float | None = field(default=None, compare=False)  # two runs of one answer are equal
    ended_at: float | None = field(default=None, compare=False)


class Engine(Protocol):
    name: str  # "hf" | "gguf" | "openai_upstream"
    max_batch_size: int  # prompts one generate() call decodes together (1: one after another)
    # Threads that may call the engine at once; absent = 1. A server gives it that many worker threads.
    # concurrent_requests: int

    # A ChatPrompt (chat.py, a str): pass it on unchanged to generate/stream/score/prompt_ids, which then
    # tokenize control-token text inside its messages as plain text; `+` or slicing makes it a raw prompt.
    # tools: OpenAI-style tool definitions, for templates that render them (serving's tool calls).
    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True,
                            tools: list[dict] | None = None) -> str: ...

    def generate(self, prompts: list[str], params: SamplingParams,
                 should_stop: ShouldStop | None = None) -> list[Generation]: ...

    def chat(self, conversations: list[list[dict]], params: SamplingParams,
             should_stop: ShouldStop | None = None) -> list[Generation]: ...

    def stream(self, prompt: str, params: SamplingParams, should_stop: ShouldStop | None = None) -> TextStream: ...

    def stream_chat(self, messages: list[dict], params: SamplingParams,
                    should_stop: ShouldStop | None = None) -> TextStream: ...

    def score(self, prompt: str, continuation: str, close_turn: bool = False) -> tuple[float, int]: ...

    def count_tokens(self, text: str) -> int: ...

    def prompt_ids(self, prompt: str) -> list[int]: ...

    def info(self) -> dict: ...


class TextStream(Iterator[str]):
    """Text pieces of one generation. Once exhausted, `.result` holds the Generation (counts, finish_reason).

    `close()` (from the consuming thread) stops the generation after the current token: a server calls it
    when its client disconnects or the request times out.
    """

    def __init__(self, pieces: Generator[str, None, Generation], cancel: threading.Event | None = None,
                 pipe: Callable[[Callable[[str], None]], Generation] | None = None):
        self._pieces = pieces
        self.cancel = cancel or threading.Event()
        self.result: Generation | None = None
        self.text = ""
        self._pipe = pipe  # the engine's own delivery: pieces handed over by the thread that makes them

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

    def pipe(self, emit: Callable[[str], None], should_stop: ShouldStop | None = None) -> Generation:
        """Hand every piece to `emit` and return the Generation; use either this or iteration, not both.
        An engine that generates on its own thread (GGUF) calls `emit` from that thread, so a server's event
        loop gets each token without waking the thread that waits for the result; `emit` must be quick and
        thread-safe. Stops early when `should_stop()` says so (checked after each piece)."""
        if self._pipe is not None:
            self.result = self._pipe(emit)
            self.text = self.result.text
            return self.result
        for piece in self:
            emit(piece)
            if should_stop is not None and should_stop():
                break
        return self.result or Generation(self.text, 0, 0, "stop")

    def close(self) -> None:
        self.cancel.set()
        self._pieces.close()


class StopStringFilter:
    """Cuts streamed text at the first stop string. Only a tail that could still grow into a stop string is
    held back (a split "<|im_" waits for the next piece; ordinary text goes out at once), so a stop string
    split across pieces is never emitted and the first words are not delayed."""

    def __init__(self, stop: tuple[str, ...]):
        self.stop = tuple(s for s in stop if s)
        self.buffer = ""
        self.stopped = False

    def _partial_tail(self) -> int:
        """Length of the longest tail of the buffer that is a proper prefix of some stop string."""
        longest = 0
        for stop in self.stop:
            for k in range(min(len(stop) - 1, len(self.buffer)), longest, -1):
                if self.buffer.endswith(stop[:k]):
                    longest = k
                    break
        return longest

    def feed(self, piece: str) -> str:
        self.buffer += piece
        cut = min((i for i in (self.buffer.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            out, self.buffer, self.stopped = self.buffer[:cut], "", True
            return out
        keep = self._partial_tail()
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
    """`apply_chat_template`, `chat` and `stream_chat` in terms of the model's chat contract (`self.contract`),
    `generate` and `stream`. A rendered chat is a ChatPrompt: `prompt_ids` adds BOS at most once and reads
    control-token text inside its messages as plain text."""

    contract: ChatContract

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True,
                            tools: list[dict] | None = None) -> str:
        return self.contract.render(messages, add_generation_prompt, tools)

    def chat(self, conversations: list[list[dict]], params: SamplingParams,
             should_stop: ShouldStop | None = None) -> list[Generation]:
        prompts = [self.apply_chat_template(messages) for messages in conversations]
        return self.generate(prompts, params, should_stop)

    def stream_chat(self, messages: list[dict], params: SamplingParams,
                    should_stop: ShouldStop | None = None) -> TextStream:
        return self.stream(self.apply_chat_template(messages), params, should_stop)
