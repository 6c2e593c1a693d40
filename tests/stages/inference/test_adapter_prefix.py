"""KV computed under one LoRA adapter is never reused under another (real llama.cpp, the tiny base GGUF with
two domain adapters): a long system prompt shared by requests of two adapters, sent one adapter after the
other and interleaved, gives each request its own adapter's answer, the one it gets with the cache cold."""

from __future__ import annotations

import threading

import pytest

from stages.inference import SamplingParams, load_engine

DOMAINS = ("legal", "healthcare")
SYSTEM = ("You are a careful assistant for a small clinic and a small law firm. Answer in one short "
          "sentence, name the rule or the finding you rely on, and say when a question needs a professional "
          "in person.")
QUESTIONS = ["Can a tenant withhold rent?", "What lowers blood pressure?", "Who signs a will?",
             "How is asthma treated?"]
GREEDY = SamplingParams(max_new_tokens=12)


def messages(question: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]


def cold_answer(adapted: dict, adapter: str | None, question: str) -> str:
    """The answer of a fresh engine: nothing cached, nothing shared."""
    engine = load_engine("gguf", adapted["base"], threads=1, n_ctx=256, parallel=1,
                         adapters={d: adapted[d] for d in DOMAINS})
    try:
        return engine.for_adapter(adapter).chat([messages(question)], GREEDY)[0].text
    finally:
        engine.close()


@pytest.fixture(scope="module")
def cold(tiny_adapters) -> dict[tuple[str | None, str], str]:
    answers = {(a, q): cold_answer(tiny_adapters, a, q) for a in (*DOMAINS, None) for q in QUESTIONS}
    for q in QUESTIONS:  # the adapters answer differently, so KV of the wrong one would show in the text
        assert len({answers[(a, q)] for a in (*DOMAINS, None)}) == 3, q
    # Each adapter answers as the model merged with it (equal up to rounding: the first characters).
    merged = load_engine("gguf", tiny_adapters["merged-legal"], threads=1, n_ctx=256)
    try:
        for q in QUESTIONS[:2]:
            assert merged.chat([messages(q)], GREEDY)[0].text[:8] == answers[("legal", q)][:8]
    finally:
        merged.close()
    return answers


@pytest.mark.parametrize("kv_unified", [False, True], ids=["stream-per-sequence", "unified"])
def test_one_adapter_after_the_other_never_reuses_the_others_prefix(tiny_adapters, cold, kv_unified):
    engine = load_engine("gguf", tiny_adapters["base"], threads=1, n_ctx=256, parallel=1,
                         kv_unified=kv_unified, adapters={d: tiny_adapters[d] for d in DOMAINS})
    try:
        [scheduler] = engine.scheduler.lanes
        two = ("legal", None)  # as many groups as prefix holders (2): each keeps its own
        order = [(a, q) for q in QUESTIONS for a in two]  # legal, base, next question
        got = {(a, q): engine.for_adapter(a).chat([messages(q)], GREEDY)[0].text for a, q in order}
        assert got == {job: cold[job] for job in order}
        # The shared system prompt was reused (from each group's own holder: the one slot last held the other
        # adapter's KV), and both groups' holders hold the same prefix in their own sequences.
        prefix = scheduler.holders[None].tokens
        assert len(prefix) > 30 and scheduler.holders["legal"].tokens == prefix
        assert scheduler.holders["legal"].seq_id != scheduler.holders[None].seq_id
        assert scheduler.stats["prefix_tokens_reused"] >= 2 * (len(QUESTIONS) - 2) * len(prefix)
        # A third group takes the least recently used holder (legal's): the answers stay each adapter's own.
        order = [(a, q) for q in QUESTIONS for a in (*DOMAINS, None)]
        got = {(a, q): engine.for_adapter(a).chat([messages(q)], GREEDY)[0].text for a, q in order}
        assert got == cold
        assert len(scheduler.holders) == 2  # (three groups in turn over two holders: each evicts the next)
    finally:
        engine.close()


def test_interleaved_requests_of_both_adapters_get_their_own_answers(tiny_adapters, cold):
    engine = load_engine("gguf", tiny_adapters["base"], threads=1, n_ctx=256, parallel=4,
                         adapters={d: tiny_adapters[d] for d in DOMAINS})
    try:
        jobs = [(a, q) for q in QUESTIONS for a in (*DOMAINS, None)] * 2
        results: dict[int, str] = {}

        def ask(i: int) -> None:
            adapter, question = jobs[i]
            results[i] = engine.for_adapter(adapter).chat([messages(question)], GREEDY)[0].text

        for wave in range(0, len(jobs), 6):  # several adapters in flight at once, sharing the system prompt
            threads = [threading.Thread(target=ask, args=(i,)) for i in range(wave, min(wave + 6, len(jobs)))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
        assert [results[i] for i in range(len(jobs))] == [cold[job] for job in jobs]
        assert engine.scheduler.stats["prefix_tokens_reused"] > 0
        assert engine.scheduler.stats["adapter_switches"] >= 2
    finally:
        engine.close()
