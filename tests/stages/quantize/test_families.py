"""Every model family we convert, on a tiny random model of its own kind (family_models.py): transformers fp32
vs llama.cpp on our f32 GGUF (f32 KV cache) agree on logits and greedy tokens, the tokenizers agree, and the
chat prompt ids are the same from the HF folder and from the GGUF."""

from __future__ import annotations

import json
import shutil
import unicodedata

import numpy as np
import pytest
import torch

from stages.errors import StageError
from stages.inference.chat import ChatContract
from stages.inference.gguf import load_llama
from stages.quantize.convert import convert_hf_to_gguf
from stages.quantize.verify import check_tokenizer_parity
from tests.stages.quantize.family_models import FAMILIES, build
from tests.stages.quantize.test_convert import probe_strings

ARCH = {"llama": "llama", "mistral": "llama", "llama3": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma2": "gemma2", "gemma3": "gemma3",
        "phi3": "phi3"}
# llama.cpp's CPU GELU (Gemma's activation) reads a table of f16 inputs (GGML_GELU_FP16 in ggml-cpu/vec.h), which
# alone moves these logits (|logit| up to ~6) by ~1e-3; SiLU families are exact to ~1e-5.
TOLERANCE = {"gemma2": 4e-3, "gemma3": 4e-3}
END_OF_TURN = {"llama": "<|im_end|>", "mistral": "</s>", "llama3": "<|eot_id|>", "qwen2": "<|im_end|>", "qwen3": "<|im_end|>", "gemma2": "<end_of_turn>",
               "gemma3": "<end_of_turn>", "phi3": "<|end|>"}
MESSAGES = [{"role": "user", "content": "What is a normal resting heart rate?"},
            {"role": "assistant", "content": "60 to 100 beats per minute."},
            {"role": "user", "content": "And HbA1c 6.5%?"}]


def more_probe_strings() -> list[str]:
    """Digit runs of every length after 0-3 spaces, unicode and mixed scripts, markers inside text."""
    out = [" " * (i % 4) + "1234567890"[: 1 + i % 10] + " mg" for i in range(60)]
    out += [f"{w}{sep}{w.upper()}" for w in ("straße", "café", "ÅÄÖ", "naïve", "東京", "ĳ", "ﬁ")
            for sep in ("", " ", "\t", "\n")]
    out += [f"{a}\u200b{b}" for a, b in (("zero", "width"), ("no", "break"))] + ["e\u0301", "\u00e9", "🙂" * 3]
    return out


@pytest.fixture(scope="module", params=FAMILIES)
def family_model(request, tmp_path_factory):
    family = request.param
    out = build(family, tmp_path_factory.mktemp(family) / "model")
    gguf = convert_hf_to_gguf(out, out.parent / "model-f32.gguf", outtype="f32")
    return family, out, gguf


