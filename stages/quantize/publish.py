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


# Placeholders no template rewrites: rendering the model's own template around them gives Ollama's Go template.
_SYSTEM_MARK, _PROMPT_MARK = "SYSTEM0PLACEHOLDER", "PROMPT0PLACEHOLDER"


def ollama_template(contract: ChatContract) -> str | None:
    """Ollama's Go template for one turn, rendered from the model's own chat template (with a system message
    and without), so that it is whatever the model's template is, not a guess at its family. BOS is left out
    where the tokenizer adds it (Ollama's llama.cpp adds it again otherwise). None: the template cannot be
    rendered this way; Ollama then reads tokenizer.chat_template from the GGUF."""
    def render(messages: list[dict]) -> str | None:
        try:
            text = contract.render(messages)
        except Exception:  # e.g. a template without a system role raises on one
            return None
        if contract.add_bos and contract.bos_token and text.startswith(contract.bos_token):
            text = text[len(contract.bos_token):]
        if "{{" in text:
            return None
        return text.replace(_SYSTEM_MARK, "{{ .System }}").replace(_PROMPT_MARK, "{{ .Prompt }}")

    user = {"role": "user", "content": _PROMPT_MARK}
    without_system = render([user])
    if without_system is None:
        return None
    with_system = render([{"role": "system", "content": _SYSTEM_MARK}, user])
    turn_end = contract.stop_strings[0] if contract.stop_strings else ""
    body = (f"{{{{ if .System }}}}{with_system}{{{{ else }}}}{without_system}{{{{ end }}}}"
            if with_system and "{{ .System }}" in with_system else without_system)
    return body + "{{ .Response }}" + turn_end


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
