"""Cost growth: wall time of the prepare / train / evaluate stages vs the number of samples (100, 400, 1600 by
default) on the tiny random model, each stage run as its real CLI (`domain-llm <stage> ...`) into a temp dir.
Fits a log-log slope per stage, prints whether anything grows worse than linearly (slope > 1.15), writes
bench/results/cost_growth.json and the plot bench/results/cost_growth.png.

    python bench/cost_growth.py                       # 100, 400, 1600 samples, 3 repetitions (~10 min)
    python bench/cost_growth.py --sizes 100,400,1600 --repeats 1
    python bench/cost_growth.py --quick               # 50, 100, 200 samples: a smoke run

Why the tiny model: the point is how the stages' own work (cleaning, dedup, tokenizing, batching, evaluation
passes, checkpoints) scales with data; the 3M-parameter model keeps a 1600-sample run to minutes. Its 49k-token
vocabulary (SmolLM2's tokenizer) still makes the LM head dominate a training step, as in the real model.
domain=mixed: one domain's synthetic fact table repeats itself past ~1100 samples (exact-dedup dropped 470 of
1600), which would shrink the work the larger sizes do; three domains keep all 1600 rows.

Wall time includes each CLI's fixed start-up (imports ~10 s), which flattens the log-log slope of cheap stages;
the `marginal_exponent` (from the increments between sizes) removes that constant and is reported as well.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run_info import RESULTS_DIR, finish_record, run_record  # noqa: E402
from stages.fileio import atomic_path, write_json  # noqa: E402

STAGES = ("prepare", "train", "evaluate")
SUPERLINEAR_SLOPE = 1.15
# Cheap evaluation: generation length and bootstrap resamples are constants per example, not data size.
EVAL_OVERRIDES = ["eval.compare_base=false", "eval.max_new_tokens=16", "eval.bootstrap_samples=200"]


def stage_overrides(work: Path, base: Path) -> list[str]:
    """Every path a stage writes points into `work`: nothing touches the project's models/ or metrics/."""
    return ["model=tiny-random", "domain=mixed", "threads=1", f"paths.base_model={base}",
            f"paths.processed={work}/processed", f"paths.metrics={work}/metrics", f"paths.adapter={work}/adapter",
            f"paths.merged={work}/merged", f"paths.gguf={work}/gguf", f"paths.reranker={work}/reranker",
            f"train.checkpoint_dir={work}/checkpoints", f"train.live_dir={work}/train_live"]


def run_stage(stage: str, overrides: list[str], cwd: Path) -> float:
    cmd = [str(Path(sys.executable).parent / "domain-llm"), stage, *overrides]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "DVC_NO_ANALYTICS": "1"}
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds


