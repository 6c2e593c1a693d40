"""What ships next to the GGUFs besides manifest.json (stages/manifest.py): where they came from, and an
Ollama Modelfile.

    ollama create domain-llm -f models/gguf/Modelfile      # after `dvc pull models/gguf`
"""

from __future__ import annotations

import json
from pathlib import Path

from stages.fileio import write_text
from stages.inference.chat import ChatContract
from stages.manifest import sha256_file


def source_model_info(model_dir: Path) -> dict:
    """Where the GGUFs came from: the HF folder, its architecture and the sha256 of its weights."""
    config = json.loads((model_dir / "config.json").read_text()) if (model_dir / "config.json").is_file() else {}
    weights = {p.name: sha256_file(p) for p in sorted(model_dir.glob("*.safetensors"))}
    return {"path": str(model_dir), "architectures": config.get("architectures"), "weights_sha256": weights}


# Message contents no template rewrites: rendering the model's own template around them shows the text it writes
# between messages, which becomes Ollama's Go template.
_MARKS = ("SYSTEM0MARK", "USER1MARK", "ASSISTANT1MARK", "USER2MARK")
_SEGMENTS_WITH_SYSTEM = ("start_system", "system_user", "user_assistant", "assistant_user", "generation")


def chat_segments(contract: ChatContract) -> dict[str, str] | None:
    """The text the model's chat template writes before each message, by what precedes it: start_system,
    start_user (no system message), system_user, user_assistant, assistant_user, and `generation` (after the
    last user message: the open assistant turn). Read by rendering the template around marker contents; BOS
    is left out where the tokenizer adds it. None when the template transforms the contents."""
    def split(messages: list[dict], names: tuple[str, ...]) -> dict[str, str] | None:
        try:
            text = contract.render(messages)
        except Exception:  # e.g. a template without a system role raises on one
            return None
        pieces, rest = [], text
        for message in messages:
            before, found, rest = rest.partition(message["content"])
            if not found:
                return None
            pieces.append(before)
        return dict(zip(names, [*pieces, rest], strict=True))

    system, user1, assistant1, user2 = _MARKS
    turns = [{"role": "user", "content": user1}, {"role": "assistant", "content": assistant1},
             {"role": "user", "content": user2}]
    plain = split(turns, ("start_user", "user_assistant", "assistant_user", "generation"))
    if plain is None:
        return None
    segments = {**plain, **(split([{"role": "system", "content": system}, *turns], _SEGMENTS_WITH_SYSTEM) or {})}
    for key in ("start_system", "start_user"):
        if key in segments and contract.add_bos and contract.bos_token:
            segments[key] = segments[key].removeprefix(contract.bos_token)
    if any("{{" in text or "}}" in text for text in segments.values()):
        return None
    return segments


def ollama_template(contract: ChatContract) -> str | None:
    """Ollama's Go template over `.Messages`, made of the model's own chat segments (so multi-turn chats and
    the system turn come out as the model's template renders them). None: Ollama then reads
    tokenizer.chat_template from the GGUF itself."""
    seg = chat_segments(contract)
    if seg is None:
        return None
    system = (f'{{{{- if eq $m.Role "system" }}}}{seg["start_system"]}{{{{ $m.Content }}}}\n'
              if "start_system" in seg else "")
    after_system = f'{{{{ else if eq $i 1 }}}}{seg["system_user"]}' if "system_user" in seg else ""
    return ("{{- range $i, $m := .Messages }}\n" + system
            + ('{{- else ' if system else '{{- ') + 'if eq $m.Role "user" }}'
            + f'{{{{ if eq $i 0 }}}}{seg["start_user"]}{after_system}{{{{ else }}}}{seg["assistant_user"]}{{{{ end }}}}'
            + f'{{{{ $m.Content }}}}{{{{ if eq (len (slice $.Messages $i)) 1 }}}}{seg["generation"]}{{{{ end }}}}\n'
            + f'{{{{- else if eq $m.Role "assistant" }}}}{seg["user_assistant"]}{{{{ $m.Content }}}}\n'
            + "{{- end }}\n{{- end }}")


def modelfile_text(gguf_name: str, contract: ChatContract, system_prompt: str | None) -> str:
    """An Ollama Modelfile: template and stop strings from the model's chat contract; the system prompt the
    model was trained with, given once (the template's system slot takes it, no second system turn)."""
    lines = ["# Ollama: ollama create domain-llm -f Modelfile   (then: ollama run domain-llm)",
             f"FROM ./{gguf_name}", ""]
    template = ollama_template(contract)
    if template is not None:
        lines += [f'TEMPLATE """{template}"""', ""]
    if system_prompt:
        lines += [f'SYSTEM """{system_prompt.strip()}"""', ""]
    lines += [f'PARAMETER stop "{s}"' for s in contract.stop_strings]
    lines += ["PARAMETER temperature 0", ""]
    return "\n".join(lines)


def write_modelfile(out_dir: Path, gguf_name: str, contract: ChatContract, system_prompt: str | None) -> Path:
    path = out_dir / "Modelfile"
    write_text(path, modelfile_text(gguf_name, contract, system_prompt))
    return path
