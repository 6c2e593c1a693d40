"""GGUF engine: llama-cpp-python behind the `stages.generation.Engine` interface.

    from stages.generation import load_engine
    engine = load_engine("gguf", "models/gguf/model-q4_k_m.gguf", threads=2, n_ctx=2048)

The chat template comes from the GGUF metadata (`tokenizer.chat_template`), rendered by llama-cpp-python's
Jinja2 formatter. Scoring needs the logits of every position (`logits_all`, n_ctx x n_vocab floats), so it
uses a second context created on the first `score()` call; generation never pays for it.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
from collections.abc import Generator
from pathlib import Path

import numpy as np

from stages.errors import StageError
from stages.generation import (
    CHATML_TEMPLATE,
    END_OF_TURN,
    ChatMixin,
    Generation,
    SamplingParams,
    ShouldStop,
    TextStream,
)

log = logging.getLogger(__name__)


def domain_from_manifest(model_path: Path) -> str | None:
    """The domain recorded by the quantize stage in manifest.json next to the GGUF, if any."""
    manifest_path = model_path.parent / "manifest.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        log.warning("%s: unreadable manifest, domain unknown", manifest_path)
        return None
    candidates = [manifest]
    for key in ("files", "models", "outputs"):
        entries = manifest.get(key)
        if isinstance(entries, dict):
            entries = list(entries.values())
        for entry in entries or []:
            if isinstance(entry, dict) and Path(str(entry.get("path", entry.get("file", "")))).name == model_path.name:
                candidates.insert(0, entry)
    for obj in candidates:
        for holder in (obj, obj.get("params") or {}):
            domain = holder.get("domain") if isinstance(holder, dict) else None
            if isinstance(domain, dict):
                domain = domain.get("name")
            if isinstance(domain, str):
                return domain
    return None


def quantization_name(file_type: str | None) -> str:
    """general.file_type (an int) as llama.cpp's name, e.g. 3 -> "Q4_1"."""
    if file_type is None:
        return "unknown"
    import gguf

    try:
        return gguf.LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
    except ValueError:
        return f"file_type {file_type}"


