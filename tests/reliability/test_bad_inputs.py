"""Bad input across the CLI: one row per malformed input to a stage, run as a user runs it
(`domain-llm <stage> ...` from the venv, in a subprocess). Each must exit 2 with exactly one `error:` line (the
last line of stderr, no traceback) naming the file or field, and must write nothing.

    pytest tests/reliability/test_bad_inputs.py -q            # the rows that fail before loading a model
    pytest tests/reliability/test_bad_inputs.py -q -m slow    # + the rows that load the tiny model first

A bug this table finds goes in as a strict xfail row (red once fixed, so the mark gets removed); none are open.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from stages.fileio import write_jsonl
from stages.prepare.records import make_record
from tests.reliability.conftest import assert_one_line_error, run_cli

QA = [("What is hypertension?", "Persistently high blood pressure."),
      ("Which organ produces insulin?", "The pancreas."),
      ("What is a normal body temperature?", "About 37 degrees Celsius."),
      ("How many bones are in the adult human body?", "206 bones.")]


@dataclass(frozen=True)
class Row:
    stage: str
    args: tuple[str, ...]      # may use {inp} (inputs), {out} (where outputs would go), {model} (tiny HF model)
    expected: tuple[str, ...]  # substrings of the one error line


def local_file(name: str, *extra: str) -> tuple[str, ...]:
    return ("domain=legal", "data=local_file", f"data.path={{inp}}/{name}", *extra)


ROWS = {
    # prepare: the data file
    "malformed_jsonl_line": Row("prepare", local_file("malformed.jsonl"), ("malformed.jsonl:2: malformed JSON",)),
    "missing_column": Row("prepare", local_file("alpaca.jsonl", "data.format=qa"),
                          ("alpaca.jsonl", "missing required field 'question'", "data.columns")),
    "wrong_type": Row("prepare", local_file("wrong_type.jsonl"), ("wrong_type.jsonl", "field 'output' must be")),
    "non_utf8": Row("prepare", local_file("latin1.jsonl"), ("latin1.jsonl", "not valid UTF-8")),
    "empty_file": Row("prepare", local_file("empty.jsonl"), ("empty.jsonl", "file is empty")),
    "missing_file": Row("prepare", local_file("absent.jsonl"), ("absent.jsonl", "file not found")),
    "csv_extra_cells": Row("prepare", local_file("extra.csv"), ("extra.csv:3", "3 cells", "header has 2")),
    # prepare: the configuration
    "unknown_domain": Row("prepare", ("domain=dentistry",), ("domain/dentistry",)),
    "bad_override_syntax": Row("prepare", ("data.num_samples=[1",), ("config override error",)),
    "unknown_config_key": Row("prepare", ("data.num_smaples=5",), ("data.num_smaples",)),
    "num_samples_zero": Row("prepare", ("data.num_samples=0",), ("data.num_samples", ">= 1", "got 0")),
    "num_samples_not_a_number": Row("prepare", ("data.num_samples=abc",), ("data.num_samples", "'abc'")),
    "split_ratios_not_summing_to_1": Row("prepare", ("prepare.split.train=0.9",), ("prepare.split", "sum to 1")),
    "mandatory_value_unset": Row("prepare", ("domain=legal", "data=local_file", "data.path=???"),
                                 ("data.path", "required but not set")),
    "missing_params_file": Row("prepare", ("--params", "{inp}/absent.yaml"), ("absent.yaml", "params file not found")),
    "params_and_overrides": Row("prepare", ("--params", "{inp}/absent.yaml", "domain=legal"),
                                ("either --params FILE or Hydra overrides",)),
    # base
    "unknown_model_group": Row("base", ("model=gpt5",), ("model/gpt5",)),
    "hf_model_without_path": Row("base", ("model=hf",), ("model.path", "required for model=hf")),
    # train
    "missing_base_model": Row("train", ("paths.base_model={inp}/no_base",), ("no_base", "base model not found")),
    "unknown_train_mode": Row("train", ("train.mode=bogus",), ("train.mode='bogus'", "auto, lora, qlora")),
    "missing_train_split": Row("train", ("paths.processed={inp}/nothing",), ("train.jsonl", "file not found")),
    "unknown_lr_scheduler": Row("train", ("train.scheduler=bogus",), ("train.scheduler='bogus'", "cosine")),
    "unknown_optimizer": Row("train", ("train.optimizer=adamw_bogus",), ("train.optimizer='adamw_bogus'", "adamw_torch")),
    # evaluate
    "missing_test_split": Row("evaluate", ("paths.processed={inp}/nothing",), ("test.jsonl", "file not found")),
    # examples[:-3] used to evaluate all but the last three and exit 0
    "negative_max_examples": Row("evaluate", ("eval.max_examples=-3",), ("eval.max_examples=-3", ">= 1")),
    "eval_batch_size_zero": Row("evaluate", ("eval.batch_size=0",), ("eval.batch_size=0", ">= 1")),
    # quantize
    "quantize_missing_merged_model": Row("quantize", ("quantize.source={inp}/no_merged",),
                                         ("no_merged", "no HF model here", "dvc repro base")),
    "unknown_quant_type": Row("quantize", ("quantize.types=[q4_k_m,q9_9]",), ("quantize.types", "'q9_9'")),
    # reranker
    "unknown_reranker_miner": Row("reranker", ("reranker.negative_miner=bogus",),
                                  ("reranker.negative_miner='bogus'", "bm25, embedding")),
    "reranker_missing_train_split": Row("reranker", ("paths.processed={inp}/nothing",),
                                        ("train.jsonl", "prepared split not found")),
    # serve
    "serve_missing_model": Row("serve", ("serve.model={inp}/absent.gguf",), ("absent.gguf", "GGUF model file not found")),
    "serve_unknown_engine": Row("serve", ("serve.engine=tpu",), ("serve.engine='tpu'",)),
    "serve_queue_size_zero": Row("serve", ("serve.queue_size=0",), ("serve.queue_size=0", ">= 1")),
}

# Rows that load the tiny model (or run a whole stage, while buggy) before they can fail: 10-45 s each.
SLOW_ROWS = {
    "evaluate_missing_merged_model": Row("evaluate", ("paths.merged={inp}/no_merged",), ("no_merged", "config.json")),
    "evaluate_missing_gguf": Row("evaluate", ("eval.gguf_files=[{inp}/absent.gguf]",),
                                 ("absent.gguf", "GGUF model file not found")),
    # Nothing may be written before this is caught: the checkpoint dir used to be reset (another experiment's
    # resumable checkpoints deleted, fingerprint.json written) before apply_lora validated the target modules.
    "unknown_lora_target_module": Row("train", ("train.lora.target_modules=[q_proj,foo_proj]",),
                                      ("train.lora.target_modules", "foo_proj not in the base model")),
}

@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    """Inputs (a prepared healthcare split, the bad files) and an empty folder for outputs."""
    root = tmp_path_factory.mktemp("bad_inputs")
    inp = root / "in"
    records = [make_record("healthcare", q, a, "synthetic") for q, a in QA]
    for split in ("train", "validation", "test"):
        write_jsonl(inp / "processed" / "healthcare" / f"{split}.jsonl", records)
    good = [json.dumps({"instruction": q, "output": a}) for q, a in QA]
    (inp / "malformed.jsonl").write_text("\n".join([good[0], '{"instruction": "What is a lien?", "output": ', *good[1:]]))
    (inp / "alpaca.jsonl").write_text("\n".join(good) + "\n")
    (inp / "wrong_type.jsonl").write_text(good[0] + "\n" + json.dumps({"instruction": "What is a lien?",
                                                                        "output": ["a", "list"]}) + "\n")
    (inp / "latin1.jsonl").write_bytes(("\n".join(good) + "\n").encode()
                                       + '{"instruction": "Qu\'est-ce qu\'un caf\xe9?", "output": "x"}\n'.encode("latin-1"))
    (inp / "empty.jsonl").write_bytes(b"")
    (inp / "extra.csv").write_text("instruction,output\nWhat is a lien?,A claim on property.\n"
                                   "What is a tort?,A civil wrong, not a crime.\n")
    (inp / "nothing").mkdir()
    (inp / "merged").mkdir()
    (inp / "merged" / "healthcare").symlink_to(tiny_model_dir)  # a stage run for healthcare reads merged/healthcare
    return {"inp": inp, "out": root / "out", "model": tiny_model_dir}


def stage_paths(stage: str, inp: Path, out: Path, model: Path) -> list[str]:
    """Every path a stage reads points at the inputs and every path it writes into `out`."""
    writes = [f"paths.metrics={out}/metrics", f"paths.gguf={out}/gguf", f"paths.adapter={out}/adapter",
              f"paths.reranker={out}/reranker", f"train.checkpoint_dir={out}/checkpoints",
              f"train.live_dir={out}/live", "threads=1"]
    if stage == "prepare":
        return [*writes, f"paths.processed={out}/processed", f"paths.base_model={inp}/no_base"]
    if stage == "base":
        return [*writes, f"paths.base_model={out}/base"]
    merged = f"{out}/merged" if stage == "train" else f"{inp}/merged"  # <merged>/healthcare is the tiny model
    return [*writes, "model=tiny-random", "domains=[healthcare]", f"paths.processed={inp}/processed",
            f"paths.base_model={model}",
            f"paths.merged={merged}", "serve.port=1", "serve.rerank=false"]


def run_row(row: Row, ws: dict[str, Path]):
    args = [a.format(**ws) for a in row.args]
    if "--params" not in args:  # --params takes no overrides (that is a row of its own)
        args = stage_paths(row.stage, ws["inp"], ws["out"], ws["model"]) + args
    return run_cli(row.stage, *args, timeout=600)


def check_row(row: Row, ws: dict[str, Path]) -> None:
    try:
        result = run_row(row, ws)
        line = assert_one_line_error(result, *(e.format(**ws) for e in row.expected))
        written = sorted(str(p.relative_to(ws["out"])) for p in ws["out"].rglob("*")) if ws["out"].exists() else []
        assert written == [], f"{line}\nbut it wrote {written}"
    finally:
        shutil.rmtree(ws["out"], ignore_errors=True)  # the next row starts from nothing again


@pytest.mark.parametrize("name", list(ROWS))
def test_bad_input_is_one_line_error(workspace, name):
    check_row(ROWS[name], workspace)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SLOW_ROWS))
def test_bad_input_is_one_line_error_after_loading(workspace, name):
    check_row(SLOW_ROWS[name], workspace)

