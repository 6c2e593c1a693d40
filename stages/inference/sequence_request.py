"""A sequence request: what a caller hands the slot scheduler (slots.py), and how its events come back.

    request = SequenceRequest(ids, params, should_stop, adapter="legal", sampler=build_sampler(...))
    scheduler.submit(request)                     # any thread
    kind, value = request.events.get()            # ("piece", str)..., then ("done", Generation) | ("error", exc)

Pieces are produced on the decode thread; a streaming consumer can take them there directly
(`hand_pieces_to`) instead of through the queue, without losing or reordering any.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from stages.inference.types import SamplingParams, ShouldStop


@dataclass
class SequenceRequest:
    """One prompt to complete. Events arrive on `events`: ("piece", str)..., then ("done", Generation) or
    ("error", Exception); after `hand_pieces_to(emit)`, pieces go to `emit` on the decode thread instead."""

    ids: list[int]
    params: SamplingParams
    should_stop: ShouldStop = lambda: False
    adapter: str | None = None  # a LoRA adapter loaded into the scheduler, None = the base model
    events: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    sampler: object = None  # built by the caller (a grammar is parsed off the decode thread); owned from submit
    on_piece: Callable[[str], None] | None = None
    on_end: Callable[[], None] | None = None  # called once, on the decode thread, after the final event
    _handoff: threading.Lock = field(default_factory=threading.Lock)

    def put_piece(self, piece: str) -> None:
        """Decode thread: to the consumer's `emit` if it gave one, else onto `events`."""
        with self._handoff:
            emit = self.on_piece
            if emit is None:
                self.events.put(("piece", piece))
                return
        emit(piece)

    def end(self, event: tuple) -> None:
        """The final event ("done", Generation) or ("error", exc); then `on_end` (the engine's bookkeeping)."""
        self.events.put(event)
        if self.on_end is not None:
            self.on_end()

    def hand_pieces_to(self, emit: Callable[[str], None]) -> tuple | None:
        """From now on pieces go straight to `emit`; the ones already queued go there first, in order.
        Returns the final event if the request already ended (nothing more will come)."""
        with self._handoff:
            while True:
                try:
                    kind, value = self.events.get_nowait()
                except queue.Empty:
                    break
                if kind != "piece":
                    return kind, value
                emit(value)
            self.on_piece = emit
        return None
