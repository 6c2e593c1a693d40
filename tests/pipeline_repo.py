"""Build a throw-away copy of the project as a real git + DVC repo, configured for tiny, fast runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from stages import REPO_ROOT

# Appended to the temp repo's conf/config.yaml (`_self_` comes last, so these win over the groups).
TINY_OVERRIDES = """
data:
  num_samples: 60
  test_questions: 10
"""


def run(cmd: list[str] | str, cwd: Path, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
                            shell=isinstance(cmd, str))
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def make_pipeline_repo(dest: Path, extra_conf: str = TINY_OVERRIDES, domains: tuple[str, ...] = ("healthcare",)
                       ) -> Path:
    """Copy conf/, stages/, dvc.yaml into `dest`, default model tiny-random, the pipeline over `domains`, then
    git+dvc init and commit."""
    for name in ("conf", "stages", "serving", "data/docs", "data/feedback"):
        shutil.copytree(REPO_ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.jsonl"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy2(REPO_ROOT / name, dest / name)
    config = dest / "conf" / "config.yaml"
    text = config.read_text().replace("- model: smollm2-135m", "- model: tiny-random")
    text = re.sub(r"^domains: .*$", f"domains: [{', '.join(domains)}]", text, count=1, flags=re.M)
    config.write_text(text + extra_conf)
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["dvc", "init", "-q"], dest)
    run(["dvc", "config", "hydra.enabled", "true"], dest)
    run(["domain-llm", "params"], dest)
    run("git add -A && git commit -qm init", dest)
    return dest
