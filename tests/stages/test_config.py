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


def test_a_new_domain_file_with_its_own_data_gets_its_own_paths(tmp_path, monkeypatch):
    """conf/domain/<name>.yaml is all a domain needs: its `data` block replaces the shared data source, and its
    stage runs write into folders of their own."""
    import shutil

    from stages.config import domain_names, for_domain

    shutil.copytree(REPO_ROOT / "conf", tmp_path / "conf")
    (tmp_path / "conf" / "domain" / "tax.yaml").write_text(
        "# dvc exp run -S 'domains=[tax]'\nname: tax\ndomains: [tax]\nsystem_prompt: You answer tax questions.\n"
        "data:\n  source: local_file\n  path: data/raw/tax.jsonl\n")
    monkeypatch.chdir(tmp_path)
    cfg = for_domain(compose(["domains=[healthcare,tax]", "data=synthetic"]), "tax")
    assert domain_names(cfg) == ["healthcare", "tax"]
    assert (cfg.domain.name, cfg.domain.system_prompt) == ("tax", "You answer tax questions.")
    assert (cfg.data.source, cfg.data.path) == ("local_file", "data/raw/tax.jsonl")
    assert cfg.data.held_out_facts == 0.25  # the shared data settings it does not replace stay
    assert (cfg.paths.adapter, cfg.paths.merged, cfg.paths.metrics, cfg.paths.adapter_gguf) == (
        "models/adapter/tax", "models/merged/tax", "metrics/tax", "models/adapters/tax")
    assert (cfg.train.checkpoint_dir, cfg.train.live_dir) == ("models/checkpoints/tax", "metrics/tax/train_live")
    with pytest.raises(StageError, match=r"domains: 'atlantis' has no .*atlantis.yaml") as err:
        for_domain(compose([]), "atlantis")
    assert "\n" not in str(err.value)
    (tmp_path / "conf" / "domain" / "wrong.yaml").write_text("name: other\n")
    with pytest.raises(StageError, match=r"wrong.yaml: name must be 'wrong'"):
        for_domain(compose([]), "wrong")
    with pytest.raises(StageError, match="names a domain twice"):
        domain_names(compose(["domains=[tax,tax]"]))


def test_a_domain_config_is_kept_for_its_domain_and_refused_for_another():
    """`accelerate launch` workers get a config already made for one domain: for_domain leaves it as it is
    (no second suffix), and refuses to turn it into another domain's."""
    from stages.config import for_domain

    legal = for_domain(compose([]), "legal")
    assert legal.paths.metrics.endswith("metrics/legal")
    again = for_domain(legal, "legal")
    assert again.paths.metrics == legal.paths.metrics and again.train.checkpoint_dir == legal.train.checkpoint_dir
    assert for_domain(legal).paths.adapter == legal.paths.adapter
    with pytest.raises(StageError, match="already made for domain 'legal'; pass --domain legal") as err:
        for_domain(legal, "finance")
    assert "\n" not in str(err.value)
