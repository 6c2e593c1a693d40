"""A chat template for a base (pretrained-only) checkpoint that ships none, chosen from its tokenizer's own special
tokens, so that training, the GGUF and serving all use turn markers the tokenizer really has.

    name, template, reason = pick_template(tokenizer)

The families' turn formats (ChatML, Llama 3 headers, Gemma turns, Mistral [INST], Phi-3 tags) are used only when
every marker of that format is one special token in this tokenizer; otherwise a plain "User:/Assistant:" format
whose turns end with the tokenizer's EOS. The model card records the choice and the reason (base stage), and the
fine-tune teaches the model to emit that format's end of turn.
"""

from __future__ import annotations

from stages.errors import StageError

TEMPLATES: dict[str, tuple[tuple[str, ...], str]] = {
    # name: (special tokens it needs, template)
    "chatml": (("<|im_start|>", "<|im_end|>"),
               "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
               "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"),
    "llama3": (("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
               "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
               "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
               "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"),
    # Gemma has no system role: a system message is sent as the first user turn's preamble.
    "gemma": (("<start_of_turn>", "<end_of_turn>"),
              "{{ bos_token }}{% set ns = namespace(system='') %}{% for m in messages %}"
              "{% if m['role'] == 'system' %}{% set ns.system = m['content'] + '\n\n' %}{% else %}"
              "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
              "{% if m['role'] == 'user' %}{{ ns.system }}{% set ns.system = '' %}{% endif %}"
              "{{ m['content'] | trim }}<end_of_turn>\n{% endif %}{% endfor %}"
              "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"),
    "phi3": (("<|system|>", "<|user|>", "<|assistant|>", "<|end|>"),
             "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
             "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"),
}
# Any tokenizer with an EOS: turns as plain text, each answer closed by EOS (the only stop token it has).
PLAIN = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
         "{% elif m['role'] == 'user' %}User: {{ m['content'] }}\n{% else %}Assistant: {{ m['content'] }}"
         "{{ eos_token }}\n{% endif %}{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}")


def single_special_tokens(tokenizer) -> set[str]:
    """Texts that this tokenizer encodes as exactly one special (added, special) token."""
    special = {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
    return {t for t in special if len(tokenizer(t, add_special_tokens=False)["input_ids"]) == 1}


def pick_template(tokenizer) -> tuple[str, str, str]:
    """(name, template, reason) for a tokenizer without a chat template."""
    have = single_special_tokens(tokenizer)
    for name, (needs, template) in TEMPLATES.items():
        if all(token in have for token in needs):
            return name, template, (f"the tokenizer has no chat template; its special tokens {', '.join(needs)} "
                                    f"are the {name} turn markers, so that format was used")
    if not tokenizer.eos_token:
        raise StageError("model.chat_template: the base model's tokenizer has no chat template, no known turn "
                         "tokens and no EOS; set model.chat_template to a Jinja chat template")
    return "plain", PLAIN, (f"the tokenizer has no chat template and none of the known turn tokens; plain "
                            f"'User:'/'Assistant:' turns ending with its EOS {tokenizer.eos_token} were used")
