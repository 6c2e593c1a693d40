"""`domain-llm report --rev REF` (`make report`): markdown of `dvc metrics diff REF` + `dvc params diff REF`
(REF against the workspace, from dvc's `--json` output), ready to paste into a pull request.

    domain-llm report --rev main > pr_comment.md

A headline table comes first (the evaluate stage's quality metrics, with whether the new value lies
outside REF's 95% bootstrap interval), then every changed metric and param as DVC prints them.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from stages.errors import StageError
from stages.metric_direction import better

EVAL_FILE = "eval.json"
# Shown first, in this order; which way is better comes from stages/metric_direction.py.
HEADLINE = ("rougeL", "rouge1", "rouge2", "bleu", "perplexity", "f1", "exact_match", "token_accuracy",
            "semantic_similarity", "numeric_accuracy", "stop_rate", "repetition_rate", "tokens_per_second",
            "latency_p95_s")


def run_dvc(args: list[str], cwd: str | Path = ".") -> str:
    """Run `dvc <args>` with this interpreter's dvc; a failure becomes one StageError line."""
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True,
                          env=None, check=False)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if ln.startswith("ERROR")), lines[-1] if lines else "no output")
        raise StageError(f"`dvc {' '.join(args)}` failed in {Path(cwd).resolve()}: {reason}")
    return proc.stdout


def _fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _verdict(name: str, old, new, ci: tuple | None, rev: str) -> str:
    """Whether the change is an improvement, and whether it leaves `rev`'s bootstrap interval."""
    if not isinstance(old, int | float) or not isinstance(new, int | float) or old == new:
        return ""
    mark = "better" if better(name, new - old) else "worse"
    if ci and all(isinstance(x, int | float) for x in ci):
        inside = ci[0] <= new <= ci[1]
        mark += f" ({'within' if inside else 'outside'} {rev}'s 95% CI)"
    return mark


def headline_table(metrics_diff: dict, rev: str) -> str:
    """Markdown table of the HEADLINE metrics of every eval.json in `dvc metrics diff --json --all`."""
    rows = []
    for path, metrics in sorted(metrics_diff.items()):
        if Path(path).name != EVAL_FILE:
            continue
        for name in HEADLINE:
            if name not in metrics:
                continue
            entry = metrics[name]
            old, new = entry.get("old"), entry.get("new")
            ci = (metrics.get(f"{name}_ci_low", {}).get("old"), metrics.get(f"{name}_ci_high", {}).get("old"))
            diff = entry.get("diff")
            # metrics/<domain>/eval.json: one row per domain and metric
            label = f"{Path(path).parent.name}: {name}" if Path(path).parent.name != "metrics" else name
            rows.append(f"| {label} | {_fmt(old)} | {_fmt(new)} | {_fmt(diff)} | {_verdict(name, old, new, ci, rev)} |")
    if not rows:
        return ""
    header = f"| Metric | {rev} | workspace | Change | |\n|---|---|---|---|---|"
    return header + "\n" + "\n".join(rows)


def changes_table(diff: dict, rev: str, kind: str) -> str:
    """Markdown table of the entries of a `dvc metrics|params diff --json` whose value changed."""
    rows = [f"| {path} | {name} | {_fmt(e.get('old'))} | {_fmt(e.get('new'))} | {_fmt(e.get('diff'))} |"
            for path, entries in sorted(diff.items()) for name, e in sorted(entries.items())
            if e.get("old") != e.get("new")]
    if not rows:
        return ""
    return f"| Path | {kind} | {rev} | workspace | Change |\n|---|---|---|---|---|\n" + "\n".join(rows)


def metrics_files(cwd: str | Path) -> list[str]:
    """Every stage's metrics file, not only the declared headline: `dvc metrics diff --targets` reads them."""
    return sorted(str(p.relative_to(cwd)) for pattern in ("metrics/*.json", "metrics/*/*.json")
                  for p in Path(cwd).glob(pattern))


def build_report(rev: str, cwd: str | Path = ".") -> str:
    """The markdown report of REF vs workspace, from dvc's JSON diffs (one call each)."""
    targets = metrics_files(cwd)
    metrics_diff = json.loads(run_dvc(["metrics", "diff", rev, "--json", "--all",
                                       *(["--targets", *targets] if targets else [])], cwd) or "{}")
    params_diff = json.loads(run_dvc(["params", "diff", rev, "--json"], cwd) or "{}")
    parts = [f"## Experiment report: `{rev}` → workspace", ""]
    headline = headline_table(metrics_diff, rev)
    if headline:
        parts += ["### Headline metrics (evaluate stage)", "", headline, ""]
    parts += [f"### Metrics changed (`dvc metrics diff {rev}`)", "",
              changes_table(metrics_diff, rev, "Metric") or "No metric changed.", ""]
    parts += [f"### Params changed (`dvc params diff {rev}`)", "",
              changes_table(params_diff, rev, "Param") or "No parameter changed.", ""]
    return "\n".join(parts)


def main(rev: str = "HEAD") -> str:
    """Entry point of `domain-llm report --rev REF` (run in the repository root)."""
    return build_report(rev, ".")
