"""bench/gpu_check.py on CPU with the tiny shape, so the GPU check cannot rot between GPU runs: LoRA and QLoRA
train, the merge gives the adapter's logits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_runs_both_variants_and_the_merge_matches_the_adapter(tmp_path):
    out = tmp_path / "gpu_check.json"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--shape", "tiny", "--steps", "3",
                    "--seq-len", "32", "--batch-size", "2", "--output", str(out)], check=True, timeout=600,
                   capture_output=True)
    result = json.loads(out.read_text())
    assert result["shape"] == "tiny" and result["parameters"] > 0
    ran = {v["variant"]: v for v in result["variants"]}
    assert set(ran) | set(result["skipped"]) == {"lora_fp32", "qlora_nf4"}, result
    lora = ran["lora_fp32"]
    assert lora["tokens_per_second"] > 0 and lora["loss_last"] < lora["loss_first"]
    assert lora["adapter_effect_max_abs"] > 0, "the adapter trained, so merging it has something to preserve"
    assert lora["merge_max_abs_diff"] <= 1e-4 and lora["merge_argmax_agreement"] == 1.0
    for variant in ran.values():  # the pipeline's merge: the trained adapter over the base reloaded in fp32
        assert variant["fp32_merge_max_abs_diff"] <= 1e-4 and variant["fp32_merge_argmax_agreement"] == 1.0
    for reason in result["skipped"].values():
        assert reason, "a skipped variant says why"
