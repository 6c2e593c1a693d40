"""What align@ bought: an experiment with alignment on (e.g. `dvc exp run -n align-dpo -S align.method=dpo`)
against the SFT-only pipeline it started from, per domain, question by question on the same held-out splits,
with paired bootstrap 95% intervals of (aligned - SFT).

    dvc exp run -n align-dpo -S align.method=dpo
    python bench/align_gain.py --candidate align-dpo                 # baseline: HEAD (alignment off)
    python bench/align_gain.py --candidate align-grpo --baseline HEAD --domains finance

Read from git (both revisions' metrics are versioned outputs): metrics/<d>/eval/predictions.jsonl (the
fine-tuned model on the test split: ROUGE-L, BLEU, semantic similarity, stop rate, repetition, numeric
correctness where the reference has a number), metrics/<d>/grounded/predictions.jsonl (the served GGUF +
adapter on test_facts: with retrieved passages, whether it cites one and whether a cited passage holds the
answer; ROUGE-L alone and with passages), metrics/<d>/align.json and headline.json.
Checks before it compares: the baseline ran with alignment off and the candidate with it on; both answered the
same questions (ids) of each split. A metric "improves" when its interval is above 0 and "falls" when it is
below 0. Writes bench/results/align_<candidate>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run_info import RESULTS_DIR, finish_record, run_record  # noqa: E402
from stages.evaluate.stats import bootstrap_mean  # noqa: E402
from stages.fileio import write_json, write_text  # noqa: E402

EVAL_SCORES = ("rougeL", "bleu", "semantic_similarity", "stop_rate", "repetition_rate", "numeric_correct")
LOWER_IS_BETTER = {"repetition_rate", "invalid_citation"}
TARGETED = {"dpo": ("grounded.cites_a_passage", "grounded.answer_in_cited_chunk"),
            "orpo": ("grounded.cites_a_passage", "grounded.answer_in_cited_chunk"),
            "kto": ("grounded.answer_in_cited_chunk", "eval.rougeL"),
            "grpo": ("eval.numeric_correct", "grounded.answer_in_cited_chunk")}


def resolve(rev: str) -> str:
    """A git revision, or a DVC experiment's name (refs/exps/.../<name>); "dir:<folder>" stays as it is."""
    if rev.startswith("dir:"):
        return rev
    refs = subprocess.run(["git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout.split("\n")
    named = [line.split()[0] for line in refs if line.endswith(f"/{rev}")]
    if named:
        return named[-1]
    return subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def read(rev: str, path: str) -> str:
    """`path` at a git revision, or under a folder laid out like metrics/ when rev is "dir:<folder>" (a run of the
    stages with paths.metrics=<folder>: `domain-llm align/adapter/grounded/evaluate --domain d ...`)."""
    if rev.startswith("dir:"):
        file = Path(rev[4:]) / Path(path).relative_to("metrics") if path.startswith("metrics/") else Path(rev[4:]) / path
        if not file.is_file():
            raise SystemExit(f"{file}: missing; run the stages with paths.metrics={rev[4:]} first")
        return file.read_text(encoding="utf-8")
    out = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{rev}:{path}: not in git ({out.stderr.strip()}); run the experiment first")
    return out.stdout


def jsonl(rev: str, path: str) -> list[dict]:
    return [json.loads(line) for line in read(rev, path).splitlines() if line.strip()]


def per_question(rev: str, domain: str) -> dict[str, dict[str, float | None]]:
    """metric -> {question id: value} for the fine-tuned model's test answers and the served grounded ones."""
    out: dict[str, dict[str, float | None]] = {}
    for row in jsonl(rev, f"metrics/{domain}/eval/predictions.jsonl"):
        if row["model"] != "finetuned":
            continue
        for name in EVAL_SCORES:
            out.setdefault(f"eval.{name}", {})[row["id"]] = row["scores"].get(name)
    for row in jsonl(rev, f"metrics/{domain}/grounded/predictions.jsonl"):
        values = {"cites_a_passage": float(bool(row["cited"])),
                  "answer_in_cited_chunk": float(bool(row["answer_in_cited_chunk"])),
                  "invalid_citation": float(bool(row["invalid_citations"])),
                  "rougeL_with_retrieval": row["retrieval_scores"]["rougeL"],
                  "rougeL_closed_book": row["closed_book_scores"]["rougeL"]}
        for name, value in values.items():
            out.setdefault(f"grounded.{name}", {})[row["id"]] = value
    return out


def splits(rev: str, domain: str) -> dict[str, str]:
    """Which splits the two files answered (test and test_facts in the pipeline; validation ones when choosing)."""
    evaluated = {row["split"] for row in jsonl(rev, f"metrics/{domain}/eval/predictions.jsonl")
                 if row["model"] == "finetuned"}
    grounded = json.loads(read(rev, f"metrics/{domain}/grounded.json")).get("split", "test_facts")
    return {"eval": ",".join(sorted(evaluated)), "grounded": grounded}


def compare(base: dict, cand: dict, seed: int) -> dict:
    rows = {}
    for metric in base:
        if set(base[metric]) != set(cand.get(metric, {})):
            raise SystemExit(f"{metric}: the two runs answered different questions; the comparison needs the same "
                             "split (rerun both on one prepare)")
        ids = [i for i in base[metric] if base[metric][i] is not None and cand[metric][i] is not None]
        if not ids:
            continue
        diff = bootstrap_mean([cand[metric][i] - base[metric][i] for i in ids], 2000, 0.95, seed)
        sign = -1 if metric.split(".")[1] in LOWER_IS_BETTER else 1
        low, high = sorted((sign * diff.low, sign * diff.high))  # in the "better" direction
        verdict = "improves" if low > 0 else "falls" if high < 0 else "no change"
        rows[metric] = {"n": len(ids), "sft": round(sum(base[metric][i] for i in ids) / len(ids), 4),
                        "aligned": round(sum(cand[metric][i] for i in ids) / len(ids), 4),
                        "difference": round(diff.value, 4), "ci": [round(diff.low, 4), round(diff.high, 4)],
                        "verdict": verdict}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidate", required=True, help="DVC experiment name or git revision (alignment on)")
    parser.add_argument("--baseline", default="HEAD", help="git revision with alignment off (default HEAD)")
    parser.add_argument("--domains", nargs="*", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=None, help="results file name (default align_<candidate>)")
    args = parser.parse_args()
    record = run_record()
    base_rev, cand_rev = resolve(args.baseline), resolve(args.candidate)
    import yaml

    domains = args.domains or list(yaml.safe_load(read(base_rev, "params.yaml"))["domains"])
    results = {}
    for domain in domains:
        base_align = json.loads(read(base_rev, f"metrics/{domain}/align.json"))
        cand_align = json.loads(read(cand_rev, f"metrics/{domain}/align.json"))
        if base_align.get("method") != "none" or cand_align.get("method") in (None, "none"):
            raise SystemExit(f"{domain}: the baseline must run with align.method none and the candidate with a "
                             f"method (got {base_align.get('method')} and {cand_align.get('method')})")
        answered, cand_answered = splits(base_rev, domain), splits(cand_rev, domain)
        if cand_answered != answered:
            raise SystemExit(f"{domain}: the baseline answered {answered}, the candidate {cand_answered}")
        rows = compare(per_question(base_rev, domain), per_question(cand_rev, domain), args.seed)
        method = cand_align["method"]
        results[domain] = {"method": method, "align": cand_align, "splits": answered, "metrics": rows,
                           "targeted": list(TARGETED[method]),
                           "targeted_improves": [m for m in TARGETED[method] if rows.get(m, {}).get("verdict") ==
                                                 "improves"],
                           "falls": [m for m, r in rows.items() if r["verdict"] == "falls"],
                           "stop_rate": rows.get("eval.stop_rate", {}).get("aligned"),
                           }
        print(f"{domain} ({method}): targeted improves {results[domain]['targeted_improves']}, "
              f"falls {results[domain]['falls']}, stop rate {results[domain]['stop_rate']}, "
              f"align {cand_align.get('wall_seconds')} s")
    record.update({"baseline": args.baseline, "baseline_rev": base_rev, "candidate": args.candidate,
                   "candidate_rev": cand_rev, "domains": results})
    name = args.name or f"align_{args.candidate}".replace("/", "_")
    write_json(RESULTS_DIR / f"{name}.json", finish_record(record))
    write_text(RESULTS_DIR / f"{name}.md", report(args, record, results))


def report(args, record: dict, results: dict) -> str:
    lines = [f"# align@: {args.candidate} vs SFT alone ({args.baseline})", "", "```",
             " ".join(["python", "bench/align_gain.py", *sys.argv[1:]]), "```", "",
             f"Candidate {record['candidate_rev'][:12]}, baseline {record['baseline_rev'][:12]}. Per question on "
             "the same splits; in brackets the paired bootstrap 95% interval of (aligned - SFT). `eval.*`: the "
             "merged model (evaluate@); `grounded.*`: the served GGUF + adapter, alone and with retrieved passages "
             "(grounded@).", ""]
    for domain, r in results.items():
        a = r["align"]
        lines += [f"## {domain}: {r['method']} ({' + '.join(a.get('objective') or [r['method']])})", "",
                  f"Splits: eval.* on {r['splits']['eval']}, grounded.* on {r['splits']['grounded']}.", "",
                  f"{a['rows']} rows ({json.dumps(a['preferences'].get('wrong_by_reason', {}))}), {a['steps']} "
                  f"steps, {a.get('wall_seconds')} s (sampling {a['preferences'].get('sampling_seconds')} s).", "",
                  "| metric | n | SFT | aligned | difference [95% CI] | |", "|---|---:|---:|---:|---|---|"]
        for metric, m in r["metrics"].items():
            mark = " (targeted)" if metric in r["targeted"] else ""
            lines.append(f"| {metric}{mark} | {m['n']} | {m['sft']} | {m['aligned']} | {m['difference']:+.4f} "
                         f"[{m['ci'][0]:+.4f}, {m['ci'][1]:+.4f}] | {m['verdict']} |")
        lines += ["", f"Targeted metrics that improve: {r['targeted_improves'] or 'none'}; metrics that fall: "
                  f"{r['falls'] or 'none'}; stop rate {r['stop_rate']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
