"""HF engine: transformers behind the `stages.inference.Engine` interface.

    from stages.inference import load_engine
    engine = load_engine("hf", "models/merged", threads=2, batch_size=8)          # or adapter="models/adapter"
    engine = HFEngine.from_model(model, tokenizer)                                # a model already in memory

Prompt ids and stop tokens come from the model's chat contract (stages/inference/chat.py), the same one
training uses, so a chat is the same token ids here, in training and in the GGUF engine.

fp32 on CPU (bf16 is 10-15x slower on this class of CPU), bf16 on CUDA; eval mode, no_grad; prompts are
generated in batches with LEFT padding so every row's continuation starts at the same column.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator
from pathlib import Path

import torch

from stages.errors import StageError
from stages.inference.chat import ChatContract, hf_tokenizer
from stages.inference.types import (
    PENALTY_LAST_N,
    ChatMixin,
    Generation,
    SamplingParams,
    ShouldStop,
    StopStringFilter,
    TextStream,
    cut_at_stop,
)
from stages.manifest import served_model_facts

log = logging.getLogger(__name__)


class CompletionPenalties:
    """The repeat, frequency and presence penalties of llama.cpp's sampler (stages/inference/sampler.py), over the
    last PENALTY_LAST_N generated tokens only: a logit of a token seen there is divided by repeat_penalty when
    positive, multiplied when not, then lowered by frequency_penalty x its count + presence_penalty. transformers'
    repetition_penalty also penalises the prompt; this keeps both engines to one meaning."""

    def __init__(self, params: SamplingParams, prompt_length: int):
        self.repeat, self.frequency, self.presence = (params.repeat_penalty, params.frequency_penalty,
                                                      params.presence_penalty)
        self.prompt_length = prompt_length  # left padding: every row's completion starts at this column

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        window = input_ids[:, self.prompt_length:][:, -PENALTY_LAST_N:]
        if window.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(1, window, torch.ones_like(window, dtype=scores.dtype))
        seen = counts > 0
        repeated = torch.where(scores <= 0, scores * self.repeat, scores / self.repeat)
        return torch.where(seen, repeated, scores) - counts * self.frequency - seen.to(scores.dtype) * self.presence


def completion_penalties(params: SamplingParams, prompt_length: int) -> list[CompletionPenalties]:
    off = params.repeat_penalty == 1.0 and not params.frequency_penalty and not params.presence_penalty
    return [] if off else [CompletionPenalties(params, prompt_length)]


class HFEngine(ChatMixin):
    name = "hf"

    def __init__(self, path: Path, threads: int = 0, batch_size: int = 8, adapter: str | Path | None = None,
                 trust_remote_code: bool = False):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads > 0:
            torch.set_num_threads(threads)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, use_safetensors=True,
                                                         trust_remote_code=trust_remote_code)
        except Exception as e:  # safetensors, tokenizers and torch raise their own types for a corrupt file
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise StageError(f"{path}: transformers could not load this model ({first}); "
                             "the folder needs config.json, tokenizer files and *.safetensors") from None
        if adapter is not None:
            model = self._merge_adapter(model, Path(adapter))
        self._setup(model.to(device), tokenizer, Path(path), batch_size, adapter)

    @classmethod
    def from_model(cls, model, tokenizer, batch_size: int = 8) -> HFEngine:
        """An engine over a model and tokenizer already in memory (training's API, tests)."""
        engine = cls.__new__(cls)
        engine._setup(model, tokenizer, Path(getattr(model, "name_or_path", "") or "in-memory"), batch_size, None)
        return engine

    def _setup(self, model, tokenizer, path: Path, batch_size: int, adapter) -> None:
        self.path, self.adapter, self.batch_size = path, adapter, batch_size
        self.max_batch_size = batch_size
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.contract = ChatContract.from_hf(tokenizer, model.generation_config)
        # Prompts and raw text parse special tokens; message text inside a rendered chat never does (chat.py).
        self._tokenize, self._plain = hf_tokenizer(tokenizer), hf_tokenizer(tokenizer, control=False)
        self.eos_ids = list(self.contract.end_of_turn_ids)
        self.served = served_model_facts(path) if path.is_dir() else {"domain": None, "system_prompt": None}

    @staticmethod
    def _merge_adapter(model, adapter: Path):
        from peft import PeftModel

        if not (adapter / "adapter_config.json").is_file():
            raise StageError(f"{adapter}: no LoRA adapter here (adapter_config.json missing)")
        # Merged in the load dtype (fp32/bf16), never in 4-bit: merging into a quantized model re-quantizes.
        return PeftModel.from_pretrained(model, adapter).merge_and_unload()

    # -- text in, text out --------------------------------------------------------------------------------
    def prompt_ids(self, prompt: str) -> list[int]:
        """A rendered chat (`apply_chat_template`'s ChatPrompt) or a raw prompt as ids; see ChatContract."""
        return self.contract.prompt_ids(prompt, self._tokenize, self._plain)

    def _generation_config(self, params: SamplingParams):
        from transformers import GenerationConfig

        if params.grammar:
            raise NotImplementedError("constrained output (response_format / grammar) needs serve.engine=gguf")
        if params.logprobs is not None:
            raise NotImplementedError("logprobs need serve.engine=gguf")
        sample = params.temperature > 0
        return GenerationConfig(
            max_new_tokens=params.max_new_tokens, do_sample=sample,
            temperature=params.temperature if sample else None, top_p=params.top_p if sample else None,
            top_k=(params.top_k or None) if sample else None, min_p=(params.min_p or None) if sample else None,
            stop_strings=list(params.stop) or None,
            # ignore_eos: the end-of-turn ids are blocked until max_new_tokens (a fixed-length timing decode)
            min_new_tokens=params.max_new_tokens if params.ignore_eos else None,
            eos_token_id=self.eos_ids, pad_token_id=self.tokenizer.pad_token_id)

    def _stopping(self, should_stop: ShouldStop | None):
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Callback(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), bool(should_stop()), dtype=torch.bool,
                                  device=input_ids.device)

        return StoppingCriteriaList([_Callback()]) if should_stop is not None else None

    @torch.no_grad()
    def generate(self, prompts: list[str], params: SamplingParams,
                 should_stop: ShouldStop | None = None) -> list[Generation]:
        if params.seed is not None:
            torch.manual_seed(params.seed)
        results: list[Generation] = []
        for start in range(0, len(prompts), self.batch_size):
            if should_stop is not None and should_stop():
                results.extend(Generation("", 0, 0, "stop") for _ in prompts[start:start + self.batch_size])
                continue
            batch = [self.prompt_ids(p) for p in prompts[start:start + self.batch_size]]
            inputs = self.tokenizer.pad({"input_ids": batch}, return_tensors="pt").to(self.device)
            extra = {"tokenizer": self.tokenizer} if params.stop else {}  # stop_strings needs it
            out = self.model.generate(**inputs, generation_config=self._generation_config(params),
                                      stopping_criteria=self._stopping(should_stop),
                                      logits_processor=completion_penalties(params, inputs["input_ids"].shape[1]),
                                      **extra)
            new_tokens = out[:, inputs["input_ids"].shape[1]:].tolist()
            for ids, row in zip(batch, new_tokens, strict=True):
                results.append(self._finish(row, len(ids), params))
        return results

    def _finish(self, row: list[int], n_prompt: int, params: SamplingParams) -> Generation:
        ended = next((i for i, t in enumerate(row) if t in self.eos_ids), None)
        tokens = row if ended is None else row[:ended]
        text, hit_stop = cut_at_stop(self.tokenizer.decode(tokens, skip_special_tokens=True), params.stop)
        finish = "stop" if ended is not None or hit_stop else "length"
        # Like llama.cpp, the end-of-sequence token itself is not counted as a completion token.
        return Generation(text, n_prompt, len(tokens), finish)

    def stream(self, prompt: str, params: SamplingParams, should_stop: ShouldStop | None = None) -> TextStream:
        cancel = threading.Event()
        return TextStream(self._stream_pieces(prompt, params, cancel, should_stop), cancel)

    def _stream_pieces(self, prompt: str, params: SamplingParams,
                       cancel: threading.Event,
                       should_stop: ShouldStop | None = None) -> Generator[str, None, Generation]:
        from transformers import TextIteratorStreamer

        ids = self.prompt_ids(prompt)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        outputs: list = []
        errors: list[BaseException] = []
        stop_filter = StopStringFilter(params.stop)
        stopped_by_caller = threading.Event()

        def told_to_stop() -> bool:
            if should_stop is not None and should_stop():
                stopped_by_caller.set()
            return cancel.is_set() or stop_filter.stopped or stopped_by_caller.is_set()

        def run() -> None:
            try:
                with torch.no_grad():
                    if params.seed is not None:
                        torch.manual_seed(params.seed)
                    outputs.append(self.model.generate(
                        input_ids=torch.tensor([ids], device=self.device),
                        attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=self.device),
                        generation_config=self._generation_config(params),
                        stopping_criteria=self._stopping(told_to_stop),
                        logits_processor=completion_penalties(params, len(ids)),
                        streamer=streamer, tokenizer=self.tokenizer))
            except BaseException as e:  # re-raised in the consumer; end() unblocks its loop
                errors.append(e)
                streamer.end()

        # transformers streams from a generating thread; only this stream's consumer talks to it.
        worker = threading.Thread(target=run, name="hf-stream", daemon=True)
        worker.start()
        streamer_ended = False
        try:
            for piece in streamer:
                text = stop_filter.feed(piece)
                if text:
                    yield text
                if stop_filter.stopped:
                    break
            else:
                streamer_ended = True
            if not stop_filter.stopped:
                tail = stop_filter.flush()
                if tail:
                    yield tail
        finally:
            cancel.set()
            if not streamer_ended:  # read up to the end signal so the generating thread finishes cleanly
                for _ in streamer:
                    pass
            worker.join()
        if errors:
            raise errors[0]
        result = self._finish(outputs[0][0, len(ids):].tolist(), len(ids), params) if outputs else None
        if result is None:
            return Generation("", len(ids), 0, "stop")
        if stop_filter.stopped or stopped_by_caller.is_set():
            result.finish_reason = "stop"
        return result

    # -- tokens and likelihoods ----------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text))

    @torch.no_grad()
    def score(self, prompt: str, continuation: str, close_turn: bool = False) -> tuple[float, int]:
        """Sum of -log p(continuation token | everything before it), in nats, and the number of tokens.
        close_turn: the continuation is an assistant answer, followed by the model's end-of-turn token."""
        context, target = self.contract.scored_ids(prompt, continuation, self._tokenize, close_turn,
                                                   self._plain)
        if not target:
            return 0.0, 0
        ids = torch.tensor([context + target], device=self.device)
        logits = self.model(input_ids=ids).logits[0, len(context) - 1:-1].float()
        nll = torch.nn.functional.cross_entropy(logits, ids[0, len(context):], reduction="sum")
        return float(nll), len(target)

    def info(self) -> dict:
        config = self.model.config
        return {
            "name": self.path.name,
            "type": "hf",
            "architecture": (config.architectures or [config.model_type])[0],
            "quantization": str(self.dtype).removeprefix("torch."),
            "context_length": getattr(config, "max_position_embeddings", None),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "path": str(self.path),
            "adapter": str(self.adapter) if self.adapter else None,
            "device": self.device.type,
            "domain": self.served["domain"],
            "system_prompt": self.served["system_prompt"],
            "chat_template": bool(self.contract.template),
            "end_of_turn": list(self.contract.stop_strings),
        }
