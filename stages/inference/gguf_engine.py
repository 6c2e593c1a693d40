"""GGUF engine: llama.cpp (llama-cpp-python) behind the `Engine` interface, with continuous batching.

    from stages.inference import load_engine
    engine = load_engine("gguf", "models/gguf/model-q4_k_m.gguf", threads=2, n_ctx=2048, parallel=8)

Prompts are token ids made once by the model's chat contract (template and BOS rule from the GGUF metadata;
control-token text inside messages tokenized as plain text), never text tokenized again by llama-cpp-python's
completion API (which added a second BOS after templates that render one). Generation runs in
`SlotScheduler`s (slots.py), each on its own owner thread: up to `parallel` sequences share one llama.cpp
context and one `llama_decode` per step, each with `n_ctx` tokens of context (prompt + completion); requests
of different adapters go to different schedulers ("lanes", lanes.py: `lanes` + `spare_lanes`) decoding at once. `generate`, `stream`
and `chat` may be called from any number of threads: they only submit sequences and wait for their events. A
sequence stops on the contract's end-of-turn ids and llama.cpp's end-of-generation tokens, on a stop string,
at max_new_tokens, or when `should_stop()` says so.
Scoring uses a second context with logits for every position, created on the first `score()` call.

LoRA adapters (`adapters={"legal": path, ...}`, GGUF adapters of this base model) are loaded once onto the one
model, and more while serving (`load_adapter`, `unload_adapter`); a request names one (`adapter=`, or through
`for_adapter(name)`, an Engine that always uses it) and is batched with the other requests of that adapter.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Generator
from pathlib import Path

from stages.errors import StageError
from stages.inference.adapters import AdapterFacts, read_adapter_facts
from stages.inference.chat import ChatContract, llama_tokenizer
from stages.inference.gguf import continuation_nll, load_llama, quantization_name
from stages.inference.lanes import Lanes
from stages.inference.logprobs import TokenLogprob, log_softmax, top_of
from stages.inference.slots import FLASH_ATTN, SequenceRequest, SlotScheduler
from stages.inference.types import ChatMixin, EngineClosed, Generation, SamplingParams, ShouldStop, TextStream
from stages.manifest import served_model_facts

log = logging.getLogger(__name__)

# The Llama object is kept for its model, vocabulary and metadata; its own context is never used for
# generation, so it gets the smallest useful size.
METADATA_CONTEXT = 64
EXIT_WAIT_S = 10.0  # at interpreter exit: a step takes seconds at most; longer means stuck


class GGUFEngine(ChatMixin):
    name = "gguf"

    def __init__(self, path: Path, threads: int = 0, n_ctx: int = 2048, parallel: int = 1,
                 kv_unified: bool = False, flash_attn: str = "auto", adapters: dict[str, Path] | None = None,
                 lanes: int = 1, spare_lanes: int = 0, resident_adapters: int = 0):
        import llama_cpp

        if parallel < 1:
            raise StageError(f"parallel={parallel}: must be >= 1 (sequences decoded together)")
        if lanes < 1 or spare_lanes < 0:
            raise StageError(f"lanes={lanes}, spare_lanes={spare_lanes}: lanes must be >= 1, spare_lanes >= 0")
        lanes = min(lanes, parallel)  # every lane holds at least one sequence
        if flash_attn not in FLASH_ATTN:
            raise StageError(f"flash_attn={flash_attn!r}: use one of {', '.join(FLASH_ATTN)}")
        self.path = Path(path)
        self.threads = threads
        self.n_ctx = n_ctx  # per sequence
        self.max_batch_size = parallel
        self.flash_attn = flash_attn
        self.concurrent_requests = parallel  # callers at once: each only submits and waits
        # Checked before loading the model: a bad adapter path fails at once, naming the file.
        self.adapters: dict[str, AdapterFacts] = {name: read_adapter_facts(Path(file), name)
                                                  for name, file in (adapters or {}).items()}
        self.llm = load_llama(self.path, threads=threads, n_ctx=METADATA_CONTEXT)
        self._scorers: dict[tuple[str | None, bool], object] = {}  # (adapter, like_generation) -> Llama
        self._score_lock = threading.Lock()
        self.contract = ChatContract.from_gguf(self.llm)
        # Prompts and raw text parse control tokens; message text inside a rendered chat never does (chat.py).
        self._tokenize, self._plain = llama_tokenizer(self.llm), llama_tokenizer(self.llm, control=False)
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm._model.model)
        self._is_eog = llama_cpp.llama_vocab_is_eog
        self._stop_ids = frozenset(self.contract.end_of_turn_ids)
        self.served = served_model_facts(self.path)
        if not self.contract.template:
            log.warning("%s has no tokenizer.chat_template: chat requests will fail, raw prompts work", self.path)
        model = self.llm._model
        # name -> llama_adapter_lora pointer of the adapters resident in llama.cpp; shared by every lane, which
        # reads it at each request. At most `resident_adapters` (0: all): llama.cpp sizes every context's graph
        # buffers for all the adapters loaded on the model at once, so with 64 adapters and 8 lanes those
        # buffers outgrew the adapters themselves; the others are loaded on their first request, replacing the
        # least recently used one with nothing in flight.
        self._loaded: dict[str, object] = {}
        self.resident_adapters = resident_adapters
        self._last_use: dict[str, float] = {}

        def make_lane(slots: int, threads: int, prefix_holders: int, threads_now=None) -> SlotScheduler:
            params = type(self.llm.context_params).from_buffer_copy(self.llm.context_params)
            params.n_threads = params.n_threads_batch = threads
            return SlotScheduler(model, params, slots, n_ctx, self.is_end_of_turn,
                                 lambda token: model.detokenize([token]), kv_unified=kv_unified,
                                 flash_attn=flash_attn, adapters=self._loaded, n_holders=prefix_holders,
                                 threads_now=threads_now)
        try:
            for name, facts in self.adapters.items():  # every file is checked by llama.cpp now, not at a request
                pointer = self._load_adapter(facts)
                if resident_adapters and len(self._loaded) >= resident_adapters:
                    llama_cpp.llama_adapter_lora_free(pointer)
                else:
                    self._loaded[name] = pointer
            # Spare lanes only serve adapter groups: a server started without adapters makes none.
            self.scheduler = Lanes(make_lane, lanes, parallel, int(self.llm.context_params.n_threads),
                                   spare_lanes if self.adapters else 0)
        except ValueError:  # llama.cpp could not allocate the KV cache
            self.llm.close()
            raise StageError(f"{self.path}: llama.cpp could not create a context of {parallel + 2}"
                             f" sequences x {n_ctx} tokens; lower serve.n_ctx or serve.parallel") from None
        except StageError:
            self.llm.close()
            raise
        self._adapter_lock = threading.Lock()  # one load or unload at a time
        self._stopping = False  # told to stop; the owner threads have not all ended yet
        self._open = True
        self._close_lock = threading.Lock()
        # Free the contexts before interpreter teardown; llama-cpp-python's __del__ at exit prints tracebacks.
        # A decode thread still stuck at exit is waited for briefly only: nothing would free it anyway.
        atexit.register(self.close, EXIT_WAIT_S)

    def _load_adapter(self, facts: AdapterFacts):
        """Load an adapter onto the model (freed with it)."""
        import llama_cpp

        adapter = llama_cpp.llama_adapter_lora_init(self.llm._model.model, str(facts.path).encode())
        if not adapter:
            raise StageError(f"{facts.path}: llama.cpp could not apply this LoRA adapter to {self.path.name} "
                             "(made for another base model or architecture); publish adapters and base together")
        return adapter

    def load_adapter(self, name: str, path: Path) -> AdapterFacts:
        """Serve one more adapter (any thread, while serving): checked and loaded before it is visible, so a bad
        file raises StageError and changes nothing. An adapter of that name already loaded is an error."""
        facts = read_adapter_facts(Path(path), name)
        with self._adapter_lock:
            if name in self.adapters:
                raise StageError(f"adapter {name!r} is already loaded ({self.adapters[name].path}); unload it first")
            self._make_resident(name, facts)  # the lanes see it from the next request on
            self.adapters = {**self.adapters, name: facts}
        return facts

    def _make_resident(self, name: str, facts: AdapterFacts | None) -> None:
        """Load `name` into llama.cpp (facts None: it is resident already) and free the least recently used
        resident adapters with nothing in flight while more than `resident_adapters` would be loaded (none idle:
        the cap is exceeded until one is). Holding _adapter_lock."""
        import llama_cpp

        def over(extra: int) -> list[str]:
            if not self.resident_adapters or len(self._loaded) + extra <= self.resident_adapters:
                return []
            idle = sorted((n for n in self._loaded if n != name and not self.scheduler.work(n)),
                          key=lambda n: self._last_use.get(n, 0.0))
            return idle[:len(self._loaded) + extra - self.resident_adapters]
        evict = over(0 if facts is None else 1)
        if not evict and facts is None:
            return
        with self.scheduler.paused():  # llama.cpp's adapter set must not change under a decode
            for old in evict:
                for lane in self.scheduler.lanes:
                    lane.forget_adapter(old)
                llama_cpp.llama_adapter_lora_free(self._loaded.pop(old))
            if facts is not None:
                self._loaded[name] = self._load_adapter(facts)

    def _submit(self, request: SequenceRequest) -> None:
        """To the lanes; an adapter not resident in llama.cpp is loaded first. Under the adapter lock, so that no
        load, eviction or unload happens between the check and the request being counted as in flight."""
        if request.adapter is None:
            self.scheduler.submit(request)
            return
        with self._adapter_lock:
            facts = self.adapters.get(request.adapter)
            if facts is None:
                raise StageError(f"adapter {request.adapter!r} is not loaded "
                                 f"(loaded: {', '.join(self.adapters) or 'none'})")
            self._make_resident(request.adapter, None if request.adapter in self._loaded else facts)
            self._last_use[request.adapter] = time.monotonic()
            self.scheduler.submit(request)

    def unload_adapter(self, name: str, timeout_s: float = 120.0) -> AdapterFacts:
        """Stop serving an adapter and free it: new requests for it are refused at once, the ones in flight
        finish (at most `timeout_s`), then every lane drops what it kept of it. Other adapters are untouched."""
        import llama_cpp

        with self._adapter_lock:
            if name not in self.adapters:
                raise StageError(f"adapter {name!r} is not loaded (loaded: {', '.join(self.adapters) or 'none'})")
            facts = self.adapters[name]
            self.adapters = {k: v for k, v in self.adapters.items() if k != name}  # refused from here on
        # Its requests in flight finish on the pointer, which stays resident until then (other adapters' requests
        # are submitted meanwhile: the lock is not held).
        deadline = time.monotonic() + timeout_s
        while self.scheduler.work(name) and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._adapter_lock:
            if self.scheduler.work(name):  # still in use: leave it allocated rather than free what a decode reads
                log.warning("adapter %r: requests still running after %.0f s; not freed", name, timeout_s)
                return facts
            if name in self._loaded:
                with self.scheduler.paused():  # the owner threads wait: their contexts may be touched from here
                    for lane in self.scheduler.lanes:
                        lane.forget_adapter(name)
                    llama_cpp.llama_adapter_lora_free(self._loaded.pop(name))
            self._last_use.pop(name, None)
            with self._score_lock:
                for key in [k for k in self._scorers if k[0] == name]:
                    self._scorers.pop(key).close()
        return facts

    def for_adapter(self, name: str | None):
        """This engine with every request on adapter `name` (None: the base model itself)."""
        if name is None:
            return self
        if name not in self.adapters:
            raise StageError(f"adapter {name!r} is not loaded (loaded: {', '.join(self.adapters) or 'none'})")
        return AdapterEngine(self, name)

    def close(self, timeout_s: float = 60.0) -> None:
        """Stop the decode thread (requests in flight or waiting end with EngineClosed), then free the model
        and contexts. A decode thread that does not stop within `timeout_s` is still using them: nothing is
        freed, and a later close() frees them only once that thread has stopped."""
        with self._close_lock:
            if self._open:
                self._open, self._stopping = False, True
                self.scheduler.stop()
            if self._stopping:
                if not self.scheduler.join(timeout_s):  # stuck in one long decode: freeing under it would crash
                    log.warning("%s: a decode thread did not stop within %.0f s; the model and contexts "
                                "stay allocated", self.path, timeout_s)
                    return
                self._stopping = False
                self.scheduler.close()
            for llm in (*self._scorers.values(), self.llm):
                llm.close()  # a second close of a Llama does nothing
            self._scorers = {}

    # -- tokens ---------------------------------------------------------------------------------------------
    def prompt_ids(self, prompt: str) -> list[int]:
        """A rendered chat (`apply_chat_template`'s ChatPrompt) or a raw prompt as ids; see ChatContract."""
        return self.contract.prompt_ids(prompt, self._tokenize, self._plain)

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text))

    def tokenize(self, text: str) -> list[int]:
        """Raw text as ids, nothing added (control-token text is parsed, as in a raw prompt)."""
        return self._tokenize(text)

    def is_end_of_turn(self, token: int) -> bool:
        return token in self._stop_ids or bool(self._is_eog(self._vocab, token))

    # -- generation -----------------------------------------------------------------------------------------
    def _request(self, prompt: str, params: SamplingParams, should_stop: ShouldStop,
                 adapter: str | None = None) -> SequenceRequest:
        if not self._open:
            raise EngineClosed("the engine is closed")
        ids = self.checked_ids(prompt) if isinstance(prompt, list) else self.prompt_ids(prompt)
        if len(ids) + 1 > self.n_ctx:
            raise StageError(f"prompt has {len(ids)} tokens, more than the context window ({self.n_ctx}); "
                             "shorten it or raise n_ctx")
        return SequenceRequest(ids, params, should_stop, adapter=adapter)

    def generate(self, prompts: list[str], params: SamplingParams, should_stop: ShouldStop | None = None,
                 adapter: str | None | list[str | None] = None) -> list[Generation]:
        """All prompts decode together (up to `parallel` at a time; the rest join as slots free up).
        adapter: one for every prompt, or a list with each prompt's own."""
        abandon = threading.Event()  # an error in one result stops the others instead of orphaning them
        stop = (lambda: abandon.is_set() or should_stop()) if should_stop else abandon.is_set
        adapters = adapter if isinstance(adapter, list) else [adapter] * len(prompts)
        requests = [self._request(p, params, stop, a) for p, a in zip(prompts, adapters, strict=True)]
        try:
            for request in requests:
                self._submit(request)  # builds its sampler: a bad grammar raises here
            return [self._wait(request) for request in requests]
        finally:
            abandon.set()

    def stream(self, prompt: str, params: SamplingParams, should_stop: ShouldStop | None = None,
               adapter: str | None = None) -> TextStream:
        """Pieces of text; generation stops between tokens on close() or when `should_stop()` says so (a
        server's deadline or a client gone), also while tokens produce no text yet."""
        cancel = threading.Event()
        stop = cancel.is_set if should_stop is None else (lambda: cancel.is_set() or should_stop())
        request = self._request(prompt, params, stop, adapter)
        self._submit(request)

        def pipe(emit) -> Generation:  # pieces straight from the decode thread; this thread waits for the end
            final = request.hand_pieces_to(emit)
            if final is None:
                return self._wait(request)
            if final[0] == "error":
                raise final[1]
            return final[1]

        return TextStream(self._pieces(request), cancel, pipe)

    def _next_event(self, request: SequenceRequest) -> tuple[str, object]:
        """The request's next event; EngineClosed if the decode thread is gone without answering it."""
        while True:
            try:
                return request.events.get(timeout=1.0)
            except queue.Empty:
                if not self._open or not self.scheduler.running():
                    try:
                        return request.events.get_nowait()
                    except queue.Empty:
                        raise EngineClosed("the engine stopped") from None

    def _pieces(self, request: SequenceRequest) -> Generator[str, None, Generation]:
        while True:
            kind, value = self._next_event(request)
            if kind == "piece":
                yield value
            elif kind == "done":
                return value
            else:
                raise value

    def _wait(self, request: SequenceRequest) -> Generation:
        while True:
            kind, value = self._next_event(request)
            if kind == "done":
                return value
            if kind == "error":
                raise value

    # -- likelihoods ----------------------------------------------------------------------------------------
    def _scorer(self, adapter: str | None, like_generation: bool = False):
        """A context with logits for every position, per adapter (made on first use). like_generation: with
        the generating contexts' flash-attention setting, so prompt logprobs agree with generated ones to the
        bit; `score` keeps llama.cpp's default (no flash attention), which the evaluate stage's perplexities
        were measured with."""
        key = (adapter, like_generation)
        if key not in self._scorers:
            lora = str(self.adapters[adapter].path) if adapter is not None else None
            flash = like_generation and self.flash_attn != "off"
            try:
                llm = load_llama(self.path, threads=self.threads, n_ctx=self.n_ctx, logits_all=True,
                                 lora_path=lora, flash_attn=flash)
            except StageError:
                if not flash:
                    raise  # "auto" on a model without flash-attention support: as the generating contexts do
                llm = load_llama(self.path, threads=self.threads, n_ctx=self.n_ctx, logits_all=True, lora_path=lora)
            self._scorers[key] = llm
        return self._scorers[key]

    def checked_ids(self, ids: list[int]) -> list[int]:
        """A prompt given as token ids, used as given (nothing added) once each is in the vocabulary."""
        import llama_cpp

        n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        bad = next((i for i, t in enumerate(ids) if not 0 <= t < n_vocab), None)
        if bad is not None:
            raise StageError(f"prompt[{bad}]: token id {ids[bad]} is not in the vocabulary (0..{n_vocab - 1})")
        return list(ids)

    def detokenize(self, token: int) -> bytes:
        """A token's bytes, control tokens' text included (an echoed prompt shows its <|im_start|>)."""
        return self.llm._model.detokenize([token], special=True)

    def prompt_logprobs(self, ids: list[int], top_n: int, adapter: str | None = None) -> list[TokenLogprob]:
        """Each prompt token's log-probability given the tokens before it (None for the first) and the top_n
        alternatives at its position: OpenAI's `echo` with `logprobs`."""
        if not ids:
            return []
        ids = self.checked_ids(ids)
        if len(ids) > self.n_ctx:
            raise StageError(f"prompt has {len(ids)} tokens, more than the context window ({self.n_ctx}); "
                             "shorten it or raise n_ctx")
        records = [TokenLogprob(ids[0], self.detokenize(ids[0]), None)]
        with self._score_lock:
            llm = self._scorer(adapter, like_generation=True)
            llm.reset()
            llm.eval(list(ids))
            for i, token in enumerate(ids[1:]):  # the logits at position i predict token i + 1
                row = log_softmax(llm.scores[i])
                records.append(TokenLogprob(token, self.detokenize(token), float(row[token]),
                                            top_of(row, top_n, self.detokenize)))
        return records

    def score(self, prompt: str, continuation: str, close_turn: bool = False,
              adapter: str | None = None) -> tuple[float, int]:
        """Sum of -log p(continuation token | everything before it), in nats, and the number of tokens.
        close_turn: the continuation is an assistant answer, followed by the model's end-of-turn token."""
        context, target = self.contract.scored_ids(prompt, continuation, self._tokenize, close_turn,
                                                   self._plain)
        if not target:
            return 0.0, 0
        with self._score_lock:  # callers on several threads: one scoring context is not thread-safe
            return continuation_nll(self._scorer(adapter), context, target), len(target)

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
            "n_ctx_per_sequence": self.n_ctx,
            "parallel": self.max_batch_size,
            "kv_unified": self.scheduler.kv_unified,
            "flash_attn": self.flash_attn,
            "batching": self.scheduler.stats,
            "lanes": {"count": self.scheduler.n_lanes, "slots_each": self.scheduler.slots_per_lane,
                      "threads_each": self.scheduler.threads_per_lane,
                      "spare": len(self.scheduler.lanes) - self.scheduler.n_lanes},
            "parameters": int(self.llm._model.n_params()),
            "size_bytes": self.path.stat().st_size,
            "path": str(self.path),
            "domain": self.served["domain"],
            "system_prompt": self.served["system_prompt"],
            "chat_template": bool(self.contract.template),
            "end_of_turn": list(self.contract.stop_strings),
            "adapters": [{"name": name, "domain": facts.domain, "file": facts.path.name,
                          "size_bytes": facts.path.stat().st_size, "resident": name in self._loaded}
                         for name, facts in self.adapters.items()],
            "resident_adapters": self.resident_adapters,
        }


