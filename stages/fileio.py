"""Atomic output writes, JSONL I/O and logging shared by every stage.

Stages never write an output in place: they write a temp sibling and `os.replace` it, so a crash
leaves either the previous output or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from stages.errors import StageError

# mkstemp/mkdtemp create private (0600/0700) paths; published outputs get the usual umask permissions.
_UMASK = os.umask(0)
os.umask(_UMASK)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str | int = "INFO") -> None:
    """Log to stderr once per process; stage modules use `logging.getLogger(__name__)`."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
        root.addHandler(handler)
    root.setLevel(level)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(final: Path) -> None:
    """Delete temp siblings of `final` left by a writer that was killed (SIGKILL skips our cleanup).

    Temp names carry the writer's PID (`.<name>.<pid>.<random>.tmp`); only those of dead processes go, so a
    concurrent writer's temp is never touched.
    """
    for path in final.parent.glob(f".{glob.escape(final.name)}.*.tmp"):
        pid = path.name[len(final.name) + 2:].split(".", 1)[0]
        if not pid.isdigit() or _pid_alive(int(pid)):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:  # killed between the two renames of atomic_dir: the previous output is only here
            os.replace(old, final)


class OutputWriteError(StageError):
    """An output could not be written (disk full, read-only, permissions): the line names the output, since
    the OSError from write() carries no filename."""

    def __init__(self, final: Path, error: OSError):
        super().__init__(f"{final}: could not write ({error.strerror or error}); free space or fix permissions "
                         "and rerun")
        self.final, self.error = final, error


# write() failures with no filename on them; any other OSError counts only when it names our temp/final path
# (an OSError from reading an input inside the block keeps its own filename and goes to the CLI unchanged).
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _is_write_error(e: OSError, *ours: Path) -> bool:
    if e.errno in _WRITE_ERRNOS:
        return True
    named = [Path(os.fsdecode(f)) for f in (e.filename, e.filename2) if f is not None]
    return any(p == o or o in p.parents for p in named for o in ours)


@contextlib.contextmanager
def atomic_path(final: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path next to `final`; on success move it into place, on error delete it."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(final)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.{os.getpid()}.", suffix=suffix + ".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, final)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        if _is_write_error(e, tmp_path, final):
            raise OutputWriteError(final, e) from None
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield an empty temp directory next to `final`; on success it replaces `final` whole."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(final)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{final.name}.{os.getpid()}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp_dir
        os.chmod(tmp_dir, 0o777 & ~_UMASK)
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            try:
                os.replace(tmp_dir, final)
            except OSError:
                os.replace(old, final)  # put the previous output back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp_dir, final)
    except OutputWriteError as e:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if tmp_dir in e.final.parents:  # a file written inside the temp dir: name where it was going
            raise OutputWriteError(final / e.final.relative_to(tmp_dir), e.error) from None
        raise
    except OSError as e:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if _is_write_error(e, tmp_dir, final):
            raise OutputWriteError(final, e) from None
        raise
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def write_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    """Write one JSON object per line atomically; returns the number of records."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSONL file; any bad line raises StageError naming file and line."""
    return [obj for _, obj in read_jsonl_numbered(path)]


def read_jsonl_numbered(path: str | Path) -> list[tuple[int, dict]]:
    """read_jsonl's objects with their 1-based line numbers, for checks that name the line of a bad field."""
    path = Path(path)
    if not path.is_file():
        raise StageError(f"{path}: file not found")
    records = []
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise StageError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
                if not isinstance(obj, dict):
                    raise StageError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
                records.append((lineno, obj))
    except UnicodeDecodeError as e:
        raise StageError(f"{path}: not valid UTF-8 (byte offset {e.start}); re-encode the file as UTF-8") from None
    return records


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise StageError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise StageError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
