"""Versioned deployment: published GGUFs go to a local-directory DVC remote and come back, bit for bit, in a
fresh clone (the README's `dvc remote add -d` + `dvc push` / `dvc pull` flow)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from stages.manifest import sha256_file, write_manifest
from stages.quantize.api import convert_and_quantize
from stages.quantize.publish import source_model_info

ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def run(*cmd: str, cwd: Path) -> str:
    if cmd[0] == "dvc":
        cmd = (sys.executable, "-m", "dvc", *cmd[1:])
    proc = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}: {proc.stderr[-2000:]}"
    return proc.stdout


def test_push_to_local_remote_and_pull_into_fresh_clone(tiny_model_dir, tmp_path):
    repo, remote, clone = tmp_path / "repo", tmp_path / "remote", tmp_path / "clone"
    out = repo / "models" / "gguf"
    files, reports = convert_and_quantize(tiny_model_dir, out, types=["q8_0"], threads=1)
    write_manifest(out, files, source_model_info(tiny_model_dir), {"types": ["q8_0"]}, reports)

    run("git", "init", "-q", cwd=repo)
    run("dvc", "init", "-q", cwd=repo)
    run("dvc", "add", "models/gguf", cwd=repo)
    run("dvc", "remote", "add", "-d", "storage", str(remote), cwd=repo)
    run("git", "add", ".", cwd=repo)
    run("git", "commit", "-qm", "publish GGUFs", cwd=repo)
    run("dvc", "push", cwd=repo)
    assert any(p.is_file() for p in remote.rglob("*"))

    run("git", "clone", "-q", str(repo), str(clone), cwd=tmp_path)
    assert not (clone / "models" / "gguf").exists()
    shutil.rmtree(repo / ".dvc" / "cache")  # the pull must come from the remote, not the original cache
    run("dvc", "pull", cwd=clone)
    pulled = clone / "models" / "gguf"
    manifest = json.loads((pulled / "manifest.json").read_text())
    assert manifest == json.loads((out / "manifest.json").read_text())
    assert {f["file"] for f in manifest["files"]} == {"model-f16.gguf", "model-q8_0.gguf"}
    for entry in manifest["files"]:
        assert sha256_file(pulled / entry["file"]) == entry["sha256"]
