"""The checkpoint fingerprint covers the training code and library versions: a rerun after a change to a
stages/train file trains again instead of resuming (or skipping to) the old code's final checkpoint."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from stages.config import compose
from stages.fileio import write_jsonl
from stages.train import checkpoints
from stages.train.checkpoints import (
    FINGERPRINT_FILE,
    code_digests,
    experiment_fingerprint,
    file_digest,
    fingerprint_changes,
    fingerprint_id,
    prepare_checkpoint_dir,
)
from stages.train.main import main
from stages.train.settings import TrainSettings
from tests.stages.train.conftest import chat_records, train_overrides


def fake_experiment(root: Path) -> tuple[list[Path], Path]:
    data = root / "data" / "healthcare" / "train.jsonl"
    write_jsonl(data, chat_records(2))
    base = root / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    (base / "model.safetensors").write_bytes(b"weights")
    return [data], base


def test_a_library_version_change_changes_the_fingerprint(tmp_path, monkeypatch):
    data, base = fake_experiment(tmp_path)
    before = experiment_fingerprint(TrainSettings(), data, base)
    assert set(before["libraries"]) == {"torch", "transformers", "peft", "tokenizers", "jinja2"}
    assert all(before["libraries"].values())  # all three are installed here

    real_version = checkpoints.metadata.version
    monkeypatch.setattr(checkpoints.metadata, "version",
                        lambda name: "99.0.0" if name == "transformers" else real_version(name))
    after = experiment_fingerprint(TrainSettings(), data, base)
    assert after["libraries"]["transformers"] == "99.0.0"
    assert fingerprint_id(after) != fingerprint_id(before)
    assert fingerprint_changes(before, after) == [
        f"libraries changed: transformers {before['libraries']['transformers']!r} -> '99.0.0'"]


def test_a_missing_library_is_recorded_as_none(monkeypatch):
    def version(name):
        raise checkpoints.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(checkpoints.metadata, "version", version)
    assert checkpoints.library_versions() == dict.fromkeys(checkpoints.TRAINING_LIBRARIES)


def test_code_digests_cover_every_training_module_by_repo_path():
    digests = code_digests()
    train_dir = checkpoints.CODE_ROOT / "stages" / "train"
    expected = {f"stages/train/{p.relative_to(train_dir).as_posix()}" for p in train_dir.rglob("*.py")
                if "__pycache__" not in p.parts}
    assert {"stages/train/checkpoints.py", "stages/train/data.py", "stages/train/loop.py"} <= expected
    chat = checkpoints.CODE_ROOT / "stages" / "inference" / "chat.py"
    assert set(digests) == expected | ({"stages/inference/chat.py"} if chat.is_file() else set())
    assert list(digests) == sorted(digests)
    assert digests["stages/train/data.py"] == file_digest(train_dir / "data.py")


def test_code_digests_skip_pycache_and_a_missing_optional_file(tmp_path):
    (tmp_path / "stages" / "train" / "__pycache__").mkdir(parents=True)
    (tmp_path / "stages" / "train" / "data.py").write_text("x = 1\n")
    (tmp_path / "stages" / "train" / "__pycache__" / "stale.py").write_text("x = 0\n")
    (tmp_path / "stages" / "train" / "notes.txt").write_text("not code\n")
    paths = (tmp_path / "stages" / "train", tmp_path / "stages" / "inference" / "chat.py")
    assert list(code_digests(paths, tmp_path)) == ["stages/train/data.py"]

    (tmp_path / "stages" / "inference").mkdir()
    (tmp_path / "stages" / "inference" / "chat.py").write_text("TEMPLATE = 1\n")
    assert list(code_digests(paths, tmp_path)) == ["stages/inference/chat.py", "stages/train/data.py"]


def test_checkpoints_of_an_older_fingerprint_format_are_not_resumed(tmp_path, caplog):
    ckpt = tmp_path / "checkpoints"
    (ckpt / "checkpoint-4").mkdir(parents=True)
    (ckpt / "checkpoint-4" / "trainer_state.json").write_text("{}")
    old = {"settings": {"lr": 1e-4}, "world_size": 1, "data": {"x": "1"}, "base_model": {"m": "2"}}
    (ckpt / FINGERPRINT_FILE).write_text(json.dumps({"id": fingerprint_id(old), **old}))
    new = {**old, "code": {"stages/train/data.py": "3"}, "libraries": {"torch": "2.0"}}

    with caplog.at_level(logging.INFO, logger=checkpoints.__name__):
        assert prepare_checkpoint_dir(ckpt, new) is None
    assert not (ckpt / "checkpoint-4").exists()
    assert "another experiment (code not recorded; libraries not recorded;" in caplog.text


def test_fingerprint_changes_name_the_part_and_the_entry():
    old = {"id": "a", "settings": {"lr": 1e-4, "seed": 42}, "world_size": 1, "data": {"h/train.jsonl": "1"},
           "base_model": {"model.safetensors": "2"}, "code": {"stages/train/data.py": "3", "stages/train/x.py": "4"},
           "libraries": {"torch": "2.5.0"}}
    new = {**old, "id": "b", "settings": {"lr": 1e-3, "seed": 42}, "world_size": 2,
           "code": {"stages/train/data.py": "5", "stages/train/y.py": "6"}}
    assert fingerprint_changes(old, new) == [
        "settings changed: lr 0.0001 -> 0.001", "world_size changed: 1 -> 2",
        "code changed: stages/train/data.py, stages/train/x.py, stages/train/y.py"]
    assert fingerprint_changes(None, new) == [f"no readable {FINGERPRINT_FILE}"]


def test_a_changed_training_file_retrains_instead_of_resuming(tmp_path, tiny_model_dir, monkeypatch, caplog):
    """The real stage, three times in the same folders. The fingerprint hashes a copy of stages/train (the
    repository's files are never touched); editing a file of that copy is a code change as DVC sees one."""
    code_root = tmp_path / "code"
    shutil.copytree(checkpoints.CODE_ROOT / "stages" / "train", code_root / "stages" / "train",
                    ignore=shutil.ignore_patterns("__pycache__"))
    chat = checkpoints.CODE_ROOT / "stages" / "inference" / "chat.py"
    if chat.is_file():
        (code_root / "stages" / "inference").mkdir(parents=True)
        shutil.copy2(chat, code_root / "stages" / "inference" / "chat.py")
    monkeypatch.setattr(checkpoints, "CODE_ROOT", code_root)
    monkeypatch.setattr(checkpoints, "TRAINING_CODE",
                        (code_root / "stages" / "train", code_root / "stages" / "inference" / "chat.py"))

    root = tmp_path / "run"
    folder = root / "data" / "processed" / "healthcare"
    write_jsonl(folder / "train.jsonl", chat_records(16))
    write_jsonl(folder / "validation.jsonl", chat_records(4, offset=3))
    overrides = train_overrides(root, tiny_model_dir, "train.max_steps=4", "train.save_steps=2")
    ckpt = root / "models" / "checkpoints"

    def run() -> dict:
        main(compose(overrides))
        return json.loads((root / "metrics" / "train.json").read_text())

    first = run()
    assert first["resumed_from_step"] == 0 and first["steps"] == 4 and first["train_tokens_per_second"] > 0
    stored = json.loads((ckpt / FINGERPRINT_FILE).read_text())
    edited = code_root / "stages" / "train" / "data.py"
    assert stored["code"]["stages/train/data.py"] == file_digest(edited)
    assert set(stored["libraries"]) == {"torch", "transformers", "peft", "tokenizers", "jinja2"}

    # Same code: the finished run's final checkpoint is reused, nothing is trained (the check is not "always retrain").
    again = run()
    assert again["resumed_from_step"] == again["steps"] == 4 and again["train_tokens_per_second"] is None

    # A fix to the masking code: the old final checkpoint must not be republished.
    edited.write_text(edited.read_text() + "\n# a fix to the label masking\n")
    (ckpt / "checkpoint-4" / "from-the-old-code").write_text("")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=checkpoints.__name__):
        retrained = run()
    assert retrained["resumed_from_step"] == 0 and retrained["steps"] == 4
    assert retrained["train_tokens_per_second"] > 0 and retrained["train_tokens"] == first["train_tokens"]
    assert not (ckpt / "checkpoint-4" / "from-the-old-code").exists()  # wiped, then written anew
    assert "checkpoints belong to another experiment (code changed: stages/train/data.py;" in caplog.text
    assert json.loads((ckpt / FINGERPRINT_FILE).read_text())["code"]["stages/train/data.py"] == file_digest(edited)
    # Same initial adapter and data, identical code behaviour: the retrained run reproduces the first one.
    assert retrained["final_train_loss"] == pytest.approx(first["final_train_loss"], abs=1e-6)
