"""HF -> GGUF conversion: logits/generation parity with transformers, tokenizer parity, metadata, round trip,
clear errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from llama_cpp import Llama

from stages.errors import StageError
from stages.inference.gguf import load_llama
from stages.quantize.convert import convert_hf_to_gguf
from stages.quantize.verify import check_tokenizer_parity, greedy_tokens

PROMPT = "<|im_start|>user\nWhat is the normal blood pressure for 42 year olds?<|im_end|>\n<|im_start|>assistant\n"


def hf_model(model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval(),
            AutoTokenizer.from_pretrained(model_dir))


def assert_logits_and_greedy_match(model_dir, gguf_path, n_new=16, prompt=PROMPT):
    model, tokenizer = hf_model(model_dir)
    ids = tokenizer(prompt)["input_ids"]
    with torch.no_grad():
        hf_logits = model(torch.tensor([ids])).logits[0].numpy()
        hf_greedy = model.generate(torch.tensor([ids]), max_new_tokens=n_new, do_sample=False,
                                   eos_token_id=None)[0, len(ids):].tolist()
    llm = load_llama(gguf_path, threads=1, n_ctx=256, logits_all=True, f32_kv=True)
    try:
        assert llm.tokenize(prompt.encode(), add_bos=True, special=True) == ids
        llm.eval(ids)
        gguf_logits = np.asarray(llm.scores[: len(ids)])
        assert np.abs(gguf_logits - hf_logits).max() < 1e-4
        assert greedy_tokens(llm, prompt, n_new) == hf_greedy
    finally:
        llm.close()


def test_tiny_f32_logits_and_greedy_match_transformers(tiny_model_dir, tiny_f32_gguf):
    assert_logits_and_greedy_match(tiny_model_dir, tiny_f32_gguf)


@pytest.mark.slow  # ~40 s: reads and dequantizes the 98 MB package GGUF
@pytest.mark.smollm
def test_smollm2_slice_f32_logits_and_greedy_match_transformers(smollm2_slice_dir, tmp_path):
    """Real SmolLM2 weights (GQA 9/3 heads, hidden 576) exercise the q/k permutation for real."""
    out = convert_hf_to_gguf(smollm2_slice_dir, tmp_path / "slice-f32.gguf", outtype="f32")
    assert_logits_and_greedy_match(smollm2_slice_dir, out)


def test_mistral_with_sentencepiece_style_tokenizer(tiny_mistral_spm_dir, tmp_path):
    """The "llama" vocabulary path (scores from merge ranks, byte fallback, BOS, untied output.weight)."""
    out = convert_hf_to_gguf(tiny_mistral_spm_dir, tmp_path / "mistral-f32.gguf", outtype="f32")
    llm = Llama(str(out), vocab_only=True, verbose=False)
    meta = llm.metadata
    llm.close()
    assert meta["tokenizer.ggml.model"] == "llama" and meta["tokenizer.ggml.add_bos_token"] == "true"
    assert "tokenizer.chat_template" in meta
    assert_logits_and_greedy_match(tiny_mistral_spm_dir, out, prompt="The patient has 120/80 mmHg, naïve 東京 🙂")
    assert check_tokenizer_parity(tiny_mistral_spm_dir, out, probe_strings(), limit=1000) == []


def test_f16_and_bf16_outputs_stay_close(tiny_model_dir, tiny_f32_gguf, tmp_path):
    ids = list(range(100, 140))
    reference = None
    for outtype, tolerance in (("f32", 0.0), ("f16", 2e-2), ("bf16", 1e-1)):
        path = tiny_f32_gguf if outtype == "f32" else convert_hf_to_gguf(tiny_model_dir, tmp_path / f"{outtype}.gguf",
                                                                          outtype=outtype)
        llm = load_llama(path, threads=1, n_ctx=64, logits_all=True, f32_kv=True)
        llm.eval(ids)
        logits = np.asarray(llm.scores[: len(ids)])
        llm.close()
        if reference is None:
            reference = logits
        assert np.abs(logits - reference).max() <= tolerance
    assert (tmp_path / "bf16.gguf").stat().st_size < 0.6 * tiny_f32_gguf.stat().st_size


def probe_strings() -> list[str]:
    """~300 strings: unicode words, digit runs with spaces, whitespace runs, punctuation, chat markers."""
    words = ["blood", "Pressure", "naïve", "café", "Straße", "東京", "пациент", "مرحبا", "🙂", "x²", "don't",
             "mg/dL", "HbA1c", "e.g.", "—", "\t", "COVID-19"]
    numbers = ["1", "42", "007", "3.14", "1,000", "120/80", "2024-11-25", "99%", "-5", "1e-3"]
    spaces = ["", " ", "  ", "   ", "\n", "\n\n", " \n "]
    out = []
    for i, word in enumerate(words):
        for j, number in enumerate(numbers):
            sep = spaces[(i + j) % len(spaces)]
            out.append(f"{word}{sep}{number}{spaces[(i * j) % len(spaces)]}{words[(i + j) % len(words)]}")
    out += [f"<|im_start|>{role}\n{w} {n}<|im_end|>\n" for role in ("system", "user", "assistant")
            for w, n in zip(words, numbers, strict=False)]
    out += [" " * k + "end" for k in range(1, 9)] + ["a" * k for k in (1, 5, 17, 64)] + ["", " ", "\n"]
    return out


def test_tokenization_parity_on_probe_strings(tiny_model_dir, tiny_f32_gguf):
    texts = probe_strings()
    assert len(texts) >= 200
    assert check_tokenizer_parity(tiny_model_dir, tiny_f32_gguf, texts, limit=1000) == []


def test_metadata_has_chat_template_special_tokens_and_pre(tiny_model_dir, tiny_f32_gguf):
    llm = Llama(str(tiny_f32_gguf), vocab_only=True, verbose=False)
    meta = llm.metadata
    llm.close()
    assert meta["tokenizer.chat_template"] == (tiny_model_dir / "chat_template.jinja").read_text()
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "smollm"
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert int(meta["tokenizer.ggml.eos_token_id"]) == config["eos_token_id"]
    assert meta["tokenizer.ggml.add_bos_token"] == "false"


@pytest.mark.slow  # ~45 s: transformers' GGUF loader is pure Python
def test_transformers_reads_our_gguf_back(tiny_model_dir, tiny_f32_gguf):
    from transformers import AutoModelForCausalLM

    model, tokenizer = hf_model(tiny_model_dir)
    back = AutoModelForCausalLM.from_pretrained(tiny_f32_gguf.parent, gguf_file=tiny_f32_gguf.name,
                                                dtype=torch.float32).eval()
    ids = torch.tensor([tokenizer(PROMPT)["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(back(ids).logits, model(ids).logits, atol=1e-4)


def test_unsupported_architecture_names_llama_cpp_path(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "gpt2ish"
    shutil.copytree(tiny_model_dir, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["architectures"] = ["GPT2LMHeadModel"]
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(StageError, match="quantize.llama_cpp_path"):
        convert_hf_to_gguf(model_dir, tmp_path / "out.gguf")
    with pytest.raises(StageError, match="no convert_hf_to_gguf.py"):
        convert_hf_to_gguf(model_dir, tmp_path / "out.gguf", llama_cpp_path=str(tmp_path))
    assert not (tmp_path / "out.gguf").exists()
    assert not list(tmp_path.glob(".out.gguf*"))


def test_missing_weights_and_unknown_outtype_are_clear(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "noweights"
    shutil.copytree(tiny_model_dir, model_dir)
    for weights in model_dir.glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(StageError, match="safetensors"):
        convert_hf_to_gguf(model_dir, tmp_path / "x.gguf")
    with pytest.raises(StageError, match="outtype"):
        convert_hf_to_gguf(tiny_model_dir, tmp_path / "x.gguf", outtype="q4")
    assert not (tmp_path / "x.gguf").exists()
