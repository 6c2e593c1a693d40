"""Run the train stage under `accelerate launch` (DDP, or FSDP/DeepSpeed through an accelerate config file).

    domain-llm train train.launcher=accelerate train.num_processes=2          # DDP, 2 processes (gloo on CPU)
    domain-llm train train.launcher=accelerate train.accelerate_config=conf/accelerate/fsdp.yaml

The stage process writes the composed config to a temp params file and starts
`accelerate launch --multi_gpu --num_processes N -m stages.cli train --params FILE`; each worker runs the same
stage with the same config, and Trainer picks up the process group accelerate/torchrun set up. `--multi_gpu` is
accelerate's name for its torchrun launcher; without CUDA the process group uses gloo on CPU.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from stages.errors import StageError
from stages.train.settings import TrainSettings

log = logging.getLogger(__name__)

WORKER_ENV = "DOMAIN_LLM_TRAIN_WORKER"  # set for the launched workers so they train instead of relaunching


def is_launched_worker() -> bool:
    return os.environ.get(WORKER_ENV) == "1"


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def accelerate_command(settings: TrainSettings, params_file: Path) -> list[str]:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(settings.num_processes),
           "--num_machines", "1", "--main_process_port", "0"]
    if settings.accelerate_config:
        config = Path(settings.accelerate_config)
        if not config.is_file():
            raise StageError(f"train.accelerate_config={config}: file not found; create it with `accelerate config` "
                             "or see conf/accelerate/fsdp.yaml")
        cmd += ["--config_file", str(config)]
    else:
        cmd += ["--multi_gpu" if settings.num_processes > 1 else "--cpu", "--mixed_precision", "no",
                "--dynamo_backend", "no"]
    return [*cmd, "-m", "stages.cli", "train", "--params", str(params_file)]


def relaunch_with_accelerate(cfg: DictConfig, settings: TrainSettings) -> None:
    """Start N workers and wait; a failed worker becomes one StageError line (its traceback is printed above)."""
    with tempfile.TemporaryDirectory(prefix="domain-llm-train-") as tmp:
        params_file = Path(tmp) / "params.yaml"
        OmegaConf.save(cfg, params_file, resolve=True)
        cmd = accelerate_command(settings, params_file)
        log.info("launching %d processes: %s", settings.num_processes, " ".join(cmd))
        env = {**os.environ, WORKER_ENV: "1"}
        if settings.threads > 0:
            # torch would otherwise start one thread per core in every worker and oversubscribe the CPU.
            env["OMP_NUM_THREADS"] = str(max(1, settings.threads // settings.num_processes))
        result = subprocess.run(cmd, env=env, check=False)
    if result.returncode != 0:
        raise StageError(f"accelerate launch exited with status {result.returncode}; the worker's error is above")
