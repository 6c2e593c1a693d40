"""stages.fileio: atomic writes leave the old output or the new one, never half of one."""

from __future__ import annotations

import json
import os

import pytest

from stages.errors import StageError
from stages.fileio import atomic_dir, atomic_path, read_json, read_jsonl, write_json, write_jsonl


def test_write_jsonl_round_trip_unicode(tmp_path):
    path = tmp_path / "out" / "a.jsonl"
    rows = [{"q": "Größe 42 µg?", "n": 1}, {"q": "日本語", "n": 2}]
    assert write_jsonl(path, rows) == 2
    assert read_jsonl(path) == rows


def test_failed_write_keeps_previous_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"v": 1})

    def rows():
        yield {"v": 2}
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(path, rows())
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_atomic_dir_replaces_whole_directory_or_nothing(tmp_path):
    out = tmp_path / "processed"
    with atomic_dir(out) as tmp:
        (tmp / "old.txt").write_text("old")
    with pytest.raises(ValueError), atomic_dir(out) as tmp:
        (tmp / "new.txt").write_text("new")
        raise ValueError("stage failed")
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    with atomic_dir(out) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["processed"]


def test_published_files_get_umask_permissions(tmp_path):
    path = tmp_path / "x.txt"
    with atomic_path(path) as tmp:
        tmp.write_text("x")
    assert path.stat().st_mode & 0o044  # readable by group/others, unlike mkstemp's 0600


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"a": 1}\n{"a": \n', "bad.jsonl:2: malformed JSON"),
        (b'{"a": 1}\n[1, 2]\n', "bad.jsonl:2: expected a JSON object"),
        (b'{"a": "\xff\xfe"}\n', "bad.jsonl: not valid UTF-8"),
    ],
)
def test_read_jsonl_bad_input_names_file_and_line(tmp_path, content, expected):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(StageError, match=expected):
        read_jsonl(path)


def test_missing_files_are_stage_errors(tmp_path):
    with pytest.raises(StageError, match="file not found"):
        read_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(StageError, match="file not found"):
        read_json(tmp_path / "nope.json")


def test_temps_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    (tmp_path / f".gguf.{dead_pid}.abc.tmp").mkdir()
    (tmp_path / f".gguf.{dead_pid}.abc.tmp" / "model-q4_k_m.gguf").write_bytes(b"half")
    (tmp_path / f".gguf.{os.getpid()}.live.tmp").mkdir()  # a concurrent writer in this very process
    with atomic_dir(tmp_path / "gguf") as tmp:
        (tmp / "model.gguf").write_bytes(b"full")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".gguf.{os.getpid()}.live.tmp", "gguf"]


def test_a_failed_write_names_the_output_not_the_temp(tmp_path):
    # A real write failure with no filename on it: the kernel refuses to grow a file past RLIMIT_FSIZE (EFBIG,
    # like ENOSPC). The error names where the file was going inside the atomic directory, and nothing is left.
    import resource
    import signal

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills us instead of failing write()
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(StageError) as raised, atomic_dir(tmp_path / "out") as tmp:
            write_jsonl(tmp / "split" / "train.jsonl", [{"text": "x" * 100}] * 100)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'out' / 'split' / 'train.jsonl'}: could not write ("), message
    assert os.listdir(tmp_path) == []


def test_an_input_missing_inside_an_atomic_write_keeps_its_own_error(tmp_path):
    with pytest.raises(FileNotFoundError) as raised, atomic_path(tmp_path / "out.txt"):
        (tmp_path / "absent.txt").read_text()
    assert raised.value.filename == str(tmp_path / "absent.txt")
    assert os.listdir(tmp_path) == []


def test_output_killed_between_the_two_renames_is_restored(tmp_path):
    """A kill after `final -> .final.old` but before `tmp -> final` must not lose the previous output."""
    (tmp_path / ".gguf.old").mkdir()
    (tmp_path / ".gguf.old" / "model.gguf").write_bytes(b"previous")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "gguf"):
        raise RuntimeError("this run fails too")
    assert (tmp_path / "gguf" / "model.gguf").read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gguf"]
