"""What the dashboard shows, read from the repository: DVC experiments, metrics files, curves, model cards.

    rows = list_experiments(Path("."))                    # `dvc exp show --json`: workspace, commits, experiments
    compare_rows(rows[0], rows[1])                        # metric deltas and differing params
    metric_groups(rows)                                   # the headline metrics per domain, then per section
    loss_curves(Path("."), ["workspace", rows[1].rev])    # dvclive's TSVs, from the workspace or git

No HTML here (routes.py renders); every value comes from DVC's own JSON or the stages' files.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stages.errors import StageError
from stages.metric_direction import better

HEADLINE_FILE = "metrics/headline.json"
# headline@<domain> writes one per domain; its metrics are shown as "<domain>.<section>.<name>".
DOMAIN_HEADLINE = re.compile(r"^metrics/([a-z0-9][a-z0-9_-]*)/headline\.json$")
DOMAIN_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
PARAMS_FILE = "params.yaml"
GIT_SHA = re.compile(r"^[0-9a-f]{7,40}$")
CURVES = {"train loss": "metrics/train_live/plots/metrics/train/loss.tsv",
          "eval loss": "metrics/train_live/plots/metrics/eval/loss.tsv"}


@dataclass
class ExperimentRow:
    rev: str                     # "workspace" or a commit sha
    name: str                    # experiment name, branch, or short sha
    kind: str                    # workspace | commit | experiment
    timestamp: str | None
    params: dict[str, Any] = field(default_factory=dict)   # flat: "train.lora.r" -> 8
    metrics: dict[str, Any] = field(default_factory=dict)  # flat headline: "quality.rougeL" -> 0.49
    error: str | None = None
    # metric name -> the domain whose headline it came from ("legal.quality.rougeL" -> "legal"): told apart by
    # the file it came from, not by the name's first part (metrics/headline.json's names have no domain)
    domain_of: dict[str, str] = field(default_factory=dict)


@dataclass
class MetricGroup:
    """The headline metrics of one domain (or of metrics/headline.json: domain None), by section."""
    domain: str | None
    sections: list[tuple[str, list[tuple[str, str]]]]  # (section, [(full metric name, name within section)])


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def run_dvc_json(args: list[str], repo: Path, timeout_s: float = 120) -> Any:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True,
                          timeout=timeout_s, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        raise StageError(f"`dvc {' '.join(args)}` failed in {repo}: {lines[-1] if lines else 'no output'}")
    return json.loads(proc.stdout or "[]")


def _row(entry: dict, kind: str, name: str | None) -> ExperimentRow:
    data = entry.get("data") or {}
    params = flatten(((data.get("params") or {}).get(PARAMS_FILE) or {}).get("data") or {})
    metrics: dict[str, Any] = {}
    domain_of: dict[str, str] = {}
    for path, content in sorted((data.get("metrics") or {}).items()):
        domain = DOMAIN_HEADLINE.match(path)
        if path == HEADLINE_FILE or domain:
            values = flatten((content or {}).get("data") or {}, domain.group(1) if domain else "")
            metrics.update(values)
            if domain:
                domain_of.update(dict.fromkeys(values, domain.group(1)))
    rev = entry.get("rev") or "?"
    error = entry.get("error") or None
    return ExperimentRow(rev=rev, name=name or (rev if rev == "workspace" else rev[:7]), kind=kind,
                         timestamp=data.get("timestamp"), params=params, metrics=metrics,
                         error=json.dumps(error)[:200] if error else None, domain_of=domain_of)


def list_experiments(repo: Path, commits: int = 5) -> list[ExperimentRow]:
    """The workspace, the last `commits` commits and every experiment based on them, as `dvc exp show`."""
    rows: list[ExperimentRow] = []
    for entry in run_dvc_json(["exp", "show", "--json", "-n", str(commits)], repo):
        rows.append(_row(entry, "workspace" if entry.get("rev") == "workspace" else "commit", entry.get("name")))
        for experiment in entry.get("experiments") or []:
            for rev in experiment.get("revs") or []:
                rows.append(_row(rev, "experiment", rev.get("name") or experiment.get("name")))
    return rows


def changed_params(rows: list[ExperimentRow]) -> list[str]:
    """Params whose value differs between rows (`dvc exp show --only-changed`), in file order."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row.params))
    return [n for n in names if len({json.dumps(r.params.get(n), sort_keys=True) for r in rows}) > 1]


