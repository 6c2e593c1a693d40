"""`domain-llm routing` (the routing stage): how often `model: auto` sends a question to its own domain.

    domain-llm routing --params params.yaml        # how dvc.yaml runs it, after every adapter@<domain>

The server routes `auto` with a DomainRouter over the routing examples each published adapter carries
(stages/inference/adapters.py); this stage builds the same router from the same files and routes every test
question of every domain (the `test` split: phrasings training never saw). metrics/routing.json: accuracy
overall and per domain, and the confusion counts (true domain -> routed domain).
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from stages.config import domain_names
from stages.errors import StageError
from stages.fileio import read_jsonl, write_json
from stages.inference.adapters import ADAPTER_FILE, DomainRouter, read_adapter_facts
from stages.inference.messages import last_user_turn

log = logging.getLogger(__name__)


def questions(records: list[dict]) -> list[str]:
    """Each record's last user turn, as a client would send it."""
    return [q for r in records if (q := last_user_turn(r.get("messages", []))) is not None]


def main(cfg: DictConfig) -> dict:
    domains = domain_names(cfg)  # one domain: every question goes to it (accuracy 1 by construction)
    facts = {d: read_adapter_facts(Path(str(cfg.paths.adapter_gguf)) / d / ADAPTER_FILE, d) for d in domains}
    router = DomainRouter({d: f.routing_examples for d, f in facts.items()})
    confusion = {d: dict.fromkeys(domains, 0) for d in domains}
    for domain in domains:
        asked = questions(read_jsonl(Path(str(cfg.paths.processed)) / domain / "test.jsonl"))
        if not asked:
            raise StageError(f"{cfg.paths.processed}/{domain}/test.jsonl: no questions to route")
        for row in router.scores(asked).argmax(axis=1):
            confusion[domain][router.domains[int(row)]] += 1
    total = sum(sum(row.values()) for row in confusion.values())
    metrics = {"questions": total, "method": router.info()["method"],
               "accuracy": round(sum(confusion[d][d] for d in domains) / total, 4),
               "per_domain": {d: round(confusion[d][d] / sum(confusion[d].values()), 4) for d in domains},
               "confusion": confusion}
    write_json(Path(str(cfg.paths.metrics)) / "routing.json", metrics)
    log.info("routing: %.3f of %d test questions to their own domain; per domain %s", metrics["accuracy"], total,
             metrics["per_domain"])
    return metrics
