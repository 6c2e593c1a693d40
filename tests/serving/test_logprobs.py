"""`logprobs` / `top_logprobs` on chat and completions (streamed and not), `echo` with prompt-token logprobs and
`max_tokens: 0`, and the tokenizer endpoints, on real servers; every value is checked against a direct
llama.cpp evaluation of the same GGUF (+ the domain's LoRA adapter) in this process. Then lm-evaluation-harness
itself scores a small local task through `local-completions` (loglikelihood) and `local-chat-completions`
(generation) against the server."""

from __future__ import annotations

import json

import httpx
import numpy as np
import openai
import pytest
import yaml

from stages.inference.logprobs import log_softmax
from tests.serving.conftest import start_thread_server
from tests.serving.test_domains import adapter_overrides

# The direct contexts below use flash attention as the served ones do ("auto" turns it on here); then
# generated and direct values agree to float rounding (without it they differ by ~0.007).
TOLERANCE = 1e-4
QUESTION = "What is asthma?"


def direct(path, lora=None):
    from llama_cpp import Llama

    return Llama(str(path), n_ctx=512, logits_all=True, lora_path=str(lora) if lora else None, verbose=False,
                 n_threads=1, flash_attn=True)


def direct_prompt_logprobs(llm, ids: list[int]) -> list[float]:
    llm.reset()
    llm.eval(ids)
    return [float(log_softmax(llm.scores[i])[token]) for i, token in enumerate(ids[1:])]


def direct_greedy(llm, ids: list[int], n: int) -> list[tuple[bytes, float, list[float]]]:
    """n greedy tokens after `ids`: (bytes, logprob, the top-3 logprobs) each."""
    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(n):
        row = log_softmax(llm.scores[llm.n_tokens - 1])
        token = int(np.argmax(row))
        if llm.token_eos() == token or token in (1, 2):  # SmolLM2's <|im_start|>/<|im_end|>
            break
        out.append((llm.detokenize([token]), float(row[token]), sorted(row, reverse=True)[:3]))
        llm.eval([token])
    return out


@pytest.fixture(scope="module")
def served(gguf_overrides):
    server = start_thread_server(*gguf_overrides, "serve.rerank=false")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def base_id(served) -> str:
    return httpx.get(f"{served.url}/v1/models").json()["data"][0]["id"]


@pytest.fixture(scope="module")
def base_llm(published_gguf):
    return direct(published_gguf)


def tokenize(url: str, text: str) -> list[int]:
    return httpx.post(f"{url}/tokenize", json={"prompt": text, "add_special_tokens": True}).json()["tokens"]


