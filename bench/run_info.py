"""What every benchmark result records next to its numbers: library versions, the machine, its load, and a few
small helpers the benchmarks share (free port, percentiles, the chat prompts all benchmarks send).

    from bench.run_info import machine_info, package_versions
    print(package_versions(), machine_info())

The dev box is shared, so the load average before and after a run says how contended the timings were.
"""

from __future__ import annotations

import math
import os
import platform
import socket
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"

PACKAGES = ("torch", "transformers", "peft", "accelerate", "llama_cpp_python", "sentence-transformers",
            "fastapi", "uvicorn", "httpx", "gguf", "dvc", "domain-llm")

# Healthcare questions in the shape of data/processed/healthcare/test.jsonl prompts; every benchmark that
# generates text sends these, in this order, so the peers see identical work.
SYSTEM_PROMPT = "You are a careful medical information assistant. Answer clearly; this is not medical advice."
QUESTIONS = (
    "What are the common symptoms of hypertension?",
    "How is type 2 diabetes usually diagnosed?",
    "What is the first-line treatment for asthma?",
    "Which specialist treats migraine?",
    "What lifestyle changes help lower cholesterol?",
    "What are the warning signs of a stroke?",
    "How does metformin work?",
    "What causes iron-deficiency anemia?",
)


def chat_messages(question: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_info() -> dict:
    return {"nproc": os.cpu_count(), "cpu_model": cpu_model(), "platform": platform.platform(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "load_average_before": load_average()}


def run_record(argv: list[str] | None = None) -> dict:
    """The header of a result file: the exact command, versions, machine (with the load average now)."""
    args = sys.argv if argv is None else argv
    script = Path(args[0])
    shown = script.relative_to(ROOT).as_posix() if script.is_absolute() and script.is_relative_to(ROOT) else args[0]
    # llama-cpp-python loads its llama.cpp from here when set (e.g. a build for this CPU): part of the command.
    lib = os.environ.get("LLAMA_CPP_LIB_PATH")
    env = [f"LLAMA_CPP_LIB_PATH={lib}"] if lib else []
    return {"command": " ".join([*env, "python", shown, *args[1:]]), "versions": package_versions(),
            "machine": machine_info()}


def finish_record(record: dict) -> dict:
    """Add the load average at the end of the run to a record from `run_record`."""
    record["machine"]["load_average_after"] = load_average()
    return record


def free_port() -> int:
    """A port nothing listens on now (bound then released; a race is possible but harmless here)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a small sample: an observed value, no interpolation."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
