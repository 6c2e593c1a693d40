"""The importance matrix: one entry per weight matrix llama.cpp quantizes, sized by its input columns, taken
from real activations; it reaches llama.cpp (changes the quantized bytes) and unlocks the 2-bit i-quants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stages.errors import StageError
from stages.inference.gguf import GGUFFile
from stages.quantize.api import quantize_gguf
from stages.quantize.imatrix import compute_imatrix
from stages.quantize.verify import verify_gguf


@pytest.fixture(scope="module")
def tiny_imatrix(tiny_model_dir, test_records) -> dict[str, np.ndarray]:
    torch.set_num_threads(1)
    return compute_imatrix(tiny_model_dir, test_records, max_examples=4)


def test_one_entry_per_quantized_matrix_sized_by_its_inputs(tiny_imatrix, tiny_f16_gguf):
    matrices = {t.name: int(t.shape[0]) for t in GGUFFile(tiny_f16_gguf).tensors if len(t.shape) == 2}
    # tied embeddings: the output projection's inputs are filed under token_embd, where llama.cpp looks
    assert set(tiny_imatrix) == set(matrices)
    for name, values in tiny_imatrix.items():
        assert values.dtype == np.float32 and values.shape == (matrices[name],), name
        assert np.isfinite(values).all() and (values >= 0).all() and values.max() > 0, name
    # ffn_down sees SiLU(gate) * up, attention sees normed hidden states: different statistics per input
    assert not np.allclose(tiny_imatrix["blk.0.ffn_down.weight"].mean(), tiny_imatrix["blk.0.attn_q.weight"].mean())


def test_mean_square_matches_a_direct_forward_pass(tiny_model_dir, test_records, tiny_imatrix):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    captured = []
    handle = model.model.layers[1].mlp.down_proj.register_forward_hook(lambda _m, i, _o: captured.append(i[0][0]))
    with torch.inference_mode():
        for record in test_records[:4]:
            model(input_ids=tokenizer.apply_chat_template(record["messages"], return_tensors="pt",
                                                          return_dict=True)["input_ids"])
    handle.remove()
    expected = torch.cat(captured).double().pow(2).mean(dim=0).float().numpy()
    np.testing.assert_allclose(tiny_imatrix["blk.1.ffn_down.weight"], expected, rtol=1e-5)


def test_imatrix_reaches_llama_cpp_and_unlocks_two_bit_types(tiny_f16_gguf, tiny_imatrix, tmp_path):
    plain = quantize_gguf(tiny_f16_gguf, tmp_path / "plain.gguf", "q4_0", threads=1)
    weighted = quantize_gguf(tiny_f16_gguf, tmp_path / "weighted.gguf", "q4_0", threads=1, imatrix=tiny_imatrix)
    assert (plain.imatrix_entries, weighted.imatrix_entries) == (0, len(tiny_imatrix))
    assert (tmp_path / "plain.gguf").read_bytes() != (tmp_path / "weighted.gguf").read_bytes()

    with pytest.raises(StageError, match="quantize.imatrix.enabled=true"):
        quantize_gguf(tiny_f16_gguf, tmp_path / "iq2.gguf", "iq2_xxs", threads=1)
    assert not (tmp_path / "iq2.gguf").exists()
    quantize_gguf(tiny_f16_gguf, tmp_path / "iq2.gguf", "iq2_xxs", threads=1, imatrix=tiny_imatrix)
    assert len(verify_gguf(tmp_path / "iq2.gguf", threads=1, n_tokens=4)["tokens"]) == 4


def test_no_calibration_chats_is_a_clear_error(tiny_model_dir):
    with pytest.raises(StageError, match="quantize.imatrix.split"):
        compute_imatrix(tiny_model_dir, [], max_examples=4)
