"""Continuous batching over one llama.cpp context: slots, one `llama_decode` per step, one owner thread.

    scheduler = SlotScheduler(model, context_params, parallel=8, n_ctx_slot=2048, is_end=..., detokenize=...)
    scheduler.submit(SequenceRequest(ids, params, should_stop))   # any thread
    while scheduler.step(): ...                                   # the owner thread (or a test), nothing else

Each step batches the next token of every generating sequence with prompt chunks of newly admitted ones (at most
`n_batch` tokens together, so a long prompt never stalls the others for more than one chunk), decodes once, and
samples each sequence that got logits with its own llama.cpp sampler chain (grammar, penalties, top-k/p, min-p,
temperature, seed). A finished sequence leaves its slot at once; the slot keeps the KV it computed as a prompt
cache (as llama-server's `cache_prompt` does) until it takes the next request, which keeps the common prefix.

The common prefix of different requests (in practice the system prompt and chat header) lives in one extra
sequence, the prefix holder: once two prompts share a prefix it is copied there from the slot that computed it,
and a new sequence whose slot holds less of its prompt starts from a copy of it instead of computing it again.
`prefix_tokens_reused` counts the prompt tokens not computed thanks to either.

LoRA adapters (one per domain) are set on the whole context in llama.cpp, so sequences are grouped by adapter
(None = the base model): a step decodes one group, and the groups with work take turns, so requests of
different domains all make progress while each group is still batched. Changing the context's adapter makes
llama.cpp re-reserve its compute graphs (~5 ms here), which is why the engine runs several schedulers at once
and keeps each adapter group to its own where it can (lanes.py); one mixes groups only when it must. KV computed
under one adapter is only reused under the same one: the `n_holders` prefix holders go to the groups that used
them last, and a slot's prompt cache remembers its adapter.
Nothing here is thread-safe except `submit` and `control`: llama.cpp contexts must stay on one thread.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import llama_cpp
import numpy as np

from stages.errors import StageError
from stages.inference.logprobs import Piece, TokenLogprob
from stages.inference.sampler import build_sampler
from stages.inference.sequence_request import SequenceRequest
from stages.inference.types import EngineClosed, Generation, StopStringFilter

log = logging.getLogger(__name__)

MIN_SHARED_PREFIX = 4  # shorter common prefixes are not worth a copy
# What one more run of busy sequence ids (one more graph run per step, see _pick_slot) is worth in prompt
# tokens: ~0.2 s of prefill here, about what it costs a 48-token answer.
PACKING_WORTH = 128
# llama.cpp's flash-attention switch; "auto" lets llama.cpp use it where the backend supports it (as
# llama-server does by default). On this CPU it made 8 batched sequences ~1.4x faster.
FLASH_ATTN = {"auto": llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO, "on": llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
              "off": llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED}


@dataclass
class PrefixHolder:
    """The sequence that keeps one adapter group's shared prompt prefix."""

    seq_id: int
    tokens: list[int] = field(default_factory=list)
    last_prompt: list[int] = field(default_factory=list)


