"""The train stage end to end on the tiny model: LoRA and QLoRA (CPU, fp32 compute) reduce loss, outputs and
metrics are written, the merged model matches the adapter, a trained model stops, bad input fails clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stages.errors import StageError
from stages.fileio import write_jsonl
from stages.manifest import served_model_facts
from stages.train import api
from stages.train.main import main
from stages.train.merge import load_adapter_model
from tests.stages.train.conftest import SYSTEM


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_model_dir):
    """One LoRA run of the stage shared by the output/parity tests (training is the slow part)."""
    from stages.config import compose
    from stages.train.checkpoints import FINGERPRINT_FILE  # noqa: F401  (import check: module loads)
    from tests.stages.train.conftest import chat_records, train_overrides

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("lora_run")
    folder = root / "data" / "processed" / "healthcare"
    write_jsonl(folder / "train.jsonl", chat_records(16))
    write_jsonl(folder / "validation.jsonl", chat_records(4, offset=3))
    cfg = compose(train_overrides(root, tiny_model_dir))
    main(cfg)
    return root, cfg


def test_lora_run_reduces_loss_and_writes_every_output(lora_run, tiny_model_dir):
    root, cfg = lora_run
    metrics = json.loads((root / "metrics" / "train.json").read_text())
    assert metrics["mode"] == "lora" and metrics["device"] == "cpu"
    assert metrics["steps"] == 8
    assert metrics["final_eval_loss"] < metrics["initial_eval_loss"]  # first eval is at step 0: the base model
    assert metrics["final_train_loss"] < metrics["first_step_train_loss"]
    assert 0 < metrics["trainable_params"] < metrics["total_params"]
    assert metrics["train_tokens_per_second"] > 0 and metrics["peak_rss_mb"] > 0 and metrics["wall_seconds"] > 0

    adapter, merged = Path(cfg.paths.adapter), Path(cfg.paths.merged)
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "tokenizer.json").is_file()
    assert (merged / "model.safetensors").is_file() and (merged / "chat_template.jinja").is_file()
    assert not list(merged.glob("*.bin")) and not list(merged.glob("*.pt"))
    card = (merged / "README.md").read_text()
    for expected in ("license: apache-2.0", "lora.r | 8", "eval_loss", "train.jsonl", "## Licence", SYSTEM):
        assert expected in card
    # What the model was trained with travels with it: a server of this folder uses this system prompt.
    assert served_model_facts(merged) == {"domain": "healthcare", "system_prompt": SYSTEM}
    # The merged generation config stops on every end-of-turn token, not one overwritten id.
    eos = json.loads((merged / "generation_config.json").read_text())["eos_token_id"]
    assert isinstance(eos, list) and eos[0] == 2  # SmolLM2's <|im_end|>

    # DVCLive curves keyed by optimizer step: eval at 0, 4, 8; train loss logged every 2 steps (+ step 1).
    eval_rows = (root / "metrics" / "live" / "plots" / "metrics" / "eval" / "loss.tsv").read_text().splitlines()
    assert [row.split("\t")[0] for row in eval_rows[1:]] == ["0", "4", "8"]
    train_rows = (root / "metrics" / "live" / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()
    assert [row.split("\t")[0] for row in train_rows[1:]] == ["1", "2", "4", "6", "8"]


def test_merged_model_matches_adapter_model(lora_run, tiny_model_dir):
    root, cfg = lora_run
    ids = torch.tensor([[1, 520, 4438, 314, 253, 1789, 30, 2]])
    with torch.no_grad():
        peft_model = load_adapter_model(tiny_model_dir, Path(cfg.paths.adapter))
        adapter_logits = peft_model(input_ids=ids).logits
        with peft_model.disable_adapter():
            base_logits = peft_model(input_ids=ids).logits
        merged, _ = api.load_trained_model(cfg.paths.merged)
        merged_logits = merged(input_ids=ids).logits
    assert (adapter_logits - base_logits).abs().max() > 1e-3  # the adapter really changed the model
    assert (merged_logits - adapter_logits).abs().max() <= 1e-4


def test_qlora_on_cpu_with_fp32_compute_reduces_loss(train_cfg, tmp_path):
    main(train_cfg("train=qlora"))
    metrics = json.loads((tmp_path / "metrics" / "train.json").read_text())
    assert metrics["mode"] == "qlora"
    assert metrics["final_eval_loss"] < metrics["initial_eval_loss"]
    assert (tmp_path / "models" / "merged" / "model.safetensors").is_file()
    assert "quant.type | nf4" in (tmp_path / "models" / "merged" / "README.md").read_text()


def test_trained_tiny_model_stops_with_end_of_turn(tiny_model_dir, tmp_path):
    from tests.stages.train.conftest import chat_records

    rows = chat_records(4)
    model, tokenizer = api.load_model_and_tokenizer(tiny_model_dir, mode="lora")
    # The eos row must not be zero (tied embeddings would pin its logit at 0): the base stage initialises it.
    assert model.get_input_embeddings().weight[tokenizer.eos_token_id].abs().sum() > 0
    prompts = [row["messages"][:-1] for row in rows]
    before = [api.generate_completion(model, tokenizer, p, max_new_tokens=24) for p in prompts]
    model = api.setup_lora(model, r=16, alpha=32, dropout=0.0)
    api.train(model, tokenizer, rows, max_steps=30, batch_size=4, lr=1e-2, warmup_ratio=0.0, logging_steps=10,
              save_steps=1000, checkpoint_dir=str(tmp_path / "ckpt"), threads=1)
    after = [api.generate_completion(model, tokenizer, p, max_new_tokens=24) for p in prompts]

    assert all(g["finish_reason"] == "length" for g in before)  # the untrained model never closes its turn
    stopped = [g for g in after if g["finish_reason"] == "stop"]
    assert len(stopped) >= 3  # a 2-layer random model may still fumble one of the four
    # Every training answer ends with "." then <|im_end|>: the model learned to close its turn after a sentence.
    assert all(g["completion_tokens"] < 24 and g["text"].endswith(".") for g in stopped)


def test_missing_base_model_is_a_clear_error(train_cfg, tmp_path):
    with pytest.raises(StageError, match=r"nowhere: base model not found .*domain-llm base"):
        main(train_cfg(f"paths.base_model={tmp_path / 'nowhere'}"))


def test_unknown_target_module_lists_the_available_ones(train_cfg):
    with pytest.raises(StageError, match=r"target_modules: qkv_proj not in the base model; available Linear "
                                         r"modules: .*down_proj.*q_proj"):
        main(train_cfg("train.lora.target_modules=[q_proj,qkv_proj]"))


def test_training_set_without_rows_is_a_clear_error(train_cfg, tmp_path):
    write_jsonl(tmp_path / "data" / "processed" / "healthcare" / "train.jsonl", [])
    with pytest.raises(StageError, match=r"healthcare/train.jsonl: no rows"):
        main(train_cfg())
    assert not (tmp_path / "models" / "merged").exists() and not (tmp_path / "metrics" / "train.json").exists()
