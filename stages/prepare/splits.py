"""Seeded train/validation/test splits, stratified by domain, and removal of cross-split leakage.

    domain-llm prepare prepare.split.train=0.7 prepare.split.validation=0.15 prepare.split.test=0.15

Synthetic data arrives with `held_out` set on examples phrased with held-out paraphrase templates: those are
the test split, and train/validation are cut from the rest, so test measures generalisation to new wording.
Examples with `unseen_fact` ask facts no other example states: they are the test_facts split, or with
`validation_fact` too the validation_facts split (used to choose retrieval settings; both empty for other sources).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from omegaconf import DictConfig

from stages.errors import StageError
from stages.prepare.cleaning import prompt_text
from stages.prepare.dedup import NearDuplicateIndex

# test: known facts in unseen phrasings; test_facts and validation_facts: facts no other record states (synthetic
# data only)
SPLITS = ("train", "validation", "test", "test_facts", "validation_facts")
HELD_OUT_SPLITS = ("validation", "test", "test_facts", "validation_facts")
UNSEEN_FACT_SPLITS = ("test_facts", "validation_facts")


@dataclass
class SplitRatios:
    train: float = 0.8
    validation: float = 0.1
    test: float = 0.1

    @classmethod
    def from_cfg(cls, section: DictConfig | dict) -> SplitRatios:
        ratios = cls(**{name: float(section[name]) for name in ("train", "validation", "test")})
        values = [ratios.train, ratios.validation, ratios.test]
        if min(values) < 0 or ratios.train <= 0 or abs(sum(values) - 1.0) > 1e-6:
            raise StageError(f"prepare.split: ratios train={ratios.train} validation={ratios.validation} "
                             f"test={ratios.test} must be >= 0, train > 0, and sum to 1")
        return ratios


def _cut(items: list[dict], fractions: list[float]) -> list[list[dict]]:
    """Cut `items` into consecutive parts by fractions (largest-remainder rounding; a non-zero fraction
    gets at least one item when there are enough items, so a small domain still reaches every split)."""
    n = len(items)
    exact = [f * n for f in fractions]
    counts = [int(x) for x in exact]
    for i in sorted(range(len(exact)), key=lambda i: exact[i] - counts[i], reverse=True)[: n - sum(counts)]:
        counts[i] += 1
    if n >= sum(1 for f in fractions if f > 0):
        for i, f in enumerate(fractions):
            if f > 0 and counts[i] == 0:
                donor = max(range(len(counts)), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] += 1
    parts, start = [], 0
    for count in counts:
        parts.append(items[start:start + count])
        start += count
    return parts


def _stratified(records: list[dict], fractions: list[float], seed: int) -> list[list[dict]]:
    by_domain: dict[str, list[dict]] = {}
    for record in records:
        by_domain.setdefault(record["domain"], []).append(record)
    parts: list[list[dict]] = [[] for _ in fractions]
    for domain in sorted(by_domain):
        group = sorted(by_domain[domain], key=lambda r: r["id"])  # input order must not matter
        random.Random(f"{seed}:{domain}").shuffle(group)
        for part, piece in zip(parts, _cut(group, fractions), strict=True):
            part.extend(piece)
    rng = random.Random(seed)
    for part in parts:
        rng.shuffle(part)
    return parts


def _teach_asked_facts_in_train(train: list[dict], validation: list[dict], test: list[dict]) -> None:
    """Swap records (in place, sizes kept) so every fact the test split asks has a record in train.

    The synthetic generator teaches each fact a test question asks at least once, but the random
    train/validation cut can put that one record in validation; test would then ask a fact the model never saw.
    Such a validation record trades places with the first train record of its domain whose fact stays taught.
    """
    asked = {r.get("fact_id") for r in test} - {None}
    in_train = Counter(r.get("fact_id") for r in train)
    for i, record in enumerate(validation):
        fact = record.get("fact_id")
        if fact not in asked or in_train[fact]:
            continue
        j = next((j for j, other in enumerate(train) if other["domain"] == record["domain"]
                  and (other.get("fact_id") not in asked or in_train[other.get("fact_id")] > 1)), None)
        if j is None:
            continue
        in_train[train[j].get("fact_id")] -= 1
        in_train[fact] += 1
        validation[i], train[j] = train[j], record


def split_records(records: list[dict], ratios: SplitRatios, seed: int) -> dict[str, list[dict]]:
    """{train, validation, test, test_facts, validation_facts} lists. Records with a `held_out` key (synthetic)
    use it for test, and those with `unseen_fact` form test_facts (validation_facts with `validation_fact`)."""
    test_facts = _stratified([r for r in records if r.get("unseen_fact") and not r.get("validation_fact")],
                             [1.0], seed)[0]
    validation_facts = _stratified([r for r in records if r.get("validation_fact")], [1.0], seed)[0]
    unseen = {"test_facts": test_facts, "validation_facts": validation_facts}
    records = [r for r in records if not r.get("unseen_fact")]
    if any("held_out" in r for r in records):
        test = [r for r in records if r.get("held_out")]
        rest = [r for r in records if not r.get("held_out")]
        val_fraction = ratios.validation / (ratios.train + ratios.validation)
        train, validation = _stratified(rest, [1 - val_fraction, val_fraction], seed)
        test = _stratified(test, [1.0], seed)[0]
        _teach_asked_facts_in_train(train, validation, test)
        return {"train": train, "validation": validation, "test": test, **unseen}
    train, validation, test = _stratified(records, [ratios.train, ratios.validation, ratios.test], seed)
    return {"train": train, "validation": validation, "test": test, **unseen}


def find_leaks(splits: dict[str, list[dict]], threshold: float) -> dict[str, list[tuple[str, object, float]]]:
    """For each held-out split: (record id, train id, similarity) of each example whose prompt equals or
    near-duplicates a training prompt (word 3-shingle Jaccard >= threshold)."""
    index = NearDuplicateIndex(threshold)
    for record in splits["train"]:
        index.add(prompt_text(record), record["id"])
    leaks: dict[str, list[tuple[str, object, float]]] = {}
    for name in HELD_OUT_SPLITS:
        leaks[name] = [(r["id"], *hit) for r in splits.get(name, []) if (hit := index.find(prompt_text(r)))]
    return leaks


def remove_leakage(splits: dict[str, list[dict]], threshold: float) -> tuple[dict[str, list[dict]], Counter]:
    """Drop held-out examples that leak a training one; counts by reason `leakage_<split>`."""
    leaks = find_leaks(splits, threshold)
    dropped: Counter = Counter()
    cleaned = dict(splits)
    for name, hits in leaks.items():
        leaked = {record_id for record_id, *_ in hits}
        if leaked:
            cleaned[name] = [r for r in splits[name] if r["id"] not in leaked]
            dropped[f"leakage_{name}"] = len(splits[name]) - len(cleaned[name])
    return cleaned, dropped