def test_logits_and_greedy_tokens_match_transformers(family_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    family, model_dir, gguf = family_model
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    # Far longer than the Gemma sliding window (8). Phi-3's LongRoPE: llama.cpp picks the long factors by context
    # size (n_ctx above the original 128), transformers by sequence length (above 128 too here): both use them.
    # A few hundred positions: 6 rounds of the conversation.
    ids = tokenizer.apply_chat_template(MESSAGES * 6, add_generation_prompt=True, tokenize=True)["input_ids"]
    assert len(ids) >= 200, len(ids)
    with torch.no_grad():
        hf_logits = model(torch.tensor([ids])).logits[0].numpy()
        hf_greedy = model.generate(torch.tensor([ids]), max_new_tokens=32, do_sample=False, eos_token_id=None,
                                   pad_token_id=0)[0, len(ids):].tolist()
    llm = load_llama(gguf, threads=1, n_ctx=512, logits_all=True, f32_kv=True)
    try:
        assert llm.metadata["general.architecture"] == ARCH[family]
        llm.eval(ids)
        gguf_logits = np.asarray(llm.scores[: len(ids)])
        assert np.abs(gguf_logits - hf_logits).max() <= TOLERANCE.get(family, 1e-3), family
        assert (gguf_logits.argmax(-1) == hf_logits.argmax(-1)).all()
        llm.reset()
        greedy = []
        for token in llm.generate(ids, temp=0.0, top_k=1, reset=True):
            greedy.append(int(token))
            if len(greedy) == 32:
                break
    finally:
        llm.close()
    if greedy != hf_greedy:  # only a near-tie of a random model may flip a token (then both paths are right)
        at = next(i for i, (a, b) in enumerate(zip(greedy, hf_greedy, strict=True)) if a != b)
        with torch.no_grad():
            step = model(torch.tensor([ids + hf_greedy[:at]])).logits[0, -1]
        margin = float(step[hf_greedy[at]] - step[greedy[at]])
        assert margin <= 1e-3, f"{family}: token {at} differs with a logit margin of {margin:.2g}"


def test_tokenizer_and_chat_prompt_ids_match(family_model):
    from transformers import AutoTokenizer

    family, model_dir, gguf = family_model
    texts = probe_strings() + more_probe_strings()
    assert len(texts) >= 300
    mismatches = check_tokenizer_parity(model_dir, gguf, texts, limit=1000)
    hf = AutoTokenizer.from_pretrained(model_dir)
    # transformers' Qwen2 tokenizer normalizes to NFC; llama.cpp normalizes nothing. Decomposed accents
    # ("e" + U+0301) then split differently - llama.cpp's limitation for every Qwen GGUF, not the conversion's.
    decomposed = [m for m in mismatches if unicodedata.normalize("NFC", m[0]) != m[0]]
    assert [m for m in mismatches if m not in decomposed] == [], family
    assert not decomposed or "NFC" in str(hf.backend_tokenizer.normalizer), decomposed
    hf_ids = hf.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True)["input_ids"]
    training = ChatContract.from_hf(hf)  # what the train stage tokenizes with
    trained_ids = training.chat_ids(MESSAGES, lambda t: hf(t, add_special_tokens=False)["input_ids"])
    # apply_chat_template(tokenize=True) never adds the tokenizer's BOS; a tokenizer that adds one to every text
    # (Phi-3: add_bos_token, a template without bos_token) gets it from the contract, as llama.cpp adds it.
    bos = [training.bos_id] if training.add_bos and hf_ids[:1] != [training.bos_id] else []
    assert trained_ids == bos + list(hf_ids), family
    llm = load_llama(gguf, vocab_only=True)
    try:
        serving = ChatContract.from_gguf(llm)
        served_ids = serving.chat_ids(MESSAGES, lambda t: llm.tokenize(t.encode(), add_bos=False, special=True))
        assert served_ids == trained_ids, family
        assert serving.end_of_turn_ids[0] == training.end_of_turn_ids[0], "one end of turn in training and serving"
        assert llm._model.token_get_text(serving.end_of_turn_ids[0]) == END_OF_TURN[family]
    finally:
        llm.close()


def test_lora_adapter_gguf_on_the_base_gives_the_merged_models_logits(family_model, tmp_path):
    """peft adapter -> GGUF adapter: llama.cpp's base + adapter equals the merged model converted whole."""
    from llama_cpp import Llama
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from stages.quantize.families import family_for
    from stages.quantize.lora import convert_lora_to_gguf

    family, model_dir, base_gguf = family_model
    targets = family_for(json.loads((model_dir / "config.json").read_text()), model_dir).lora_targets
    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    # init_lora_weights=False: B random too, so the adapter changes the logits; rsLoRA checks the alpha rule.
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=list(targets),
                                                 init_lora_weights=False, use_rslora=True))
    peft_model.save_pretrained(tmp_path / "adapter")
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(tmp_path / "merged", safe_serialization=True)
    for name in model_dir.iterdir():
        if name.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy2(name, tmp_path / "merged" / name.name)
    adapter = convert_lora_to_gguf(tmp_path / "adapter", model_dir, tmp_path / "adapter.gguf", outtype="f32")
    merged_gguf = convert_hf_to_gguf(tmp_path / "merged", tmp_path / "merged.gguf", outtype="f32")
    ids = AutoTokenizer.from_pretrained(model_dir).apply_chat_template(
        MESSAGES, add_generation_prompt=True, tokenize=True)["input_ids"]

    def logits(path, **kwargs) -> np.ndarray:
        llm = Llama(str(path), n_ctx=128, n_threads=1, logits_all=True, type_k=0, type_v=0, verbose=False, **kwargs)
        try:
            llm.eval(ids)
            return np.asarray(llm.scores[: len(ids)])
        finally:
            llm.close()

    with_adapter, whole, plain = logits(base_gguf, lora_path=str(adapter)), logits(merged_gguf), logits(base_gguf)
    assert np.abs(with_adapter - whole).max() <= 2e-3, family
    assert np.abs(plain - whole).max() > 0.05, "the adapter changes the model"


