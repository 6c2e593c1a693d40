"""align@<domain> on the tiny model: each method tunes the SFT adapter and publishes the next adapter and merged
model the later stages then use; `none` publishes only the marker; TRL sees exactly the ids `train` supervises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stages.align.main import main, paired_rows
from stages.align.resolve import trained_model
from stages.config import compose
from stages.errors import StageError
from stages.fileio import write_jsonl
from stages.inference.grounding import GROUNDING
from stages.prepare.records import make_record
from tests.stages.train.conftest import SYSTEM, chat_records, train_overrides


def align_records() -> list[dict]:
    """Plain chats, numeric questions and grounded prompts: every kind the judge and the rewards handle."""
    rows = chat_records(8)
    for i in range(4):
        rows.append(make_record("healthcare", f"What is {i + 2} times 12 mg? (dose {i})", f"It is {(i + 2) * 12} mg.",
                                "synthetic", system_prompt=SYSTEM, numeric_answer=float((i + 2) * 12)))
    for i in range(4):
        answer = f"Adults need {7 + i % 2} hours of sleep."
        context = f"Context:\n[1] Diet: Eat vegetables.\n\n[2] Sleep: {answer}\n\nQuestion: How long to sleep? ({i})"
        row = make_record("healthcare", f"How long to sleep? ({i})", answer, "synthetic", system_prompt=SYSTEM,
                          grounded=True)
        row["messages"] = [{"role": "system", "content": f"{SYSTEM}\n\n{GROUNDING}"},
                           {"role": "user", "content": context}, {"role": "assistant", "content": answer}]
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def sft(tmp_path_factory, tiny_model_dir):
    """A tiny SFT run (train stage, 4 steps): the adapter and merged model align starts from."""
    from stages.train.main import main as train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("align")
    write_jsonl(root / "data" / "processed" / "healthcare" / "train.jsonl", align_records())
    train(compose(train_overrides(root, tiny_model_dir, "train.max_steps=4")))
    return root


def align_cfg(root: Path, base: Path, *extra: str):
    overrides = [*train_overrides(root, base), f"paths.aligned={root / 'models' / 'aligned'}",
                 f"align.checkpoint_dir={root / 'models' / 'align_checkpoints'}",
                 f"align.feedback_dir={root / 'data' / 'feedback'}", "align.questions=8",
                 "align.samples_per_question=1", "align.max_new_tokens=8", "align.batch_size=2", "align.max_steps=2",
                 "align.logging_steps=1", "align.save_steps=100", "align.lr=1e-3", *extra]
    return compose(overrides)  # paths already the domain's own (as train_overrides gives train)


def run_method(root: Path, base: Path, method: str, *extra: str) -> tuple[dict, object]:
    cfg = align_cfg(root, base, f"align.method={method}", *extra)
    return main(cfg), cfg


def check_published(cfg, metrics: dict, method: str, tuned_expected: bool = True) -> None:
    adapter, merged, used = trained_model(cfg)
    assert used == method and adapter == Path(cfg.paths.aligned) / "adapter"
    assert not (adapter / "ref").exists()  # TRL's frozen reference copy is not published
    assert (merged / "model.safetensors").is_file() and not list(merged.glob("*.bin"))
    assert f"({method.upper()}, TRL)" in (merged / "README.md").read_text()
    assert metrics["method"] == method and metrics["steps"] == 2 and metrics["rows"] > 0
    assert json.loads((Path(cfg.paths.metrics) / "align.json").read_text())["steps"] == 2
    tuned = load_file(adapter / "adapter_model.safetensors")
    before = load_file(Path(cfg.paths.adapter) / "adapter_model.safetensors")
    assert tuned.keys() == before.keys()
    changed = any(not torch.equal(tuned[k], before[k]) for k in tuned)
    assert changed or not tuned_expected, "the SFT adapter was not tuned"


def test_trl_tokenises_exactly_what_train_supervises(sft, tiny_model_dir):
    """DPO's prompt ids + chosen ids are train's ids for the same chat: template, BOS, end-of-turn token."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from stages.align.trainers import build_trainer
    from stages.inference.chat import hf_tokenizer
    from stages.train.data import hf_contract, tokenize_chat

    cfg = align_cfg(sft, tiny_model_dir, "align.method=dpo")
    tokenizer = AutoTokenizer.from_pretrained(cfg.paths.adapter)
    contract, tokenize = hf_contract(tokenizer)
    records = align_records()
    pairs = [{"record": r, "chosen": r["output"], "rejected": "No idea."} for r in records]
    policy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg.paths.adapter,
                                       is_trainable=True)
    trainer = build_trainer("dpo", policy, tokenizer, paired_rows(contract, pairs, []), cfg.align,
                            str(sft / "tok_check"), [])
    assert trainer.args.loss_type == ["sigmoid"] and trainer.args.loss_weights is None
    plain = hf_tokenizer(tokenizer, control=False)
    for record, row in zip(records, trainer.train_dataset, strict=True):
        ids, labels = tokenize_chat(contract, tokenize, record["messages"], plain)
        n_prompt = labels.count(-100)
        assert row["prompt_ids"] == ids[:n_prompt]
        assert row["chosen_ids"] == ids[n_prompt:]  # the answer and the end-of-turn token, nothing after
        assert row["chosen_ids"][-1] == contract.end_of_turn_id


