"""One chat contract for three chat styles (ChatML, a template that renders BOS, an end of turn that is not
the EOS): the prompt ids of a chat are the same in training, the HF engine, the GGUF engine, transformers'
`apply_chat_template` and the API's usage; every engine stops on the model's own end of turn."""

from __future__ import annotations

import httpx
import pytest
import torch
from transformers import AutoTokenizer

from stages.inference import SamplingParams, load_engine
from stages.inference.chat import ChatContract
from stages.train.data import IGNORE_INDEX, hf_contract, tokenize_chat
from tests.serving.conftest import start_thread_server

torch.set_num_threads(1)

CHAT = [{"role": "system", "content": "You answer medical questions briefly."},
        {"role": "user", "content": "What is a normal resting heart rate, 60 to 100?"}]
ANSWER = {"role": "assistant", "content": "For adults, 60 to 100 beats per minute."}


@pytest.fixture(scope="module")
def engines(style_model):
    hf = load_engine("hf", style_model.hf_dir, threads=1, batch_size=2)
    gguf = load_engine("gguf", style_model.gguf, threads=1, n_ctx=256)
    yield hf, gguf
    gguf.close()


def test_contract_reads_template_bos_and_end_of_turn_from_the_model(style_model, engines):
    hf, gguf = engines
    for contract in (hf.contract, gguf.contract):
        assert contract.end_of_turn_id == style_model.end_of_turn_id  # not simply the EOS
        assert style_model.eos_id in contract.end_of_turn_ids
    if style_model.style == "llama3":  # the generation config's multi-EOS list is kept whole
        assert set(hf.contract.end_of_turn_ids) >= {style_model.eos_id, style_model.end_of_turn_id}
    assert hf.contract.stop_strings[0] == gguf.contract.stop_strings[0]


def test_prompt_ids_are_identical_in_training_both_engines_and_transformers(style_model, engines):
    hf, gguf = engines
    tokenizer = AutoTokenizer.from_pretrained(style_model.hf_dir)
    reference = list(tokenizer.apply_chat_template(CHAT, tokenize=True, add_generation_prompt=True)["input_ids"])
    input_ids, labels = tokenize_chat(*hf_contract(tokenizer), [*CHAT, ANSWER])
    n_prompt = labels.index(next(x for x in labels if x != IGNORE_INDEX))
    training = input_ids[:n_prompt]
    hf_ids = hf.prompt_ids(hf.apply_chat_template(CHAT))
    gguf_ids = gguf.prompt_ids(gguf.apply_chat_template(CHAT))
    assert training == hf_ids == gguf_ids == reference
    if style_model.bos_id is not None:  # rendered by the template and never added a second time
        assert reference[0] == style_model.bos_id and reference.count(style_model.bos_id) == 1
    else:
        assert style_model.bos_id not in reference[:1]
    # Training supervises the answer closed by the same end-of-turn token the engines stop on.
    assert input_ids[-1] == style_model.end_of_turn_id == hf.contract.end_of_turn_id


def test_raw_prompts_get_bos_once_where_the_tokenizer_adds_it(style_model, engines):
    hf, gguf = engines
    tokenizer = AutoTokenizer.from_pretrained(style_model.hf_dir)
    expected = list(tokenizer("Hypertension is")["input_ids"])  # what the HF tokenizer does to raw text
    assert hf.prompt_ids("Hypertension is") == gguf.prompt_ids("Hypertension is") == expected


def test_every_engine_stops_on_the_models_end_of_turn(style_model, engines):
    params = SamplingParams(max_new_tokens=12)
    for engine in engines:
        [g] = engine.chat([CHAT], params)
        assert (g.finish_reason, g.completion_tokens, g.text) == ("stop", 0, ""), engine.name
        stream = engine.stream_chat(CHAT, params)
        assert list(stream) == [] and stream.result.finish_reason == "stop"


def test_control_a_model_that_never_ends_its_turn_runs_to_the_limit(chatty_gemma_model):
    params = SamplingParams(max_new_tokens=5)
    for kind, path in (("hf", chatty_gemma_model.hf_dir), ("gguf", chatty_gemma_model.gguf)):
        engine = load_engine(kind, path, threads=1, n_ctx=256)
        [g] = engine.chat([CHAT], params)
        assert (g.finish_reason, g.completion_tokens) == ("length", 5), kind
        assert g.text.count("the") == 5
        if kind == "gguf":
            engine.close()


def test_api_usage_prompt_tokens_equals_the_contract_count(style_model, engines):
    _, gguf = engines
    expected = len(gguf.prompt_ids(gguf.apply_chat_template(CHAT)))
    server = start_thread_server(f"serve.model={style_model.gguf}", "serve.rerank=false", "serve.system_prompt=",
                                 engine=load_engine("gguf", style_model.gguf, threads=1, n_ctx=256))
    try:
        body = {"messages": CHAT, "max_tokens": 4, "temperature": 0}
        out = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60).json()
        assert out["usage"]["prompt_tokens"] == expected
        assert out["choices"][0]["finish_reason"] == "stop" and out["usage"]["completion_tokens"] == 0
        stream = httpx.post(f"{server.url}/v1/chat/completions", json={**body, "stream": True,
                            "stream_options": {"include_usage": True}}, timeout=60).text
        assert f'"prompt_tokens": {expected}' in stream
    finally:
        server.stop()


def test_a_model_without_a_chat_template_fails_chat_with_one_line():
    contract = ChatContract(None, "", "</s>", None, False, (2,), ("</s>",))
    with pytest.raises(Exception, match="no chat template"):
        contract.render(CHAT)


def test_rendering_matches_transformers_on_template_features(tiny_model_dir):
    # {% generation %} blocks (assistant masks), `tools is not none`, loop controls, tojson, raise_exception.
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = (
        "{% if tools is not none %}[TOOLS]{% endif %}{% for m in messages %}{% if m['role'] == 'assistant' %}"
        "{% generation %}A: {{ m['content'] }}{% endgeneration %}{% elif m['role'] == 'system' %}S: "
        "{{ m['content'] | tojson }}{% else %}U: {{ m['content'] }}{% endif %}\n{% if loop.index > 3 %}"
        "{% break %}{% endif %}{% endfor %}{% if add_generation_prompt %}A:{% endif %}")
    contract = ChatContract.from_hf(tokenizer)
    for messages in (CHAT, [*CHAT, ANSWER], [*CHAT, ANSWER, CHAT[1], ANSWER]):
        for add in (True, False):
            assert contract.render(messages, add) == tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add)
