"""docs/quickstart.ipynb runs top to bottom (nbclient, a real kernel) and is committed without outputs."""

from __future__ import annotations

import json

import pytest

from stages import REPO_ROOT

NOTEBOOK = REPO_ROOT / "docs" / "quickstart.ipynb"


def test_notebook_is_committed_without_outputs():
    notebook = json.loads(NOTEBOOK.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, cell["source"][:80]


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="the notebook test needs nbformat/nbclient (the dev extra)")
    from nbclient import NotebookClient

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kernel inherits it: the notebook's outputs land here
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO_ROOT)}}).execute()
    outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for o in cell.outputs)
    assert "'rougeL'" in outputs and '"size_mb"' in outputs, outputs[-2000:]
    assert "stop" in outputs or "length" in outputs  # the generation's finish reason
