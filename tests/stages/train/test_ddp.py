"""`train.launcher=accelerate`: the stage relaunches itself with `accelerate launch` as 2 DDP processes (gloo, CPU)."""

from __future__ import annotations

import json

import pytest

from stages.errors import StageError
from stages.train.launch import accelerate_command
from stages.train.main import main
from stages.train.settings import TrainSettings


def test_two_process_ddp_run_splits_the_data_and_writes_outputs_once(train_cfg, tmp_path):
    from stages.config import for_domain

    main(for_domain(train_cfg("train.launcher=accelerate", "train.num_processes=2", "threads=2")))
    # the workers got this domain's config as it is: its paths, once
    metrics = json.loads((tmp_path / "metrics" / "healthcare" / "train.json").read_text())
    assert metrics["world_size"] == 2
    # 16 rows, 4 per process per step, 2 processes: 2 steps per epoch, so 8 steps are 4 epochs (1 process: 2).
    assert metrics["steps"] == 8 and metrics["epochs"] == pytest.approx(4.0)
    assert metrics["final_eval_loss"] < metrics["initial_eval_loss"]
    assert (tmp_path / "models" / "merged" / "healthcare" / "model.safetensors").is_file()
    assert (tmp_path / "models" / "adapter" / "healthcare" / "adapter_model.safetensors").is_file()


def test_accelerate_command_uses_torchrun_launcher_or_a_given_config(tmp_path):
    cmd = accelerate_command(TrainSettings(launcher="accelerate", num_processes=2), tmp_path / "p.yaml")
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--num_processes") + 1] == "2" and "--multi_gpu" in cmd
    assert cmd[-5:] == ["-m", "stages.cli", "train", "--params", str(tmp_path / "p.yaml")]

    fsdp = tmp_path / "fsdp.yaml"
    fsdp.write_text("distributed_type: FSDP\n")
    cmd = accelerate_command(TrainSettings(num_processes=2, accelerate_config=str(fsdp)), tmp_path / "p.yaml")
    assert cmd[cmd.index("--config_file") + 1] == str(fsdp) and "--multi_gpu" not in cmd
    with pytest.raises(StageError, match="accelerate_config=.*missing.yaml: file not found"):
        accelerate_command(TrainSettings(accelerate_config=str(tmp_path / "missing.yaml")), tmp_path / "p.yaml")