class GGUFEngine(ChatMixin):
    name = "gguf"

    def __init__(self, path: Path, threads: int = 0, n_ctx: int = 2048):
        from llama_cpp import Llama

        self.path = Path(path)
        self.threads = threads or None
        self.n_ctx = n_ctx
        try:
            self.llm = Llama(str(self.path), n_ctx=n_ctx, n_threads=self.threads,
                             n_threads_batch=self.threads, verbose=False)
        except (ValueError, RuntimeError) as e:
            raise StageError(f"{self.path}: llama.cpp could not load this GGUF ({e}); the file is corrupt or "
                             "truncated - rebuild it with `dvc repro quantize`") from None
        self._scorer = None
        self._formatters: dict[bool, object] = {}
        model = self.llm._model
        self.eos_text = model.token_get_text(model.token_eos())
        self.bos_text = model.token_get_text(model.token_bos()) if model.token_bos() >= 0 else ""
        self.template = self.llm.metadata.get("tokenizer.chat_template")
        if not self.template:
            log.warning("%s has no tokenizer.chat_template: using plain ChatML", self.path)
            self.template = CHATML_TEMPLATE
        # Free the contexts before interpreter teardown; llama-cpp-python's __del__ at exit prints tracebacks.
        atexit.register(self.close)

    def close(self) -> None:
        for llm in (self._scorer, self.llm):
            if llm is not None:
                llm.close()
        self._scorer = None

    # -- text in, text out ------------------------------------------------------------------------------
    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if add_generation_prompt not in self._formatters:
            self._formatters[add_generation_prompt] = Jinja2ChatFormatter(
                self.template, eos_token=self.eos_text, bos_token=self.bos_text,
                add_generation_prompt=add_generation_prompt)
        return self._formatters[add_generation_prompt](messages=messages).prompt

    def _completion_args(self, params: SamplingParams, should_stop: ShouldStop | None) -> dict:
        stops = list(dict.fromkeys([*params.stop, END_OF_TURN]))
        criteria = None
        if should_stop is not None:
            from llama_cpp import StoppingCriteriaList

            criteria = StoppingCriteriaList([lambda _ids, _logits: should_stop()])
        # min_p/repeat_penalty set to neutral so sampling means what SamplingParams says (llama-cpp-python's
        # defaults add min_p 0.05 and top_k 40); temperature 0 is greedy there.
        return dict(max_tokens=params.max_new_tokens, temperature=max(params.temperature, 0.0),
                    top_p=params.top_p, top_k=params.top_k, min_p=0.0, repeat_penalty=1.0, stop=stops,
                    seed=params.seed, stopping_criteria=criteria)

    def _check_fits(self, prompt: str, params: SamplingParams) -> int:
        n_prompt = len(self._tokenize(prompt))
        if n_prompt + 1 > self.n_ctx:
            raise StageError(f"prompt has {n_prompt} tokens, more than the context window ({self.n_ctx}); "
                             "shorten it or raise n_ctx")
        return n_prompt

    def generate(self, prompts: list[str], params: SamplingParams,
                 should_stop: ShouldStop | None = None) -> list[Generation]:
        results = []
        for prompt in prompts:
            if should_stop is not None and should_stop():
                results.append(Generation("", 0, 0, "stop"))
                continue
            self._check_fits(prompt, params)
            out = self.llm.create_completion(prompt, **self._completion_args(params, should_stop))
            choice, usage = out["choices"][0], out["usage"]
            results.append(Generation(choice["text"], usage["prompt_tokens"], usage["completion_tokens"],
                                      choice["finish_reason"] or "length"))
        return results

    def stream(self, prompt: str, params: SamplingParams) -> TextStream:
        cancel = threading.Event()
        return TextStream(self._stream_pieces(prompt, params, cancel), cancel)

    def _stream_pieces(self, prompt: str, params: SamplingParams,
                       cancel: threading.Event) -> Generator[str, None, Generation]:
        n_prompt = self._check_fits(prompt, params)
        chunks = self.llm.create_completion(prompt, stream=True, **self._completion_args(params, cancel.is_set))
        text, finish_reason = "", "length"
        try:
            for chunk in chunks:
                choice = chunk["choices"][0]
                if choice["text"]:
                    text += choice["text"]
                    yield choice["text"]
                finish_reason = choice["finish_reason"] or finish_reason
        finally:
            chunks.close()  # stops llama.cpp after the current token when the consumer goes away
        # llama-cpp-python's stream chunks carry no usage: count the emitted text.
        return Generation(text, n_prompt, self.count_tokens(text), finish_reason)

    # -- tokens and likelihoods ----------------------------------------------------------------------------
    def _tokenize(self, text: str, add_bos: bool = True) -> list[int]:
        # Same rule as create_completion: special tokens parsed, BOS only where the model asks for one.
        with_bos = add_bos and self.llm._model.add_bos_token() and self.llm._model.token_bos() >= 0
        ids = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) if text else []
        return ([self.llm._model.token_bos()] if with_bos else []) + ids

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text, add_bos=False))

    def score(self, prompt: str, continuation: str) -> tuple[float, int]:
        """Sum of -log p(continuation token | everything before it), in nats, and the number of tokens."""
        from llama_cpp import Llama

        context = self._tokenize(prompt)
        target = self._tokenize(continuation, add_bos=False)
        if not context:  # nothing to condition the first token on: it is not scored
            context, target = target[:1], target[1:]
        if not target:
            return 0.0, 0
        if len(context) + len(target) > self.n_ctx:
            raise StageError(f"prompt + continuation = {len(context) + len(target)} tokens exceed the "
                             f"context window ({self.n_ctx}); raise n_ctx or shorten the example")
        if self._scorer is None:
            self._scorer = Llama(str(self.path), n_ctx=self.n_ctx, n_threads=self.threads,
                                 n_threads_batch=self.threads, logits_all=True, verbose=False)
        scorer = self._scorer
        scorer.reset()
        scorer.eval(context + target)
        # scores[i] are the logits after token i, i.e. the prediction of token i + 1.
        logits = np.asarray(scorer.scores[len(context) - 1: len(context) + len(target) - 1], dtype=np.float64)
        log_z = np.logaddexp.reduce(logits, axis=-1)
        nll = float(np.sum(log_z - logits[np.arange(len(target)), target]))
        return nll, len(target)

    def info(self) -> dict:
        meta = self.llm.metadata
        arch = meta.get("general.architecture", "unknown")
        return {
            "name": meta.get("general.name") or self.path.stem,
            "type": "gguf",
            "architecture": arch,
            "quantization": quantization_name(meta.get("general.file_type")),
            "context_length": int(meta.get(f"{arch}.context_length", self.n_ctx)),
            "n_ctx": self.n_ctx,
            "parameters": int(self.llm._model.n_params()),
            "size_bytes": self.path.stat().st_size,
            "path": str(self.path),
            "domain": domain_from_manifest(self.path),
            "chat_template": bool(meta.get("tokenizer.chat_template")),
        }
