"""Per-domain LoRA adapters in GGUF: what one says about itself, and routing a question to the nearest domain.

    facts = read_adapter_facts(Path("models/gguf/adapter-legal.gguf"))   # AdapterFacts(domain="legal", ...)
    router = DomainRouter({"legal": [...questions...], "healthcare": [...]})
    router.route("Can my landlord keep the deposit?")                    # ("legal", {"legal": 0.61, ...})

The publishing stage writes a domain's name, system prompt and a sample of its training questions into the
adapter file's own metadata (`domain_llm.*` keys, beside llama.cpp's `adapter.*` ones), so an adapter GGUF is
served correctly wherever it is copied: the server reads them here, llama.cpp ignores them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stages.errors import StageError

ADAPTER_FILE = "adapter.gguf"  # models/adapters/<domain>/adapter.gguf, beside that domain's manifest.json
KEY_DOMAIN = "domain_llm.domain"
KEY_SYSTEM_PROMPT = "domain_llm.system_prompt"
KEY_ROUTING_EXAMPLES = "domain_llm.routing_examples"
DOMAIN_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")  # a DVC stage suffix, a file name and a model id part


@dataclass
class AdapterFacts:
    path: Path
    domain: str
    system_prompt: str | None = None
    routing_examples: list[str] = field(default_factory=list)


def check_domain_name(name: str, where: str) -> str:
    if not isinstance(name, str) or not DOMAIN_NAME.match(name):
        raise StageError(f"{where}: domain name {name!r} must be lowercase letters, digits, '-' or '_' "
                         "(at most 40, starting with a letter or digit)")
    return name


def _field_value(reader, key: str):
    field_ = reader.fields.get(key)
    return None if field_ is None else field_.contents()


def read_adapter_facts(path: Path, domain: str | None = None) -> AdapterFacts:
    """The adapter's domain (`domain` overrides the file's own), system prompt and routing examples.
    StageError naming the file when it is missing or not a LoRA adapter GGUF."""
    from stages.inference.gguf import check_gguf_structure

    path = Path(path)
    reader = check_gguf_structure(path)
    kind = _field_value(reader, "general.type")
    if kind != "adapter" or _field_value(reader, "adapter.type") != "lora":
        raise StageError(f"{path}: not a LoRA adapter GGUF (general.type={kind!r}); publish adapters with "
                         "`domain-llm quantize` or llama.cpp's convert_lora_to_gguf.py")
    name = domain or _field_value(reader, KEY_DOMAIN) or path.stem.removeprefix("adapter-")
    system = _field_value(reader, KEY_SYSTEM_PROMPT)
    examples = _field_value(reader, KEY_ROUTING_EXAMPLES) or []
    return AdapterFacts(path, check_domain_name(name, str(path)), system if isinstance(system, str) else None,
                        [examples] if isinstance(examples, str) else list(examples))


def add_adapter_facts(writer, domain: str, system_prompt: str | None, routing_examples: Sequence[str]) -> None:
    """Write the `domain_llm.*` keys into a gguf.GGUFWriter (before its header is written)."""
    writer.add_string(KEY_DOMAIN, check_domain_name(domain, "adapter"))
    if system_prompt:
        writer.add_string(KEY_SYSTEM_PROMPT, system_prompt)
    if routing_examples:
        writer.add_array(KEY_ROUTING_EXAMPLES, list(routing_examples))


class DomainRouter:
    """Nearest domain by embedding: the cosine between a question and the mean (unit) embedding of each domain's
    example questions. A centroid per domain keeps routing one small matrix product, and it measured as well as
    nearest neighbours would need on well-separated domains (see the routing accuracy in the quantize metrics)."""

    def __init__(self, examples: Mapping[str, Sequence[str]], embed: Callable[[Sequence[str]], np.ndarray] | None = None):
        if embed is None:
            from stages.inference.retrieval import embed_with_minilm as embed
        missing = sorted(d for d, texts in examples.items() if not texts)
        if missing:
            raise StageError(f"domain {missing[0]!r} has no routing examples; republish its adapter "
                             "(`domain-llm quantize` writes domain_llm.routing_examples) or name the domain")
        self.domains = list(examples)
        self.embed = embed
        centroids = np.stack([embed(list(examples[d])).mean(axis=0) for d in self.domains])
        self.centroids = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """Cosine of each text to each domain's centroid, (len(texts), len(domains))."""
        return self.embed(list(texts)) @ self.centroids.T

    def route(self, text: str) -> tuple[str, dict[str, float]]:
        [routed] = self.route_many([text])
        return routed

    def route_many(self, texts: Sequence[str]) -> list[tuple[str, dict[str, float]]]:
        """Each text's nearest domain and every domain's cosine, from one embedding batch."""
        return [(self.domains[int(np.argmax(row))], {d: round(float(s), 4) for d, s in zip(self.domains, row, strict=True)})
                for row in self.scores(texts)]

    def info(self) -> dict:
        return {"domains": self.domains, "method": "nearest centroid of MiniLM embeddings"}
