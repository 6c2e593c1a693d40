"""Auto-resume: find the last complete Trainer checkpoint of *this* experiment, or start clean.

    fp = experiment_fingerprint(settings, [train_jsonl, val_jsonl], Path("models/base"))
    resume_from = prepare_checkpoint_dir(Path("models/checkpoints"), fp, is_main=True)   # None = fresh start

The checkpoint dir persists between runs (dvc.yaml `persist: true`). A run killed with kill -9 leaves
checkpoint-N folders behind; the rerun continues from the newest complete one. A checkpoint written by a
different experiment must never be resumed, so the dir carries fingerprint.json and is wiped when it does not
match. The experiment is the settings, the data, the base weights, the training code (every *.py of
TRAINING_CODE) and the torch/transformers/peft versions: DVC reruns `train` when stages/train changes, and a
finished final checkpoint would otherwise skip training and republish the adapter of the old code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from stages.fileio import write_json
from stages.train.settings import TrainSettings

log = logging.getLogger(__name__)

FINGERPRINT_FILE = "fingerprint.json"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")

# The code whose change changes the trained weights: the train stage, and the chat contract that decides the prompt
# token ids training masks (include it once it exists). Folders count every *.py below them. Keys in
# fingerprint.json are relative to CODE_ROOT. Read at call time, so tests can point both at a copy.
CODE_ROOT = Path(__file__).resolve().parents[2]
TRAINING_CODE: tuple[Path, ...] = (CODE_ROOT / "stages" / "train", CODE_ROOT / "stages" / "inference" / "chat.py")
TRAINING_LIBRARIES = ("torch", "transformers", "peft", "tokenizers", "jinja2")  # jinja2: renders the chat
# Parts whose entries are file digests: a change log names the files, not the hashes.
DIGEST_PARTS = ("code", "data", "base_model")


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


def code_files(paths: Iterable[Path]) -> list[Path]:
    """Every *.py of the given folders (no __pycache__) and the given files that exist, sorted."""
    found = set()
    for path in paths:
        if path.is_dir():
            found.update(p for p in path.rglob("*.py") if p.is_file() and "__pycache__" not in p.parts)
        elif path.is_file():
            found.add(path)
    return sorted(found)


def code_key(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def code_digests(paths: Iterable[Path] | None = None, root: Path | None = None) -> dict[str, str]:
    """{"stages/train/data.py": sha256, ...}: one digest per file (not one for all), so fingerprint.json shows which
    files a checkpoint was trained with and a discarded checkpoint's log line can name the file that changed."""
    paths = TRAINING_CODE if paths is None else paths
    root = CODE_ROOT if root is None else root
    return {code_key(p, root): file_digest(p) for p in code_files(paths)}


def library_versions(names: Iterable[str] = TRAINING_LIBRARIES) -> dict[str, str | None]:
    """Installed versions (None: not installed): a torch/transformers/peft upgrade can change the trained weights."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def experiment_fingerprint(settings: TrainSettings, data_files: list[Path], base: Path,
                           world_size: int = 1) -> dict:
    return {
        "settings": settings.fingerprint_fields(),
        "world_size": world_size,  # the effective batch size is per-device batch x processes
        "data": {f"{p.parent.name}/{p.name}": file_digest(p) for p in data_files},
        "base_model": {p.name: file_digest(p) for p in base_model_files(base)},
        "code": code_digests(),
        "libraries": library_versions(),
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


def stored_fingerprint(directory: Path) -> dict | None:
    try:
        stored = json.loads((directory / FINGERPRINT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return stored if isinstance(stored, dict) else None


def fingerprint_changes(stored: dict | None, current: dict, limit: int = 6) -> list[str]:
    """What differs, part by part, e.g. ["code changed: stages/train/data.py",
    "libraries changed: peft '0.17.0' -> '0.18.0'"]: file-digest parts name the files, the others show old -> new."""
    if not stored:
        return [f"no readable {FINGERPRINT_FILE}"]
    changes = []
    for part in [k for k in current if k != "id"] + sorted(set(stored) - set(current) - {"id"}):
        old, new = stored.get(part), current.get(part)
        if old == new:
            continue
        if part not in stored:
            changes.append(f"{part} not recorded")
        elif isinstance(old, dict) and isinstance(new, dict):
            keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            shown = [k if part in DIGEST_PARTS else f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:limit]]
            if len(keys) > limit:
                shown.append(f"+{len(keys) - limit} more")
            changes.append(f"{part} changed: {', '.join(shown)}")
        else:
            changes.append(f"{part} changed: {old!r} -> {new!r}")
    return changes or ["fingerprint id differs"]


def prepare_checkpoint_dir(directory: Path, fingerprint: dict, is_main: bool = True) -> Path | None:
    """Return the checkpoint to resume from (None: fresh start). Only the main process deletes or writes;
    every process reaches the same answer from the same files, so DDP ranks agree without talking."""
    current = fingerprint_id(fingerprint)
    stored = stored_fingerprint(directory)
    stored_id = stored.get("id") if stored else None
    if stored_id != current:
        if directory.exists() and any(directory.iterdir()):
            log.info("%s: checkpoints belong to another experiment (%s; fingerprint %s, now %s): starting fresh",
                     directory, "; ".join(fingerprint_changes(stored, fingerprint)), stored_id, current)
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
