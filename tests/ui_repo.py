"""A small real git + DVC repo with a commit and a saved experiment (`dvc exp save`), for the dashboard tests.
Metrics, params, curves and a model card are written as the stages write them; nothing runs a model."""

from __future__ import annotations

import json
from pathlib import Path

from tests.pipeline_repo import run

DVC_YAML = """stages:
  headline:
    cmd: domain-llm headline --params params.yaml
    params:
      - train
    metrics:
      - metrics/headline.json:
          cache: false
    plots:
      - metrics/train_live/plots/metrics:
          cache: false
          x: step
"""
# A model card with markup that must come out as text, never as HTML or a script.
HOSTILE_CARD = ('# Model card\n\n<script>window.pwned = 1</script>\n\n<img src=x onerror="window.pwned=2">\n\n'
                '[click](javascript:window.pwned=3)\n\n| metric | value |\n|---|---|\n| rougeL | 0.5 |\n')


def write_state(repo: Path, lora_r: int, rouge: float, perplexity: float, losses: list[float]) -> None:
    (repo / "params.yaml").write_text(f"train:\n  lr: 0.001\n  lora:\n    r: {lora_r}\n")
    (repo / "metrics").mkdir(exist_ok=True)
    (repo / "metrics" / "headline.json").write_text(json.dumps(
        {"quality": {"rougeL": rouge, "perplexity": perplexity}, "gguf": {"q4_k_m_dppl_pct": 2.5}}))
    curve = repo / "metrics/train_live/plots/metrics/train/loss.tsv"
    curve.parent.mkdir(parents=True, exist_ok=True)
    curve.write_text("step\tloss\n" + "".join(f"{i + 1}\t{loss}\n" for i, loss in enumerate(losses)))


def make_experiments_repo(repo: Path) -> Path:
    """main (lora.r=4, rougeL 0.40) + experiment `lora-r8` (rougeL 0.50, perplexity 4.0 from 5.0)."""
    repo.mkdir(parents=True)
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["dvc", "init", "-q"], repo)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    write_state(repo, 4, 0.40, 5.0, [2.5, 2.0, 1.6])
    (repo / "metrics" / "quantize.json").write_text(json.dumps(
        {"q4_k_m": {"size_mb": 119.7, "delta_ppl_pct": 2.43, "kl_divergence": 0.027, "decode_tokens_per_s": 116.7}}))
    (repo / "metrics" / "reranker.json").write_text(json.dumps(
        {"bm25_mrr_at_10": 0.71, "trained_mrr_at_10": 0.93, "trained_recall_at_1": 0.9}))
    (repo / "models" / "merged").mkdir(parents=True)
    (repo / "models" / "merged" / "README.md").write_text(HOSTILE_CARD)
    run("git add -A && git commit -qm 'baseline'", repo)
    write_state(repo, 8, 0.50, 4.0, [2.4, 1.7, 1.2])
    run(["dvc", "exp", "save", "-n", "lora-r8"], repo)
    write_state(repo, 4, 0.40, 5.0, [2.5, 2.0, 1.6])  # the workspace back at the commit
    return repo
