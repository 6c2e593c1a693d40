"""GGUF engine: llama.cpp (llama-cpp-python) behind the `Engine` interface.

    from stages.inference import load_engine
    engine = load_engine("gguf", "models/gguf/model-q4_k_m.gguf", threads=2, n_ctx=2048)

Prompts are token ids made once by the model's chat contract (template and BOS rule from the GGUF metadata),
never text tokenized again by llama-cpp-python's completion API (which added a second BOS after templates
that render one). Generation is a token loop over `Llama.generate`: it stops on the contract's end-of-turn
ids and llama.cpp's end-of-generation tokens, on a stop string, at max_new_tokens, or when asked to.
Scoring uses a second context with logits for every position, created on the first `score()` call.
"""

from __future__ import annotations

import atexit
import codecs
import logging
import random
import threading
from collections.abc import Generator
from pathlib import Path

from stages.errors import StageError
from stages.inference.chat import ChatContract
from stages.inference.gguf import continuation_nll, load_llama, quantization_name
from stages.inference.types import (
    ChatMixin,
    Generation,
    SamplingParams,
    ShouldStop,
    StopStringFilter,
    TextStream,
)
from stages.manifest import served_model_facts

log = logging.getLogger(__name__)


class GGUFEngine(ChatMixin):
    name = "gguf"
    max_batch_size = 1  # one sequence at a time

    def __init__(self, path: Path, threads: int = 0, n_ctx: int = 2048):
        import llama_cpp

        self.path = Path(path)
        self.threads = threads
        self.n_ctx = n_ctx
        self.llm = load_llama(self.path, threads=threads, n_ctx=n_ctx)
        self._scorer = None
        self.contract = ChatContract.from_gguf(self.llm)
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm._model.model)
        self._is_eog = llama_cpp.llama_vocab_is_eog
        self._stop_ids = frozenset(self.contract.end_of_turn_ids)
        self.served = served_model_facts(self.path)
        if not self.contract.template:
            log.warning("%s has no tokenizer.chat_template: chat requests will fail, raw prompts work", self.path)
        # Free the contexts before interpreter teardown; llama-cpp-python's __del__ at exit prints tracebacks.
        atexit.register(self.close)

    def close(self) -> None:
        for llm in (self._scorer, self.llm):
            if llm is not None:
                llm.close()
        self._scorer = None

    # -- tokens ---------------------------------------------------------------------------------------------
    def _tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) if text else []

    def prompt_ids(self, prompt: str) -> list[int]:
        return self.contract.prompt_ids(prompt, self._tokenize)

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text))

    def is_end_of_turn(self, token: int) -> bool:
        return token in self._stop_ids or bool(self._is_eog(self._vocab, token))

    # -- generation -----------------------------------------------------------------------------------------
    def generate(self, prompts: list[str], params: SamplingParams,
                 should_stop: ShouldStop | None = None) -> list[Generation]:
        results = []
        for prompt in prompts:
            if should_stop is not None and should_stop():
                results.append(Generation("", 0, 0, "stop"))
                continue
            pieces = self._pieces(self.prompt_ids(prompt), params, should_stop or (lambda: False))
            while True:
                try:
                    next(pieces)
                except StopIteration as done:
                    results.append(done.value)
                    break
        return results

    def stream(self, prompt: str, params: SamplingParams, should_stop: ShouldStop | None = None) -> TextStream:
        """Pieces of text; generation stops between tokens on close() or when `should_stop()` says so (a
        server's deadline or a client gone), also while tokens produce no text yet."""
        cancel = threading.Event()
        stop = cancel.is_set if should_stop is None else (lambda: cancel.is_set() or should_stop())
        return TextStream(self._pieces(self.prompt_ids(prompt), params, stop), cancel)

    def _pieces(self, ids: list[int], params: SamplingParams,
                should_stop: ShouldStop) -> Generator[str, None, Generation]:
        if len(ids) + 1 > self.n_ctx:
            raise StageError(f"prompt has {len(ids)} tokens, more than the context window ({self.n_ctx}); "
                             "shorten it or raise n_ctx")
        self.llm.set_seed(params.seed if params.seed is not None else random.getrandbits(32))
        # min_p/repeat_penalty neutral so sampling means what SamplingParams says (llama-cpp-python's defaults
        # add min_p 0.05 and top_k 40); temperature 0 is greedy; top_k 0 is no cut in llama.cpp.
        tokens = self.llm.generate(ids, temp=max(params.temperature, 0.0), top_p=params.top_p, top_k=params.top_k,
                                   min_p=0.0, repeat_penalty=1.0, reset=True)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stop_filter = StopStringFilter(params.stop)
        text, n_completion, finish = "", 0, "length"
        budget = min(params.max_new_tokens, self.n_ctx - len(ids))
        if budget <= 0:
            tokens.close()
            return Generation("", len(ids), 0, "length")
        try:
            for token in tokens:
                if self.is_end_of_turn(token):
                    finish = "stop"
                    break
                n_completion += 1
                piece = stop_filter.feed(decoder.decode(self.llm._model.detokenize([token])))
                if piece:
                    text += piece
                    yield piece
                if stop_filter.stopped or should_stop():
                    finish = "stop"
                    break
                if n_completion >= budget:
                    break
        finally:
            tokens.close()
        if not stop_filter.stopped:
            # Bytes of a character cut by the token limit stay undecoded (no U+FFFD at the end).
            tail = stop_filter.flush()
            if tail:
                text += tail
                yield tail
        return Generation(text, len(ids), n_completion, finish)

    # -- likelihoods ----------------------------------------------------------------------------------------
    def score(self, prompt: str, continuation: str, close_turn: bool = False) -> tuple[float, int]:
        """Sum of -log p(continuation token | everything before it), in nats, and the number of tokens.
        close_turn: the continuation is an assistant answer, followed by the model's end-of-turn token."""
        context, target = self.contract.scored_ids(prompt, continuation, self._tokenize, close_turn)
        if not target:
            return 0.0, 0
        if self._scorer is None:
            self._scorer = load_llama(self.path, threads=self.threads, n_ctx=self.n_ctx, logits_all=True)
        return continuation_nll(self._scorer, context, target), len(target)

    def info(self) -> dict:
        meta = self.llm.metadata
        arch = meta.get("general.architecture", "unknown")
        return {
            "name": meta.get("general.name") or self.path.stem,
            "type": "gguf",
            "architecture": arch,
            "quantization": quantization_name(meta.get("general.file_type")),
            "context_length": int(meta.get(f"{arch}.context_length", self.n_ctx)),
            "n_ctx": self.n_ctx,
            "parameters": int(self.llm._model.n_params()),
            "size_bytes": self.path.stat().st_size,
            "path": str(self.path),
            "domain": self.served["domain"],
            "system_prompt": self.served["system_prompt"],
            "chat_template": bool(self.contract.template),
            "end_of_turn": list(self.contract.stop_strings),
        }
