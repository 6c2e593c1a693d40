"""Tiny random models of every family we convert, built offline in a second or two each: the family's own
transformers config class with its special features switched on (biases, q/k norms, soft-capping, sliding
window, fused projections, rope scaling), random weights everywhere (norms and biases too, so a missing +1 or
bias shows), and a tokenizer of the family's kind trained here with its special tokens and chat template."""

from __future__ import annotations

from pathlib import Path

import torch

CORPUS = [
    "What is hypertension? Persistently high blood pressure, 130/80 mmHg or higher.",
    "What does HbA1c measure? Average blood glucose over 2 to 3 months; 6.5% or higher means diabetes.",
    "A normal resting heart rate for adults is 60 to 100 beats per minute.",
    "Antibiotics treat bacterial infections; they do not work against viruses such as flu.",
    "Café déjà vu, naïve façade, Straße, 東京, пациент, emoji 🙂 and don't won't I'm.",
    "  spaces   and\ttabs\nnew lines 1234567890 $1,000.00 e-mail someone@example.com",
] * 20

QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPLIT = QWEN_SPLIT.replace(r"\p{N}|", r"\p{N}{1,3}|")

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
LLAMA3_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
                   "{{ m['content'] }}<|eot_id|>{% endfor %}"
                   "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
GEMMA_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<start_of_turn>"
                  "{{ 'model' if m['role'] == 'assistant' else 'user' }}\n{{ m['content'] }}<end_of_turn>\n"
                  "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
PHI3_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")

FAMILIES = ("llama", "mistral", "llama3", "qwen2", "qwen3", "gemma2", "gemma3", "phi3")
MISTRAL_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
                    "{% else %}{{ m['content'] }}</s>{% endif %}{% endfor %}")


def byte_level_bpe(split: str, specials: list[str], bos: str | None):
    """A GPT-2-style byte-level BPE with a split regex (Llama 3 / Qwen layout of tokenizer.json)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=600, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    if bos:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A",
                                                           special_tokens=[(bos, tok.token_to_id(bos))])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def sentencepiece_bpe(specials: list[str], bos: str, space_prefix: bool):
    """A SentencePiece-style BPE with byte fallback ("▁" for spaces), as Gemma's and Phi-3's tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    steps = [normalizers.Prepend("▁")] if space_prefix else []
    tok.normalizer = normalizers.Sequence(steps + [normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    strip = [decoders.Strip(" ", 1, 0)] if space_prefix else []
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), *strip])
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=700, special_tokens=specials + [f"<0x{i:02X}>" for i in range(256)], show_progress=False))
    tok.pre_tokenizer = None  # training split on words; the released tokenizer.json files have none
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))])
    return tok


def randomize(model: torch.nn.Module) -> None:
    """Random values in every parameter: a norm or bias left out of the conversion then changes the logits."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.copy_((1.0 if "norm" in name else 0.0) + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.08)


def build(family: str, out: Path) -> Path:
    """Save a tiny random `family` model with its tokenizer into `out`; returns `out`."""
    import transformers as tf

    small = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=512)
    if family == "llama":  # SmolLM2's own byte-level BPE tokenizer and ChatML template (the default lane)
        from stages.base.materialize import materialize_base
        from stages.config import compose

        materialize_base(compose(["model=tiny-random"]).model, out, seed=0)
        return out
    if family == "mistral":  # SentencePiece-style tokenizer.json; the template renders BOS
        tok = sentencepiece_bpe(["<unk>", "<s>", "</s>"], bos="<s>", space_prefix=True)
        tokenizer = tf.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
        tokenizer.chat_template = MISTRAL_TEMPLATE
        config = tf.MistralConfig(vocab_size=tok.get_vocab_size(), bos_token_id=1, eos_token_id=2,
                                  tie_word_embeddings=False, sliding_window=None, **small)
        model = tf.MistralForCausalLM(config)
    elif family in ("qwen2", "qwen3"):
        tok = byte_level_bpe(QWEN_SPLIT, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], bos=None)
        tokenizer = tf.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
        tokenizer.chat_template = CHATML
        ids = dict(eos_token_id=tok.token_to_id("<|im_end|>"), pad_token_id=tok.token_to_id("<|endoftext|>"),
                   bos_token_id=None)
        if family == "qwen2":
            config = tf.Qwen2Config(vocab_size=tok.get_vocab_size(), tie_word_embeddings=True, **small, **ids)
            model = tf.Qwen2ForCausalLM(config)
        else:
            config = tf.Qwen3Config(vocab_size=tok.get_vocab_size(), head_dim=24, tie_word_embeddings=False,
                                    **small, **ids)
            model = tf.Qwen3ForCausalLM(config)
    elif family == "llama3":
        specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
        tok = byte_level_bpe(LLAMA3_SPLIT, specials, bos="<|begin_of_text|>")
        tokenizer = tf.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>",
                                               eos_token="<|eot_id|>")
        tokenizer.chat_template = LLAMA3_TEMPLATE
        rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
        config = tf.LlamaConfig(vocab_size=tok.get_vocab_size(), tie_word_embeddings=True, rope_parameters=rope,
                                bos_token_id=tok.token_to_id("<|begin_of_text|>"),
                                eos_token_id=tok.token_to_id("<|eot_id|>"), **small)
        model = tf.LlamaForCausalLM(config)
    elif family in ("gemma2", "gemma3"):
        specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
        tok = sentencepiece_bpe(specials, bos="<bos>", space_prefix=False)
        tokenizer = tf.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                               unk_token="<unk>", pad_token="<pad>")
        tokenizer.chat_template = GEMMA_TEMPLATE
        ids = dict(pad_token_id=0, eos_token_id=[1, tok.token_to_id("<end_of_turn>")], bos_token_id=2)
        common = dict(vocab_size=tok.get_vocab_size(), head_dim=16, query_pre_attn_scalar=16, sliding_window=8,
                      **small, **ids)
        if family == "gemma2":
            config = tf.Gemma2Config(attn_logit_softcapping=50.0, final_logit_softcapping=30.0, **common)
            model = tf.Gemma2ForCausalLM(config)
        else:
            config = tf.Gemma3TextConfig(layer_types=["sliding_attention", "full_attention"], **common)
            model = tf.Gemma3ForCausalLM(config)
    elif family == "phi3":
        specials = ["<unk>", "<s>", "</s>"]
        tok = sentencepiece_bpe(specials, bos="<s>", space_prefix=True)
        tok.add_special_tokens(["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"])
        tokenizer = tf.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="<|end|>",
                                               unk_token="<unk>")
        tokenizer.chat_template = PHI3_TEMPLATE
        half = 64 // 4 // 2
        rope = {"rope_type": "longrope", "rope_theta": 10000.0, "long_factor": [1.0 + 0.5 * i for i in range(half)],
                "short_factor": [1.0 + 0.1 * i for i in range(half)]}
        config = tf.Phi3Config(vocab_size=tok.get_vocab_size(), original_max_position_embeddings=128,
                               rope_parameters=rope, bos_token_id=1, eos_token_id=tok.token_to_id("<|end|>"),
                               pad_token_id=None, tie_word_embeddings=False, **small)
        model = tf.Phi3ForCausalLM(config)
    else:
        raise ValueError(family)
    randomize(model)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
