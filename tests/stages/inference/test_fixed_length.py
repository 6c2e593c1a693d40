"""`SamplingParams(ignore_eos=True)` decodes exactly max_new_tokens on both engines (evaluate's speed pass
times a fixed-length decode), while the same request without it may stop at the end of turn.

    pytest tests/stages/inference/test_fixed_length.py -q
"""

from __future__ import annotations

import pytest

from stages.inference import SamplingParams, load_engine

CHAT = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.mark.parametrize("kind", ["gguf", "hf"])
def test_ignore_eos_decodes_exactly_max_new_tokens(kind, smollm2_gguf, tiny_model_dir):
    engine = (load_engine("gguf", smollm2_gguf, threads=1, n_ctx=256) if kind == "gguf"
              else load_engine("hf", tiny_model_dir, threads=1))
    try:
        prompt = engine.apply_chat_template(CHAT)
        [short] = engine.generate([prompt], SamplingParams(max_new_tokens=48, temperature=0))
        [fixed] = engine.generate([prompt], SamplingParams(max_new_tokens=48, temperature=0, ignore_eos=True))
    finally:
        if hasattr(engine, "close"):
            engine.close()
    assert fixed.completion_tokens == 48 and fixed.finish_reason == "length"
    if kind == "gguf":  # the real model answers in one sentence and ends its turn well before 48 tokens
        assert short.finish_reason == "stop" and short.completion_tokens < 48
