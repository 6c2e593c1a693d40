"""Closing the GGUF engine while its decode thread is stuck (real llama.cpp, SmolLM2 GGUF): no close, first or
later, frees the model and context that thread still uses; once it has stopped, the next close frees them."""

from __future__ import annotations

import threading

import pytest

from bench.run_info import QUESTIONS, chat_messages
from stages.inference import SamplingParams, load_engine
from stages.inference.types import EngineClosed


def test_a_second_close_never_frees_what_a_stuck_decode_thread_uses(smollm2_gguf):
    engine = load_engine("gguf", smollm2_gguf, threads=1, n_ctx=256, parallel=1)
    prompt = engine.apply_chat_template(chat_messages(QUESTIONS[0]))
    entered, release = threading.Event(), threading.Event()

    def stuck() -> bool:  # called on the decode thread: it blocks there, as in one endless llama_decode
        entered.set()
        release.wait()
        return False

    def still_allocated() -> bool:
        return engine.llm._model.model is not None and lane.context.ctx is not None

    [lane], [owner] = engine.scheduler.lanes, engine.scheduler._owners
    steps = lane.stats["steps"]
    stream = engine.stream(prompt, SamplingParams(max_new_tokens=4), should_stop=stuck)
    assert entered.wait(30), "the decode thread took the request"
    engine.close(timeout_s=0.2)
    first = owner.is_alive() and still_allocated()
    engine.close(timeout_s=0.2)  # before the fix, this one freed the model under the decode thread
    if not (first and owner.is_alive() and still_allocated()):
        # The decode thread stays blocked (a daemon): let go, it would decode on freed memory and crash.
        pytest.fail(f"close freed the model under a running decode thread (after the first close: {first})")
    release.set()
    owner.join(30)
    assert not owner.is_alive()
    # The thread went on with a real llama_decode on the model and context the closes had left alone.
    assert lane.stats["steps"] == steps + 1
    with pytest.raises(EngineClosed):
        list(stream)
    engine.close(timeout_s=5)  # the thread has stopped: now everything is freed
    assert engine.llm._model.model is None and lane.context.ctx is None
    engine.close()  # and closing again is harmless