def test_chat_logprobs_are_the_models_log_softmax_streamed_or_not(served, base_id, base_llm):
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0)
    messages = [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": QUESTION}]
    kwargs = dict(model=base_id, messages=messages, max_tokens=8, temperature=0, logprobs=True, top_logprobs=3)
    reply = client.chat.completions.create(**kwargs).choices[0]
    content = reply.logprobs.content
    engine = served.app.state.ctx.generation.worker.engine  # its chat template renders the prompt
    prompt = engine.prompt_ids(engine.apply_chat_template(messages))
    expected = direct_greedy(base_llm, prompt, len(content))
    assert "".join(t.token for t in content) == reply.message.content
    assert [bytes(t.bytes) for t in content] == [b for b, _, _ in expected]
    for got, (_, logprob, top) in zip(content, expected, strict=True):
        assert abs(got.logprob - logprob) < TOLERANCE
        assert len(got.top_logprobs) == 3 and got.top_logprobs[0].token == got.token  # greedy: the best
        assert np.allclose([t.logprob for t in got.top_logprobs], top, atol=TOLERANCE)
    streamed = [t for chunk in client.chat.completions.create(**kwargs, stream=True)
                if chunk.choices and chunk.choices[0].logprobs for t in chunk.choices[0].logprobs.content]
    assert [(t.token, round(t.logprob, 4)) for t in streamed] == [(t.token, round(t.logprob, 4)) for t in content]


def test_echo_gives_each_prompt_tokens_logprob_text_or_token_ids(served, base_id, base_llm):
    prompt = "Asthma is a chronic disease of the"
    ids = tokenize(served.url, prompt)
    expected = direct_prompt_logprobs(base_llm, ids)
    for sent in (prompt, ids):
        body = httpx.post(f"{served.url}/v1/completions", timeout=60, json={
            "model": base_id, "prompt": sent, "max_tokens": 0, "echo": True, "logprobs": 2}).json()
        [choice] = body["choices"]
        logprobs = choice["logprobs"]
        assert choice["text"] == prompt and "".join(logprobs["tokens"]) == prompt
        assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
        assert np.allclose(logprobs["token_logprobs"][1:], expected, atol=TOLERANCE)
        assert all(len(top) <= 2 and max(top.values()) >= lp - 1e-9
                   for top, lp in zip(logprobs["top_logprobs"][1:], logprobs["token_logprobs"][1:], strict=True))
        assert logprobs["text_offset"] == [len("".join(logprobs["tokens"][:i])) for i in range(len(ids))]
        assert body["usage"]["prompt_tokens"] == len(ids) and body["usage"]["completion_tokens"] == 0
    # with a generated token after the prompt (what lm-eval's local-completions sends)
    body = httpx.post(f"{served.url}/v1/completions", timeout=60, json={
        "model": base_id, "prompt": ids, "max_tokens": 1, "echo": True, "logprobs": 1, "temperature": 0}).json()
    logprobs = body["choices"][0]["logprobs"]
    [(token, logprob, _)] = direct_greedy(base_llm, ids, 1)
    assert len(logprobs["tokens"]) == len(ids) + 1 and logprobs["tokens"][-1] == token.decode()
    assert abs(logprobs["token_logprobs"][-1] - logprob) < TOLERANCE


def test_an_adapters_logprobs_are_those_of_the_base_with_that_adapter(tiny_adapters):
    server = start_thread_server(*adapter_overrides(tiny_adapters))
    try:
        prompt = "Is a verbal agreement legally enforceable in court?"
        ids = tokenize(server.url, prompt)
        legal = direct(tiny_adapters["base"], tiny_adapters["legal"])
        for model, llm in (("domain-llm-legal", legal), ("domain-llm-healthcare", None)):
            body = httpx.post(f"{server.url}/v1/completions", timeout=60, json={
                "model": model, "prompt": ids, "max_tokens": 4, "echo": True, "logprobs": 0, "temperature": 0})
            logprobs = body.json()["choices"][0]["logprobs"]
            if llm is None:  # another adapter: another distribution
                assert not np.allclose(logprobs["token_logprobs"][1:len(ids)], direct_prompt_logprobs(legal, ids),
                                       atol=TOLERANCE)
                continue
            assert np.allclose(logprobs["token_logprobs"][1:len(ids)], direct_prompt_logprobs(llm, ids),
                               atol=TOLERANCE)
            generated = direct_greedy(llm, ids, 4)
            assert [t.encode() for t in logprobs["tokens"][len(ids):]] == [b for b, _, _ in generated]
            assert np.allclose(logprobs["token_logprobs"][len(ids):], [lp for _, lp, _ in generated], atol=TOLERANCE)
    finally:
        server.stop()


def test_tokenizer_endpoints_round_trip(served):
    info = httpx.get(f"{served.url}/tokenizer_info").json()
    assert info["eos_token"] and info["chat_template"] and info["model_max_length"] > 0
    ids = httpx.post(f"{served.url}/tokenize", json={"prompt": "<|im_start|>user hi", "add_special_tokens": False}).json()
    assert ids["count"] == len(ids["tokens"]) and ids["tokens"][0] == 1  # control-token text is parsed
    text = httpx.post(f"{served.url}/detokenize", json={"tokens": ids["tokens"]}).json()["prompt"]
    assert text == "<|im_start|>user hi"
    bad = httpx.post(f"{served.url}/detokenize", json={"tokens": [10**7]})
    assert bad.status_code == 422 and "tokens[0]: token id 10000000 is not in the vocabulary" in bad.text


@pytest.mark.parametrize("body, message", [
    ({"prompt": "x", "max_tokens": 0}, "max_tokens: 0 is only meaningful with echo"),
    ({"prompt": "x", "echo": True, "stream": True}, "echo: not with stream"),
    ({"prompt": [10**7], "echo": True, "max_tokens": 0, "logprobs": 1}, "prompt[0]: token id 10000000"),
    ({"prompt": "x", "logprobs": 21}, "logprobs"),
])
def test_completion_requests_that_cannot_be_met_are_422(served, body, message):
    response = httpx.post(f"{served.url}/v1/completions", json=body, timeout=30)
    assert response.status_code == 422 and message in response.text, response.text


def test_chat_top_logprobs_need_logprobs(served):
    response = httpx.post(f"{served.url}/v1/chat/completions", timeout=30, json={
        "messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2})
    assert response.status_code == 422 and "top_logprobs: needs logprobs=true" in response.text


def test_lm_eval_scores_the_served_model(served, base_id, base_llm, tmp_path):
    """lm-eval's local-completions finds /tokenize (its remote tokenizer) and sends token ids with echo; the
    loglikelihood of each choice it reads equals the direct evaluation. local-chat-completions generates."""
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    docs = [{"question": "What organ pumps blood through the body?", "choices": ["The heart", "The liver"], "answer": 0},
            {"question": "What does a thermometer measure?", "choices": ["Weight", "Temperature"], "answer": 1}]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    data = {"dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(tmp_path / "docs.jsonl")}},
            "test_split": "test"}
    (tmp_path / "mc.yaml").write_text(yaml.safe_dump({
        "task": "served_mc", **data, "output_type": "multiple_choice", "doc_to_choice": "{{choices}}",
        "doc_to_text": "Question: {{question}}\nAnswer:", "doc_to_target": "answer",
        "metric_list": [{"metric": "acc"}]}))
    (tmp_path / "gen.yaml").write_text(yaml.safe_dump({
        "task": "served_gen", **data, "output_type": "generate_until", "doc_to_text": "{{question}}",
        "doc_to_target": "{{choices[answer]}}", "metric_list": [{"metric": "exact_match"}],
        "generation_kwargs": {"until": [], "max_gen_toks": 8, "do_sample": False}}))
    tasks = TaskManager(include_path=str(tmp_path))
    args = f"model={base_id},num_concurrent=1,max_retries=1"
    mc = lm_eval.simple_evaluate(model="local-completions", model_args=f"base_url={served.url}/v1/completions,{args}",
                                 tasks=["served_mc"], task_manager=tasks, log_samples=True)
    assert mc["results"]["served_mc"]["sample_len"] == 2
    for sample in mc["samples"]["served_mc"]:
        context = f"Question: {sample['doc']['question']}\nAnswer:"
        for choice, [(loglikelihood, _)] in zip(sample["doc"]["choices"], sample["resps"], strict=True):
            whole, head = base_llm.tokenize((context + " " + choice).encode(), add_bos=False, special=True), \
                base_llm.tokenize(context.encode(), add_bos=False, special=True)
            expected = sum(direct_prompt_logprobs(base_llm, whole)[len(head) - 1:])
            assert abs(loglikelihood - expected) < 5 * TOLERANCE, (choice, loglikelihood, expected)
    gen = lm_eval.simple_evaluate(model="local-chat-completions", apply_chat_template=True, tasks=["served_gen"],
                                  model_args=f"base_url={served.url}/v1/chat/completions,{args}", task_manager=tasks,
                                  log_samples=True)
    answers = [s["resps"][0][0] for s in gen["samples"]["served_gen"]]
    assert len(answers) == 2 and all(isinstance(a, str) and a for a in answers)
