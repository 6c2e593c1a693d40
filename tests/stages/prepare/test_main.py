"""The stage's outputs: the processed dir replaced whole, metrics/data.json, data_report.md, dataset card."""

from __future__ import annotations

import json

from stages.prepare.main import main

from .conftest import read_split, sample_examples, write_rows


def test_outputs_replace_the_processed_dir_and_report_everything(tmp_path, prep_cfg):
    rows = sample_examples(40) + [{"instruction": "What is a lien? See https://example.org", "output": ""},
                                  {"instruction": "WHAT IS NEGLIGENCE?", "output": "Duplicate prompt."}]
    path = write_rows(tmp_path / "in.jsonl", rows)
    main(prep_cfg("domain=legal", "data=local_file", f"data.path={path}"))
    (tmp_path / "data" / "finance").mkdir()
    (tmp_path / "data" / "finance" / "stale.txt").write_text("left over from an older run")
    metrics = main(prep_cfg("domain=finance", "data=local_file", f"data.path={path}", "data.license=CC-BY-4.0"))

    # one DVC output per domain (prepare@<domain>): the other domain's folder stays, this one is replaced whole
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["finance", "legal"]
    assert sorted(p.name for p in (tmp_path / "data" / "finance").iterdir()) == [
        "dataset_card.md", "test.jsonl", "test_facts.jsonl", "train.jsonl", "validation.jsonl",
        "validation_facts.jsonl"]
    assert not list(tmp_path.glob("data/.*")) and not list(tmp_path.glob(".*tmp"))  # no temp leftovers

    data = json.loads((tmp_path / "metrics" / "data.json").read_text())
    assert data == metrics
    assert data["counts"] == {"loaded": 42, "train": 32, "validation": 4, "test": 4, "test_facts": 0,
                              "validation_facts": 0, "total": 40}
    assert data["dropped"] == {"duplicate_exact": 1, "empty": 1} and data["dropped_total"] == 2
    assert data["checks_passed"] and set(data["checks"]) == {
        "schema", "nulls", "duplicates", "length", "language", "instruction_format", "distribution",
        "leakage", "unseen_facts", "held_out_text"}
    train = read_split(tmp_path, "finance", "train")
    assert data["stats"]["train"]["output_length"]["max"] == max(len(r["output"]) for r in train)
    assert data["stats"]["train"]["domains"] == {"finance": 32}

    report = (tmp_path / "metrics" / "data_report.md").read_text()
    assert "| train | 32 |" in report and "| duplicate_exact | 1 |" in report and "| leakage | pass |" in report
    card = (tmp_path / "data" / "finance" / "dataset_card.md").read_text()
    assert "**Licence:** CC-BY-4.0" in card and "train 32, validation 4, test 4" in card
    assert "dedup_near" in card and "empty 1" in card


def test_same_config_gives_identical_outputs(tmp_path, prep_cfg):
    path = write_rows(tmp_path / "in.csv", sample_examples(40))
    cfg = prep_cfg("domain=legal", "data=local_file", f"data.path={path}")
    main(cfg)
    first = {p.name: p.read_bytes() for p in (tmp_path / "data" / "legal").iterdir()}
    main(cfg)
    assert {p.name: p.read_bytes() for p in (tmp_path / "data" / "legal").iterdir()} == first
