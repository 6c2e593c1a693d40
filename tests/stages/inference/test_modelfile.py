"""The Ollama Modelfile comes from the model's chat contract: Ollama's substitution of its template gives the
very prompt the model's own template renders, with the system turn once and BOS left to the tokenizer."""

from __future__ import annotations

import pytest

from stages.quantize.main import gguf_chat_contract
from stages.quantize.publish import modelfile_text, ollama_template

SYSTEM, PROMPT = "You answer legal questions briefly.", "What is consideration?"


def ollama_render(template: str, system: str | None, prompt: str) -> str:
    """What Ollama's Go template engine makes of our template for one turn (the constructs we emit only)."""
    if_system, rest = template.split("{{ else }}", 1) if "{{ else }}" in template else (template, "")
    if rest:
        without_system, tail = rest.split("{{ end }}", 1)
        body = if_system.removeprefix("{{ if .System }}") if system else without_system
    else:
        body, tail = template, ""
    return (body + tail).replace("{{ .System }}", system or "").replace("{{ .Prompt }}", prompt).replace(
        "{{ .Response }}", "")


def test_modelfile_template_renders_what_the_model_template_renders(style_model):
    contract = gguf_chat_contract(style_model.gguf)
    template = ollama_template(contract)
    assert template is not None and template.count("{{ .Response }}") == 1
    expected = contract.render([{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}])
    if contract.add_bos and contract.bos_token:  # Ollama's llama.cpp adds BOS itself: not in the template
        assert expected.startswith(contract.bos_token)
        expected = expected[len(contract.bos_token):]
    rendered = ollama_render(template, SYSTEM, PROMPT)
    assert rendered.removesuffix(contract.stop_strings[0]) == expected
    assert rendered.count(SYSTEM) == 1  # the system turn once, never a second (default) one

    text = modelfile_text("model-q4_k_m.gguf", contract, SYSTEM)
    assert f'SYSTEM """{SYSTEM}"""' in text and "FROM ./model-q4_k_m.gguf" in text
    stops = [line.split('"')[1] for line in text.splitlines() if line.startswith("PARAMETER stop")]
    assert stops and stops == list(contract.stop_strings)
    assert stops[0] in {"<|im_end|>", "<|eot_id|>", "<end_of_turn>"}


@pytest.mark.parametrize("hard_coded", ["<|im_start|>", "<|im_end|>"])
def test_non_chatml_models_get_no_chatml(style_model, hard_coded):
    if style_model.style == "chatml":
        pytest.skip("ChatML is this model's own format")
    text = modelfile_text("m.gguf", gguf_chat_contract(style_model.gguf), SYSTEM)
    assert hard_coded not in text
