"""The shared generation engines on real models: SmolLM2 GGUF (llama.cpp) and a tiny random HF Llama."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from stages.errors import StageError
from stages.inference import SamplingParams, StopStringFilter, load_engine

torch.set_num_threads(1)

MESSAGES = [{"role": "system", "content": "You are a medical assistant."},
            {"role": "user", "content": "What is hypertension?"}]


@pytest.fixture(scope="module")
def gguf_engine(smollm2_gguf):
    return load_engine("gguf", smollm2_gguf, threads=1, n_ctx=512)


@pytest.fixture(scope="module")
def hf_engine(tiny_model_dir):
    return load_engine("hf", tiny_model_dir, threads=1, batch_size=4)


# -- GGUF ---------------------------------------------------------------------------------------------------
def test_gguf_info_is_read_from_the_file(gguf_engine, smollm2_gguf):
    info = gguf_engine.info()
    assert info["type"] == "gguf" and info["quantization"] == "Q4_1"
    assert info["name"].startswith("Smollm2 135M")  # general.name
    assert info["context_length"] == 8192 and info["n_ctx"] == 512
    assert 130e6 < info["parameters"] < 140e6
    assert info["size_bytes"] == Path(smollm2_gguf).stat().st_size and info["domain"] is None


def test_gguf_domain_comes_from_the_manifest_next_to_it(tmp_path, smollm2_gguf):
    (tmp_path / "model-q4_1.gguf").symlink_to(smollm2_gguf)
    # the shape stages/quantize/publish.py writes
    (tmp_path / "manifest.json").write_text(json.dumps({
        "params": {"domain": "legal"}, "files": [{"file": "model-q4_1.gguf", "type": "q4_1"}]}))
    engine = load_engine("gguf", tmp_path / "model-q4_1.gguf", threads=1, n_ctx=128)
    assert engine.info()["domain"] == "legal"
    engine.close()


def test_gguf_chat_template_from_metadata(gguf_engine):
    prompt = gguf_engine.apply_chat_template(MESSAGES)
    assert prompt == ("<|im_start|>system\nYou are a medical assistant.<|im_end|>\n"
                      "<|im_start|>user\nWhat is hypertension?<|im_end|>\n<|im_start|>assistant\n")
    assert not gguf_engine.apply_chat_template(MESSAGES, add_generation_prompt=False).endswith("assistant\n")


def test_gguf_greedy_is_deterministic_and_stream_matches(gguf_engine):
    params = SamplingParams(max_new_tokens=12)
    [a] = gguf_engine.chat([MESSAGES], params)
    [b] = gguf_engine.chat([MESSAGES], params)
    assert a == b and a.finish_reason == "length" and a.completion_tokens == 12 and a.prompt_tokens > 10
    assert "blood pressure" in a.text.lower() or "hypertension" in a.text.lower()
    stream = gguf_engine.stream_chat(MESSAGES, params)
    pieces = list(stream)
    assert len(pieces) > 1 and "".join(pieces) == a.text == stream.result.text


def test_gguf_stop_string_and_end_of_turn(gguf_engine):
    [g] = gguf_engine.generate(["The capital of France is"], SamplingParams(max_new_tokens=30, stop=(".",)))
    assert g.text.strip() == "Paris" and g.finish_reason == "stop"
    [g] = gguf_engine.chat([[{"role": "user", "content": "Say hi."}]], SamplingParams(max_new_tokens=200))
    assert g.finish_reason == "stop" and g.completion_tokens < 200 and "<|im_end|>" not in g.text


def test_gguf_sampling_uses_the_seed(gguf_engine):
    params = SamplingParams(max_new_tokens=16, temperature=1.5, top_p=0.95, seed=7)
    [a] = gguf_engine.generate(["Once upon a time"], params)
    [b] = gguf_engine.generate(["Once upon a time"], params)
    texts = {gguf_engine.generate(["Once upon a time"], SamplingParams(16, 1.5, 0.95, seed=s))[0].text
             for s in (1, 2, 3)}
    assert a.text == b.text and len(texts) > 1


def test_gguf_closing_a_stream_stops_generation(gguf_engine):
    prompt = gguf_engine.apply_chat_template(MESSAGES)
    stream = gguf_engine.stream(prompt, SamplingParams(max_new_tokens=400))
    next(stream), next(stream)
    stream.close()
    # The context holds the prompt plus the few tokens generated, not 400 of them.
    assert gguf_engine.llm.n_tokens < gguf_engine.count_tokens(prompt) + 10
    [g] = gguf_engine.generate([prompt], SamplingParams(max_new_tokens=3))  # still usable
    assert g.completion_tokens == 3


@pytest.mark.parametrize("kind", ["gguf", "hf"])
def test_should_stop_ends_a_stream_even_while_no_text_comes_out(kind, gguf_engine, hf_engine):
    # A long stop string holds back every piece (it might be the start of the stop string), so the consumer
    # sees no text: only the engine's own check between tokens can end the generation at the server's word.
    engine = gguf_engine if kind == "gguf" else hf_engine
    calls = []
    params = SamplingParams(max_new_tokens=300, stop=("z" * 64,))
    stream = engine.stream("Once upon a time", params, should_stop=lambda: calls.append(1) or len(calls) > 4)
    assert "".join(stream) == "" or len(stream.text) < 300
    assert stream.result.finish_reason == "stop" and stream.result.completion_tokens <= 6


def test_gguf_should_stop_cancels_generate(gguf_engine):
    calls = []
    [g] = gguf_engine.generate(["Tell me a long story."], SamplingParams(max_new_tokens=300),
                               should_stop=lambda: calls.append(1) or len(calls) > 4)
    assert g.finish_reason == "stop" and g.completion_tokens <= 5


def test_gguf_score_chain_rule_and_likelihood_order(gguf_engine):
    prompt = gguf_engine.apply_chat_template(MESSAGES)
    first, second = "Hypertension is", " high blood pressure."
    nll_ab, n_ab = gguf_engine.score(prompt, first + second)
    nll_a, n_a = gguf_engine.score(prompt, first)
    nll_b, n_b = gguf_engine.score(prompt + first, second)
    assert n_ab == n_a + n_b == gguf_engine.count_tokens(first + second)
    assert nll_ab == pytest.approx(nll_a + nll_b, rel=2e-3)
    nonsense, n_non = gguf_engine.score(prompt, " purple banana seventeen under ocean")
    assert nll_ab / n_ab < nonsense / n_non
    assert math.exp(nll_ab / n_ab) < 50


def test_gguf_prompt_longer_than_context_is_a_clear_error(gguf_engine):
    with pytest.raises(StageError, match="context window"):
        gguf_engine.generate(["word " * 800], SamplingParams(max_new_tokens=4))


def test_gguf_missing_and_corrupt_files(tmp_path, smollm2_gguf):
    with pytest.raises(StageError, match="not found"):
        load_engine("gguf", tmp_path / "absent.gguf")
    (tmp_path / "text.gguf").write_text("hello")
    with pytest.raises(StageError, match="not a GGUF"):
        load_engine("gguf", tmp_path / "text.gguf")
    truncated = tmp_path / "truncated.gguf"
    with open(smollm2_gguf, "rb") as src, open(truncated, "wb") as dst:
        dst.write(src.read(2_000_000))
    with pytest.raises(StageError, match="truncated"):
        load_engine("gguf", truncated)


# -- HF -----------------------------------------------------------------------------------------------------
def test_hf_batched_left_padding_equals_one_at_a_time(hf_engine):
    prompts = ["Hi", "The patient presented with a long history of chest pain and", "Contract law"]
    params = SamplingParams(max_new_tokens=8)
    batched = hf_engine.generate(prompts, params)
    single = [hf_engine.generate([p], params)[0] for p in prompts]
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.prompt_tokens for g in batched] == [hf_engine.count_tokens(p) for p in prompts]
    assert all(g.completion_tokens <= 8 for g in batched)


def test_hf_stream_matches_generate_and_close_stops(hf_engine):
    prompt = hf_engine.apply_chat_template(MESSAGES)
    [g] = hf_engine.generate([prompt], SamplingParams(max_new_tokens=10))
    stream = hf_engine.stream(prompt, SamplingParams(max_new_tokens=10))
    assert "".join(stream) == g.text and stream.result.completion_tokens == g.completion_tokens
    stream = hf_engine.stream(prompt, SamplingParams(max_new_tokens=2000))
    pieces = [next(stream) for _ in range(2)]
    stream.close()  # returns only once the generating thread has stopped
    assert len(pieces) == 2


def test_hf_stop_strings(hf_engine):
    [g] = hf_engine.generate(["Hello"], SamplingParams(max_new_tokens=30))
    assert len(g.text) > 4
    stop = g.text[2:4]
    [cut] = hf_engine.generate(["Hello"], SamplingParams(max_new_tokens=30, stop=(stop,)))
    assert stop not in cut.text and g.text.startswith(cut.text) and cut.finish_reason == "stop"
    stream = hf_engine.stream("Hello", SamplingParams(max_new_tokens=30, stop=(stop,)))
    assert "".join(stream) == cut.text


def test_hf_score_matches_token_log_probs(hf_engine):
    prompt, continuation = "The contract", " is void because"
    nll, n = hf_engine.score(prompt, continuation)
    tok = hf_engine.tokenizer
    ids = tok(prompt)["input_ids"] + tok(continuation, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(hf_engine.model(torch.tensor([ids])).logits[0], -1)
    start = len(ids) - n
    expected = -sum(logp[i - 1, ids[i]].item() for i in range(start, len(ids)))
    assert n == hf_engine.count_tokens(continuation) and nll == pytest.approx(expected, rel=1e-5)


def test_hf_info_and_errors(hf_engine, tiny_model_dir, tmp_path):
    info = hf_engine.info()
    assert info["type"] == "hf" and info["quantization"] == "float32"
    assert info["parameters"] == sum(p.numel() for p in hf_engine.model.parameters()) > 0
    with pytest.raises(StageError, match="config.json missing"):
        load_engine("hf", tmp_path / "nothing")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"\0" * 64)
    with pytest.raises(StageError, match="could not load"):
        load_engine("hf", broken)
    with pytest.raises(StageError, match="adapter_config.json missing"):
        load_engine("hf", tiny_model_dir, adapter=tmp_path)
    with pytest.raises(StageError, match="unknown engine kind"):
        load_engine("vllm", tiny_model_dir)


def test_stop_string_filter_holds_back_split_stops():
    f = StopStringFilter(("STOP",))
    out = f.feed("abcST") + f.feed("O") + f.feed("Pxyz")
    assert out == "abc" and f.stopped
    f = StopStringFilter(("STOP",))
    assert f.feed("abcST") + f.feed("ay") + f.flush() == "abcSTay" and not f.stopped
    # Text that cannot begin a stop string goes out at once (no fixed hold-back delaying the first words).
    f = StopStringFilter(("<|im_end|>", "STOP"))
    assert f.feed("Hello") == "Hello" and f.feed(" wor") == " wor" and f.feed("ld <|im") == "ld "
    assert f.feed("_en") == "" and f.feed("d|>tail") == "" and f.stopped
    f = StopStringFilter(("<|im_end|>",))
    assert f.feed("a <|i") == "a " and f.feed("x") == "<|ix" and f.flush() == ""
