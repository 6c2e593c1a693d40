"""Model loading and LoRA wrapping: 4-bit gradients, target-module checks, checkpoint fingerprints."""

from __future__ import annotations

import json

import pytest
import torch

from stages.errors import StageError
from stages.train.checkpoints import FINGERPRINT_FILE, prepare_checkpoint_dir
from stages.train.model import apply_lora, linear_module_names, load_base_model
from stages.train.settings import LoraSettings, QuantSettings


def first_layer_lora_grads(model, ids) -> list[torch.Tensor | None]:
    model.train()
    model.zero_grad()
    model(input_ids=ids, labels=ids).loss.backward()
    return [p.grad for n, p in model.named_parameters() if "layers.0." in n and "lora_A" in n]


def test_qlora_gradients_still_reach_early_layers_after_an_evaluation(tiny_model_dir):
    model = load_base_model(tiny_model_dir, "qlora", QuantSettings(quant_type="nf4", double_quant=True), False)
    assert model.is_loaded_in_4bit
    model = apply_lora(model, LoraSettings(r=4, dropout=0.0, target_modules=["q_proj", "v_proj"]))
    for name, param in model.named_parameters():
        if "lora_B" in name:  # B starts at zero; make A's gradient non-zero
            torch.nn.init.normal_(param, 0, 0.1)
    ids = torch.randint(0, 1000, (2, 12))
    before = first_layer_lora_grads(model, ids)
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)  # an eval pass, as Trainer runs every eval_steps
    after = first_layer_lora_grads(model, ids)
    assert all(g is not None for g in after), "no gradient reached layer 0 after eval (bnb CPU repacking)"
    for b, a in zip(before, after, strict=True):
        torch.testing.assert_close(a, b)


def test_fp4_without_double_quant_loads(tiny_model_dir):
    model = load_base_model(tiny_model_dir, "qlora", QuantSettings(quant_type="fp4", double_quant=False), False)
    linear = model.model.layers[0].self_attn.q_proj
    assert linear.weight.quant_state.quant_type == "fp4" and not linear.weight.quant_state.nested


def test_unknown_target_module_names_the_available_ones(tiny_model_dir):
    model = load_base_model(tiny_model_dir, "lora", QuantSettings(), False)
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= set(
        linear_module_names(model))
    with pytest.raises(StageError, match=r"query_key_value not in the base model; available Linear modules: "):
        apply_lora(model, LoraSettings(target_modules=["q_proj", "query_key_value"]))


def test_stale_checkpoints_of_another_experiment_are_wiped(tmp_path):
    ckpt = tmp_path / "checkpoints"
    (ckpt / "checkpoint-4").mkdir(parents=True)
    (ckpt / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (ckpt / FINGERPRINT_FILE).write_text(json.dumps({"id": "other-experiment"}))
    fingerprint = {"settings": {"lr": 1e-4}, "data": {"x": "1"}, "base_model": {"m": "2"}}

    assert prepare_checkpoint_dir(ckpt, fingerprint) is None
    assert not (ckpt / "checkpoint-4").exists()

    # Same experiment: the newest complete checkpoint wins; a half-written newer one is removed.
    for step in (4, 8):
        (ckpt / f"checkpoint-{step}").mkdir()
        (ckpt / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (ckpt / "checkpoint-12").mkdir()
    (ckpt / "checkpoint-12" / "trainer_state.json").write_text('{"global_st')  # killed mid-write
    assert prepare_checkpoint_dir(ckpt, fingerprint) == ckpt / "checkpoint-8"
    assert not (ckpt / "checkpoint-12").exists()


def test_model_hf_adapts_every_linear_layer_of_any_family(tmp_path):
    """model=hf targets all-linear, so a family with fused projections (Phi-3) trains without naming them."""
    from stages.config import compose
    from stages.train.settings import TrainSettings
    from tests.stages.quantize.family_models import build

    settings = TrainSettings.from_config(compose(["model=hf", "model.path=unused"]))
    assert settings.lora.target_modules == "all-linear"
    model = load_base_model(build("phi3", tmp_path / "phi3"), mode="lora", quant=QuantSettings(), on_cuda=False)
    model = apply_lora(model, settings.lora, gradient_checkpointing=False)
    adapted = {name.split(".lora_A")[0].split(".")[-1] for name, _ in model.named_parameters() if "lora_A" in name}
    assert adapted == {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}

