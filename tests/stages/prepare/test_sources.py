"""Every source of the prepare stage through `main(cfg)`: local files (4 types x 4 formats, column mapping),
Hugging Face (save_to_disk directory, offline error), and synthetic."""

from __future__ import annotations

import json

import pytest

from stages.errors import StageError
from stages.prepare.main import main
from stages.prepare.sources import RECOMMENDED_DATASETS, print_recommended_datasets

from .conftest import read_split, sample_examples, to_format, write_rows

CASES = [(ext, fmt) for ext in ("json", "jsonl", "csv", "parquet") for fmt in ("alpaca", "qa", "chat", "sharegpt")
         if not (ext == "csv" and fmt in ("chat", "sharegpt"))]  # CSV cells cannot hold a list of turns


@pytest.mark.parametrize(("ext", "fmt"), CASES)
def test_local_file_types_and_formats(tmp_path, prep_cfg, ext, fmt):
    examples = sample_examples(40)
    path = write_rows(tmp_path / f"in.{ext}", [to_format(e, fmt) for e in examples])
    cfg = prep_cfg("domain=legal", "data=local_file", f"data.path={path}")
    metrics = main(cfg)  # format auto-detected
    assert metrics["format"] == fmt
    assert metrics["counts"]["loaded"] == 40 and metrics["counts"]["total"] == 40
    rows = [r for s in ("train", "validation", "test") for r in read_split(tmp_path, "legal", s)]
    by_instruction = {r["instruction"]: r for r in rows}
    for e in examples:
        # chat formats carry the input inside the user turn: it comes back in the instruction text
        key = e["instruction"] if fmt in ("alpaca", "qa") else \
            e["instruction"] + (f"\n\n{e['input']}" if e["input"] else "")
        record = by_instruction[key]
        assert record["output"] == e["output"] and record["domain"] == "legal"
        assert record["source"] == "local_file:" + path.name
        assert record["messages"][0] == {"role": "system", "content": cfg.domain.system_prompt}
        assert record["messages"][-1] == {"role": "assistant", "content": e["output"]}


@pytest.mark.parametrize("ext", ["csv", "jsonl"])
def test_column_mapping_and_domain_column(tmp_path, prep_cfg, ext):
    rows = [{"Q": e["instruction"], "A": e["output"], "Ctx": e["input"], "area": "tax" if i % 2 else "contracts"}
            for i, e in enumerate(sample_examples(40))]
    path = write_rows(tmp_path / f"mine.{ext}", rows)
    main(prep_cfg("domain=mixed", "data=local_file", f"data.path={path}", "data.format=qa",
                  "data.columns={question: Q, answer: A, context: Ctx, domain: area}",
                  "prepare.validation.max_domain_share_gap=0.5"))
    records = [r for s in ("train", "validation", "test") for r in read_split(tmp_path, "mixed", s)]
    assert {r["domain"] for r in records} == {"tax", "contracts"}
    with_context = [r for r in records if r["input"]]
    assert with_context and all(r["input"] == "Answer for a general audience." for r in with_context)
    assert all(r["messages"][1]["content"].endswith("\n\n" + r["input"]) for r in with_context)


def test_chat_history_is_kept_as_input(tmp_path, prep_cfg):
    rows = [{"turns": [{"role": "user", "content": f"My question number {i} is about {e['instruction']}"},
                       {"role": "assistant", "content": "Could you say which jurisdiction you mean?"},
                       {"role": "user", "content": e["instruction"]},
                       {"role": "assistant", "content": e["output"]}]} for i, e in enumerate(sample_examples(30))]
    path = write_rows(tmp_path / "chat.json", rows)
    main(prep_cfg("domain=legal", "data=local_file", f"data.path={path}", "data.columns={messages: turns}"))
    record = read_split(tmp_path, "legal", "train")[0]
    assert record["input"].startswith("User: My question number")
    assert "\nAssistant: Could you say which jurisdiction you mean?" in record["input"]
    assert not record["instruction"].startswith("My question")


def test_huggingface_save_to_disk_directory(tmp_path, prep_cfg):
    import datasets

    rows = sample_examples(40)
    saved = tmp_path / "hf_saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows),
                          "other": datasets.Dataset.from_list(rows[:5])}).save_to_disk(str(saved))
    metrics = main(prep_cfg("domain=legal", "data=huggingface", f"data.name={saved}", "data.split=train"))
    assert metrics["source"] == "huggingface:hf_saved" and metrics["counts"]["loaded"] == 40
    assert metrics["counts"]["total"] == 40
    card = (tmp_path / "data" / "legal" / "dataset_card.md").read_text()
    assert "huggingface:hf_saved" in card and "Licence:" in card

    capped = main(prep_cfg("domain=legal", "data=huggingface", f"data.name={saved}", "data.max_rows=12"))
    assert capped["counts"]["loaded"] == 12
    with pytest.raises(StageError, match="split 'test' not found; available: train, other"):
        main(prep_cfg("domain=legal", "data=huggingface", f"data.name={saved}", "data.split=test"))


def test_huggingface_offline_and_not_cached_is_one_clear_error(tmp_path, prep_cfg, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(StageError) as err:
        main(prep_cfg("data=huggingface", "data.name=medalpaca/medical_meadow_mediqa"))
    message = str(err.value)
    assert "\n" not in message
    assert "medalpaca/medical_meadow_mediqa" in message and "not cached" in message and "offline" in message
    assert not (tmp_path / "data").exists()


def test_list_datasets_prints_every_domain(capsys):
    from stages.cli import main as cli_main

    with pytest.raises(SystemExit) as exit_info:
        cli_main(["prepare", "--list-datasets"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for domain, entries in RECOMMENDED_DATASETS.items():
        assert f"{domain}:" in out
        assert all(e["name"] in out for e in entries)
    print_recommended_datasets()
    assert "medalpaca/medical_meadow_mediqa" in capsys.readouterr().out


def test_synthetic_source_via_main(tmp_path, prep_cfg):
    from stages.prepare.synthetic import DISCLAIMER

    metrics = main(prep_cfg("domain=mixed", "data=synthetic", "data.num_samples=300"))
    assert metrics["source"] == "synthetic" and metrics["checks_passed"]
    train, test = read_split(tmp_path, "mixed", "train"), read_split(tmp_path, "mixed", "test")
    assert {r["domain"] for r in train} == {"healthcare", "legal", "finance"}
    assert test and all(r["held_out"] for r in test) and not any(r["held_out"] for r in train)
    # test questions use paraphrase templates never seen in training
    assert not {r["template_id"] for r in test} & {r["template_id"] for r in train}
    assert DISCLAIMER.strip().splitlines()[0] in (tmp_path / "data" / "mixed" / "dataset_card.md").read_text()
    data = json.loads((tmp_path / "metrics" / "data.json").read_text())
    assert data["counts"]["train"] == len(train) and data["counts"]["test"] == len(test)
