"""`domain-llm report`: markdown of dvc metrics/params diff, on a real temp git + DVC repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stages.errors import StageError
from stages.report import build_report

# As the pipeline declares it: the stage's full metrics file is a plain output, only the headline is DVC metrics;
# the report still covers every number of the full file.
DVC_YAML = """stages:
  evaluate:
    cmd: echo evaluate
    params:
      - train
    outs:
      - metrics/eval.json:
          cache: false
  headline:
    cmd: echo headline
    deps:
      - metrics/eval.json
    metrics:
      - metrics/headline.json:
          cache: false
"""


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def _write(repo: Path, eval_json: dict, lora_r: int) -> None:
    (repo / "metrics").mkdir(exist_ok=True)
    (repo / "metrics" / "eval.json").write_text(json.dumps(eval_json))
    (repo / "metrics" / "headline.json").write_text(json.dumps({"quality": {"rougeL": eval_json["rougeL"]}}))
    (repo / "params.yaml").write_text(f"train:\n  lr: 0.001\n  lora:\n    r: {lora_r}\n")


@pytest.fixture()
def repo(tmp_path) -> Path:
    """A git + DVC repo with two commits of metrics/eval.json and params.yaml."""
    os.environ["DVC_NO_ANALYTICS"] = "1"
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "test@example.com")
    _git(tmp_path, "config", "user.name", "test")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    _write(tmp_path, {"rougeL": 0.20, "rougeL_ci_low": 0.18, "rougeL_ci_high": 0.22, "bleu": 0.10,
                      "bleu_ci_low": 0.05, "bleu_ci_high": 0.15, "perplexity": 12.5, "repetition_rate": 0.05,
                      "n_examples": 60}, 16)
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "baseline")
    _write(tmp_path, {"rougeL": 0.31, "rougeL_ci_low": 0.28, "rougeL_ci_high": 0.34, "bleu": 0.12,
                      "bleu_ci_low": 0.07, "bleu_ci_high": 0.17, "perplexity": 9.25, "repetition_rate": 0.25,
                      "n_examples": 60}, 8)
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "lora r=8")
    return tmp_path


def test_report_between_two_commits(repo):
    md = build_report("HEAD~1", repo)
    assert md.startswith("## Experiment report: `HEAD~1` → workspace")
    headline = md.split("### Headline metrics")[1].split("###")[0]
    assert "| rougeL | 0.2 | 0.31 | 0.11 | better (outside HEAD~1's 95% CI) |" in headline
    assert "| bleu | 0.1 | 0.12 | 0.02 | better (within HEAD~1's 95% CI) |" in headline
    assert "| perplexity | 12.5 | 9.25 | -3.25 | better |" in headline
    # more answers stuck repeating a phrase is worse (stages/metric_direction.py, shared with evaluate and /ui)
    assert "| repetition_rate | 0.05 | 0.25 | 0.2 | worse |" in headline
    assert "n_examples" not in headline
    # dvc's own tables: changed metrics and the changed param
    metrics_table = md.split("### Metrics changed")[1].split("###")[0]
    assert "metrics/eval.json" in metrics_table and "rougeL_ci_low" in metrics_table
    assert "| metrics/headline.json | quality.rougeL | 0.2 | 0.31 |" in metrics_table
    assert "n_examples" not in metrics_table                    # unchanged metrics are left out
    params_table = md.split("### Params changed")[1]
    assert "| params.yaml | train.lora.r | 16 | 8 | -8 |" in params_table
    assert "train.lr" not in params_table


def test_report_without_changes(repo):
    md = build_report("HEAD", repo)
    assert "No metric changed." in md and "No parameter changed." in md
    assert "| rougeL | 0.31 | 0.31 | 0 |  |" in md                # headline still shown, no verdict


def test_report_bad_rev_is_one_line_error(repo):
    with pytest.raises(StageError, match="unknown Git revision 'no-such-ref'") as err:
        build_report("no-such-ref", repo)
    assert "\n" not in str(err.value)
