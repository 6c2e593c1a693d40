"""Turn the result files of one `bench/run_all.py` run into table rows and bench/results/summary.md.

    from bench.summary import summary_rows, summary_markdown
    rows = summary_rows(results)          # results: {benchmark name: its result JSON}

Each row: benchmark, what was measured, ours, the peer/baseline, ratio (ours / peer; for latencies < 1 is
better), repetitions. A benchmark that did not run contributes no rows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    benchmark: str
    measure: str
    ours: str
    peer: str
    ratio: float | None
    repetitions: str

    def cells(self) -> list[str]:
        ratio = "" if self.ratio is None else f"**{self.ratio:.2f}x**"
        return [self.benchmark, self.measure, self.ours, self.peer, ratio, self.repetitions]


def api_rows(r: dict) -> list[Row]:
    """One row per level and peer: tokens/s and p95 latency/TTFT ratios of ours vs that peer."""
    rows = []
    reps = str(r["repetitions"])
    for level in r["levels"]:
        clients, servers = level["clients"], level["servers"]
        ours = servers["domain-llm serve"]
        name = f"API, {level['max_tokens']} tokens, {clients} client{'s' if clients != 1 else ''}"
        for peer, ratio in level["ratios"].items():
            other = servers[peer]
            rows += [
                Row(name, f"completion tokens/s: ours vs {peer}", f"{ours['tokens_per_s']:.1f}",
                    f"{other['tokens_per_s']:.1f}", ratio["tokens_per_s"], reps),
                Row(name, f"p95 latency s vs {peer} (lower is better)", f"{ours['p95_latency_s']:.2f}",
                    f"{other['p95_latency_s']:.2f}", ratio["p95_latency"], reps),
            ]
    return rows


def gguf_rows(r: dict) -> list[Row]:
    speeds = r["tokens_per_s"]
    gguf, hf = speeds["llama.cpp (GGUF)"], speeds["transformers fp32"]
    return [Row("GGUF vs transformers", f"generation tokens/s: llama.cpp {r['gguf_quantization']} vs transformers "
                f"fp32 (1 prompt at a time, {r['max_new_tokens']} new tokens)", f"{gguf:.1f}", f"{hf:.1f}",
                r["ratio_gguf_vs_transformers"], str(r["repetitions"]))]


def eval_rows(r: dict) -> list[Row]:
    return [Row("Eval generation (#4)", f"examples/s: batched (batch {r['batch_size']}) vs one at a time, "
                f"{r['n_prompts']} prompts x {r['max_new_tokens']} tokens",
                f"{r['batched_examples_per_second']:.3f}", f"{r['one_at_a_time_examples_per_second']:.3f}",
                r["examples_per_second_ratio"], str(r["repeats"]))]


def train_rows(r: dict) -> list[Row]:
    v = r["variants"]
    ours, base, qlora = v["ours-lora"], v["baseline-lora"], v["ours-qlora"]
    return [
        Row("Train throughput (#3)", f"real tokens/s: ours (dynamic padding, length-grouped) vs padded Trainer, "
            f"{ours['rows']} rows", f"{ours['real_tokens_per_second']:.1f}", f"{base['real_tokens_per_second']:.1f}",
            r["tokens_per_second_ratio_ours_vs_padded_baseline"], "1 (one epoch per variant)"),
        Row("Train throughput (#3)", "base weights MB: QLoRA nf4 vs LoRA fp32", f"{qlora['base_weights_mb']:.0f}",
            f"{ours['base_weights_mb']:.0f}", qlora["base_weights_mb"] / ours["base_weights_mb"],
            "1"),
    ]


def rerank_rows(r: dict) -> list[Row]:
    results = r["results"]
    batched_key = next(k for k in results if k.startswith("cross_encoder_batch_") and k != "cross_encoder_batch_1")
    batched, single, bi = results[batched_key], results["cross_encoder_batch_1"], results["bi_encoder_fallback"]
    reps = str(r["repeats"])
    return [
        Row("Rerank latency", f"ms per query x {r['documents']} docs: cross-encoder batched vs 1 pair per pass "
            "(lower is better)", f"{batched['latency_ms']:.0f}", f"{single['latency_ms']:.0f}",
            batched["latency_ms"] / single["latency_ms"], reps),
        Row("Rerank latency", "ms per query: bi-encoder fallback vs batched cross-encoder", f"{bi['latency_ms']:.0f}",
            f"{batched['latency_ms']:.0f}", bi["latency_ms"] / batched["latency_ms"], reps),
    ]


ROW_BUILDERS = {"api_throughput": api_rows, "gguf_vs_transformers": gguf_rows, "eval_generation": eval_rows,
                "train_throughput": train_rows, "rerank_latency": rerank_rows}


def summary_rows(results: dict[str, dict]) -> list[Row]:
    rows: list[Row] = []
    for name, build in ROW_BUILDERS.items():
        if name in results:
            rows += build(results[name])
    return rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def cost_growth_markdown(r: dict) -> str:
    sizes = [str(n) for n in r["sizes"]]
    header = ["stage", *[f"{n} samples (s)" for n in sizes], "log-log slope", "marginal exponent"]
    rows = []
    for stage, seconds in r["seconds_median"].items():
        marginal = r["marginal_exponent"][stage]
        rows.append([stage, *[f"{seconds[n]:.1f}" for n in sizes], f"{r['loglog_slope'][stage]:.2f}",
                     "n/a" if marginal is None else f"{marginal:.2f}"])
    worse = r["worse_than_linear"]
    verdict = (f"Worse than linear (slope > {r['superlinear_threshold']}): **{', '.join(worse)}**." if worse else
               f"Nothing grows worse than linearly (every log-log slope <= {r['superlinear_threshold']}).")
    marginal = r.get("marginal_worse_than_linear") or []
    if marginal:
        verdict += (" Marginal exponent (start-up cancelled) above the threshold: " + ", ".join(
            f"**{s} {r['marginal_exponent'][s]:.2f}**" for s in marginal) + ".")
    return (f"{markdown_table(header, rows)}\n\n{verdict} Rows per split: {r['rows_per_split']}. "
            f"{r['repetitions']} repetition(s); plot: `{r['plot']}`. Command: `{r['command']}`")


def summary_markdown(results: dict[str, dict], header: dict) -> str:
    """The whole summary.md: run header, the side-by-side table, cost growth, commands."""
    rows = summary_rows(results)
    table = markdown_table(["benchmark", "measure", "ours", "peer / baseline", "ratio", "repetitions"],
                           [row.cells() for row in rows])
    m = header["machine"]
    parts = [
        "# Benchmark summary",
        "",
        f"One run of `{header['command']}` on {header['finished']} (wall {header['wall_s'] / 60:.1f} min). "
        f"Machine: {m['nproc']} x {m['cpu_model']}, {m['memory_gb']} GiB; load average (1/5/15 min) before "
        f"{m['load_average_before']}, after {m['load_average_after']}. Threads: {header['threads']}.",
        f"Inputs: GGUF `{header['inputs']['gguf']}`, HF model `{header['inputs']['hf_model']}`, reranker "
        f"`{header['inputs']['reranker']}`.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in header["versions"].items() if v) + ".",
        "",
        "Every row is measured side by side in this one run (same machine, inputs and thread count for both "
        "sides), as the median over the repetitions shown, after a warm-up. Ratio = ours / peer (for "
        "latencies and sizes, below 1 is better).",
        "",
        table,
    ]
    if "cost_growth" in results:
        parts += ["", "## Cost growth (prepare / train / evaluate vs samples)", "",
                  cost_growth_markdown(results["cost_growth"])]
    parts += ["", "## Commands", ""]
    parts += [f"- `{name}`: `{r['run_all']['command']}` ({r['run_all']['wall_s']:.0f} s, load before "
              f"{r['run_all']['load_average_before'][0]}, after {r['run_all']['load_average_after'][0]})"
              for name, r in results.items()]
    return "\n".join(parts) + "\n"
