"""The prepare stage: load a source, clean, split, validate, write data/processed/<domain>/ and data metrics.

    domain-llm prepare domain=legal data.num_samples=200          # standalone, composing conf/ + overrides
    domain-llm prepare --params params.yaml --domain legal        # how dvc.yaml runs it (prepare@legal)
    domain-llm prepare data=local_file data.path=my.jsonl         # your own data

Outputs: {paths.processed}/<domain.name>/{train,validation,test,test_facts,validation_facts}.jsonl + dataset_card.md (that
folder is replaced atomically), metrics/<domain.name>/data.json and data_report.md.
Nothing is written unless every check passes, so a failed run leaves the previous outputs as they were.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from stages.errors import StageError
from stages.fileio import atomic_dir, write_json, write_jsonl, write_text
from stages.prepare.cleaning import CleaningConfig, clean_records, length_function
from stages.prepare.held_out import HeldOutAnswers
from stages.prepare.report import PrepareSummary, data_metrics, render_data_report, render_dataset_card
from stages.prepare.sources import load_source
from stages.prepare.splits import SPLITS, SplitRatios, remove_leakage, split_records
from stages.prepare.validation import ValidationSettings, validate_splits

log = logging.getLogger(__name__)


def validation_settings(cfg: DictConfig) -> ValidationSettings:
    section = cfg.prepare.get("validation") or {}
    expected = tuple(cfg.domain.domains) if cfg.data.source == "synthetic" else ()
    return ValidationSettings(language=section.get("language", "en"),
                              max_language_mismatch=float(section.get("max_language_mismatch", 0.05)),
                              max_domain_share_gap=float(section.get("max_domain_share_gap", 0.15)),
                              leakage_threshold=float(section.get("leakage_threshold", 0.9)),
                              max_language_checks=int(section.get("max_language_checks", 2000)),
                              expected_domains=expected)


def ground_train_split(cfg: DictConfig, train: list[dict], seed: int,
                       held_out: HeldOutAnswers | None = None) -> tuple[list[dict], int]:
    """prepare.grounded: a share of train as /api/v1/ask prompts over the index (see grounded.py), their
    passages free of `held_out` facts."""
    section = cfg.prepare.get("grounded") or {}
    share = float(section.get("share", 0.0))
    if not 0 <= share <= 1:
        raise StageError(f"prepare.grounded.share={share}: use a share between 0 and 1")
    if share == 0:
        return train, 0
    index = Path(str(cfg.paths.index))
    if not (index / "chunks.jsonl").is_file():
        log.warning("prepare.grounded.share=%s but %s has no index: no grounded examples (run `dvc repro index` "
                    "first, or set prepare.grounded.share=0)", share, index)
        return train, 0
    from stages.inference.retrieval import Retriever
    from stages.prepare.grounded import ground_training_examples

    return ground_training_examples(train, Retriever.load(index), share, int(section.get("top_k", 3)), seed,
                                    held_out)


def main(cfg: DictConfig) -> dict:
    """Run the stage; returns the metrics written to data.json."""
    name, system_prompt, seed = str(cfg.domain.name), cfg.domain.get("system_prompt"), int(cfg.seed)
    ratios = SplitRatios.from_cfg(cfg.prepare.split)
    cleaning = CleaningConfig.from_cfg(cfg.prepare.cleaning)
    settings = validation_settings(cfg)
    tokenizer_path = Path(cfg.paths.base_model) / "tokenizer.json"

    loaded = load_source(cfg)
    log.info("loaded %d examples from %s", len(loaded.records), loaded.source)
    records, dropped, unit = clean_records(loaded.records, cleaning, system_prompt, seed, tokenizer_path)
    splits = split_records(records, ratios, seed)
    splits, leak_drops = remove_leakage(splits, settings.leakage_threshold)
    dropped.update(leak_drops)
    # the index holds every fact: grounded passages skip those stating a test_facts/validation_facts answer
    # (validate_splits' held_out_text check then proves no train/validation record states one)
    held_out = HeldOutAnswers.from_splits(splits)
    splits["train"], grounded = ground_train_split(cfg, splits["train"], seed, held_out)
    length, _ = length_function(cleaning, tokenizer_path)
    # test_facts and validation_facts have no ratio: data.held_out_facts and data.validation_held_out_facts set
    # their sizes (synthetic data only)
    ratio_map = {"train": ratios.train, "validation": ratios.validation, "test": ratios.test}
    checks = validate_splits(splits, ratio_map, cleaning, length, unit, settings)
    summary = PrepareSummary(name, loaded, splits, dropped, checks, cleaning, unit, ratio_map, seed)
    failed = [c for c in checks if not c.passed]
    if failed:
        raise StageError("data validation failed, nothing written: " + "; ".join(
            f"{c.name}: {c.detail}" + (f" (e.g. {c.examples[0]})" if c.examples else "") for c in failed))

    metrics = data_metrics(summary, length)
    metrics["grounded_train_examples"] = grounded
    with atomic_dir(Path(cfg.paths.processed) / name) as out:  # one DVC output per domain (prepare@<name>)
        for split in SPLITS:
            write_jsonl(out / f"{split}.jsonl", splits[split])
        write_text(out / "dataset_card.md", render_dataset_card(summary, metrics))
    metrics_dir = Path(cfg.paths.metrics)
    write_json(metrics_dir / "data.json", metrics)
    write_text(metrics_dir / "data_report.md", render_data_report(summary, metrics))
    log.info("wrote %s/%s: %s; dropped %s", cfg.paths.processed, name,
             {s: len(splits[s]) for s in SPLITS}, dict(dropped) or "nothing")
    return metrics
