"""`domain-llm generate`: answer one question with an HF model folder or a GGUF file.

    domain-llm generate "What are the symptoms of asthma?"                       # models/merged/healthcare
    domain-llm generate "What is consideration in contract law?" --model models/merged/legal
    domain-llm generate "What is a tort?" --model models/gguf/model-q4_k_m.gguf       # the shared base alone

The system prompt defaults to the one the model was fine-tuned with (its manifest.json); --system overrides it.
"""

from __future__ import annotations

from pathlib import Path

from stages.inference import SamplingParams, load_engine


def main(prompt: str, model: str, max_new_tokens: int = 128, system: str | None = None) -> int:
    path = Path(model)
    kind = "gguf" if path.suffix == ".gguf" else "hf"
    engine = load_engine(kind, path)
    # Default: the system prompt the model was trained with (its manifest); "" means none.
    system = system if system is not None else engine.served.get("system_prompt")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    [generation] = engine.chat([messages], SamplingParams(max_new_tokens=max_new_tokens))
    print(generation.text.strip())
    return 0
