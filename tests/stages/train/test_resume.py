"""Auto-resume: kill -9 a real `domain-llm train` process after its first checkpoint, rerun, and finish with the
same losses as a run that was never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stages.config import compose, for_domain
from stages.fileio import write_jsonl
from stages.train.checkpoints import is_complete
from stages.train.main import main
from tests.stages.train.conftest import chat_records, train_overrides

# Dropout on, so resuming must also restore the RNG state, not only weights and optimizer.
RUN = ("train.max_steps=24", "train.save_steps=4", "train.eval_steps=8", "train.lora.dropout=0.1")


def make_root(root: Path) -> Path:
    folder = root / "data" / "processed" / "healthcare"
    write_jsonl(folder / "train.jsonl", chat_records(16))
    write_jsonl(folder / "validation.jsonl", chat_records(4, offset=3))
    return root


def kill_after_first_checkpoint(overrides: list[str], checkpoint: Path, timeout: float = 240) -> None:
    cli = Path(sys.executable).with_name("domain-llm")
    proc = subprocess.Popen([str(cli), "train", *overrides], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + timeout
    while not is_complete(checkpoint):
        if proc.poll() is not None:
            pytest.fail(f"train exited ({proc.returncode}) before its first checkpoint: "
                        f"{proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("no checkpoint within the timeout")
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()


def test_rerun_after_kill_9_resumes_and_matches_an_uninterrupted_run(tmp_path, tiny_model_dir):
    killed = make_root(tmp_path / "killed")
    overrides = train_overrides(killed, tiny_model_dir, *RUN)
    ckpt_dir = killed / "models" / "checkpoints" / "healthcare"  # `domain-llm train` runs for a domain
    kill_after_first_checkpoint(overrides, ckpt_dir / "checkpoint-4")
    assert not (killed / "metrics" / "healthcare" / "train.json").exists()  # it really died mid-run
    assert not (ckpt_dir / "checkpoint-24").exists()

    main(for_domain(compose(overrides)))  # the rerun: the same command's config, same experiment
    resumed = json.loads((killed / "metrics" / "healthcare" / "train.json").read_text())

    clean = make_root(tmp_path / "clean")
    main(for_domain(compose(train_overrides(clean, tiny_model_dir, *RUN))))
    uninterrupted = json.loads((clean / "metrics" / "healthcare" / "train.json").read_text())

    assert resumed["resumed_from_step"] >= 4 and uninterrupted["resumed_from_step"] == 0
    assert resumed["steps"] == uninterrupted["steps"] == 24
    assert resumed["final_eval_loss"] == pytest.approx(uninterrupted["final_eval_loss"], abs=1e-6)
    assert resumed["final_train_loss"] == pytest.approx(uninterrupted["final_train_loss"], abs=1e-6)
    assert resumed["final_eval_loss"] < resumed["initial_eval_loss"]
    # The curves too: the rows the killed run logged after its checkpoint are replaced, not duplicated.
    for curve in ("eval/loss.tsv", "train/loss.tsv"):
        killed_rows = read_tsv(killed / "metrics" / "healthcare" / "live" / "plots" / "metrics" / curve)
        clean_rows = read_tsv(clean / "metrics" / "healthcare" / "live" / "plots" / "metrics" / curve)
        assert [step for step, _ in killed_rows] == [step for step, _ in clean_rows]
        assert [v for _, v in killed_rows] == pytest.approx([v for _, v in clean_rows], abs=1e-6)


def read_tsv(path: Path) -> list[tuple[int, float]]:
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    return [(int(step), float(value)) for step, value, *_ in rows]


def test_changed_experiment_does_not_resume_a_stale_checkpoint(tmp_path, tiny_model_dir):
    root = make_root(tmp_path)
    main(compose(train_overrides(root, tiny_model_dir, "train.max_steps=4", "train.save_steps=2")))
    # Same folders, different learning rate: the step-4 checkpoint belongs to another experiment.
    main(compose(train_overrides(root, tiny_model_dir, "train.max_steps=4", "train.save_steps=2", "train.lr=1e-3")))
    metrics = json.loads((root / "metrics" / "train.json").read_text())
    assert metrics["resumed_from_step"] == 0 and metrics["steps"] == 4


def test_rerun_of_a_finished_run_trains_nothing_and_keeps_its_weights(tmp_path, tiny_model_dir):
    # DVC reruns train when an upstream stage reran with identical outputs: the final checkpoint matches,
    # and the rerun must publish the same adapter without a step past max_steps.
    from safetensors.torch import load_file

    root = make_root(tmp_path)
    # batch 1: 16 steps per epoch, so step 4 ends mid-epoch (where Trainer used to take a 5th step)
    overrides = train_overrides(root, tiny_model_dir, "train.max_steps=4", "train.save_steps=2",
                                "train.batch_size=1")
    main(compose(overrides))
    first = load_file(root / "models" / "adapter" / "adapter_model.safetensors")
    main(compose(overrides))
    again = json.loads((root / "metrics" / "train.json").read_text())
    assert again["resumed_from_step"] == again["steps"] == 4
    assert again["train_tokens_per_second"] is None  # nothing trained in this run
    assert not (root / "models" / "checkpoints" / "checkpoint-5").exists()
    second = load_file(root / "models" / "adapter" / "adapter_model.safetensors")
    assert first.keys() == second.keys() and all((first[k] == second[k]).all() for k in first)
