"""llama.cpp quantization: every default type loads and generates, fallbacks are reported, per-tensor type
overrides land in the file, bad type names, bad overrides and broken files give clear errors."""

from __future__ import annotations

import logging
import shutil

import llama_cpp
import pytest

from stages.errors import StageError
from stages.inference.gguf import GGUFFile
from stages.quantize.api import DEFAULT_TYPES, load_quantized_model, quantize_gguf
from stages.quantize.quantize import file_type, file_types, quantize_file
from stages.quantize.verify import verify_gguf


@pytest.mark.parametrize("type_name", DEFAULT_TYPES)
def test_each_default_type_loads_and_generates(tiny_f16_gguf, tmp_path, type_name, caplog):
    out = tmp_path / f"model-{type_name}.gguf"
    with caplog.at_level(logging.WARNING, logger="stages.quantize.quantize"):
        report = quantize_gguf(tiny_f16_gguf, out, type_name, threads=1)
    assert out.stat().st_size < tiny_f16_gguf.stat().st_size
    generated = verify_gguf(out, threads=1, n_tokens=6)
    assert len(generated["tokens"]) == 6
    if type_name.endswith("_k_m"):
        # hidden 64 is not a multiple of the 256-wide k-quant blocks: every matrix falls back, and we say so.
        assert report.fallback_count == sum(v for k, v in report.tensor_types.items() if k != "F32")
        assert f"{report.fallback_count} weight matrices" in caplog.text
    else:
        assert report.fallback_count == 0 and report.tensor_types.get("Q8_0", 0) > 0


def test_type_table_comes_from_llama_cpp():
    table = file_types()
    assert table["q4_k_m"] == llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    assert table["q8_0"] == llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    assert len(table) == len([n for n in dir(llama_cpp) if n.startswith("LLAMA_FTYPE_MOSTLY_")]) + 1
    assert file_type("Q6_K") == llama_cpp.LLAMA_FTYPE_MOSTLY_Q6_K


def test_unknown_type_lists_valid_names(tiny_f16_gguf, tmp_path):
    with pytest.raises(StageError, match=r"unknown type 'q4_k_x'.*q4_k_m.*q8_0") as err:
        quantize_file(tiny_f16_gguf, tmp_path / "x.gguf", "q4_k_x")
    assert "\n" not in str(err.value)
    assert not list(tmp_path.iterdir())


def test_truncated_and_corrupt_gguf_are_detected(tiny_f16_gguf, tmp_path):
    data = tiny_f16_gguf.read_bytes()
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(data[: len(data) - 4096])
    with pytest.raises(StageError, match="truncated"):
        verify_gguf(truncated)
    with pytest.raises(StageError, match="truncated"):
        load_quantized_model(truncated)
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"PK\x03\x04" + data[4:1000])
    with pytest.raises(StageError, match="not a GGUF"):
        verify_gguf(garbage)
    header_only = tmp_path / "header.gguf"
    header_only.write_bytes(data[:64])
    with pytest.raises(StageError, match=str(header_only)):
        verify_gguf(header_only)


def test_quantizing_a_broken_file_keeps_nothing(tiny_f16_gguf, tmp_path):
    broken = tmp_path / "broken.gguf"
    shutil.copy(tiny_f16_gguf, broken)
    with open(broken, "r+b") as f:
        f.truncate(broken.stat().st_size // 2)
    out = tmp_path / "out" / "model-q8_0.gguf"
    with pytest.raises(StageError):
        quantize_gguf(broken, out, "q8_0", threads=1)
    assert not out.exists() and not list(out.parent.glob("*.tmp"))


def tensor_type_names(path) -> dict[str, str]:
    return {t.name: t.tensor_type.name for t in GGUFFile(path).tensors}


def test_tensor_type_overrides_reach_llama_cpp(tiny_f16_gguf, tmp_path):
    stock = quantize_gguf(tiny_f16_gguf, tmp_path / "stock.gguf", "q4_k_m", threads=1)
    mixed = quantize_gguf(tiny_f16_gguf, tmp_path / "mixed.gguf", "q4_k_m", threads=1,
                          tensor_types={"ffn_down": "q4_0", r"blk\.0\.attn_q": "f16"})
    stock_types, mixed_types = tensor_type_names(tmp_path / "stock.gguf"), tensor_type_names(tmp_path / "mixed.gguf")
    downs = [n for n in mixed_types if "ffn_down" in n]
    assert downs and all(mixed_types[n] == "Q4_0" and stock_types[n] != "Q4_0" for n in downs)
    assert mixed_types["blk.0.attn_q.weight"] == "F16" and mixed_types["blk.1.attn_q.weight"] != "F16"
    untouched = [n for n in mixed_types if "ffn_down" not in n and "attn_q" not in n]
    assert all(mixed_types[n] == stock_types[n] for n in untouched)
    assert mixed.overrides == {"ffn_down": "q4_0", r"blk\.0\.attn_q": "f16"}
    assert mixed.bits_per_weight != stock.bits_per_weight
    assert len(verify_gguf(tmp_path / "mixed.gguf", threads=1, n_tokens=4)["tokens"]) == 4


@pytest.mark.parametrize(("overrides", "message"), [
    ({"ffn_dwn": "q6_k"}, r"quantize.tensor_types.q4_k_m: pattern 'ffn_dwn' matches no tensor .*blk\."),
    ({"ffn_down": "q9_k"}, r"quantize.tensor_types.q4_k_m.ffn_down: unknown tensor type 'q9_k'.*q6_k"),
    ({"ffn_(down": "q6_k"}, r"'ffn_\(down' is not a valid regular expression"),
])
def test_bad_tensor_type_overrides_are_clear(tiny_f16_gguf, tmp_path, overrides, message):
    with pytest.raises(StageError, match=message) as err:
        quantize_gguf(tiny_f16_gguf, tmp_path / "x.gguf", "q4_k_m", threads=1, tensor_types=overrides)
    assert "\n" not in str(err.value)
    assert not list(tmp_path.iterdir())
