"""The GGUF server starts without torch or transformers (their import alone costs ~12 s here)."""

from __future__ import annotations

import subprocess
import sys

from tests.serving.conftest import REPO_ROOT

PROBE = """
import sys
from serving.app import create_app, load_serving_engine
from serving.settings import ServeSettings
from stages.config import compose
settings = ServeSettings.from_config(compose(["serve.model={model}", "serve.rerank=false", "threads=1"]))
engine = load_serving_engine(settings)
app = create_app(settings, engine=engine)
[g] = engine.chat([[{{"role": "user", "content": "Hi"}}]], __import__("stages.inference").inference.SamplingParams(max_new_tokens=2))
heavy = sorted(m for m in ("torch", "transformers", "peft", "sentence_transformers") if m in sys.modules)
print("HEAVY", heavy, g.completion_tokens)
engine.close()
"""


def test_serving_the_gguf_imports_no_torch_or_transformers(published_gguf):
    result = subprocess.run([sys.executable, "-c", PROBE.format(model=published_gguf)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("HEAVY"))
    assert line == "HEAVY [] 2"