def test_an_unknown_architecture_is_refused_in_one_line_listing_the_families(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(StageError) as refused:
        convert_hf_to_gguf(tmp_path, tmp_path / "out.gguf")
    message = str(refused.value)
    assert "\n" not in message and "GPT2LMHeadModel" in message
    for family in ("llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"):
        assert family in message
    assert not (tmp_path / "out.gguf").exists()


@pytest.mark.parametrize("setting", [{"use_dora": True}, {"rank_pattern": {"q_proj": 8}},
                                     {"modules_to_save": ["lm_head"]}, {"peft_type": "IA3"}])
def test_adapter_settings_llamas_format_cannot_hold_are_refused(tmp_path, setting):
    from stages.quantize.lora import convert_lora_to_gguf

    config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, **setting}
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(StageError, match=next(iter(setting))):
        convert_lora_to_gguf(tmp_path, tmp_path, tmp_path / "adapter.gguf")
    assert not (tmp_path / "adapter.gguf").exists()


def test_a_short_fine_tune_teaches_the_end_of_turn_and_the_served_gguf_stops(family_model, tmp_path):
    """Training's labels (answer + the model's own end of turn, stages/train/data.py) on one conversation, then
    the GGUF engine answers it and stops on that token: finish_reason "stop", not the length limit."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from stages.inference import SamplingParams, load_engine
    from stages.train.data import hf_contract, tokenize_chat

    family, model_dir, _ = family_model
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    contract, tokenize = hf_contract(tokenizer)
    question, answer = MESSAGES[0], MESSAGES[1]
    ids, labels = tokenize_chat(contract, tokenize, [question, answer])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(200):  # until it has learnt the one answer (60-120 steps here)
        loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
        if loss.item() < 0.05:
            break
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert loss.item() < 0.05, f"{family}: the fine-tune did not converge ({loss.item():.3f})"
    model.save_pretrained(tmp_path / "tuned", safe_serialization=True)
    for name in model_dir.iterdir():
        if name.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy2(name, tmp_path / "tuned" / name.name)
    gguf = convert_hf_to_gguf(tmp_path / "tuned", tmp_path / "tuned.gguf", outtype="f32")
    engine = load_engine("gguf", gguf, threads=1, n_ctx=256)
    try:
        [reply] = engine.chat([[question]], SamplingParams(max_new_tokens=48))
    finally:
        engine.close()
    assert reply.finish_reason == "stop" and reply.text.strip() == answer["content"], (family, reply)
    assert reply.completion_tokens < 48


@pytest.mark.parametrize("type_name", ["q8_0", "q4_k_m"])
def test_every_family_quantizes_and_the_quantized_file_generates(family_model, type_name, tmp_path):
    """llama.cpp's quantizer on our f16 GGUF of the family, then the publish check (loads, finite logits)."""
    from stages.quantize.quantize import quantize_file
    from stages.quantize.verify import verify_gguf

    family, model_dir, _ = family_model
    f16 = convert_hf_to_gguf(model_dir, tmp_path / "model-f16.gguf", outtype="f16")
    quantized = quantize_file(f16, tmp_path / f"model-{type_name}.gguf", type_name, threads=1)
    assert (tmp_path / f"model-{type_name}.gguf").stat().st_size < f16.stat().st_size
    check = verify_gguf(tmp_path / f"model-{type_name}.gguf", threads=1)
    assert len(check["tokens"]) == 8 and check["logit_spread"] > 0.1, (family, quantized, check)


def test_yarn_rope_without_its_original_context_is_one_clear_line(tmp_path):
    model_dir = build("qwen2", tmp_path / "model")
    config = json.loads((model_dir / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0}
    config.pop("original_max_position_embeddings", None)
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(StageError, match="original_max_position_embeddings") as refused:
        convert_hf_to_gguf(model_dir, tmp_path / "out.gguf")
    assert "\n" not in str(refused.value) and not (tmp_path / "out.gguf").exists()
