"""The Ollama Modelfile comes from the model's chat contract: Ollama's rendering of its template gives the very
prompt the model's own template renders (one turn and several, with and without a system message), the system
turn once, BOS left to the tokenizer, and the model's end-of-turn tokens as stops."""

from __future__ import annotations

import re

import pytest

from stages.quantize.main import gguf_chat_contract
from stages.quantize.publish import modelfile_text, ollama_template

SYSTEM = "You answer legal questions briefly."
CHATS = [
    [{"role": "user", "content": "What is consideration?"}],
    [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is consideration?"}],
    [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is a tort?"},
     {"role": "assistant", "content": "A civil wrong."}, {"role": "user", "content": "Give an example."}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}],
]


def go_render(template: str, messages: list[dict]) -> str:
    """A small interpreter of Go's text/template for the constructs our Modelfile uses: range over .Messages,
    if / else if / else / end, eq, len (slice $.Messages $i), $m.Role, $m.Content, and {{- trimming."""
    parts = re.split(r"(\{\{-?.*?-?\}\})", template)
    tokens: list[tuple[str, str]] = []
    for part in parts:
        if part.startswith("{{"):
            if part.startswith("{{-") and tokens and tokens[-1][0] == "text":
                tokens[-1] = ("text", tokens[-1][1].rstrip())
            tokens.append(("action", part.strip("{}-").strip()))
        elif part:
            tokens.append(("text", part))

    def value(expr: str, env: dict):
        expr = expr.strip()
        if expr.startswith("(") and expr.endswith(")"):
            return value(expr[1:-1], env)
        if expr.startswith('"'):
            return expr.strip('"')
        if expr.isdigit():
            return int(expr)
        if expr == "$m.Role":
            return env["m"]["role"]
        if expr == "$m.Content":
            return env["m"]["content"]
        if expr == "$i":
            return env["i"]
        if expr == "len (slice $.Messages $i)":
            return len(messages[env["i"]:])
        match = re.fullmatch(r"eq (\(.*\)|\S+) (\S+)", expr)
        if match:
            return value(match.group(1), env) == value(match.group(2), env)
        raise AssertionError(f"unsupported expression {expr!r}")

    def run(at: int, env: dict, out: list[str], emit: bool) -> tuple[int, str]:
        """Run tokens from `at` until an else/end at this level; returns (index, the stopping action)."""
        while at < len(tokens):
            kind, text = tokens[at]
            if kind == "text":
                out.append(text if emit else "")
                at += 1
            elif text.startswith("range "):
                start = at + 1
                for i, m in enumerate(messages):
                    at, _ = run(start, {"i": i, "m": m}, out, emit)
                if not messages:
                    at, _ = run(start, env, out, False)
                at += 1
            elif text.startswith("if "):
                taken, cond, at = False, value(text[3:], env), at + 1
                while True:
                    branch = emit and not taken and cond
                    at, stop = run(at, env, out, branch)
                    taken = taken or cond
                    at += 1
                    if stop == "end":
                        break
                    cond = True if stop == "else" else value(stop[len("else if "):], env)
            elif text == "end" or text.startswith("else"):
                return at, text
            else:
                out.append(str(value(text, env)) if emit else "")
                at += 1
        return at, "eof"

    out: list[str] = []
    run(0, {}, out, True)
    return "".join(out)


@pytest.mark.parametrize("chat", range(len(CHATS)))
def test_modelfile_template_renders_what_the_model_template_renders(style_model, chat):
    contract = gguf_chat_contract(style_model.gguf)
    template = ollama_template(contract)
    assert template is not None and "{{ .System }}" not in template  # .Messages carries the system turn
    expected = contract.render(CHATS[chat])
    if contract.add_bos and contract.bos_token:  # Ollama's llama.cpp adds BOS itself: not in the template
        assert expected.startswith(contract.bos_token)
        expected = expected.removeprefix(contract.bos_token)
    rendered = go_render(template, CHATS[chat])
    assert rendered == expected
    assert rendered.count(SYSTEM) == (1 if CHATS[chat][0]["role"] == "system" else 0)


def test_modelfile_has_the_system_prompt_once_and_the_contract_stops(style_model):
    contract = gguf_chat_contract(style_model.gguf)
    text = modelfile_text("model-q4_k_m.gguf", contract, SYSTEM)
    assert text.count(SYSTEM) == 1 and f'SYSTEM """{SYSTEM}"""' in text and "FROM ./model-q4_k_m.gguf" in text
    stops = [line.split('"')[1] for line in text.splitlines() if line.startswith("PARAMETER stop")]
    assert stops and stops == list(contract.stop_strings)
    assert stops[0] in {"<|im_end|>", "<|eot_id|>", "<end_of_turn>"}
    if style_model.style != "chatml":
        assert "<|im_start|>" not in text and "<|im_end|>" not in text


def test_the_interpreter_can_fail():
    # The test's interpreter is strict: a template that drops the assistant turn renders something else.
    broken = '{{- range $i, $m := .Messages }}{{- if eq $m.Role "user" }}U:{{ $m.Content }}{{- end }}{{- end }}'
    assert go_render(broken, CHATS[3]) == "U:HiU:Bye"
