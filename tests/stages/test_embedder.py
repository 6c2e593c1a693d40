"""stages/embedder.py: the MiniLM package version the pipeline is pinned to, checked against what is installed."""

from __future__ import annotations

from importlib import metadata

import pytest

from stages.embedder import EMBEDDER_PACKAGE, EMBEDDER_VERSION, check_embedder, minilm_path
from stages.errors import StageError


def test_the_pin_is_the_installed_version() -> None:
    assert metadata.version(EMBEDDER_PACKAGE) == EMBEDDER_VERSION
    check_embedder()
    assert (minilm_path() / "config.json").is_file()


def test_another_installed_version_is_refused_in_one_line() -> None:
    with pytest.raises(StageError) as e:
        check_embedder(version="9.9.9")
    message = str(e.value)
    assert "\n" not in message
    assert f"{EMBEDDER_PACKAGE} {EMBEDDER_VERSION} is installed but stages/embedder.py pins 9.9.9" in message
    assert f'EMBEDDER_VERSION = "{EMBEDDER_VERSION}"' in message


def test_a_missing_package_is_refused() -> None:
    with pytest.raises(StageError, match="no-such-embedder-package is not installed; pip install "
                                         "no-such-embedder-package==0.1.0"):
        check_embedder("no-such-embedder-package", "0.1.0")
