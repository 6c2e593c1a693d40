"""Lanes (stages/inference/lanes.py) on the real llama.cpp runtime with the tiny base and its two adapters: each
adapter group gets a context of its own while lanes last, one group fills the regular lanes but not the spare,
greedy answers under mixed load equal the same request alone on a fresh engine, and adapters loaded and unloaded
on the engine while other groups decode change nothing for them; with fewer resident adapters than served ones,
each loads on its first request in place of the least recently used idle one."""

from __future__ import annotations

import threading
import time

import pytest

from stages.errors import StageError
from stages.inference import SamplingParams, load_engine
from stages.inference.gguf_engine import GGUFEngine

DOMAINS = ("legal", "healthcare")
PROMPTS = ["Can a tenant withhold rent?", "What lowers blood pressure?", "Explain a contract clause.",
           "Name a symptom of anaemia.", "Who signs a will?", "How is asthma treated?"]
GREEDY = SamplingParams(max_new_tokens=12)


def lanes_engine(files: dict, adapters: tuple[str, ...] = DOMAINS, **kw):
    return GGUFEngine(files["base"], threads=2, n_ctx=256, parallel=6, lanes=2, spare_lanes=2,
                      adapters={d: files[d] for d in adapters}, **kw)


@pytest.fixture(scope="module")
def alone(tiny_adapters) -> dict[tuple[str | None, str], str]:
    """Every (adapter, prompt) answered by a fresh one-lane engine with nothing else in flight."""
    answers = {}
    for adapter in (*DOMAINS, None):
        for prompt in PROMPTS:
            engine = load_engine("gguf", tiny_adapters["base"], threads=1, n_ctx=256,
                                 adapters={adapter: tiny_adapters[adapter]} if adapter else None)
            try:
                answers[(adapter, prompt)] = engine.for_adapter(adapter).generate([prompt], GREEDY)[0].text
            finally:
                engine.close()
    return answers


def test_each_adapter_group_gets_its_own_lane_and_answers_as_alone(tiny_adapters, alone):
    engine = lanes_engine(tiny_adapters)
    try:
        adapters = [DOMAINS[0], DOMAINS[1], None] * 2
        got = [g.text for g in engine.generate(PROMPTS, GREEDY, adapter=adapters)]
        assert got == [alone[(a, p)] for a, p in zip(adapters, PROMPTS, strict=True)]
        lanes = engine.scheduler.lanes
        # legal and healthcare on the two regular lanes, the base model on the two one-sequence spares
        assert [lane._active_adapter for lane in lanes] == ["legal", "healthcare", None, None]
        assert [lane.stats["sequences"] for lane in lanes] == [2, 2, 1, 1]
        assert engine.scheduler.stats["adapter_switches"] == 2, "each lane kept its adapter"
        assert engine.info()["lanes"] == {"count": 2, "slots_each": 3, "threads_each": 1, "spare": 2}
    finally:
        engine.close()


def test_one_group_fills_the_regular_lanes_and_leaves_the_spare(tiny_adapters, alone):
    engine = lanes_engine(tiny_adapters)
    try:
        got = [g.text for g in engine.for_adapter("legal").generate(PROMPTS, GREEDY)]
        assert got == [alone[("legal", p)] for p in PROMPTS]
        assert [lane.stats["sequences"] for lane in engine.scheduler.lanes] == [3, 3, 0, 0]
    finally:
        engine.close()


def test_interleaved_clients_of_every_group_get_their_own_answers_while_an_adapter_comes_and_goes(tiny_adapters, alone):
    engine = lanes_engine(tiny_adapters, adapters=("legal",))
    answers: list[tuple[str | None, str, str]] = []
    stop = threading.Event()

    def client(adapter: str | None) -> None:
        i = 0
        while not stop.is_set():
            prompt = PROMPTS[i % len(PROMPTS)]
            answers.append((adapter, prompt, engine.for_adapter(adapter).generate([prompt], GREEDY)[0].text))
            i += 1
    clients = [threading.Thread(target=client, args=(a,)) for a in ("legal", None, "legal", None)]
    try:
        for t in clients:
            t.start()
        while len(answers) < 8:
            time.sleep(0.01)
        engine.load_adapter("healthcare", tiny_adapters["healthcare"])
        new = [g.text for g in engine.for_adapter("healthcare").generate(PROMPTS[:3], GREEDY)]
        assert new == [alone[("healthcare", p)] for p in PROMPTS[:3]]
        with pytest.raises(StageError, match="already loaded"):
            engine.load_adapter("healthcare", tiny_adapters["healthcare"])
        engine.unload_adapter("healthcare")
        with pytest.raises(StageError, match="not loaded"):
            engine.for_adapter("healthcare")
        count = len(answers)
        while len(answers) < count + 8:
            time.sleep(0.01)
    finally:
        stop.set()
        for t in clients:
            t.join(60)
        engine.close()
    assert {(a, p, text) for a, p, text in answers} <= {(a, p, alone[(a, p)]) for a, p, _ in answers}


def test_adapters_beyond_the_resident_ones_load_on_demand_and_in_flight_ones_are_never_evicted(tiny_adapters, alone):
    engine = lanes_engine(tiny_adapters, resident_adapters=1)
    try:
        def resident() -> list[str]:
            return [a["name"] for a in engine.info()["adapters"] if a["resident"]]
        assert resident() == ["legal"]  # both checked by llama.cpp at start, one kept
        for adapter in ("healthcare", "legal", "healthcare"):  # each evicts the other, idle one
            assert engine.for_adapter(adapter).generate([PROMPTS[1]], GREEDY)[0].text == alone[(adapter, PROMPTS[1])]
            assert resident() == [adapter]
        # Both in flight at once: the one being decoded is not evicted; the cap is exceeded until it is idle.
        got = [g.text for g in engine.generate(PROMPTS[:4], GREEDY, adapter=["legal", "healthcare"] * 2)]
        assert got == [alone[(a, p)] for a, p in zip(["legal", "healthcare"] * 2, PROMPTS[:4], strict=True)]
        assert sorted(resident()) == ["healthcare", "legal"]
        engine.for_adapter("healthcare").generate([PROMPTS[0]], GREEDY)
        assert resident() == ["healthcare"]
    finally:
        engine.close()
