"""Bad input files: each gives one `error:` line naming file, line/row and field, exit code 2 through the CLI,
and leaves the previous outputs (data/processed and metrics) exactly as they were."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stages.cli import main as cli_main

from .conftest import sample_examples, to_format, write_rows


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture()
def previous_outputs(tmp_path) -> tuple[list[str], dict[str, bytes]]:
    """A good run's outputs; returns the CLI path overrides and a snapshot of what it wrote."""
    paths = [f"paths.processed={tmp_path / 'out' / 'data'}", f"paths.metrics={tmp_path / 'out' / 'metrics'}",
             f"paths.base_model={tmp_path / 'no_model'}"]
    good = write_rows(tmp_path / "good.jsonl", sample_examples(30))
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["prepare", "domain=legal", "data=local_file", f"data.path={good}", *paths])
    assert exit_info.value.code == 0
    before = snapshot(tmp_path / "out")
    assert "data/legal/train.jsonl" in before and "metrics/legal/data.json" in before
    return paths, before


def run_bad(tmp_path, capsys, paths, path: Path, *extra: str) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["prepare", "domain=legal", "data=local_file", f"data.path={path}", *extra, *paths])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def good_lines(n: int = 5) -> list[str]:
    return [json.dumps(e) for e in sample_examples(n)]


def test_malformed_json_line(tmp_path, capsys, previous_outputs):
    paths, before = previous_outputs
    lines = good_lines()
    lines[2] = '{"instruction": "What is a lien?", "output": '
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    message = run_bad(tmp_path, capsys, paths, bad)
    assert f"{bad}:3: malformed JSON" in message
    assert snapshot(tmp_path / "out") == before


def test_malformed_json_document(tmp_path, capsys, previous_outputs):
    paths, before = previous_outputs
    bad = tmp_path / "bad.json"
    bad.write_text('[\n{"instruction": "a", "output": "b"},\n{"instruction": "c" "output": "d"}\n]')
    message = run_bad(tmp_path, capsys, paths, bad)
    assert f"{bad}:3: malformed JSON" in message
    assert snapshot(tmp_path / "out") == before


def test_missing_required_column(tmp_path, capsys, previous_outputs):
    paths, before = previous_outputs
    rows = [{"instruction": e["instruction"], "input": e["input"]} for e in sample_examples(5)]
    bad = write_rows(tmp_path / "no_output.csv", rows)
    message = run_bad(tmp_path, capsys, paths, bad, "data.format=alpaca")
    assert f"{bad}: line 2: missing required field 'output'" in message
    assert "data.columns" in message  # says what to do
    assert snapshot(tmp_path / "out") == before
    # auto-detection names the columns it found
    message = run_bad(tmp_path, capsys, paths, bad)
    assert "cannot detect the data format from columns ['input', 'instruction']" in message


def test_mapped_column_missing(tmp_path, capsys, previous_outputs):
    paths, before = previous_outputs
    bad = write_rows(tmp_path / "qa.csv", [{"Q": "What is a lien?", "Answer": "A claim on property."}])
    message = run_bad(tmp_path, capsys, paths, bad, "data.columns={question: Q, answer: A}")
    assert f"{bad}: line 2: column 'A' (mapped to field 'answer'" in message
    assert snapshot(tmp_path / "out") == before


@pytest.mark.parametrize(("row", "field", "got", "fmt"), [
    ({"instruction": "What is a lien?", "output": ["a", "list"]}, "output", "list", "auto"),
    ({"instruction": {"text": "What is a lien?"}, "output": "A claim."}, "instruction", "dict", "alpaca"),
    ({"messages": "user: hi"}, "messages", "str", "chat"),
])
def test_wrong_types(tmp_path, capsys, previous_outputs, row, field, got, fmt):
    paths, before = previous_outputs
    bad = tmp_path / "types.jsonl"
    first = to_format(sample_examples(1)[0], "chat" if fmt == "chat" else "alpaca")
    bad.write_text(json.dumps(first) + "\n" + json.dumps(row) + "\n")  # the bad row is on line 2
    message = run_bad(tmp_path, capsys, paths, bad, f"data.format={fmt}")
    assert f"{bad}: line 2: field '{field}' must be" in message and got in message
    assert snapshot(tmp_path / "out") == before


def test_non_utf8_bytes(tmp_path, capsys, previous_outputs):
    paths, before = previous_outputs
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(("\n".join(good_lines(3)) + "\n").encode() + '{"instruction": "Qu\'est-ce qu\'un caf\xe9?", '
                    '"output": "x"}\n'.encode("latin-1"))
    message = run_bad(tmp_path, capsys, paths, bad)
    assert f"{bad}:4: not valid UTF-8 (byte 0xe9" in message and "re-encode" in message
    assert snapshot(tmp_path / "out") == before


@pytest.mark.parametrize("ext", ["jsonl", "json", "csv", "parquet"])
def test_empty_file(tmp_path, capsys, previous_outputs, ext):
    paths, before = previous_outputs
    bad = tmp_path / f"empty.{ext}"
    bad.write_bytes(b"" if ext != "csv" else b"instruction,output\n")
    message = run_bad(tmp_path, capsys, paths, bad)
    assert f"{bad}: file is empty" in message
    assert snapshot(tmp_path / "out") == before


def test_file_not_found(tmp_path, capsys, previous_outputs):
    paths, before = previous_outputs
    message = run_bad(tmp_path, capsys, paths, tmp_path / "nope.jsonl")
    assert f"{tmp_path / 'nope.jsonl'}: file not found" in message
    assert snapshot(tmp_path / "out") == before


def test_csv_row_with_extra_cells(tmp_path, capsys, previous_outputs):
    paths, before = previous_outputs
    bad = tmp_path / "extra.csv"
    bad.write_text("instruction,output\nWhat is a lien?,A claim on property.\nWhat is a tort?,A civil wrong, not a crime.\n")
    message = run_bad(tmp_path, capsys, paths, bad)
    assert f"{bad}:3: row has 3 cells but the header has 2" in message
    assert snapshot(tmp_path / "out") == before


def test_corrupt_parquet(tmp_path, capsys, previous_outputs):
    paths, before = previous_outputs
    bad = tmp_path / "corrupt.parquet"
    bad.write_bytes(b"PAR1 definitely not parquet")
    message = run_bad(tmp_path, capsys, paths, bad)
    assert f"{bad}: not a readable Parquet file" in message
    assert snapshot(tmp_path / "out") == before
