"""Faults: processes killed with SIGKILL mid-write, a corrupt model at server start, a full disk.

    pytest tests/reliability/test_faults.py -q              # the fast ones
    pytest tests/reliability/test_faults.py -q -m slow      # + train killed twice, quantize killed mid-write

Also covered elsewhere (not repeated here): a single kill -9 of train then an in-process rerun
(tests/stages/train/test_resume.py), a 3 MB-truncated GGUF at serve start (tests/serving/test_lifecycle.py),
a failing quantize leaving the previous models/gguf (tests/stages/quantize/test_main.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stages.config import compose, for_domain
from stages.fileio import write_jsonl
from stages.manifest import sha256_file
from stages.prepare.records import make_record
from tests.reliability.conftest import CLI, assert_one_line_error, run_cli
from tests.serving.conftest import REPO_ROOT

# --- train: killed twice, at two different checkpoints, then rerun to the end -------------------------------


@pytest.mark.slow
def test_train_killed_twice_resumes_to_the_uninterrupted_losses(tmp_path, tiny_model_dir):
    import torch

    from stages.train.main import main as train_main
    from tests.stages.train.conftest import train_overrides
    from tests.stages.train.test_resume import RUN, kill_after_first_checkpoint, make_root

    torch.set_num_threads(1)
    killed = make_root(tmp_path / "killed")
    overrides = train_overrides(killed, tiny_model_dir, *RUN)
    checkpoints = killed / "models" / "checkpoints" / "healthcare"  # `domain-llm train` runs for a domain
    kill_after_first_checkpoint(overrides, checkpoints / "checkpoint-4")    # first run: dies after step 4
    kill_after_first_checkpoint(overrides, checkpoints / "checkpoint-12")   # the rerun resumes, dies after 12
    assert not (killed / "metrics" / "healthcare" / "train.json").exists()
    assert not (killed / "models" / "merged" / "healthcare").exists()
    result = run_cli("train", *overrides, timeout=600)                        # the third run finishes
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = json.loads((killed / "metrics" / "healthcare" / "train.json").read_text())

    clean = make_root(tmp_path / "clean")
    train_main(for_domain(compose(train_overrides(clean, tiny_model_dir, *RUN))))
    uninterrupted = json.loads((clean / "metrics" / "healthcare" / "train.json").read_text())
    print(f"\ntrain killed at 4 and 12: resumed from {resumed['resumed_from_step']}, final eval loss "
          f"{resumed['final_eval_loss']:.6f} vs uninterrupted {uninterrupted['final_eval_loss']:.6f}")
    assert resumed["resumed_from_step"] >= 12 and resumed["steps"] == uninterrupted["steps"] == 24
    assert resumed["final_eval_loss"] == pytest.approx(uninterrupted["final_eval_loss"], abs=1e-6)
    assert resumed["final_train_loss"] == pytest.approx(uninterrupted["final_train_loss"], abs=1e-6)
    assert (killed / "models" / "merged" / "healthcare" / "config.json").is_file()


# --- quantize: SIGKILL while GGUFs are being written ---------------------------------------------------------

QA = [("What is hypertension?", "Persistently high blood pressure, 130/80 mmHg or higher."),
      ("What does HbA1c measure?", "Average blood glucose over the past 2 to 3 months."),
      ("What is a normal resting heart rate?", "For adults, 60 to 100 beats per minute."),
      ("What does an antibiotic treat?", "Bacterial infections, not viruses such as flu.")]


def quantize_overrides(root: Path, model_dir: Path, types: str) -> list[str]:
    return [f"quantize.source={model_dir}", "domains=[healthcare]", f"paths.processed={root / 'processed'}",
            f"paths.gguf={root / 'models' / 'gguf'}",
            f"paths.metrics={root / 'metrics'}", "threads=1", f"quantize.types={types}",
            "quantize.benchmark.max_examples=4", "quantize.benchmark.decode_tokens=8", "quantize.benchmark.n_ctx=256"]


def published_state(gguf_dir: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(gguf_dir.iterdir())}


def assert_complete_and_loadable(gguf_dir: Path) -> dict:
    """Every published model-*.gguf is listed in the manifest with its sha256 and loads + generates in llama.cpp."""
    from stages.quantize.verify import verify_gguf

    manifest = json.loads((gguf_dir / "manifest.json").read_text())
    listed = {entry["file"]: entry["sha256"] for entry in manifest["files"]}
    assert sorted(listed) == sorted(p.name for p in gguf_dir.glob("model-*.gguf"))
    for name, digest in listed.items():
        assert sha256_file(gguf_dir / name) == digest
        verify_gguf(gguf_dir / name, threads=1, n_tokens=2)
    return manifest


def size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # renamed into place between glob and stat
        return 0


def kill_when_a_gguf_is_being_staged(overrides: list[str], models: Path, timeout_s: float = 300) -> Path:
    """Start `domain-llm quantize`, SIGKILL it as soon as GGUF bytes appear in its staging directory."""
    proc = subprocess.Popen([str(CLI), "quantize", *overrides], cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            # The converter's own temp file inside staging counts: killing it mid-write is the point.
            staged = [p for p in models.glob(".gguf.*.tmp/*") if ".gguf" in p.name and size_of(p) > 0]
            if staged:
                break
            if proc.poll() is not None:
                pytest.fail(f"quantize exited ({proc.returncode}) before writing a GGUF: "
                            f"{proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("no GGUF staged within the timeout")
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return staged[0]


@pytest.mark.slow
def test_quantize_killed_mid_write_publishes_no_half_gguf(tmp_path, tiny_model_dir):
    root = tmp_path
    write_jsonl(root / "processed" / "healthcare" / "test.jsonl",
                [make_record("healthcare", q, a, "synthetic") for q, a in QA])
    models, gguf_dir = root / "models", root / "models" / "gguf"
    first = run_cli("quantize", *quantize_overrides(root, tiny_model_dir, "[q8_0]"), timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    previous, previous_metrics = published_state(gguf_dir), (root / "metrics" / "quantize.json").read_bytes()

    staged = kill_when_a_gguf_is_being_staged(quantize_overrides(root, tiny_model_dir, "[q4_k_m,q8_0]"), models)
    # The killed run published nothing: the previous complete version is there, byte for byte, and loads.
    assert published_state(gguf_dir) == previous
    assert assert_complete_and_loadable(gguf_dir)["params"]["quantize"]["types"] == ["q8_0"]
    assert (root / "metrics" / "quantize.json").read_bytes() == previous_metrics
    # What SIGKILL leaves: the staging directory, a hidden sibling that is not part of the DVC output.
    leftovers = sorted(p.name for p in models.iterdir() if p.name != "gguf")
    assert leftovers == [staged.parent.name] and leftovers[0].startswith(".gguf.")
    print(f"\nquantize SIGKILLed while {staged.name} was staged ({size_of(staged)} bytes); "
          f"left {leftovers}")

    rerun = run_cli("quantize", *quantize_overrides(root, tiny_model_dir, "[q4_k_m,q8_0]"), timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert assert_complete_and_loadable(gguf_dir)["params"]["quantize"]["types"] == ["q4_k_m", "q8_0"]
    # ... and the next successful run removes it (its writer's PID is dead), leaving only the published dir.
    assert [p.name for p in models.iterdir()] == ["gguf"]


# --- stages.fileio after SIGKILL: what is left, and does the next run clean it? -----------------------------

KILLED_WRITER = """
import os, signal, sys
from stages.fileio import atomic_dir, atomic_path
kind, final = sys.argv[1], sys.argv[2]
with (atomic_dir(final) if kind == "dir" else atomic_path(final)) as tmp:
    (tmp / "part.bin" if kind == "dir" else tmp).write_bytes(b"half of an output")
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_sigkill_inside_atomic_write_keeps_the_previous_output(tmp_path, kind):
    from stages.fileio import atomic_dir, write_text

    final = tmp_path / "out"
    if kind == "dir":
        with atomic_dir(final) as tmp:
            (tmp / "model.bin").write_bytes(b"previous")
    else:
        write_text(final, "previous")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, kind, str(final)], cwd=REPO_ROOT, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    if kind == "dir":
        assert [p.name for p in final.iterdir()] == ["model.bin"] and (final / "model.bin").read_bytes() == b"previous"
    else:
        assert final.read_text() == "previous"
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if str(p.relative_to(tmp_path)) not in before)
    # Only a hidden temp sibling (".out.<pid>.XXXX.tmp"), never anything at the published path.
    assert left and all(name.startswith(".out.") and ".tmp" in name for name in left), left


