"""Choose the grounded-answer settings (serve.ask_top_k, serve.ask_rerank) on the validation_facts split, never on
test_facts: runs the grounded stage's entry point once per setting and writes
bench/results/grounded_sweep.{json,md}.

    python bench/grounded_sweep.py                              # top_k 1,2,3,4, reranked, every domain
    python bench/grounded_sweep.py --top-k 2,3 --rerank true,false --domains healthcare

validation_facts asks facts held out from training like test_facts (data.validation_held_out_facts), so a
setting chosen here is not chosen on the test questions. The best ROUGE-L with retrieval is printed; put it in
conf/serve/default.yaml and `make run` measures it on test_facts.

Each domain is measured as the server runs it: the base GGUF with the domain's adapter (adapter@<domain>). A
domain without a published adapter fails the run (the stage alone would measure the bare base) unless
--without-adapter says that is what you want to measure.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run_info import machine_info, package_versions  # noqa: E402
from stages.config import domain_names, for_domain, load_params  # noqa: E402
from stages.fileio import write_json, write_text  # noqa: E402
from stages.inference.adapters import ADAPTER_FILE  # noqa: E402

SPLIT = "validation_facts"


def run_setting(params: Path, domain: str, top_k: int, rerank: bool, without_adapter: bool) -> dict:
    from stages.evaluate.grounded import main as grounded

    cfg = load_params(params)
    cfg = for_domain(cfg, None if domain == str(cfg.domain.name) else domain)  # the params file's own domain as is
    adapter = Path(str(cfg.paths.adapter_gguf)) / ADAPTER_FILE  # where the stage looks (run from the project root)
    if not adapter.is_file() and not without_adapter:
        raise SystemExit(f"error: {adapter}: no adapter for domain {domain!r}; run `dvc repro adapter@{domain}`, "
                         "or pass --without-adapter to measure the base model alone")
    cfg.eval.grounded.split, cfg.eval.grounded.top_k, cfg.eval.grounded.rerank = SPLIT, top_k, rerank
    with tempfile.TemporaryDirectory(prefix="grounded-sweep-") as tmp:
        cfg.paths.metrics = tmp
        metrics = grounded(cfg)
    if metrics["split"] != SPLIT:
        raise SystemExit(f"the stage measured {metrics['split']}, not {SPLIT}")
    retrieval = metrics["retrieval"]
    return {"domain": domain, "adapter": metrics["adapter"], "top_k": top_k, "rerank": rerank,
            "questions": metrics["questions"],
            "rougeL_closed_book": metrics["closed_book"]["rougeL"], "rougeL_with_retrieval": retrieval["rougeL"],
            "rougeL_gain": metrics["rougeL_gain"], "exact_match": retrieval["exact_match"],
            "answer_in_context": retrieval["answer_in_context"],
            "answer_in_cited_chunk": retrieval["answer_in_cited_chunk"], "seconds": metrics["seconds"]}


def render(rows: list[dict], best: dict, command: str) -> str:
    lines = [f"# Grounded-answer settings on {SPLIT}", "", f"Command: `{command}`", "",
             "| domain | top_k | rerank | ROUGE-L alone | with retrieval | gain | EM | answer in context | in cited |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['domain']}{'' if r['adapter'] else ' (no adapter)'} | {r['top_k']} | {r['rerank']} "
              f"| {r['rougeL_closed_book']:.3f} | {r['rougeL_with_retrieval']:.3f} "
              f"| {r['rougeL_gain']} | {r['exact_match']:.3f} | {r['answer_in_context']:.3f} "
              f"| {r['answer_in_cited_chunk']:.3f} |" for r in rows]
    lines += [""] + [f"Best ROUGE-L with retrieval, {domain}: top_k {b['top_k']}, rerank {b['rerank']}."
                     for domain, b in best.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--top-k", default="1,2,3,4", help="comma-separated passage counts")
    parser.add_argument("--rerank", default="true", help="comma-separated true/false")
    parser.add_argument("--domains", default=None, help="comma-separated; default: params.yaml's `domains`")
    parser.add_argument("--without-adapter", action="store_true",
                        help="measure the base GGUF alone where a domain has no published adapter")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "grounded_sweep.json")
    args = parser.parse_args()
    top_ks = [int(k) for k in args.top_k.split(",")]
    reranks = [r.strip().lower() == "true" for r in args.rerank.split(",")]
    domains = args.domains.split(",") if args.domains else domain_names(load_params(args.params))
    started = time.perf_counter()
    rows = [run_setting(args.params, d, k, rerank, args.without_adapter)
            for d in domains for rerank in reranks for k in top_ks]
    best = {d: max((r for r in rows if r["domain"] == d), key=lambda r: r["rougeL_with_retrieval"]) for d in domains}
    command = "python bench/grounded_sweep.py " + " ".join(sys.argv[1:])
    write_json(args.output, {"split": SPLIT, "command": command.strip(), "rows": rows, "best": best,
                             "seconds": round(time.perf_counter() - started, 1), "packages": package_versions(),
                             "machine": machine_info()})
    table = render(rows, best, command.strip())
    write_text(args.output.with_suffix(".md"), table)
    print(table)


if __name__ == "__main__":
    main()
