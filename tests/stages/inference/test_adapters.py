"""Per-request LoRA adapters on the real llama.cpp runtime: a tiny base GGUF with two peft adapters converted to
GGUF, each against the model merged with it; requests of different adapters decoding at the same time."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from stages.errors import StageError
from stages.inference import SamplingParams, load_engine
from stages.inference.adapters import DomainRouter, read_adapter_facts
from tests.adapter_models import ROUTING_EXAMPLES

DOMAINS = ("legal", "healthcare")
PROMPTS = ["Can a tenant withhold rent?", "What lowers blood pressure?", "Explain a contract clause.",
           "Name a symptom of anaemia.", "Who signs a will?", "How is asthma treated?"]
GREEDY = SamplingParams(max_new_tokens=12)


@pytest.fixture(scope="module")
def adapted(tiny_adapters) -> dict:
    return tiny_adapters


@pytest.fixture(scope="module")
def engine(adapted):
    engine = load_engine("gguf", adapted["base"], threads=1, n_ctx=256, parallel=6,
                         adapters={d: adapted[d] for d in DOMAINS})
    yield engine
    engine.close()


def alone(path: Path, prompts: list[str]) -> list[str]:
    engine = load_engine("gguf", path, threads=1, n_ctx=256, parallel=1)
    try:
        return [engine.generate([p], GREEDY)[0].text for p in prompts]
    finally:
        engine.close()


def test_an_adapter_file_says_its_domain_system_prompt_and_routing_examples(adapted):
    facts = read_adapter_facts(adapted["legal"])
    assert (facts.domain, facts.system_prompt, facts.routing_examples) == (
        "legal", "You answer legal questions.", ROUTING_EXAMPLES["legal"])
    assert read_adapter_facts(adapted["legal"], domain="contracts").domain == "contracts"


def test_each_adapter_answers_like_the_model_merged_with_it(engine, adapted):
    prompts = PROMPTS[:3]
    base = [g.text for g in engine.generate(prompts, GREEDY)]
    assert base == alone(adapted["base"], prompts)
    answers = {}
    for domain in DOMAINS:
        answers[domain] = [g.text for g in engine.for_adapter(domain).generate(prompts, GREEDY)]
        merged = alone(adapted[f"merged-{domain}"], prompts)
        # base + adapter computes W x + B A x, the merged file (W + BA) x: equal up to rounding, so the
        # greedy texts agree at least over their first tokens.
        for ours, theirs in zip(answers[domain], merged, strict=True):
            assert ours[:8] == theirs[:8], (domain, ours, theirs)
    assert answers["legal"] != answers["healthcare"] != base, "the adapters change what the model says"
    nll, n = engine.for_adapter("legal").score("Q: rent?", " A tenant pays rent.")
    merged_engine = load_engine("gguf", adapted["merged-legal"], threads=1, n_ctx=256)
    try:
        merged_nll, merged_n = merged_engine.score("Q: rent?", " A tenant pays rent.")
    finally:
        merged_engine.close()
    assert n == merged_n and abs(nll - merged_nll) <= 1e-3 * max(1.0, abs(merged_nll))
    assert abs(engine.score("Q: rent?", " A tenant pays rent.")[0] - nll) > 1e-2


def test_requests_of_different_adapters_make_progress_together_and_answer_as_alone(engine):
    adapters = [None, "legal", "healthcare", "legal", None, "healthcare"]
    expected = [engine.for_adapter(a).generate([p], GREEDY)[0].text for a, p in zip(adapters, PROMPTS, strict=True)]
    [lane] = engine.scheduler.lanes  # one context: the groups take turns in it
    stats = lane.stats
    stats["max_active"], switches = 0, stats["adapter_switches"]
    results: dict[int, str] = {}

    def ask(i: int) -> None:
        results[i] = engine.for_adapter(adapters[i]).generate([PROMPTS[i]], GREEDY)[0].text

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [results[i] for i in range(len(PROMPTS))] == expected
    assert stats["max_active"] >= 3, "requests of three adapter groups were in flight at once"
    assert stats["adapter_switches"] - switches >= 2, "the groups took turns"


def test_unknown_or_foreign_adapters_are_refused_in_one_line(engine, adapted, tmp_path):
    with pytest.raises(StageError, match="'finance' is not loaded"):
        engine.for_adapter("finance")
    with pytest.raises(StageError) as refused:
        load_engine("gguf", adapted["base"], threads=1, n_ctx=64, adapters={"x": adapted["base"]})
    assert "not a LoRA adapter GGUF" in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(StageError, match="not found"):
        load_engine("gguf", adapted["base"], threads=1, n_ctx=64, adapters={"x": tmp_path / "none.gguf"})


def test_auto_routing_sends_a_legal_and_a_medical_question_to_their_domains():
    router = DomainRouter(ROUTING_EXAMPLES)
    assert router.route("Is a verbal agreement legally enforceable in court?")[0] == "legal"
    domain, scores = router.route("Which medication lowers cholesterol?")
    assert domain == "healthcare" and scores["healthcare"] > scores["legal"]