def metric_names(rows: list[ExperimentRow]) -> list[str]:
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(k for k, v in row.metrics.items() if isinstance(v, int | float)))
    return list(names)


def metric_domain(rows: list[ExperimentRow], name: str) -> str | None:
    return next((r.domain_of[name] for r in rows if name in r.domain_of), None)


def metric_groups(rows: list[ExperimentRow]) -> list[MetricGroup]:
    """The numeric headline metrics of `rows` grouped for reading: metrics/headline.json's first (domain None),
    then each domain's in name order; within a group by section ("quality", "gguf", ...) in file order."""
    grouped: dict[str | None, dict[str, list[tuple[str, str]]]] = {}
    for name in metric_names(rows):
        domain = metric_domain(rows, name)
        rest = name[len(domain) + 1:] if domain else name
        section, _, short = rest.partition(".") if "." in rest else ("", "", rest)
        grouped.setdefault(domain, {}).setdefault(section, []).append((name, short))
    order = sorted(grouped, key=lambda d: (d is not None, d or ""))
    return [MetricGroup(d, list(grouped[d].items())) for d in order]


def compare_rows(a: ExperimentRow, b: ExperimentRow) -> dict:
    """b against a: each headline metric with its delta (and whether it improved: stages/metric_direction.py,
    matched by the name's ending), also per domain ("groups", None: metrics/headline.json), and the differing
    params."""
    metrics, groups = [], []
    for group in metric_groups([a, b]):
        rows = []
        for name in (n for _, names in group.sections for n, _ in names):
            old, new = a.metrics.get(name), b.metrics.get(name)
            delta = new - old if isinstance(old, int | float) and isinstance(new, int | float) else None
            rows.append({"name": name, "short": name[len(group.domain) + 1:] if group.domain else name,
                         "a": old, "b": new, "delta": delta,
                         "better": better(name, delta) if delta is not None else None})
        metrics += rows
        groups.append({"domain": group.domain, "metrics": rows})
    params = [{"name": n, "a": a.params.get(n), "b": b.params.get(n)} for n in changed_params([a, b])]
    return {"a": a, "b": b, "metrics": metrics, "groups": groups, "params": params}


def read_at(repo: Path, rev: str, path: str) -> str | None:
    """A file's text in the workspace or at a git revision (experiments are git commits); None if absent."""
    if rev == "workspace":
        file = repo / path
        return file.read_text() if file.is_file() else None
    if not GIT_SHA.match(rev):  # never let a request put an option or a ref expression on git's command line
        raise ValueError(f"not a commit sha: {rev!r}")
    proc = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True, text=True, check=False)
    return proc.stdout if proc.returncode == 0 else None


def parse_curve(text: str) -> list[tuple[float, float]]:
    """dvclive's TSV (`step<TAB>loss`) as (step, value) points; malformed lines are skipped."""
    points = []
    for row in csv.DictReader(io.StringIO(text), delimiter="\t"):
        try:
            points.append((float(row["step"]), float(row[next(k for k in row if k != "step")])))
        except (KeyError, StopIteration, TypeError, ValueError):
            continue
    return points


def curve_files(repo: Path) -> dict[str, str]:
    """Series name -> dvclive TSV: the single-model layout, and each domain's (metrics/<domain>/train_live)."""
    files = dict(CURVES)
    for live in sorted((repo / "metrics").glob("*/train_live")):
        for series, path in CURVES.items():
            files[f"{live.parent.name} {series}"] = path.replace("metrics/", f"metrics/{live.parent.name}/", 1)
    return files


