"""What the prepare stage reports: metrics/data.json (for `dvc metrics`), metrics/data_report.md and the
dataset card written next to the splits (data/processed/<domain>/dataset_card.md).

    dvc metrics show            # counts per split, dropped rows by reason, length stats, checks passed
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from stages.prepare.cleaning import CleaningConfig, prompt_text
from stages.prepare.sources import LoadedData
from stages.prepare.validation import CheckResult


@dataclass
class PrepareSummary:
    """Everything the reports need from one run of the stage."""

    name: str
    loaded: LoadedData
    splits: dict[str, list[dict]]
    dropped: Counter
    checks: list[CheckResult]
    cleaning: CleaningConfig
    unit: str
    ratios: dict[str, float]
    seed: int
    extra: dict = field(default_factory=dict)


def length_stats(values: list[int]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "median": 0.0, "max": 0}
    return {"mean": round(statistics.fmean(values), 2), "median": float(statistics.median(values)),
            "max": max(values)}


def split_stats(records: list[dict], length: Callable[[str], int]) -> dict:
    return {"prompt_length": length_stats([length(prompt_text(r)) for r in records]),
            "output_length": length_stats([length(r["output"]) for r in records]),
            "domains": dict(sorted(Counter(r["domain"] for r in records).items()))}


def data_metrics(summary: PrepareSummary, length: Callable[[str], int]) -> dict:
    """The content of metrics/data.json."""
    counts = {name: len(records) for name, records in summary.splits.items()}
    return {
        "dataset": summary.name,
        "source": summary.loaded.source,
        "format": summary.loaded.data_format,
        "length_unit": summary.unit,
        "counts": {"loaded": len(summary.loaded.records), **counts, "total": sum(counts.values())},
        "dropped": dict(sorted(summary.dropped.items())),
        "dropped_total": sum(summary.dropped.values()),
        "stats": {name: split_stats(records, length) for name, records in summary.splits.items()},
        "checks": {check.name: check.passed for check in summary.checks},
        "checks_passed": all(check.passed for check in summary.checks),
    }


def _table(rows: list[tuple], header: tuple) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def render_data_report(summary: PrepareSummary, metrics: dict) -> str:
    lines = [f"# Data report: {summary.name}", "",
             f"Source: `{summary.loaded.source}` ({summary.loaded.data_format}); seed {summary.seed}; "
             f"lengths in {summary.unit}.", "", "## Splits", ""]
    lines += _table([(name, metrics["counts"][name], s["prompt_length"]["mean"], s["prompt_length"]["max"],
                      s["output_length"]["mean"], s["output_length"]["max"], s["domains"])
                     for name, s in metrics["stats"].items()],
                    ("split", "examples", "prompt mean", "prompt max", "output mean", "output max", "domains"))
    lines += ["", f"## Dropped rows ({metrics['dropped_total']} of {metrics['counts']['loaded']} loaded)", ""]
    lines += _table(list(metrics["dropped"].items()) or [("(none)", 0)], ("reason", "rows"))
    lines += ["", "## Checks", ""]
    lines += _table([(c.name, "pass" if c.passed else "FAIL", c.detail) for c in summary.checks],
                    ("check", "result", "detail"))
    failed = [c for c in summary.checks if not c.passed and c.examples]
    for check in failed:
        lines += ["", f"{check.name} examples:", *[f"- {e}" for e in check.examples]]
    return "\n".join(lines) + "\n"


def render_dataset_card(summary: PrepareSummary, metrics: dict) -> str:
    loaded, cleaning = summary.loaded, summary.cleaning
    steps = [name for name in ("decode_html", "remove_urls", "remove_emails", "strip_special_chars",
                               "normalize_whitespace", "drop_empty", "dedup_exact", "dedup_near",
                               "balance_domains") if getattr(cleaning, name)]
    lines = [f"# Dataset card: {summary.name}", "", loaded.description, "",
             f"- **Source:** `{loaded.source}`", f"- **Format read:** {loaded.data_format}",
             f"- **Licence:** {loaded.license}",
             "- **Splits:** " + ", ".join(f"{n} {len(r)}" for n, r in summary.splits.items()),
             f"- **Split ratios:** {summary.ratios} (seed {summary.seed}, stratified by domain"
             + ("; test = held-out paraphrase templates" if loaded.source == "synthetic" else "") + ")",
             f"- **Domains:** {metrics['stats']['train']['domains']}", ""]
    if loaded.disclaimer:
        lines += ["## Disclaimer", "", loaded.disclaimer, ""]
    lines += ["## Cleaning", "", f"Steps: {', '.join(steps) or 'none'}; near-duplicate Jaccard threshold "
              f"{cleaning.near_dup_threshold}; instruction >= {cleaning.min_instruction_length}, output >= "
              f"{cleaning.min_output_length}, example <= {cleaning.max_length} {summary.unit}.", "",
              "Dropped rows by reason: " + (", ".join(f"{k} {v}" for k, v in metrics["dropped"].items())
                                            or "none") + ".", "",
              "## Schema", "",
              "One JSON object per line: `id`, `domain`, `instruction`, `input`, `output`, `source`, and "
              "`messages` (system prompt, user = instruction + input, assistant = output)."]
    return "\n".join(lines) + "\n"
