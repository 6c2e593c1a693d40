"""Compose the pipeline configuration from conf/ (Hydra) or read the composed params.yaml.

Two ways a stage gets its config, both giving the same DictConfig:
- under DVC (`dvc repro`, `dvc exp run -S ...`) the stage reads `params.yaml`, which DVC composed from conf/;
- standalone (`domain-llm prepare domain=legal data.num_samples=200`) we compose conf/ with the overrides.

We never use `@hydra.main` on conf/: it silently ignores `dvc exp run -S` (DVC issue 10186).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from stages import CONF_DIR
from stages.errors import StageError


def default_conf_dir() -> Path:
    """conf/ of the project we run in (DVC runs stages from the repo root), else the installed one."""
    local = Path.cwd() / "conf"
    return local if (local / "config.yaml").is_file() else CONF_DIR


def project_root(params: str | Path | None = None) -> Path:
    """The folder a run's relative paths mean: the folder holding the composed params file when one is read
    (`--params`), else the project whose conf/ `compose` reads. Never simply the working directory."""
    if params:
        return Path(params).resolve().parent
    return default_conf_dir().resolve().parent


def compose(overrides: Sequence[str] = (), config_dir: str | Path | None = None) -> DictConfig:
    """Compose conf/config.yaml with Hydra override strings (`domain=legal`, `train.lr=1e-4`)."""
    config_dir = config_dir or default_conf_dir()
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base=None):
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        first_line = str(e).strip().splitlines()[0]
        raise StageError(f"config override error: {first_line}") from None
    OmegaConf.resolve(cfg)
    return cfg


def dump_params(path: str | Path = "params.yaml", overrides: Sequence[str] = (),
                config_dir: str | Path | None = None) -> bool:
    """Write the composed config to params.yaml the way `dvc exp run` does; True when it changed."""
    config_dir = config_dir or default_conf_dir()
    from dvc.utils.hydra import compose_and_dump

    from stages.fileio import atomic_path

    path = Path(path)
    before = path.read_text() if path.exists() else None
    with atomic_path(path, suffix=".yaml") as tmp:
        compose_and_dump(tmp, str(Path(config_dir).resolve()), None, "config", str(Path(config_dir).parent),
                         list(overrides))
    return path.read_text() != before


def load_params(path: str | Path = "params.yaml") -> DictConfig:
    """Read a composed params.yaml (what DVC stages use)."""
    path = Path(path)
    if not path.is_file():
        raise StageError(f"{path}: params file not found; run `domain-llm params` (or `make params`) to compose it from conf/")
    cfg = OmegaConf.load(path)
    if not isinstance(cfg, DictConfig):
        raise StageError(f"{path}: expected a mapping at the top level")
    return cfg


def stage_config(params: str | None, overrides: Sequence[str]) -> DictConfig:
    """The config a stage entry point runs with: params.yaml when given, else conf/ + overrides."""
    if params:
        if overrides:
            raise StageError("give either --params FILE or Hydra overrides, not both "
                             "(use `dvc exp run -S ...` to override a DVC run)")
        return load_params(params)
    return compose(overrides)


def domain_spec(name: str, config_dir: str | Path | None = None) -> DictConfig:
    """conf/domain/<name>.yaml: the domain's name, system prompt, synthetic topics and optional `data` block."""
    path = Path(config_dir or default_conf_dir()) / "domain" / f"{name}.yaml"
    if not path.is_file():
        raise StageError(f"domains: {name!r} has no {path}; add one (name, system_prompt, domains, optional data) "
                         "or remove it from `domains`")
    spec = OmegaConf.load(path)
    if not isinstance(spec, DictConfig) or spec.get("name") != name:
        raise StageError(f"{path}: name must be {name!r} (the file's own name)")
    return spec


def for_domain(cfg: DictConfig, name: str | None = None) -> DictConfig:
    """The config of one domain's stage run: with `name`, that domain's conf/domain/<name>.yaml (its `data`
    block over the shared `data`); without, the composed `domain`. Per-domain outputs get their own folders:
    models/adapter/<name>, models/merged/<name>, models/adapters/<name>, metrics/<name>, models/checkpoints/<name>."""
    if cfg.get("domain_run") is not None:  # already one domain's (the params file `accelerate launch` hands over)
        if name not in (None, cfg.domain_run):
            raise StageError(f"--domain {name}: this config was already made for domain {cfg.domain_run!r}; "
                             f"pass --domain {cfg.domain_run} or the params file `domain-llm params` writes")
        return cfg
    cfg = copy.deepcopy(cfg)
    OmegaConf.set_struct(cfg, False)  # a domain's `data` block may bring keys the shared one lacks
    if name is not None:
        spec = domain_spec(name)
        data = spec.pop("data", None)
        cfg.domain = spec
        if data is not None:
            cfg.data = OmegaConf.merge(cfg.data, data)
    name = str(cfg.domain.name)
    from stages.inference.adapters import check_domain_name

    check_domain_name(name, "domain.name")
    metrics_root, live = str(cfg.paths.metrics), str(cfg.train.live_dir)
    for key in ("adapter", "merged", "aligned", "adapter_gguf", "metrics"):
        cfg.paths[key] = f"{cfg.paths[key]}/{name}"
    cfg.train.checkpoint_dir = f"{cfg.train.checkpoint_dir}/{name}"
    # curves inside the metrics folder move into the domain's (metrics/<name>/train_live), others get a subfolder
    cfg.train.live_dir = (f"{cfg.paths.metrics}{live[len(metrics_root):]}" if live.startswith(metrics_root + "/")
                          else f"{live}/{name}")
    cfg.domain_run = name
    return cfg


def domain_names(cfg: DictConfig) -> list[str]:
    """`domains`: the list the per-domain stages run over (dvc.yaml foreach); a shared stage reads all of them."""
    names = [str(n) for n in (cfg.get("domains") or [cfg.domain.name])]
    if len(set(names)) != len(names):
        raise StageError(f"domains: {names} names a domain twice")
    return names