def test_dpo_tunes_the_sft_adapter_and_the_later_stages_take_it(sft, tiny_model_dir):
    from stages import REPO_ROOT

    dvc_yaml = (REPO_ROOT / "dvc.yaml").read_text()
    # TRL's combined loss (RPO: DPO's sigmoid plus the chosen answers' NLL); the plain one is the tokenisation test's
    metrics, cfg = run_method(sft, tiny_model_dir, "dpo", "align.dpo_loss=[sigmoid,sft]",
                              "align.dpo_loss_weights=[1.0,0.5]")
    assert (REPO_ROOT / "dvc.yaml").read_text() == dvc_yaml  # DVCLive must not rewrite the project's map
    assert (Path(cfg.paths.metrics) / "align_live" / "plots" / "metrics" / "train" / "loss.tsv").is_file()
    check_published(cfg, metrics, "dpo")
    assert metrics["objective"] == ["sigmoid", "sft"]
    assert "Loss sigmoid + sft" in (Path(cfg.paths.aligned) / "merged" / "README.md").read_text()
    report = metrics["preferences"]
    # 8 questions, and each grounded one of them again with its one passage as [1]
    assert 8 < report["questions"] <= 12 and report["samples"] == report["questions"]
    assert sum(report["wrong_by_reason"].values()) == report["pairs"] == metrics["rows"]
    # off again: the marker alone, and the later stages are back on train's adapter
    main(align_cfg(sft, tiny_model_dir, "align.method=none"))
    assert trained_model(cfg)[2] == "none" and trained_model(cfg)[0] == Path(cfg.paths.adapter)
    assert not (Path(cfg.paths.aligned) / "adapter").exists()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["orpo", "kto"])
def test_orpo_and_kto_tune_the_sft_adapter(sft, tiny_model_dir, method):
    feedback = sft / "data" / "feedback" / "healthcare.jsonl"
    write_jsonl(feedback, [{"question": "How many bones?", "answer": "206 bones.", "label": True,
                            "domain": "healthcare", "system": None, "adapter_sha256": None, "model": "m",
                            "created": "2026-12-05T00:00:00Z"}])
    try:
        metrics, cfg = run_method(sft, tiny_model_dir, method)
    finally:
        feedback.unlink()
    check_published(cfg, metrics, method)
    assert (str(feedback) in metrics["preferences"]["local_rows"]) == (method == "kto")


@pytest.mark.slow
def test_grpo_learns_from_verifiable_rewards(sft, tiny_model_dir):
    metrics, cfg = run_method(sft, tiny_model_dir, "grpo", "align.grpo.num_generations=2",
                              "align.grpo.max_completion_length=8", "align.grpo.rewards=[numeric,citation,stop]")
    # A random tiny model earns the same reward on every completion of a question (no advantage, no gradient),
    # so only that it trained on the checkable questions with the rewards is checked here; the real run's
    # gain is measured in bench/align_gain.py.
    check_published(cfg, metrics, "grpo", tuned_expected=False)
    # the 4 numeric and 4 grounded records (no plain chat), and the grounded ones again with their one passage
    assert metrics["preferences"]["questions"] == 12
    assert "rewards/stop_reward/mean" in metrics["final"], metrics["final"]  # applies to every completion


def test_bad_method_and_unpaired_file_for_dpo_are_one_line_errors(sft, tiny_model_dir, tmp_path):
    with pytest.raises(StageError, match="align.method=ppo: use none, dpo, orpo, kto, grpo"):
        main(align_cfg(sft, tiny_model_dir, "align.method=ppo"))
    with pytest.raises(StageError, match=r"align.grpo.rewards=\['numeric', 'exact'\]: name one or more of numeric, "):
        main(align_cfg(sft, tiny_model_dir, "align.method=grpo", "align.grpo.rewards=[numeric,exact]"))
    unpaired = tmp_path / "u.jsonl"
    write_jsonl(unpaired, [{"prompt": "q", "completion": "a", "label": True}])
    with pytest.raises(StageError, match="use align.method=kto for those"):
        main(align_cfg(sft, tiny_model_dir, "align.method=dpo", f"align.preference_files=[{unpaired}]"))
