"""Lanes: slot schedulers over the one model, each with its own llama.cpp context, owner thread and share of the
threads, decoding at the same time; requests are spread over them, each adapter group kept to as few lanes as
the load allows.

    lanes = Lanes(make_lane, n_lanes=2, parallel=8, threads=2, spare_lanes=6)
    lanes.submit(SequenceRequest(ids, params, adapter="legal"))
    lanes.stats                                         # summed over lanes (max_active: the largest)

Why (measured on the 2-core box; docs/serving.md, "Adapters at full speed", has the profiles and
bench/results/adapter_lanes.md the table): llama.cpp applies an adapter to a whole context, and changing it
re-reserves the compute graphs, so one context serving three domains decodes one domain per step and switches
almost every step (71 tok/s, where one domain alone made 209). Separate contexts keep their adapter. And two
one-thread decodes at once beat one two-thread decode of the same sequences on this small model, whose decode
is many tiny ops each ending at a barrier of the threads. A one-thread decode also starts no OpenMP pool:
pools outlive their decode, and once libgomp manages more threads than cores it stops spin-waiting, which made
every multi-threaded decode of the process ~2x slower. So only lane 0 ever decodes with more than its share:
with all the threads while it is the only lane with work (one client is then as fast as with one context).

`n_lanes` regular lanes have ceil(parallel / n_lanes) slots, two prefix holders and max(1, threads // n_lanes)
threads each; `spare_lanes` more have one slot, no holder and one thread. Where a request goes (`_pick`): a
lane with a free slot before a full one; then a lane working on no other adapter (no switch) before one that
is; then a regular lane before a spare; then the lane its adapter already works in; then the least loaded; then
the lane its adapter last ran on (its prompt cache). So one domain (or the base model) fills the regular lanes,
and each further adapter at work takes spares of its own; groups only share a lane (taking turns in it) when
every lane is busy with another adapter.
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
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
BIG_BUFFER = 1 << 20


def return_big_buffers_to_the_os() -> None:
    """Every adapter switch makes llama.cpp free and allocate its compute buffers again (tens of MB with many
    adapters loaded: their graph nodes count in the worst case it reserves for). glibc raises its mmap threshold
    each time such a block is freed, so the next ones come from its heaps, which three lanes' threads fragmented:
    64 adapters over 16 clients grew the process by 627 MB, against 116 MB with the threshold pinned at 1 MB
    (bench/results/many_adapters.md). Pinning it keeps big blocks mmapped, returned to the OS when freed. A no-op
    where the C library is not glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, BIG_BUFFER)
    except (OSError, AttributeError):
        pass


class Lanes:
    def __init__(self, make_lane: Callable[..., SlotScheduler], n_lanes: int, parallel: int,
                 threads: int, spare_lanes: int = 0):
        """make_lane(slots, threads, prefix_holders, threads_now) -> a SlotScheduler; all lanes are made now (a
        context that cannot be made fails the engine's start, not a request)."""
        if n_lanes < 1:
            raise ValueError("n_lanes must be >= 1")
        n_lanes = min(n_lanes, max(1, threads))  # regular lanes share the threads, at least one each
        self.threads, self.threads_per_lane = max(1, threads), max(1, threads // n_lanes)
        self.slots_per_lane = -(-parallel // n_lanes)
        self.lanes: list[SlotScheduler] = []
        self._owners: list[threading.Thread] = []
        self._work: list[Counter] = []  # per lane: adapter -> requests submitted there and not ended yet
        self._last: dict[str | None, int] = {}  # adapter -> the lane it last ran on (its prompt cache is there)
        self._lock = threading.Lock()
        self.n_lanes = n_lanes
        return_big_buffers_to_the_os()
        try:
            for index in range(n_lanes):
                self._add_lane(make_lane(self.slots_per_lane, self.threads_per_lane, 2,
                                         self._lane0_threads if index == 0 else None))
            for _ in range(spare_lanes):  # one sequence each: its own prompt cache is all it can reuse
                self._add_lane(make_lane(1, 1, 0, None))
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

    def _lane0_threads(self) -> int:
        """Lane 0 decodes with all the threads while no other lane has work (one client decodes as fast as one
        context would), with its share otherwise. Only lane 0 ever does: see the module docstring on OpenMP."""
        return self.threads if not any(self._work[1:]) else self.threads_per_lane

    def _pick(self, adapter: str | None) -> int:
        def cost(index: int) -> tuple:
            counts = self._work[index]
            load = sum(counts.values())
            mixes = any(group != adapter for group in counts)
            spare = index >= self.n_lanes
            return (load >= self.lanes[index].parallel, mixes, spare, counts[adapter] == 0, load,
                    index != self._last.get(adapter, index))

        return min(range(len(self.lanes)), key=cost)

    def _add_lane(self, lane: SlotScheduler) -> None:
        owner = threading.Thread(target=lane.run, name=f"gguf-decode-{len(self.lanes)}", daemon=True)
        self.lanes.append(lane)
        self._work.append(Counter())
        self._owners.append(owner)
        owner.start()
