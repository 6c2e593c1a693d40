"""Auto-resume: find the last complete Trainer checkpoint of *this* experiment, or start clean.

    fp = experiment_fingerprint(settings, [train_jsonl, val_jsonl], Path("models/base"))
    resume_from = prepare_checkpoint_dir(Path("models/checkpoints"), fp, is_main=True)   # None = fresh start

The checkpoint dir persists between runs (dvc.yaml `persist: true`). A run killed with kill -9 leaves
checkpoint-N folders behind; the rerun continues from the newest complete one. A checkpoint written by a
different experiment (other hyper-parameters, data or base weights) must never be resumed, so the dir carries
fingerprint.json and is wiped when it does not match.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path

from stages.fileio import write_json
from stages.train.settings import TrainSettings

log = logging.getLogger(__name__)

FINGERPRINT_FILE = "fingerprint.json"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def base_model_files(base: Path) -> list[Path]:
    """Weights and config decide what a checkpoint means; tokenizer files change the token ids too."""
    names = ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
    return sorted([p for p in base.iterdir() if p.suffix == ".safetensors" or p.name in names])


def experiment_fingerprint(settings: TrainSettings, data_files: list[Path], base: Path,
                           world_size: int = 1) -> dict:
    return {
        "settings": settings.fingerprint_fields(),
        "world_size": world_size,  # the effective batch size is per-device batch x processes
        "data": {f"{p.parent.name}/{p.name}": file_digest(p) for p in data_files},
        "base_model": {p.name: file_digest(p) for p in base_model_files(base)},
    }


def fingerprint_id(fingerprint: dict) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def is_complete(checkpoint: Path) -> bool:
    """Trainer writes trainer_state.json last; a kill before (or during) that write leaves no valid state."""
    state = checkpoint / "trainer_state.json"
    try:
        json.loads(state.read_text())
    except (OSError, ValueError):
        return False
    return True


def checkpoint_step(checkpoint: Path) -> int:
    return int(CHECKPOINT_RE.match(checkpoint.name).group(1))


def checkpoints_by_step(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for child in directory.iterdir() if directory.is_dir() else []:
        match = CHECKPOINT_RE.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def stored_fingerprint_id(directory: Path) -> str | None:
    try:
        return json.loads((directory / FINGERPRINT_FILE).read_text())["id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def prepare_checkpoint_dir(directory: Path, fingerprint: dict, is_main: bool = True) -> Path | None:
    """Return the checkpoint to resume from (None: fresh start). Only the main process deletes or writes;
    every process reaches the same answer from the same files, so DDP ranks agree without talking."""
    current = fingerprint_id(fingerprint)
    stored = stored_fingerprint_id(directory)
    if stored != current:
        if directory.exists() and any(directory.iterdir()):
            log.info("%s: checkpoints belong to another experiment (fingerprint %s, now %s): starting fresh",
                     directory, stored, current)
        if is_main:
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True, exist_ok=True)
            write_json(directory / FINGERPRINT_FILE, {"id": current, **fingerprint})
        return None
    resume = None
    for _step, checkpoint in reversed(checkpoints_by_step(directory)):
        if is_complete(checkpoint):
            resume = checkpoint
            break
        log.warning("%s: incomplete checkpoint (killed while saving?), ignoring it", checkpoint)
        if is_main:
            shutil.rmtree(checkpoint, ignore_errors=True)
    if resume is not None:
        log.info("resuming from %s (fingerprint %s)", resume, current)
    return resume