def loss_curves(repo: Path, revs: list[tuple[str, str]]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """{label: {"train loss": points, "eval loss": points, "<domain> train loss": ...}} for each (rev, label)."""
    curves: dict[str, dict[str, list]] = {}
    series_files = curve_files(repo)
    for rev, label in revs:
        for series, path in series_files.items():
            text = read_at(repo, rev, path)
            if text:
                curves.setdefault(label, {})[series] = parse_curve(text)
    return curves


def read_json(repo: Path, path: str) -> dict:
    file = repo / path
    try:
        return json.loads(file.read_text()) if file.is_file() else {}
    except json.JSONDecodeError:
        return {}


def domains(repo: Path, rows: list[ExperimentRow]) -> list[str]:
    """Every domain the page has something of: a headline in some row, curves or a quantize file (workspace)."""
    found = {d for r in rows for d in r.domain_of.values()}
    found |= {p.parent.name for pattern in ("*/train_live", "*/quantize.json", "*/headline.json")
              for p in (repo / "metrics").glob(pattern) if DOMAIN_NAME.match(p.parent.name)}
    return sorted(found)


def quantization_table(repo: Path, domain: str | None = None) -> list[dict]:
    """One row per GGUF type (size, ΔPPL, KL, tokens/s) from metrics/quantize.json, or with `domain` that
    domain's adapter and merged model from metrics/<domain>/quantize.json."""
    path = f"metrics/{domain}/quantize.json" if domain else "metrics/quantize.json"
    return [{"type": qtype, **values} for qtype, values in read_json(repo, path).items() if isinstance(values, dict)]


RERANKER_KEY = re.compile(r"^(paraphrase_)?(bm25|biencoder|untrained|trained)_(.+)$")


def reranker_table(repo: Path) -> dict:
    """metrics/reranker.json: its `[paraphrase_]<ranker>_<metric>` keys as one row per ranker and question set
    ("rows"), and its other scalar keys (split, counts, training) as they are ("facts")."""
    rows: dict[str, dict] = {}
    facts: dict[str, Any] = {}
    for key, value in read_json(repo, "metrics/reranker.json").items():
        match = RERANKER_KEY.match(key)
        if match:
            ranker = match.group(2) + (" (paraphrased questions)" if match.group(1) else "")
            rows.setdefault(ranker, {"ranker": ranker})[match.group(3)] = value
        elif not isinstance(value, dict | list):
            facts[key] = value
    return {"rows": list(rows.values()), "facts": facts}


def routing_table(repo: Path) -> dict:
    """metrics/routing.json: overall facts, and per true domain its accuracy and where its questions went."""
    data = read_json(repo, "metrics/routing.json")
    confusion = data.get("confusion") if isinstance(data.get("confusion"), dict) else {}
    per_domain = data.get("per_domain") if isinstance(data.get("per_domain"), dict) else {}
    predicted = list(dict.fromkeys(p for row in confusion.values() if isinstance(row, dict) for p in row))
    rows = [{"domain": d, "accuracy": per_domain.get(d),
             "counts": [(confusion.get(d) or {}).get(p) for p in predicted]}
            for d in dict.fromkeys([*per_domain, *confusion])]
    facts = {k: v for k, v in data.items() if not isinstance(v, dict | list)}
    return {"facts": facts, "predicted": predicted, "rows": rows}


def scalar_facts(repo: Path, path: str) -> dict[str, Any]:
    """A metrics file's top-level scalars (metrics/index.json: documents, chunks, build time...)."""
    return {k: v for k, v in read_json(repo, path).items() if not isinstance(v, dict | list)}


MODEL_CARDS = ("models/base/README.md", "models/merged/README.md", "models/gguf/README.md",
               "models/reranker/README.md")


def documents(repo: Path) -> dict[str, str]:
    """The data reports and the model cards that exist (also each domain's), path -> markdown."""
    found = {}
    per_domain = [str(p.relative_to(repo)) for pattern in ("metrics/*/data_report.md", "models/merged/*/README.md")
                  for p in sorted(repo.glob(pattern))]
    for path in ("metrics/data_report.md", *MODEL_CARDS, *per_domain):
        file = repo / path
        if file.is_file():
            found[path] = file.read_text(errors="replace")
    return found