@dataclass
class Slot:
    seq_id: int
    request: SequenceRequest | None = None
    cached: list[int] = field(default_factory=list)  # tokens whose KV is in this sequence, position = index
    adapter: str | None = None  # the adapter `cached` was computed with
    pending: int | None = None  # sampled, not yet decoded
    sampler: object = None
    budget: int = 0
    n_completion: int = 0
    text: str = ""
    decoder: codecs.IncrementalDecoder | None = None
    stop_filter: StopStringFilter | None = None
    logits_at: int = -1  # row of this step's batch whose logits this slot samples from
    logprobs: list | None = None  # TokenLogprob of each generated token (params.logprobs set)
    unsent: list = field(default_factory=list)  # of those, the ones no delivered piece carried yet
    first_token_at: float | None = None

    @property
    def prefilling(self) -> bool:
        return self.request is not None and self.pending is None and len(self.cached) < len(self.request.ids)


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class SlotScheduler:
    def __init__(self, model, context_params, parallel: int, n_ctx_slot: int, is_end: Callable[[int], bool],
                 detokenize: Callable[[int], bytes], n_batch: int = 512, kv_unified: bool = False,
                 flash_attn: str = "auto", adapters: dict[str, object] | None = None, n_holders: int = 2,
                 threads_now: Callable[[], int] | None = None):
        """adapters: name -> llama_adapter_lora pointer loaded on `model` (requests name one, or None); the dict
        is read as it is at each request, so the caller may add adapters while serving. threads_now: the threads
        the next decode may use, asked before each one (else the context's own)."""
        from llama_cpp import _internals

        self.parallel, self.n_ctx_slot, self.n_batch = parallel, n_ctx_slot, n_batch
        self.kv_unified = kv_unified
        self.is_end, self.detokenize = is_end, detokenize
        self.adapters = adapters if adapters is not None else {}
        assert n_batch >= parallel, "every generating sequence needs its row in the batch"
        params = context_params
        params.n_seq_max = parallel + n_holders
        params.n_ctx = n_ctx_slot * params.n_seq_max
        params.n_batch = params.n_ubatch = n_batch
        params.kv_unified = kv_unified
        params.flash_attn_type = FLASH_ATTN[flash_attn]
        self.context = _internals.LlamaContext(model=model, params=params, verbose=False)
        self.ctx = self.context.ctx
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.vocab = llama_cpp.llama_model_get_vocab(model.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self.slots = [Slot(i) for i in range(parallel)]
        self._free_holders = [PrefixHolder(parallel + i) for i in range(n_holders)]
        self.holders: dict[str | None, PrefixHolder] = {}  # by adapter group, least recently used first
        self._turn: str | None = None  # the group that decoded last
        self._active_adapter: str | None = None
        self.threads_now, self._threads = threads_now, int(params.n_threads)
        # One stream per sequence: a copy moves the whole stream (n_ctx_slot cells x layers), so only a prefix
        # of some length is worth holding; in a unified cache a copy only tags cells.
        self.min_holder_prefix = MIN_SHARED_PREFIX if kv_unified else 16
        self.waiting: deque[SequenceRequest] = deque()
        self.inbox: queue.SimpleQueue[SequenceRequest | None] = queue.SimpleQueue()
        self.stats = {"sequences": 0, "steps": 0, "prompt_tokens": 0, "prefix_tokens_reused": 0,
                      "max_active": 0, "adapter_switches": 0}
        self.closed = threading.Event()
        self._submit_lock = threading.Lock()
        self._end_ids: list[int] | None = None

    # -- any thread -----------------------------------------------------------------------------------------
    def submit(self, request: SequenceRequest) -> None:
        """Queue a request; its sampler is built here if the caller did not (this parses a grammar)."""
        if request.adapter is not None and request.adapter not in self.adapters:
            loaded = ", ".join(self.adapters) or "none"
            raise StageError(f"adapter {request.adapter!r} is not loaded (loaded: {loaded})")
        if request.sampler is None:
            banned = self._end_tokens() if request.params.ignore_eos else ()
            request.sampler = build_sampler(self.vocab, request.params, banned)
        with self._submit_lock:  # never behind the end-of-work sentinel
            if self.closed.is_set():
                llama_cpp.llama_sampler_free(request.sampler)
                raise EngineClosed("the engine is shutting down")
            self.inbox.put(request)

    def control(self, action: Callable[[SlotScheduler], None]) -> threading.Event:
        """Run `action(self)` on the owner thread between steps (e.g. forget an adapter); the event is set once
        it ran, or at once if the scheduler is closed (no step will touch the context again)."""
        done = threading.Event()

        def run(scheduler: SlotScheduler) -> None:
            try:
                action(scheduler)
            finally:
                done.set()
        with self._submit_lock:
            if self.closed.is_set():
                done.set()
            else:
                self.inbox.put(run)
        return done

    def _end_tokens(self) -> list[int]:
        """Every token that ends a sequence (scanned once, on the first fixed-length request)."""
        if self._end_ids is None:
            self._end_ids = [t for t in range(llama_cpp.llama_vocab_n_tokens(self.vocab)) if self.is_end(t)]
        return self._end_ids

    # -- owner thread ---------------------------------------------------------------------------------------
    def run(self) -> None:
        """The owner thread's loop: block while idle, step while there is work, until `stop()`."""
        while not self.closed.is_set():
            if not self.busy():
                request = self.inbox.get()
                if request is None:
                    break
                self._take(request)
            try:
                self.step()
            except Exception as e:  # a failed decode fails the sequences in flight, never the thread
                log.exception("decode step failed")
                self._fail_all(e)
        self._fail_all(EngineClosed("the engine is shutting down"))

    def stop(self) -> None:
        with self._submit_lock:
            self.closed.set()
            self.inbox.put(None)

    def busy(self) -> bool:
        return bool(self.waiting) or any(s.request is not None for s in self.slots) or not self.inbox.empty()

    def step(self) -> bool:
        """Admit, batch, decode once, sample. Returns whether anything is still in flight or waiting."""
        self._drain_inbox()
        self._admit()
        for slot in self.slots:
            if slot.request is not None and slot.request.should_stop():
                self._finish(slot, "stop")
        group = self._next_group()
        n = self._fill_batch(group)
        if n:
            self._use_adapter(group)
            rc = llama_cpp.llama_decode(self.ctx, self.batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc} (no room in the KV cache or aborted)")
            self.stats["steps"] += 1
            self._after_decode()
        return self.busy()

    def _drain_inbox(self) -> None:
        while True:
            try:
                request = self.inbox.get_nowait()
            except queue.Empty:
                return
            if request is not None:  # None: stop() was called; run() ends after this step
                self._take(request)

    def _take(self, item) -> None:
        """A request joins the waiting line; a control action runs now."""
        if isinstance(item, SequenceRequest):
            self.waiting.append(item)
        else:
            item(self)

    def _admit(self) -> None:
        for request in [r for r in self.waiting if r.should_stop()]:  # cancelled or timed out while waiting
            self.waiting.remove(request)
            self._drop(request, ("done", Generation("", len(request.ids), 0, "stop")))
        while self.waiting:
            free = [s for s in self.slots if s.request is None]
            if not free:
                return
            request = self.waiting.popleft()
            self._start(self._pick_slot(free, request), request)

    def _pick_slot(self, free: list[Slot], request: SequenceRequest) -> Slot:
        """The free slot that saves the most prompt tokens (its own kept KV, or the shared prefix any slot can
        copy), where breaking the busy slots' run of consecutive sequence ids costs PACKING_WORTH tokens and
        closing a gap in it earns as much; among equals the lowest. With one KV stream per sequence llama.cpp
        decodes a batch as one ubatch (one graph run) per such run: slots 0, 2, 5 and 7 cost four."""
        holder = self.holders.get(request.adapter)
        shared = common_prefix(holder.tokens, request.ids) if holder else 0
        busy = {s.seq_id for s in self.slots if s.request is not None}
        per_run = 0 if self.kv_unified else PACKING_WORTH  # a unified cache decodes any set in one ubatch

        def runs(ids: set[int]) -> int:
            return sum(i - 1 not in ids for i in ids)

        def worth(slot: Slot) -> tuple[int, int]:
            reuse = max(self._own_prefix(slot, request), shared)
            return reuse - per_run * (runs(busy | {slot.seq_id}) - runs(busy)), -slot.seq_id

        return max(free, key=worth)

    @staticmethod
    def _own_prefix(slot: Slot, request: SequenceRequest) -> int:
        """Prompt tokens the slot's kept KV already holds (none if it was computed under another adapter)."""
        return common_prefix(slot.cached, request.ids) if slot.adapter == request.adapter else 0

    def _start(self, slot: Slot, request: SequenceRequest) -> None:
        ids = request.ids
        budget = min(request.params.max_new_tokens, self.n_ctx_slot - len(ids))
        if budget <= 0 or not ids:
            self._drop(request, ("done", Generation("", len(ids), 0, "length")))
            return
        slot.sampler, request.sampler = request.sampler, None
        # Start from what is already computed; at least one prompt token is decoded for the logits.
        holder = self.holders.get(request.adapter)
        own = min(self._own_prefix(slot, request), len(ids) - 1)
        shared = min(common_prefix(holder.tokens, ids), len(ids) - 1) if holder else 0
        if shared > own and shared >= self.min_holder_prefix:
            llama_cpp.llama_memory_seq_rm(self.memory, slot.seq_id, -1, -1)
            self._copy(holder.seq_id, slot.seq_id, shared)
            reuse = shared
        elif llama_cpp.llama_memory_seq_rm(self.memory, slot.seq_id, own, -1):
            reuse = own
        else:  # a memory that cannot cut a sequence (recurrent models): start from nothing
            llama_cpp.llama_memory_seq_rm(self.memory, slot.seq_id, -1, -1)
            reuse = 0
        self.stats["prefix_tokens_reused"] += reuse
        slot.request, slot.cached, slot.pending, slot.adapter = request, list(ids[:reuse]), None, request.adapter
        slot.budget, slot.n_completion, slot.text = budget, 0, ""
        slot.logprobs, slot.unsent = ([] if request.params.logprobs is not None else None), []
        slot.first_token_at = None
        slot.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        slot.stop_filter = StopStringFilter(request.params.stop)
        self.stats["sequences"] += 1
        self.stats["prompt_tokens"] += len(ids)
        self.stats["max_active"] = max(self.stats["max_active"], sum(s.request is not None for s in self.slots))

    def _drop(self, request: SequenceRequest, event: tuple) -> None:
        """End a request that never got a slot."""
        if request.sampler is not None:
            llama_cpp.llama_sampler_free(request.sampler)
            request.sampler = None
        request.end(event)

    def _copy(self, src: int, dst: int, n_tokens: int) -> None:
        """KV of positions [0, n_tokens) of `src` into `dst` (empty). Unified cache: shared cells, no copy;
        one stream per sequence: llama.cpp copies the whole stream, then the tail is dropped."""
        if self.kv_unified:
            llama_cpp.llama_memory_seq_cp(self.memory, src, dst, 0, n_tokens)
        else:
            llama_cpp.llama_memory_seq_cp(self.memory, src, dst, -1, -1)
            llama_cpp.llama_memory_seq_rm(self.memory, dst, n_tokens, -1)

    def _next_group(self) -> str | None:
        """The adapter group this step decodes: the next one in turn (by name, the base model first) that has a
        token or a prompt to decode."""
        with_work = {s.adapter for s in self.slots if s.request is not None and (s.pending is not None or s.prefilling)}
        if len(with_work) <= 1:
            return next(iter(with_work), None)
        order = sorted(with_work, key=lambda g: (g is not None, g or ""))
        key = (self._turn is not None, self._turn or "")
        later = [g for g in order if (g is not None, g or "") > key]
        self._turn = (later or order)[0]
        return self._turn

    def _use_threads(self) -> None:
        wanted = self.threads_now() if self.threads_now else self._threads
        if wanted != self._threads:
            llama_cpp.llama_set_n_threads(self.ctx, wanted, wanted)
            self._threads = wanted

    def _use_adapter(self, group: str | None) -> None:
        self._use_threads()
        if group == self._active_adapter:
            return
        if group is None:
            rc = llama_cpp.llama_set_adapters_lora(self.ctx, None, 0, None)
        else:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self.adapters[group])
            rc = llama_cpp.llama_set_adapters_lora(self.ctx, adapters, 1, (ctypes.c_float * 1)(1.0))
        if rc != 0:
            raise RuntimeError(f"llama_set_adapters_lora({group!r}) returned {rc}")
        self._active_adapter = group
        self.stats["adapter_switches"] += 1

    def _fill_batch(self, group: str | None) -> int:
        """One adapter group's rows: its generating sequences' next tokens, then its prompt chunks."""
        batch, n = self.batch, 0

        def put(slot: Slot, token: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = len(slot.cached)
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = slot.seq_id
            batch.logits[n] = logits
            slot.cached.append(token)
            if logits:
                slot.logits_at = n
            n += 1

        members = [s for s in self.slots if s.request is not None and s.adapter == group]
        for slot in self.slots:
            slot.logits_at = -1
        # Every generating sequence's next token has its row (decode never waits); prompt chunks get the rest.
        # Rows go in slot order, a prompt chunk in its slot's place: llama.cpp cuts a batch into ubatches of
        # consecutive sequence ids, so out of order a chunk would start a ubatch of its own.
        prompt_rows = self.n_batch - sum(s.pending is not None for s in members)
        for slot in members:
            if slot.pending is not None:
                put(slot, slot.pending, True)
                slot.pending = None
            elif slot.prefilling and prompt_rows > 0:
                ids = slot.request.ids
                take = min(len(ids) - len(slot.cached), prompt_rows)
                prompt_rows -= take
                for _ in range(take):
                    position = len(slot.cached)
                    put(slot, ids[position], position == len(ids) - 1)
        batch.n_tokens = n
        return n

    def _after_decode(self) -> None:
        for slot in self.slots:
            if slot.request is None or slot.logits_at < 0:
                continue
            if len(slot.cached) == len(slot.request.ids) and slot.n_completion == 0:
                self._remember_prefix(slot)
            token = llama_cpp.llama_sampler_sample(slot.sampler, self.ctx, slot.logits_at)
            if slot.first_token_at is None:
                slot.first_token_at = time.monotonic()
            if self.is_end(token):
                self._finish(slot, "stop")
                continue
            if slot.logprobs is not None:  # the raw logits row (the sampler chain works on a copy)
                row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, slot.logits_at),
                                            shape=(self.n_vocab,))
                record = TokenLogprob.of(row, token, slot.request.params.logprobs, self.detokenize)
                slot.logprobs.append(record)
                slot.unsent.append(record)
            slot.n_completion += 1
            piece = slot.stop_filter.feed(slot.decoder.decode(self.detokenize(token)))
            if piece and not self._deliver(slot, piece):
                self._finish(slot, "stop")
            elif slot.stop_filter.stopped:
                self._finish(slot, "stop")
            elif slot.n_completion >= slot.budget:
                self._finish(slot, "length")
            else:
                slot.pending = token

    def _remember_prefix(self, slot: Slot) -> None:
        """Once two prompts of one adapter group share a prefix longer than the group holder's, keep that
        prefix's KV in the holder."""
        if not self._free_holders and not self.holders:  # a scheduler without prefix holders
            return
        ids, holder = slot.request.ids, self._holder(slot.adapter)
        shared = common_prefix(holder.last_prompt, ids)
        holder.last_prompt = ids
        if shared >= self.min_holder_prefix and shared > common_prefix(holder.tokens, ids):
            llama_cpp.llama_memory_seq_rm(self.memory, holder.seq_id, -1, -1)
            self._copy(slot.seq_id, holder.seq_id, shared)
            holder.tokens = ids[:shared]

    def _holder(self, group: str | None) -> PrefixHolder:
        """The group's prefix holder, most recently used now; a group without one takes a free one or the least
        recently used group's (whose kept prefix is dropped)."""
        holder = self.holders.pop(group, None)
        if holder is None:
            if self._free_holders:
                holder = self._free_holders.pop(0)
            else:
                holder = self.holders.pop(next(iter(self.holders)))
                llama_cpp.llama_memory_seq_rm(self.memory, holder.seq_id, -1, -1)
                holder.tokens, holder.last_prompt = [], []
        self.holders[group] = holder
        return holder

    def forget_adapter(self, name: str) -> None:
        """Owner thread: drop every trace of adapter `name` (its holder, slots' KV computed under it, the
        context's reference to it) so that it can be freed. Its requests must have ended."""
        holder = self.holders.pop(name, None)
        if holder is not None:
            llama_cpp.llama_memory_seq_rm(self.memory, holder.seq_id, -1, -1)
            holder.tokens, holder.last_prompt = [], []
            self._free_holders.append(holder)
        for slot in self.slots:
            if slot.adapter == name and slot.request is None:
                llama_cpp.llama_memory_seq_rm(self.memory, slot.seq_id, -1, -1)
                slot.cached, slot.adapter = [], None
        if self._active_adapter == name:
            self._use_adapter(None)

    def _deliver(self, slot: Slot, piece: str) -> bool:
        """Hand a piece to its consumer; False if the consumer failed (its stream is then ended)."""
        slot.text += piece
        if slot.unsent:
            piece, slot.unsent = Piece(piece, slot.unsent), []
        try:
            slot.request.put_piece(piece)
        except Exception:  # e.g. a server's event loop already closed: never let it fail the other sequences
            log.warning("a stream's consumer failed; ending that stream", exc_info=True)
            return False
        return True

    def _finish(self, slot: Slot, reason: str) -> None:
        request = slot.request
        if not slot.stop_filter.stopped:
            tail = slot.stop_filter.flush()  # bytes of a character cut by the limit stay undecoded
            if tail:
                self._deliver(slot, tail)
        request.end(("done", Generation(slot.text, len(request.ids), slot.n_completion, reason, slot.logprobs,
                                        slot.first_token_at, time.monotonic())))
        self._free(slot, keep_kv=True)

    def _free(self, slot: Slot, keep_kv: bool = False) -> None:
        """End the slot's sequence. keep_kv: its KV stays as this slot's prompt cache (the slot's own share
        of the cache, which no other sequence could use) until the slot takes another request, which keeps
        the common prefix and drops the rest at once."""
        if not keep_kv:
            llama_cpp.llama_memory_seq_rm(self.memory, slot.seq_id, -1, -1)
            slot.cached = []
        if slot.sampler is not None:
            llama_cpp.llama_sampler_free(slot.sampler)
        slot.request, slot.sampler, slot.pending = None, None, None

    def _fail_all(self, error: Exception) -> None:
        for slot in self.slots:
            if slot.request is not None:
                slot.request.end(("error", error))
                self._free(slot)
        self._drain_inbox()
        while self.waiting:
            self._drop(self.waiting.popleft(), ("error", error))

    def close(self) -> None:
        """Free the batch and the context (owner thread gone)."""
        for slot in self.slots:
            if slot.sampler is not None:
                llama_cpp.llama_sampler_free(slot.sampler)
                slot.sampler = None
        if self.batch is not None:
            llama_cpp.llama_batch_free(self.batch)
            self.batch = None
        self.context.close()
