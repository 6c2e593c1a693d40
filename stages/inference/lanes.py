"""Lanes: `n_lanes` slot schedulers over the one model, each with its own llama.cpp context, owner thread and
share of the threads, decoding at the same time; requests are spread over them, each adapter group kept to as
few lanes as the load allows.

    lanes = Lanes(make_lane, n_lanes=2, threads=2)      # make_lane(slots, threads) -> SlotScheduler
    lanes.submit(SequenceRequest(ids, params, adapter="legal"))
    lanes.stats                                         # summed over lanes (max_active: the largest)

Why (measured on the 2-core box; docs/serving.md has the table): llama.cpp applies an adapter to a whole
context, and changing it re-reserves the compute graphs, so one context serving three domains decodes one domain
per step and switches almost every step: 84 tok/s in-process, where one domain alone made 196. Separate
contexts keep their adapter. And two one-thread decodes at once beat one two-thread decode of the same
sequences, even on the base model (307 vs 269 tok/s; one domain 199 vs 173): a small model's decode is many
tiny ops, each ending at a barrier of the threads. A one-thread decode also starts no OpenMP pool: pools
outlive their decode, and once libgomp manages more threads than cores it stops spin-waiting, which made
every multi-threaded decode of the process ~2x slower.

Each lane has ceil(parallel / n_lanes) slots (the KV cache is the same size as one context of `parallel`) and
max(1, threads // n_lanes) threads. Where a request goes (`_pick`): a lane with a free slot before a full one;
then a lane working on no other adapter (no switch) before one that is; then the least loaded; then the lane
its adapter last ran on (its prompt cache). So one domain (or the base model) fills every lane, and three
domains on two lanes mix in one lane only while they must.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from stages.inference.sequence_request import SequenceRequest
from stages.inference.slots import SlotScheduler

log = logging.getLogger(__name__)

STAT_MAX = ("max_active",)  # per-lane stats reported as the largest, not the sum


class Lanes:
    def __init__(self, make_lane: Callable[[int, int], SlotScheduler], n_lanes: int, parallel: int, threads: int,
                 spare_lanes: int = 0):
        """make_lane(slots, threads) -> a SlotScheduler; all lanes are made now (a context that cannot be made
        fails the engine's start, not a request)."""
        if n_lanes < 1:
            raise ValueError("n_lanes must be >= 1")
        self.threads_per_lane = max(1, threads // n_lanes)
        self.slots_per_lane = -(-parallel // n_lanes)
        self.lanes: list[SlotScheduler] = []
        self._owners: list[threading.Thread] = []
        self._work: list[Counter] = []  # per lane: adapter -> requests submitted there and not ended yet
        self._last: dict[str | None, int] = {}  # adapter -> the lane it last ran on (its prompt cache is there)
        self._lock = threading.Lock()
        self.n_lanes = n_lanes
        try:
            for _ in range(n_lanes + spare_lanes):
                self._add_lane(make_lane(self.slots_per_lane, self.threads_per_lane))
        except BaseException:
            self.stop()
            self.join(10.0)
            self.close()
            raise

    # -- any thread -----------------------------------------------------------------------------------------
    def submit(self, request: SequenceRequest) -> None:
        with self._lock:
            index = self._pick(request.adapter)
            self._work[index][request.adapter] += 1
            self._last[request.adapter] = index
        request.on_end = lambda: self._ended(index, request.adapter)
        try:
            self.lanes[index].submit(request)
        except BaseException:
            request.on_end = None
            self._ended(index, request.adapter)
            raise

    def work(self, adapter: str | None) -> int:
        """Requests of `adapter` submitted and not ended, over every lane."""
        with self._lock:
            return sum(counts[adapter] for counts in self._work)

    def busy(self) -> bool:
        return any(lane.busy() for lane in self.lanes)

    @property
    def stats(self) -> dict:
        total: Counter = Counter()
        for lane in list(self.lanes):
            for key, value in lane.stats.items():
                total[key] = max(total[key], value) if key in STAT_MAX else total[key] + value
        return {**total, "lanes": len(self.lanes)}

    @property
    def kv_unified(self) -> bool:
        return self.lanes[0].kv_unified

    @contextmanager
    def paused(self, timeout_s: float = 60.0) -> Iterator[None]:
        """Every lane's owner thread waits between two steps while the block runs: for what must not run beside
        a decode (llama.cpp's adapter init and free change the model's adapter set, which a context reads when
        it re-reserves its graphs). Sequences in flight only wait. TimeoutError if a lane does not pause."""
        release = threading.Event()
        entered = []

        def wait_here(lane: SlotScheduler, here: threading.Event) -> None:
            here.set()
            release.wait(timeout_s)
        try:
            for lane in self.lanes:
                here = threading.Event()
                entered.append(here)
                if lane.closed.is_set():
                    here.set()  # its thread ends without another step
                else:
                    lane.control(lambda lane, here=here: wait_here(lane, here))
            deadline = time.monotonic() + timeout_s
            if not all(here.wait(max(0.0, deadline - time.monotonic())) for here in entered):
                raise TimeoutError(f"a decode lane did not pause within {timeout_s:.0f} s")
            yield
        finally:
            release.set()

    def stop(self) -> None:
        with self._lock:
            for lane in self.lanes:
                lane.stop()

    def join(self, timeout_s: float) -> bool:
        """Wait for every owner thread to end; False if one is still running after `timeout_s` in all."""
        deadline = time.monotonic() + timeout_s
        for owner in list(self._owners):
            owner.join(timeout=max(0.0, deadline - time.monotonic()))
        return not any(owner.is_alive() for owner in self._owners)

    def running(self) -> bool:
        return all(owner.is_alive() for owner in self._owners)

    def close(self) -> None:
        """Free every lane's batch and context (owner threads gone)."""
        for lane in self.lanes:
            lane.close()

    # -- internals ------------------------------------------------------------------------------------------
    def _ended(self, index: int, adapter: str | None) -> None:
        with self._lock:
            self._work[index][adapter] -= 1
            if self._work[index][adapter] <= 0:
                del self._work[index][adapter]

    def _pick(self, adapter: str | None) -> int:
        def cost(index: int) -> tuple:
            counts = self._work[index]
            load = sum(counts.values())
            mixes = any(group != adapter for group in counts)
            spare = index >= self.n_lanes
            return (load >= self.slots_per_lane, mixes, spare, counts[adapter] == 0, load,
                    index != self._last.get(adapter, index))

        return min(range(len(self.lanes)), key=cost)

    def _add_lane(self, lane: SlotScheduler) -> None:
        owner = threading.Thread(target=lane.run, name=f"gguf-decode-{len(self.lanes)}", daemon=True)
        self.lanes.append(lane)
        self._work.append(Counter())
        self._owners.append(owner)
        owner.start()
