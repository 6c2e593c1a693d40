"""What the held-out leak was worth: each domain's adapter trained on its train split as prepare builds it now
(grounded passages free of held-out facts) against one trained on the same split grounded the way prepare did
before the fix (the top passages as retrieved, held-out facts or not), both answering the same test_facts
questions through grounded@'s code, alone and with retrieved passages. One run, side by side.

    python bench/held_out_leak.py                          # after `make run`: every domain of params.yaml
    python bench/held_out_leak.py --domains legal

Per domain: (1) rebuild the splits with and without the held-out filter (the same records, seed and index;
checked: the test_facts split and every non-grounded record are identical, and the filtered split equals
data/processed/<d>/train.jsonl); (2) count the unique test_facts answers found verbatim inside a training prompt;
(3) train the leaky split with the pipeline's train settings and convert its adapter for the served base; (4) run
grounded@'s evaluation for the leaky adapter, and compare with the pipeline's own metrics/<d>/grounded.json
(the leak-free adapter) per question: ROUGE-L of each condition and a paired bootstrap 95% interval of the
difference. Writes bench/results/held_out_leak.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.run_info import RESULTS_DIR, finish_record, run_record  # noqa: E402
from stages.fileio import read_jsonl, write_json, write_jsonl, write_text  # noqa: E402

CONDITIONS = ("closed_book", "retrieval")


def leaky_splits(cfg) -> tuple[dict, dict]:
    """(splits with the held-out filter, splits without it), built as prepare builds them."""
    from tests.stages.prepare.leak_counts import grounded_splits

    return grounded_splits(cfg, filter_held_out=True)[0], grounded_splits(cfg, filter_held_out=False)[0]


def check_same_questions(domain: str, clean: dict, leaky: dict, processed: Path) -> None:
    """The two runs differ only in the grounded passages of train records, and the clean split is the one the
    pipeline trained on."""
    def strip(records: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in ("messages", "passages", "grounded")} for r in records]

    problems = []
    if clean["test_facts"] != leaky["test_facts"]:
        problems.append("test_facts differs")
    if strip(clean["train"]) != strip(leaky["train"]):
        problems.append("the train records differ beyond their grounded passages")
    if clean["train"] != read_jsonl(processed / domain / "train.jsonl"):
        problems.append(f"{processed / domain / 'train.jsonl'} is not the filtered split (rerun `make run`)")
    if problems:
        sys.exit(f"error: precondition failed for {domain}: {'; '.join(problems)}")


def paired_interval(a: list[float], b: list[float], seed: int = 0, n: int = 2000) -> tuple[float, float, float]:
    """Mean of b - a and its paired bootstrap 95% interval."""
    diff = np.asarray(b) - np.asarray(a)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n, len(diff)))].mean(axis=1)
    return float(diff.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def run_domain(params: Path, domain: str, work: Path) -> dict:
    from stages.config import for_domain, load_params
    from stages.evaluate.grounded import main as grounded_main
    from stages.prepare.held_out import count_verbatim_leaks
    from stages.quantize.lora import convert_lora_to_gguf

    cfg = for_domain(load_params(params), domain)
    processed = ROOT / str(load_params(params).paths.processed)
    clean, leaky = leaky_splits(cfg)
    check_same_questions(domain, clean, leaky, processed)
    leaks = {"leaky": count_verbatim_leaks(leaky), "clean": count_verbatim_leaks(clean)}
    data = work / "processed"
    for split, records in leaky.items():
        write_jsonl(data / domain / f"{split}.jsonl", records)
    out = work / "out"
    overrides = [f"paths.processed={data}", f"paths.adapter={out}/adapter", f"paths.merged={out}/merged",
                 f"paths.metrics={out}/metrics", f"train.checkpoint_dir={out}/checkpoints",
                 f"train.live_dir={out}/metrics/train_live"]
    started = time.perf_counter()
    # The pipeline's own train settings (params.yaml), only the data and output folders elsewhere.
    subprocess.run([sys.executable, "-m", "stages.cli", "train", "--domain", domain, *overrides], cwd=ROOT,
                   check=True, capture_output=True, text=True)
    train_seconds = time.perf_counter() - started
    adapter_dir = out / "adapters" / domain
    facts = {"domain": domain, "system_prompt": cfg.domain.get("system_prompt"), "routing_examples": []}
    convert_lora_to_gguf(out / "adapter" / domain, ROOT / str(cfg.paths.base_model), adapter_dir / "adapter.gguf",
                         outtype="f16", facts=facts)
    gcfg = copy.deepcopy(cfg)
    gcfg.paths.adapter_gguf, gcfg.paths.metrics = str(adapter_dir), str(out / "metrics" / domain)
    gcfg.paths.processed = str(processed)  # the same test_facts questions as the pipeline's grounded@
    gcfg.paths.index, gcfg.paths.reranker = str(ROOT / str(cfg.paths.index)), str(ROOT / str(cfg.paths.reranker))
    gcfg.eval.grounded.model = str(ROOT / str(cfg.eval.grounded.model))
    leaky_metrics = grounded_main(gcfg)
    clean_metrics = json.loads((ROOT / "metrics" / domain / "grounded.json").read_text())
    leaky_rows = read_jsonl(out / "metrics" / domain / "grounded" / "predictions.jsonl")
    clean_rows = read_jsonl(ROOT / "metrics" / domain / "grounded" / "predictions.jsonl")
    if [r["id"] for r in leaky_rows] != [r["id"] for r in clean_rows]:
        sys.exit(f"error: precondition failed for {domain}: the two runs answered different questions")
    result = {"questions": len(clean_rows), "unique_facts": len({r["reference"] for r in clean_rows}),
              "leaked_answers_in_training_prompts": leaks, "train_seconds": round(train_seconds, 1)}
    for condition in CONDITIONS:
        a = [r[f"{condition}_scores"]["rougeL"] for r in leaky_rows]
        b = [r[f"{condition}_scores"]["rougeL"] for r in clean_rows]
        mean, low, high = paired_interval(a, b)
        result[condition] = {"rougeL_with_leak": leaky_metrics[condition]["rougeL"],
                             "rougeL_without_leak": clean_metrics[condition]["rougeL"],
                             "without_minus_with": round(mean, 4), "ci95": [round(low, 4), round(high, 4)]}
    return result


def markdown(result: dict) -> str:
    lines = ["# Held-out facts: the adapter trained with the leak vs without", "", "```", result["command"], "```",
             "", "test_facts questions answered by the q4_k_m base + the domain's adapter (grounded@'s code), ROUGE-L;"
             " paired bootstrap 95% interval of (without leak - with leak).", "",
             "| domain | questions (facts) | leaked answers in training prompts (with / without) | closed book: with / "
             "without leak | diff [95% CI] | with retrieval: with / without | diff [95% CI] |",
             "|---|---|---|---|---|---|---|"]
    for domain, r in result["domains"].items():
        leaks = r["leaked_answers_in_training_prompts"]
        cells = [f"{leaks['leaky']['test_facts'][0]}/{leaks['leaky']['test_facts'][1]} / "
                 f"{leaks['clean']['test_facts'][0]}/{leaks['clean']['test_facts'][1]}"]
        for condition in CONDITIONS:
            c = r[condition]
            cells += [f"{c['rougeL_with_leak']:.3f} / {c['rougeL_without_leak']:.3f}",
                      f"{c['without_minus_with']:+.3f} [{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}]"]
        lines.append(f"| {domain} | {r['questions']} ({r['unique_facts']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--domains", default=None, help="comma list (default: `domains` of the params file)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "held_out_leak.json")
    args = parser.parse_args()
    from stages.config import load_params

    domains = args.domains.split(",") if args.domains else [str(d) for d in load_params(args.params).domains]
    record = run_record()
    results = {}
    for domain in domains:
        with tempfile.TemporaryDirectory(prefix=f"leak-{domain}.") as tmp:
            results[domain] = run_domain(args.params, domain, Path(tmp))
        print(domain, json.dumps(results[domain]), flush=True)
    result = {"name": "held_out_leak", **finish_record(record), "command": " ".join(["python", *sys.argv]),
              "domains": results}
    write_json(args.output, result)
    write_text(args.output.with_suffix(".md"), markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