def test_atomic_dir_cleans_what_a_killed_run_left(tmp_path):
    from stages.fileio import atomic_dir

    final = tmp_path / "gguf"
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, "dir", str(final)], cwd=REPO_ROOT, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    with atomic_dir(final) as tmp:
        (tmp / "model.bin").write_bytes(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gguf"]


# --- serve: a corrupt model file stops start-up with one line ------------------------------------------------

def corrupt_models(tmp_path: Path, real_gguf: Path) -> dict[str, Path]:
    header = real_gguf.read_bytes()[:4096]
    files = {"empty": b"", "not_gguf": b"PK\x03\x04 this is a zip, not a model" * 100,
             "header_only": header, "garbage_after_magic": b"GGUF" + os.urandom(8192)}
    out = {}
    for name, data in files.items():
        out[name] = tmp_path / f"{name}.gguf"
        out[name].write_bytes(data)
    return out


@pytest.mark.parametrize("corruption", ["empty", "not_gguf", "header_only", "garbage_after_magic"])
def test_serve_refuses_a_corrupt_gguf_with_one_line(tmp_path, smollm2_gguf, corruption):
    path = corrupt_models(tmp_path, smollm2_gguf)[corruption]
    started = time.monotonic()
    result = run_cli("serve", f"serve.model={path}", "serve.port=1", "serve.rerank=false", "threads=1", timeout=120)
    assert_one_line_error(result, str(path), "GGUF")
    assert time.monotonic() - started < 60


# --- disk full: an output write that runs out of space ---------------------------------------------------------

@pytest.fixture(scope="module")
def disk_full_run(tmp_path_factory) -> tuple[Path, dict[str, bytes], subprocess.CompletedProcess]:
    """On a 128 KiB tmpfs (needs root or CAP_SYS_ADMIN; skipped otherwise): a prepare run that fits, then one
    whose outputs cannot. Returns the disk, its contents after the first run, and the second run."""
    disk = tmp_path_factory.mktemp("full") / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(disk)],
                             capture_output=True, text=True) if shutil.which("mount") else None
    if mounted is None or mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up: {mounted.stderr.strip() if mounted else 'no mount binary'}")
    try:
        first = prepare_into(disk, 40)  # ~60 KB of splits, metrics and report
        assert first.returncode == 0, first.stderr[-3000:]
        before = snapshot(disk)
        assert "processed/healthcare/train.jsonl" in before
        full = prepare_into(disk, 200)  # ~200 KB: the staging copy cannot fit next to the old one
        yield disk, before, full
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def prepare_into(disk: Path, num_samples: int) -> subprocess.CompletedProcess:
    # no validation_facts split: the sizes above were set for train/validation/test/test_facts
    return run_cli("prepare", f"data.num_samples={num_samples}", "data.validation_held_out_facts=0",
                   "data.test_questions=null", "data.held_out_facts=0.15",
                   f"paths.processed={disk / 'processed'}",
                   f"paths.metrics={disk / 'metrics'}", f"paths.base_model={disk / 'no_base_model'}", timeout=300)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_disk_full_keeps_the_previous_output_and_leaves_no_temp_files(disk_full_run):
    disk, before, full = disk_full_run
    assert full.returncode != 0 and "No space left on device" in full.stderr, full.stderr[-3000:]
    assert snapshot(disk) == before
    assert sorted(p.name for p in disk.iterdir()) == ["metrics", "processed"]


def test_disk_full_is_a_one_line_error(disk_full_run):
    _, _, full = disk_full_run
    assert_one_line_error(full, "No space left on device")


def test_disk_full_error_names_the_output(disk_full_run):
    # The OSError from write() carries no filename; stages/fileio names the output it was writing - its final
    # path (inside paths.processed), not the temp directory that no longer exists.
    disk, _, full = disk_full_run
    line = assert_one_line_error(full, "No space left on device", "could not write", f"{disk}/processed/")
    assert ".tmp" not in line, line
