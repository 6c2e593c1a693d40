"""Tiny real models in three chat styles, each as an HF folder and its converted f32 GGUF:

- chatml:  SmolLM2's own tokenizer and template (no BOS; end of turn `<|im_end|>` is the EOS).
- llama3:  a template that renders BOS (`{{ bos_token }}`) and a tokenizer that also adds BOS to raw text;
           end of turn `<|eot_id|>`, EOS `<|end_of_text|>`, generation config with a multi-EOS list.
- gemma:   BOS rendered by the template, end of turn `<end_of_turn>` which is not the EOS (`<eos>`).

The weights are random except the output head: every position's logits favour one chosen token, so a test
knows what the model emits (its end of turn, or an ordinary token for the control).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' "
    "+ m['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + m['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}")

STYLES = {
    # style: (new special tokens, bos, eos, end of turn, template, adds BOS to raw text, extra generation EOS)
    "chatml": ((), None, "<|im_end|>", "<|im_end|>", None, False, ()),
    "llama3": (("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
               "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", LLAMA3_TEMPLATE, True, ("<|eot_id|>",)),
    "gemma": (("<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"), "<bos>", "<eos>", "<end_of_turn>",
              GEMMA_TEMPLATE, True, ()),
}


@dataclass
class StyleModel:
    style: str
    hf_dir: Path
    gguf: Path
    bos_id: int | None
    eos_id: int
    end_of_turn_id: int


def build_style_model(style: str, base_dir: Path, out: Path, favour: str | None = None) -> StyleModel:
    """A tiny LlamaForCausalLM in `style`; its head always prefers token `favour` (default: its end of turn)."""
    from tokenizers import processors
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from stages.quantize.convert import convert_hf_to_gguf

    specials, bos, eos, turn_end, template, adds_bos, extra_eos = STYLES[style]
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if specials:
        tokenizer.add_special_tokens({"additional_special_tokens": list(specials)})
        tokenizer.bos_token, tokenizer.eos_token = bos, eos
        tokenizer.chat_template = template
    if adds_bos:
        bos_id = tokenizer.convert_tokens_to_ids(bos)
        tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)])
    vocab = len(tokenizer)
    hidden, favoured = 64, tokenizer.convert_tokens_to_ids(favour or turn_end)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        # One residual dimension dominates every position (its embedding column is large), the final norm
        # keeps only that dimension, and only the favoured token's head row reads it: its logit wins.
        model.model.embed_tokens.weight[:, 0] = 50.0
        model.model.norm.weight.zero_()
        model.model.norm.weight[0] = 1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[favoured, 0] = 10.0
    model.generation_config.eos_token_id = [tokenizer.eos_token_id,
                                            *tokenizer.convert_tokens_to_ids(list(extra_eos))]
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    hf_dir = out / "hf"
    model.save_pretrained(hf_dir, safe_serialization=True)
    tokenizer.save_pretrained(hf_dir)
    gguf = convert_hf_to_gguf(hf_dir, out / "model-f32.gguf", outtype="f32")
    return StyleModel(style, hf_dir, gguf, tokenizer.convert_tokens_to_ids(bos) if bos else None,
                      tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(turn_end))


@pytest.fixture(scope="session", params=list(STYLES))
def style_model(request, tiny_model_dir, tmp_path_factory) -> StyleModel:
    out = tmp_path_factory.mktemp(f"style_{request.param}")
    return build_style_model(request.param, tiny_model_dir, out)


@pytest.fixture(scope="session")
def chatty_gemma_model(tiny_model_dir, tmp_path_factory) -> StyleModel:
    """The control: the gemma-style model whose head prefers an ordinary word, so it never ends its turn."""
    out = tmp_path_factory.mktemp("style_gemma_chatty")
    return build_style_model("gemma", tiny_model_dir, out, favour="Ġthe")
