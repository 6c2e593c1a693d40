"""Read rows from a local JSON, JSONL, CSV or Parquet file, naming file and line/row in every error.

    from stages.prepare.local_files import read_rows
    rows = read_rows("data/raw/train.jsonl")        # [(location, {column: value}), ...]

Each row comes with a `location` ("line 7", "row 3", "item 2") so later errors can point at it.
Files are read whole: local data sets for fine-tuning are small enough, and it keeps errors exact.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from stages.errors import StageError

FILE_TYPES = ("json", "jsonl", "csv", "parquet")
_EXTENSIONS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet",
               ".pq": "parquet"}

Row = tuple[str, dict]


def detect_file_type(path: Path, file_type: str = "auto") -> str:
    if file_type != "auto":
        if file_type not in FILE_TYPES:
            raise StageError(f"data.file_type={file_type!r} is not one of {', '.join(FILE_TYPES)} or auto")
        return file_type
    try:
        return _EXTENSIONS[path.suffix.lower()]
    except KeyError:
        raise StageError(f"{path}: cannot tell the file type from the extension {path.suffix!r}; "
                         f"set data.file_type to one of {', '.join(FILE_TYPES)}") from None


def read_rows(path: str | Path, file_type: str = "auto") -> list[Row]:
    """All rows of `path` as (location, dict); StageError for a missing, empty or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise StageError(f"{path}: file not found; check data.path")
    kind = detect_file_type(path, file_type)
    if path.stat().st_size == 0:
        raise StageError(f"{path}: file is empty; it needs at least one example")
    if kind == "parquet":
        rows = _read_parquet(path)
    else:
        text = _decode_utf8(path)
        rows = {"json": _read_json, "jsonl": _read_jsonl, "csv": _read_csv}[kind](path, text)
    if not rows:
        raise StageError(f"{path}: file is empty (no rows); it needs at least one example")
    return rows


def _decode_utf8(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        offset = e.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data.count(b"\n", 0, offset) + 1
        raise StageError(f"{path}:{line}: not valid UTF-8 (byte {data[offset]:#04x} at offset {offset}); "
                         "re-encode the file as UTF-8") from None


def _read_jsonl(path: Path, text: str) -> list[Row]:
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise StageError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno}); "
                             "each line must be one JSON object") from None
        if not isinstance(obj, dict):
            raise StageError(f"{path}:{lineno}: expected a JSON object per line, got {type(obj).__name__}")
        rows.append((f"line {lineno}", obj))
    return rows


def _read_json(path: Path, text: str) -> list[Row]:
    if not text.strip():
        return []
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise StageError(f"{path}:{e.lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        obj = obj["data"]
    if not isinstance(obj, list):
        raise StageError(f"{path}: expected a JSON list of objects or {{\"data\": [...]}}, "
                         f"got {type(obj).__name__}")
    rows = []
    for i, item in enumerate(obj, start=1):
        if not isinstance(item, dict):
            raise StageError(f"{path}: item {i}: expected a JSON object, got {type(item).__name__}")
        rows.append((f"item {i}", item))
    return rows


def _read_csv(path: Path, text: str) -> list[Row]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        return []
    rows = []
    try:
        for record in reader:
            if None in record:  # more cells than header columns
                raise StageError(f"{path}:{reader.line_num}: row has {len(reader.fieldnames) + len(record[None])} "
                                 f"cells but the header has {len(reader.fieldnames)}; quote cells containing commas")
            if all(v is None or v == "" for v in record.values()):
                continue
            # csv gives None for missing trailing cells: treat them as empty text
            rows.append((f"line {reader.line_num}", {k: ("" if v is None else v) for k, v in record.items()}))
    except csv.Error as e:
        raise StageError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
    return rows


def _read_parquet(path: Path) -> list[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise StageError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
    return [(f"row {i}", row) for i, row in enumerate(table.to_pylist(), start=1)]
