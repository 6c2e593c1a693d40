"""stages.config: conf/ composes with overrides; params.yaml is what `dvc exp run` would write."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from stages import REPO_ROOT
from stages.config import compose, dump_params, load_params, stage_config
from stages.errors import StageError


def test_defaults_compose_every_group():
    cfg = compose()
    for group in ("domain", "data", "prepare", "model", "train", "eval", "quantize", "reranker", "serve"):
        assert group in cfg, group
    assert cfg.domain.name == "healthcare"
    assert cfg.model.name == "smollm2-135m"


def test_group_and_key_overrides():
    cfg = compose(["domain=legal", "data.num_samples=200", "model=tiny-random"])
    assert cfg.domain.name == "legal"
    assert cfg.data.num_samples == 200
    assert cfg.model.source == "tiny_random"


def test_bad_override_is_one_line_stage_error():
    with pytest.raises(StageError, match="config override error") as err:
        compose(["domain=atlantis"])
    assert "\n" not in str(err.value)


def test_committed_params_yaml_matches_conf(tmp_path):
    """params.yaml in git must be the composition of conf/ (else `dvc repro` runs stale settings)."""
    out = tmp_path / "params.yaml"
    dump_params(out)
    assert OmegaConf.load(out) == OmegaConf.load(REPO_ROOT / "params.yaml")
    assert OmegaConf.load(out) == compose()


def test_dump_params_reports_change(tmp_path):
    out = tmp_path / "params.yaml"
    assert dump_params(out, ["domain=finance"]) is True
    assert dump_params(out, ["domain=finance"]) is False
    assert load_params(out).domain.name == "finance"


def test_stage_config_refuses_params_and_overrides_together(tmp_path):
    out = tmp_path / "params.yaml"
    dump_params(out)
    assert stage_config(str(out), []).domain.name == "healthcare"
    with pytest.raises(StageError, match="not both"):
        stage_config(str(out), ["domain=legal"])
    with pytest.raises(StageError, match="params file not found"):
        load_params(tmp_path / "missing.yaml")