def count_lines(path: Path) -> int:
    with path.open(encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def loglog_slope(sizes: list[int], seconds: list[float]) -> float:
    """Least-squares slope of log(seconds) on log(size): 1 = linear, 2 = quadratic."""
    xs, ys = [math.log(n) for n in sizes], [math.log(t) for t in seconds]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def marginal_exponent(sizes: list[int], seconds: list[float]) -> float | None:
    """Exponent from the last two increments, constant start-up cancelled: log(dt2/dt1) / log(dn2/dn1)."""
    if len(sizes) < 3:
        return None
    dt1, dt2 = seconds[-2] - seconds[-3], seconds[-1] - seconds[-2]
    dn1, dn2 = sizes[-2] - sizes[-3], sizes[-1] - sizes[-2]
    if dt1 <= 0 or dt2 <= 0:
        return None  # an increment lost in timing noise
    return math.log(dt2 / dt1) / math.log(dn2 / dn1)


def plot(path: Path, sizes: list[int], medians: dict[str, list[float]], slopes: dict[str, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for stage, seconds in medians.items():
        (line,) = ax.plot(sizes, seconds, marker="o", label=f"{stage} (log-log slope {slopes[stage]:.2f})")
        # Linear growth from the smallest point, for the eye: a curve above its guide grows faster than linear.
        ax.plot(sizes, [seconds[0] * n / sizes[0] for n in sizes], linestyle=":", color=line.get_color(),
                alpha=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.xaxis.set_minor_formatter(NullFormatter())  # only the measured sizes are labelled
    ax.set_xlabel("samples (data.num_samples)")
    ax.set_ylabel("wall time per stage run (s)")
    ax.set_title("Stage cost vs data size (tiny-random model; dotted = linear from the first point)")
    ax.title.set_fontsize(9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,400,1600")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="sizes 50,100,200, 1 repetition")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "cost_growth.json")
    parser.add_argument("--plot", type=Path, default=RESULTS_DIR / "cost_growth.png")
    args = parser.parse_args()
    sizes = [50, 100, 200] if args.quick else sorted(int(s) for s in args.sizes.split(","))
    repeats = 1 if args.quick else args.repeats
    record = run_record()

    times: dict[str, dict[int, list[float]]] = {s: {n: [] for n in sizes} for s in STAGES}
    rows: dict[int, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="cost-growth.") as tmp:
        root = Path(tmp)
        base = root / "base"
        base_seconds = run_stage("base", stage_overrides(root / "base-run", base), root)
        for rep in range(repeats):
            for n in sizes:
                work = root / f"rep{rep}-n{n}"
                overrides = [*stage_overrides(work, base), f"data.num_samples={n}"]
                for stage in STAGES:
                    extra = EVAL_OVERRIDES if stage == "evaluate" else []
                    times[stage][n].append(run_stage(stage, [*overrides, *extra], root))
                split_dir = work / "processed" / "mixed"
                rows[n] = {split: count_lines(split_dir / f"{split}.jsonl") for split in ("train", "validation", "test")}
                print(f"rep {rep + 1} n={n:5d} rows {rows[n]}: " + ", ".join(
                    f"{s} {times[s][n][-1]:.1f} s" for s in STAGES), flush=True)

    medians = {s: [statistics.median(times[s][n]) for n in sizes] for s in STAGES}
    slopes = {s: loglog_slope(sizes, medians[s]) for s in STAGES}
    marginal = {s: marginal_exponent(sizes, medians[s]) for s in STAGES}
    worse = [s for s in STAGES if slopes[s] > SUPERLINEAR_SLOPE]
    # The log-log slope of wall time is flattened by start-up; the increments are not, so flag those too.
    marginal_worse = [s for s in STAGES if (marginal[s] or 0) > SUPERLINEAR_SLOPE]
    plot(args.plot, sizes, medians, slopes)
    result = {
        "name": "cost_growth", **finish_record(record), "model": "tiny-random", "domain": "mixed",
        "sizes": sizes, "repetitions": repeats, "rows_per_split": {str(n): r for n, r in rows.items()},
        "base_stage_seconds": round(base_seconds, 2),
        "seconds_median": {s: dict(zip(map(str, sizes), [round(t, 2) for t in medians[s]], strict=True))
                           for s in STAGES},
        "seconds_all": {s: {str(n): [round(t, 2) for t in times[s][n]] for n in sizes} for s in STAGES},
        "loglog_slope": {s: round(v, 3) for s, v in slopes.items()},
        "marginal_exponent": {s: None if v is None else round(v, 3) for s, v in marginal.items()},
        "superlinear_threshold": SUPERLINEAR_SLOPE, "worse_than_linear": worse,
        "marginal_worse_than_linear": marginal_worse,
        "stage_overrides": stage_overrides(Path("<tmp>"), Path("<tmp>/base")) + ["data.num_samples=<n>"],
        "evaluate_overrides": EVAL_OVERRIDES, "plot": str(args.plot.relative_to(ROOT) if args.plot.is_relative_to(ROOT)
                                                          else args.plot),
    }
    write_json(args.output, result)
    for s in STAGES:
        m = marginal[s]
        print(f"{s:9s} " + "  ".join(f"{n}: {t:6.1f} s" for n, t in zip(sizes, medians[s], strict=True))
              + f"   log-log slope {slopes[s]:.2f}" + (f", marginal exponent {m:.2f}" if m is not None else ""))
    verdict = f"worse than linear (slope > {SUPERLINEAR_SLOPE}): {', '.join(worse)}" if worse else \
        f"nothing grows worse than linearly (every slope <= {SUPERLINEAR_SLOPE})"
    if marginal_worse:
        verdict += "; marginal exponent above it: " + ", ".join(f"{s} {marginal[s]:.2f}" for s in marginal_worse)
    print(f"{verdict} -> {args.output}, {args.plot}")


if __name__ == "__main__":
    main()
