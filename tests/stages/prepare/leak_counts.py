"""Before/after measure of the held-out leak through grounded passages: a domain's splits built the way the
prepare stage builds them, grounded with the held-out filter (the stage now) or without it (the stage before
it), counted by stages.prepare.held_out.count_verbatim_leaks (unique test_facts / validation_facts reference
answers found verbatim inside a train or validation prompt).

    python -m tests.stages.prepare.leak_counts params.yaml healthcare legal finance  # needs base + index
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig

from stages.prepare.cleaning import CleaningConfig, clean_records
from stages.prepare.held_out import HeldOutAnswers, count_verbatim_leaks
from stages.prepare.main import ground_train_split, validation_settings
from stages.prepare.sources import load_source
from stages.prepare.splits import SplitRatios, remove_leakage, split_records


def grounded_splits(cfg: DictConfig, filter_held_out: bool) -> tuple[dict[str, list[dict]], int]:
    """(the splits of stages.prepare.main.main before its checks, grounded records); filter_held_out=False
    grounds on the top_k passages as retrieved, held-out facts or not, as the stage did before the filter."""
    seed = int(cfg.seed)
    cleaning = CleaningConfig.from_cfg(cfg.prepare.cleaning)
    records, _, _ = clean_records(load_source(cfg).records, cleaning, cfg.domain.get("system_prompt"), seed,
                                  Path(cfg.paths.base_model) / "tokenizer.json")
    splits = split_records(records, SplitRatios.from_cfg(cfg.prepare.split), seed)
    splits, _ = remove_leakage(splits, validation_settings(cfg).leakage_threshold)
    held_out = HeldOutAnswers.from_splits(splits) if filter_held_out else None
    splits["train"], grounded = ground_train_split(cfg, splits["train"], seed, held_out)
    return splits, grounded


def leak_counts(cfg: DictConfig) -> dict[str, dict[str, tuple[int, int]]]:
    """{"before"|"after": {test_facts|validation_facts: (leaked answers, answers)}} for one domain."""
    return {label: count_verbatim_leaks(grounded_splits(cfg, filtered)[0])
            for label, filtered in (("before", False), ("after", True))}


def main(params: str, domains: list[str]) -> None:
    from stages.config import for_domain, load_params

    for domain in domains:
        counts = leak_counts(for_domain(load_params(params), domain))
        print(domain, "; ".join(f"{label}: " + ", ".join(f"{split} {leaked}/{total}"
                                                          for split, (leaked, total) in by_split.items())
                                for label, by_split in counts.items()))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "params.yaml",
         sys.argv[2:] or ["healthcare", "legal", "finance"])
