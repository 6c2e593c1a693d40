"""The base stage: tiny-random, the embedded SmolLM2 and generic HF folders become plain HF folders."""

from __future__ import annotations

import json
import random

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from stages.base.materialize import fetch_hf, load_smollm2_tokenizer, materialize_base
from stages.config import compose
from stages.errors import StageError
from stages.inference.chat import ChatContract


def test_tiny_random_is_a_loadable_llama_with_chat_template(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "llama"
    assert sum(p.numel() for p in model.parameters()) < 5_000_000
    assert (tiny_model_dir / "model.safetensors").is_file()
    assert not list(tiny_model_dir.glob("*.bin"))
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                           add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "license: apache-2.0" in (tiny_model_dir / "README.md").read_text()


def test_tiny_random_is_deterministic_from_seed(tmp_path):
    cfg = compose(["model=tiny-random"]).model
    a = materialize_base(cfg, tmp_path / "a", seed=3)
    b = materialize_base(cfg, tmp_path / "b", seed=3)
    assert a["parameters"] == b["parameters"]
    wa = AutoModelForCausalLM.from_pretrained(tmp_path / "a").state_dict()
    wb = AutoModelForCausalLM.from_pretrained(tmp_path / "b").state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def _random_strings(n: int) -> list[str]:
    rng = random.Random(0)
    pieces = ["  42  ", "3.14159", "1,234,567", " x=12+7", "héllo", "naïve café", "日本語のテキスト", "emoji 😀👍",
              "\ttab\tseparated", "line\nbreak", "<|im_start|>user\nhi<|im_end|>", "mg/dL 120", "$2,500.00",
              "APR 6.5%", "  leading", "trailing   ", "MixedCASE Words", "don't can't", "a—b–c", "ß ẞ ǅ"]
    return [" ".join(rng.choice(pieces) for _ in range(rng.randint(1, 4))) for _ in range(n)]


def test_smollm2_tokenizer_matches_llama_cpp_digits_and_unicode(smollm2_gguf):
    """transformers' GGUF import loses SmolLM2's digit split; the base stage restores it (300/300 parity)."""
    import llama_cpp

    tokenizer = load_smollm2_tokenizer()
    llm = llama_cpp.Llama(str(smollm2_gguf), vocab_only=True, verbose=False)
    strings = _random_strings(300)
    mismatches = [s for s in strings
                  if tokenizer.encode(s, add_special_tokens=False) != llm.tokenize(s.encode(), add_bos=False,
                                                                                   special=True)]
    assert mismatches == []
    assert tokenizer.add_bos_token is False


def test_hf_source_copies_a_local_folder(tiny_model_dir, tmp_path):
    cfg = compose(["model=hf", f"model.path={tiny_model_dir}"]).model
    info = fetch_hf(cfg, tmp_path / "copy")
    assert info["parameters"] > 0
    assert (tmp_path / "copy" / "model.safetensors").is_file()


def test_hf_source_offline_and_missing_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = compose(["model=mistral-7b-instruct-v0.3", "model.path=nobody-xyz/does-not-exist-7b"]).model
    with pytest.raises(StageError, match="offline") as err:
        fetch_hf(cfg, tmp_path / "out")
    assert "\n" not in str(err.value)


def test_unknown_source_is_rejected(tmp_path):
    cfg = compose(["model=tiny-random", "model.source=magic"]).model
    with pytest.raises(StageError, match="unknown"):
        materialize_base(cfg, tmp_path / "x")


@pytest.mark.slow
def test_smollm2_materialises_and_answers(tmp_path):
    cfg = compose().model
    info = materialize_base(cfg, tmp_path / "base")
    assert info["parameters"] == 134_515_008
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "base")
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids["input_ids"].shape[1]:])


def base_checkpoint_without_template(family: str, out):
    """A tiny model of `family` whose tokenizer has no chat template (as pretrained-only checkpoints ship)."""
    from tests.stages.quantize.family_models import build

    build(family, out)
    config = json.loads((out / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    (out / "chat_template.jinja").unlink(missing_ok=True)
    return out


@pytest.mark.parametrize("family, template, end_of_turn", [("gemma3", "gemma", "<end_of_turn>"),
                                                            ("mistral", "plain", "</s>")])
def test_a_base_checkpoint_without_template_gets_one_from_its_own_tokens(family, template, end_of_turn, tmp_path):
    from stages.inference.gguf import load_llama
    from stages.quantize.convert import convert_hf_to_gguf

    source = base_checkpoint_without_template(family, tmp_path / "pretrained")
    cfg = compose(["model=hf", f"model.path={source}"]).model
    materialize_base(cfg, tmp_path / "base")
    card = (tmp_path / "base" / "README.md").read_text()
    assert f"Chat template: {template} (" in card and f"End of turn (training target and stop tokens): {end_of_turn}" in card
    assert "SmolLM" not in card and "im_start" not in (tmp_path / "base" / "chat_template.jinja").read_text()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "base")
    contract = ChatContract.from_hf(tokenizer)
    assert tokenizer.convert_ids_to_tokens(contract.end_of_turn_id) == end_of_turn
    # The GGUF carries the same template, and llama.cpp stops on the same token.
    gguf = convert_hf_to_gguf(tmp_path / "base", tmp_path / "base.gguf", outtype="f32")
    llm = load_llama(gguf, vocab_only=True)
    try:
        served = ChatContract.from_gguf(llm)
        assert served.template == tokenizer.chat_template
        assert served.end_of_turn_ids[0] == contract.end_of_turn_id
    finally:
        llm.close()
