"""The prepare stage's data checks: the seed's seven (schema, nulls/empties, duplicates, length, language,
instruction format, label distribution) plus leakage and the held-out facts (by fact id and by text). Any
failing check stops the stage before it writes.

    domain-llm prepare prepare.validation.language=null               # skip the language check
    domain-llm prepare prepare.validation.max_language_mismatch=0.1

The language check uses langdetect with a fixed seed (its results are random otherwise) on each example's
full text; texts too short or too symbol-heavy to detect are counted as undetectable, not as mismatches.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from tqdm import tqdm

from stages.inference.grounding import strip_citations
from stages.prepare.cleaning import CleaningConfig, example_text, prompt_text
from stages.prepare.dedup import normalize_for_matching
from stages.prepare.held_out import TAUGHT_SPLITS, HeldOutAnswers, record_statements
from stages.prepare.records import REQUIRED_FIELDS
from stages.prepare.splits import UNSEEN_FACT_SPLITS, find_leaks

TEXT_FIELDS = ("id", "domain", "instruction", "input", "output", "source")
MAX_EXAMPLES = 5  # offending ids quoted per failed check


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str
    examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ValidationSettings:
    language: str | None = "en"
    max_language_mismatch: float = 0.05
    # Largest allowed gap between a domain's share of a split and its share of train (mixed data).
    max_domain_share_gap: float = 0.15
    leakage_threshold: float = 0.9
    # langdetect takes ~5 ms per example: beyond this many, a seeded sample is checked.
    max_language_checks: int = 2000
    expected_domains: tuple[str, ...] = ()


def _all(splits: dict[str, list[dict]]):
    for name, records in splits.items():
        for record in records:
            yield name, record


def check_schema(splits: dict[str, list[dict]]) -> CheckResult:
    bad = []
    for name, r in _all(splits):
        missing = [f for f in REQUIRED_FIELDS if f not in r]
        wrong = [f for f in TEXT_FIELDS if f in r and not isinstance(r[f], str)]
        msgs = r.get("messages")
        if missing or wrong or not isinstance(msgs, list) or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in msgs):
            bad.append(f"{name}:{r.get('id')} missing={missing} wrong_type={wrong}")
    return CheckResult("schema", not bad, f"{len(bad)} records with missing fields or wrong types", bad[:MAX_EXAMPLES])


def check_nulls(splits: dict[str, list[dict]]) -> CheckResult:
    bad = [f"{name}:{r['id']}" for name, r in _all(splits)
           if any(r.get(f) is None for f in REQUIRED_FIELDS) or not r["instruction"].strip()
           or not r["output"].strip() or not r["domain"].strip()]
    return CheckResult("nulls", not bad, f"{len(bad)} records with null or empty instruction/output/domain",
                       bad[:MAX_EXAMPLES])


def check_duplicates(splits: dict[str, list[dict]]) -> CheckResult:
    bad = []
    for name, records in splits.items():
        counts = Counter(normalize_for_matching(prompt_text(r)) for r in records)
        bad += [f"{name}: {text[:60]!r} x{n}" for text, n in counts.items() if n > 1]
        ids = Counter(r["id"] for r in records)
        bad += [f"{name}: id {i} x{n}" for i, n in ids.items() if n > 1]
    return CheckResult("duplicates", not bad, f"{len(bad)} duplicated prompts or ids within a split",
                       bad[:MAX_EXAMPLES])


def check_lengths(splits: dict[str, list[dict]], config: CleaningConfig, length: Callable[[str], int],
                  unit: str) -> CheckResult:
    bad = [f"{name}:{r['id']}" for name, r in _all(splits)
           if length(r["instruction"]) < config.min_instruction_length or length(r["output"]) <
           config.min_output_length or (config.max_length and length(example_text(r)) > config.max_length)]
    return CheckResult("length", not bad, f"{len(bad)} records outside instruction >= "
                       f"{config.min_instruction_length}, output >= {config.min_output_length}, total <= "
                       f"{config.max_length} {unit}", bad[:MAX_EXAMPLES])


def detect_language(text: str) -> str | None:
    from langdetect import DetectorFactory, detect
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0
    try:
        return detect(text)
    except LangDetectException:
        return None


def check_language(splits: dict[str, list[dict]], settings: ValidationSettings) -> CheckResult:
    if not settings.language:
        return CheckResult("language", True, "skipped (prepare.validation.language is null)")
    records = [(name, r) for name, r in _all(splits)]
    if len(records) > settings.max_language_checks:
        records = random.Random(0).sample(records, settings.max_language_checks)
    mismatched, undetectable = [], 0
    for name, r in tqdm(records, desc="language", unit="row", disable=len(records) < 1000):
        lang = detect_language(example_text(r))
        if lang is None:
            undetectable += 1
        elif lang != settings.language:
            mismatched.append(f"{name}:{r['id']} ({lang})")
    detected = max(len(records) - undetectable, 1)
    share = len(mismatched) / detected
    return CheckResult("language", share <= settings.max_language_mismatch,
                       f"{len(mismatched)}/{detected} detected records not {settings.language!r} ({share:.1%}; "
                       f"allowed {settings.max_language_mismatch:.1%}); {undetectable} undetectable",
                       mismatched[:MAX_EXAMPLES])


def check_instruction_format(splits: dict[str, list[dict]]) -> CheckResult:
    bad = []
    for name, r in _all(splits):
        roles = [m.get("role") for m in r["messages"]]
        if roles and roles[0] == "system":
            roles = roles[1:]
        problems = []
        if not any(ch.isalpha() for ch in r["instruction"]):
            problems.append("instruction has no letters")
        if normalize_for_matching(r["output"]) == normalize_for_matching(r["instruction"]):
            problems.append("output repeats the instruction")
        answer = r["messages"][-1].get("content") if r["messages"] else None
        if r.get("grounded") and isinstance(answer, str):  # the reference answer citing a passage: "... [2]."
            answer = strip_citations(answer)
        if roles != ["user", "assistant"] or answer != r["output"]:
            problems.append("messages are not [system?], user, assistant(output)")
        if problems:
            bad.append(f"{name}:{r['id']}: {'; '.join(problems)}")
    return CheckResult("instruction_format", not bad, f"{len(bad)} badly formed examples", bad[:MAX_EXAMPLES])


def check_distribution(splits: dict[str, list[dict]], ratios: dict[str, float],
                       settings: ValidationSettings) -> CheckResult:
    problems = [f"{name} is empty" for name, records in splits.items() if ratios.get(name, 0) > 0 and not records]
    train_counts = Counter(r["domain"] for r in splits["train"])
    problems += [f"expected domain {d!r} has no training examples" for d in settings.expected_domains
                 if train_counts[d] == 0]
    if len(train_counts) > 1:
        total = sum(train_counts.values())
        for name in ("validation", "test"):
            counts, n = Counter(r["domain"] for r in splits[name]), len(splits[name])
            for domain in train_counts:
                gap = abs(counts[domain] / n - train_counts[domain] / total) if n else 0.0
                if n >= 20 and gap > settings.max_domain_share_gap:
                    problems.append(f"{name} share of {domain} differs from train by {gap:.0%}")
    shares = {name: dict(Counter(r["domain"] for r in records)) for name, records in splits.items()}
    return CheckResult("distribution", not problems, f"domains per split: {shares}", problems[:MAX_EXAMPLES])


def check_leakage(splits: dict[str, list[dict]], settings: ValidationSettings) -> CheckResult:
    leaks = find_leaks(splits, settings.leakage_threshold)
    bad = [f"{name}:{rid} ~ train:{tid} ({sim:.2f})" for name, hits in leaks.items() for rid, tid, sim in hits]
    return CheckResult("leakage", not bad, f"{len(bad)} held-out prompts duplicate a training prompt "
                       f"(Jaccard >= {settings.leakage_threshold})", bad[:MAX_EXAMPLES])


def check_unseen_facts(splits: dict[str, list[dict]]) -> CheckResult:
    """test_facts and validation_facts ask facts that no other split states (their fact_id appears nowhere
    else, not even in the other of the two)."""
    owner = {r.get("fact_id"): split for split in UNSEEN_FACT_SPLITS for r in splits.get(split, [])}
    owner.pop(None, None)
    unseen = set(owner)
    bad = [f"{name}:{r['id']} states {r['fact_id']}" for name, r in _all(splits)
           if r.get("fact_id") in unseen and owner[r["fact_id"]] != name]
    return CheckResult("unseen_facts", not bad, f"{len(unseen)} held-out facts; {len(bad)} records elsewhere state "
                       "one", bad[:MAX_EXAMPLES])


def check_held_out_text(splits: dict[str, list[dict]]) -> CheckResult:
    """No train or validation record's messages (system, prompt with its passages, answer) state a
    test_facts/validation_facts answer (the predicate of stages/prepare/held_out.py): the fact ids differ
    (check_unseen_facts), and this proves the text, passages retrieved from the all-facts index included."""
    held_out = HeldOutAnswers.from_splits(splits)
    bad = [line for name in TAUGHT_SPLITS for line in record_statements(name, splits.get(name, []), held_out)]
    return CheckResult("held_out_text", not bad, f"{len(held_out)} held-out answers; {len(bad)} "
                       "train/validation records state one (drop or fix them; grounded passages must skip "
                       "held-out facts, stages/prepare/held_out.py)", bad[:MAX_EXAMPLES])


def validate_splits(splits: dict[str, list[dict]], ratios: dict[str, float], cleaning: CleaningConfig,
                    length: Callable[[str], int], unit: str, settings: ValidationSettings) -> list[CheckResult]:
    """Run every check; schema first since the others assume well-formed records."""
    schema = check_schema(splits)
    if not schema.passed:
        return [schema]
    return [schema, check_nulls(splits), check_duplicates(splits), check_lengths(splits, cleaning, length, unit),
            check_language(splits, settings), check_instruction_format(splits),
            check_distribution(splits, ratios, settings), check_leakage(splits, settings),
            check_unseen_facts(splits), check_held_out_text(splits)]
