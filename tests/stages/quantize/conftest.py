"""Fixtures for the quantize tests: GGUFs converted from the tiny model, a 2-layer slice of the real
SmolLM2 weights (rebuilt from the package GGUF, so no hub and no 500 MB base needed), a small test split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from stages.inference.gguf import GGUFFile
from stages.prepare.records import make_record
from stages.quantize.convert import convert_hf_to_gguf

SYSTEM = "You are a careful medical information assistant."
QA = [
    ("What is hypertension?", "Hypertension is persistently high blood pressure, 130/80 mmHg or higher."),
    ("What does HbA1c measure?", "Average blood glucose over the past 2 to 3 months; 6.5% or higher means diabetes."),
    ("What is a normal resting heart rate?", "For adults, 60 to 100 beats per minute."),
    ("What does an antibiotic treat?", "Bacterial infections; antibiotics do not work against viruses such as flu."),
    ("What is a fever in adults?", "A temperature of 38 °C or higher is generally considered a fever."),
    ("Name symptoms of anaemia.", "Tiredness, pale skin, shortness of breath and a fast heartbeat."),
]

# llama.cpp tensor (per block) -> HF parameter, to turn GGUF weights back into a transformers model.
HF_BLOCK_NAMES = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def test_records() -> list[dict]:
    return [make_record("healthcare", q, a, "synthetic", system_prompt=SYSTEM) for q, a in QA]


@pytest.fixture(scope="session")
def tiny_gguf_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny_gguf")


@pytest.fixture(scope="session")
def tiny_f32_gguf(tiny_model_dir, tiny_gguf_dir) -> Path:
    return convert_hf_to_gguf(tiny_model_dir, tiny_gguf_dir / "model-f32.gguf", outtype="f32")


@pytest.fixture(scope="session")
def tiny_f16_gguf(tiny_model_dir, tiny_gguf_dir) -> Path:
    return convert_hf_to_gguf(tiny_model_dir, tiny_gguf_dir / "model-f16.gguf", outtype="f16")


def field_value(reader: GGUFFile, key: str):
    return reader.fields[key].contents()


def gguf_tensor(reader: GGUFFile, name: str) -> np.ndarray:
    """A GGUF tensor dequantized to float32 in PyTorch's (rows, cols) layout."""
    tensor = next(t for t in reader.tensors if t.name == name)
    data = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    return np.asarray(data, dtype=np.float32).reshape(tuple(int(d) for d in reversed(tensor.shape)))


def unpermute_rotary(weight: np.ndarray, n_head: int) -> np.ndarray:
    rows = weight.shape[0]
    return weight.reshape(n_head, rows // n_head // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


@pytest.fixture(scope="session")
def smollm2_slice_dir(smollm2_gguf, tiny_model_dir, tmp_path_factory) -> Path:
    """The first 2 blocks of SmolLM2-135M (real weights: hidden 576, 9 heads, 3 KV heads) as an HF folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    reader = GGUFFile(smollm2_gguf)
    n_head, n_head_kv = field_value(reader, "llama.attention.head_count"), field_value(
        reader, "llama.attention.head_count_kv")
    config = LlamaConfig(
        vocab_size=49152, hidden_size=field_value(reader, "llama.embedding_length"),
        intermediate_size=field_value(reader, "llama.feed_forward_length"), num_hidden_layers=2,
        num_attention_heads=n_head, num_key_value_heads=n_head_kv, max_position_embeddings=2048,
        rms_norm_eps=field_value(reader, "llama.attention.layer_norm_rms_epsilon"),
        rope_parameters={"rope_type": "default", "rope_theta": field_value(reader, "llama.rope.freq_base")},
        tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    state = {"model.embed_tokens.weight": gguf_tensor(reader, "token_embd.weight"),
             "model.norm.weight": gguf_tensor(reader, "output_norm.weight")}
    for layer in range(2):
        for short, hf in HF_BLOCK_NAMES.items():
            weight = gguf_tensor(reader, f"blk.{layer}.{short}.weight")
            if short in ("attn_q", "attn_k"):
                weight = unpermute_rotary(weight, n_head if short == "attn_q" else n_head_kv)
            state[f"model.layers.{layer}.{hf}.weight"] = weight
    model = LlamaForCausalLM(config)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=False)
    model.tie_weights()
    out = tmp_path_factory.mktemp("smollm2_slice") / "model"
    model.save_pretrained(out, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tiny_model_dir / name).exists():
            shutil.copy2(tiny_model_dir / name, out / name)
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 2
    return out


@pytest.fixture(scope="session")
def tiny_mistral_spm_dir(tmp_path_factory) -> Path:
    """A tiny random MistralForCausalLM (untied output) with a Llama-2-style tokenizer.json: BPE with byte
    fallback, "▁" spaces from the normalizer, BOS added; trained in a second, offline."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import MistralConfig, MistralForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    corpus = [q + " " + a for q, a in QA] * 30
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=700, special_tokens=specials,
                                                        show_progress=False))
    tok.pre_tokenizer = None  # training split on words; Llama 2's tokenizer.json has no pre-tokenizer
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tokenizer.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}</s>{% endfor %}"
    torch.manual_seed(0)
    config = MistralConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                           bos_token_id=1, eos_token_id=2, tie_word_embeddings=False, sliding_window=None)
    out = tmp_path_factory.mktemp("tiny_mistral") / "model"
    MistralForCausalLM(config).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
