"""The stage end to end on the tiny model: published GGUFs, manifest, Modelfile, metrics; failures leave the
previous outputs untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stages.errors import StageError
from stages.fileio import write_jsonl
from stages.manifest import sha256_file
from stages.quantize.main import main


def stage_cfg(cfg_factory, model_dir: Path, root: Path, records: list[dict], *extra: str):
    cfg = cfg_factory(f"quantize.source={model_dir}", "domains=[healthcare]", f"paths.processed={root}/processed",
                      f"paths.gguf={root}/gguf",
                      f"paths.metrics={root}/metrics", "threads=1", "quantize.benchmark.max_examples=4",
                      "quantize.benchmark.decode_tokens=8", "quantize.benchmark.n_ctx=256", *extra)
    write_jsonl(root / "processed" / cfg.domain.name / "test.jsonl", records)
    return cfg


def test_stage_publishes_verified_ggufs_manifest_and_metrics(cfg_factory, tiny_model_dir, test_records, tmp_path):
    cfg = stage_cfg(cfg_factory, tiny_model_dir, tmp_path, test_records, "quantize.types=[q4_k_m,q8_0]")
    metrics = main(cfg)
    out = tmp_path / "gguf"
    assert sorted(p.name for p in out.iterdir()) == ["Modelfile", "manifest.json", "model-f16.gguf",
                                                    "model-q4_k_m.gguf", "model-q8_0.gguf"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["type"] for f in manifest["files"]] == ["f16", "q4_k_m", "q8_0"]
    for entry in manifest["files"]:
        assert entry["sha256"] == sha256_file(out / entry["file"])
        assert entry["size_bytes"] == (out / entry["file"]).stat().st_size
    assert manifest["source_model"]["architectures"] == ["LlamaForCausalLM"]
    assert manifest["params"]["quantize"]["types"] == ["q4_k_m", "q8_0"]
    assert "FROM ./model-q4_k_m.gguf" in (out / "Modelfile").read_text()

    assert json.loads((tmp_path / "metrics" / "quantize.json").read_text()) == metrics
    assert metrics["f16"]["delta_ppl_pct"] == 0 and metrics["f16"]["top1_agreement"] == 1
    for name in ("q4_k_m", "q8_0"):
        row = metrics[name]
        assert row["compression_ratio"] > 1 and 0 < row["size_reduction_pct"] < 100
        assert row["kl_divergence"] > 0 and 0 < row["top1_agreement"] <= 1
        assert row["decode_tokens_per_s"] > 0 and row["prompt_tokens_per_s"] > 0 and row["load_s"] > 0
        assert row["tokens_scored"] > 20
    # coarser weights move the distribution more: q4_k_m (q5_0 fallbacks here) vs q8_0
    assert metrics["q4_k_m"]["kl_divergence"] > metrics["q8_0"]["kl_divergence"]


def test_failures_leave_previous_outputs(cfg_factory, tiny_model_dir, test_records, tmp_path):
    published = tmp_path / "gguf"
    published.mkdir()
    (published / "model-q8_0.gguf").write_bytes(b"previous")
    cfg = stage_cfg(cfg_factory, tiny_model_dir, tmp_path, test_records, "quantize.types=[q4_k_m,q9_9]")
    with pytest.raises(StageError, match="q9_9"):
        main(cfg)
    cfg = stage_cfg(cfg_factory, tmp_path / "missing", tmp_path, test_records)
    with pytest.raises(StageError, match="dvc repro base"):
        main(cfg)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert (published / "model-q8_0.gguf").read_bytes() == b"previous"
    assert not (tmp_path / "metrics" / "quantize.json").exists()


def test_tensor_type_overrides_and_imatrix_from_config(cfg_factory, tiny_model_dir, test_records, tmp_path):
    cfg = stage_cfg(cfg_factory, tiny_model_dir, tmp_path, test_records, "quantize.types=[q4_k_m,iq2_xxs]",
                    "quantize.tensor_types={q4_k_m: {ffn_down: q8_0, attn_output: q4_0}}",
                    "quantize.imatrix.enabled=true", "quantize.imatrix.split=validation",
                    "quantize.imatrix.max_examples=3")
    write_jsonl(tmp_path / "processed" / cfg.domain.name / "validation.jsonl", test_records[:3])
    metrics = main(cfg)
    manifest = {f["type"]: f for f in json.loads((tmp_path / "gguf" / "manifest.json").read_text())["files"]}
    q4 = manifest["q4_k_m"]
    assert q4["tensor_type_overrides"] == {"ffn_down": "q8_0", "attn_output": "q4_0"}
    assert q4["tensor_types"]["Q4_0"] == 2 and q4["imatrix_entries"] == 15
    assert manifest["iq2_xxs"]["tensor_type_overrides"] == {} and manifest["iq2_xxs"]["imatrix_entries"] == 15
    assert metrics["q4_k_m"]["bits_per_weight"] == q4["bits_per_weight"]
    assert 0 < metrics["iq2_xxs"]["bits_per_weight"] < metrics["q4_k_m"]["bits_per_weight"]


def test_imatrix_never_calibrates_on_the_scored_split(cfg_factory, tiny_model_dir, test_records, tmp_path):
    cfg = stage_cfg(cfg_factory, tiny_model_dir, tmp_path, test_records, "quantize.imatrix.enabled=true",
                    "quantize.imatrix.split=test")
    with pytest.raises(StageError, match="quantize.imatrix.split"):
        main(cfg)
    assert not (tmp_path / "gguf").exists()


@pytest.mark.parametrize("value", ["{q4_k_m: q6_k}", "[q6_k]"])
def test_misshapen_tensor_types_is_a_one_line_error(cfg_factory, tiny_model_dir, test_records, tmp_path, value):
    cfg = stage_cfg(cfg_factory, tiny_model_dir, tmp_path, test_records, f"quantize.tensor_types={value}")
    with pytest.raises(StageError, match=r"quantize.tensor_types.*expected \{<quantize type>") as err:
        main(cfg)
    assert "\n" not in str(err.value) and not (tmp_path / "gguf").exists()


def test_manifest_and_modelfile_carry_the_system_prompt_the_model_was_trained_with(
        cfg_factory, tiny_model_dir, test_records, tmp_path):
    import shutil

    from stages.manifest import served_model_facts, write_manifest

    # The shared base was trained for no domain: no system prompt, whatever the config's domain says.
    cfg = stage_cfg(cfg_factory, tiny_model_dir, tmp_path, test_records, "quantize.types=[q8_0]")
    main(cfg)
    out = tmp_path / "gguf"
    assert served_model_facts(out / "model-q8_0.gguf")["system_prompt"] is None
    assert "SYSTEM" not in (out / "Modelfile").read_text()
    # A merged model (quantize.source) carries the one its manifest says (train writes it).
    merged = tmp_path / "merged"
    shutil.copytree(tiny_model_dir, merged)
    write_manifest(merged, {}, {}, {}, {}, served={"domain": "legal", "system_prompt": "From the train stage."})
    main(stage_cfg(cfg_factory, merged, tmp_path, test_records, "quantize.types=[q8_0]"))
    assert served_model_facts(out / "model-q8_0.gguf") == {"domain": "legal", "system_prompt": "From the train stage."}
    assert 'SYSTEM """From the train stage."""' in (out / "Modelfile").read_text()
