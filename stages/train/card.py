"""The model card written to models/merged/README.md: base, data, hyper-parameters, metrics, licence.

    text = model_card(ModelCardFacts(base_dir=Path("models/base"), ...))
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ModelCardFacts:
    base_dir: Path
    domain: str
    system_prompt: str
    data_files: dict[str, int]  # path -> rows used
    hyper_parameters: dict
    metrics: dict
    extra: dict = field(default_factory=dict)


def base_card_fields(base_dir: Path) -> tuple[str, str]:
    """(licence, origin) from the base stage's README.md; 'unknown' when it has none."""
    card = base_dir / "README.md"
    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    licence = re.search(r"^license:\s*(\S+)", text, re.MULTILINE)
    origin = re.search(r"^Origin:\s*(.+)$", text, re.MULTILINE)
    return (licence.group(1) if licence else "unknown", origin.group(1).strip() if origin else str(base_dir))


def _table(rows: dict) -> str:
    lines = ["| key | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows.items()]
    return "\n".join(lines)


def model_card(facts: ModelCardFacts) -> str:
    licence, origin = base_card_fields(facts.base_dir)
    data = "\n".join(f"- `{path}`: {rows} rows" for path, rows in facts.data_files.items())
    shown_metrics = {k: v for k, v in facts.metrics.items() if v is not None}
    return (
        f"---\nlicense: {licence}\nlibrary_name: transformers\npipeline_tag: text-generation\n"
        f"tags: [lora, domain-llm, {facts.domain}]\n---\n\n"
        f"# domain-llm: {facts.domain} fine-tune\n\n"
        f"A LoRA adapter trained by the `train` stage of domain-llm, merged into its base model.\n\n"
        f"## Base model\n\n{origin} (licence: {licence}); weights from `{facts.base_dir}`.\n\n"
        f"## Data\n\nDomain: {facts.domain}. Chat-formatted with the chat template of `{facts.base_dir}` (its model card "
        f"says whether it is the checkpoint's own or one chosen for a base checkpoint); the loss "
        f"covers the assistant answer and its end-of-turn token only.\n\n{data}\n\n"
        f"System prompt used in training:\n\n> {facts.system_prompt}\n\n"
        f"## Hyper-parameters\n\n{_table(facts.hyper_parameters)}\n\n"
        f"## Metrics\n\n{_table(shown_metrics)}\n\n"
        f"## Use\n\n```bash\ndomain-llm generate \"<a {facts.domain} question>\" --model models/merged\n```\n\n"
        f"## Licence\n\n{licence}, inherited from the base model. Outputs are not professional advice.\n"
    )