class AdapterEngine(ChatMixin):
    """A GGUFEngine whose requests all use one of its LoRA adapters: an Engine like any other for a consumer
    (evaluate, serving), while the adapter's requests batch with every other request of the same engine."""

    name = "gguf"

    def __init__(self, engine: GGUFEngine, adapter: str):
        self.engine, self.adapter = engine, adapter
        self.contract = engine.contract
        self.max_batch_size = engine.max_batch_size
        self.concurrent_requests = engine.concurrent_requests
        facts = engine.adapters[adapter]
        self.served = {"domain": facts.domain, "system_prompt": facts.system_prompt}

    def generate(self, prompts: list[str], params: SamplingParams,
                 should_stop: ShouldStop | None = None) -> list[Generation]:
        return self.engine.generate(prompts, params, should_stop, adapter=self.adapter)

    def stream(self, prompt: str, params: SamplingParams, should_stop: ShouldStop | None = None) -> TextStream:
        return self.engine.stream(prompt, params, should_stop, adapter=self.adapter)

    def score(self, prompt: str, continuation: str, close_turn: bool = False) -> tuple[float, int]:
        return self.engine.score(prompt, continuation, close_turn, adapter=self.adapter)

    def prompt_logprobs(self, ids: list[int], top_n: int) -> list[TokenLogprob]:
        return self.engine.prompt_logprobs(ids, top_n, adapter=self.adapter)

    def detokenize(self, token: int) -> bytes:
        return self.engine.detokenize(token)

    def prompt_ids(self, prompt: str) -> list[int]:
        return self.engine.prompt_ids(prompt)

    def count_tokens(self, text: str) -> int:
        return self.engine.count_tokens(text)

    def info(self) -> dict:
        return {**self.engine.info(), "adapter": self.adapter, **self.served}

