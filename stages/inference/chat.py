"""The chat contract of a model, read once from the model itself and passed to everything that talks to it.

    contract = ChatContract.from_hf(tokenizer, model.generation_config)   # HF folder (training, HF engine)
    contract = ChatContract.from_gguf(llm)                                # GGUF metadata (llama.cpp engine)
    text = contract.render(messages)                                      # the model's own chat template
    ids = contract.prompt_ids(text, tokenize)                             # BOS added at most once
    contract.end_of_turn_ids                                              # generation stops on any of these

Why one contract: training, the HF engine, the GGUF engine, the quantize benchmark, the Ollama Modelfile and
the API must all see the same prompt token ids and stop on the same tokens. Each used to re-derive them
(ChatML assumed, BOS added again after a template that renders it, end of turn taken to be EOS), so train,
evaluate and serve disagreed on models other than SmolLM2.

- Template: the model's (`tokenizer.chat_template` / GGUF `tokenizer.chat_template`), rendered with the same
  Jinja settings as transformers' `apply_chat_template` (trim_blocks, lstrip_blocks, loopcontrols, tojson).
- BOS: a prompt is tokenized once, without special tokens added; BOS is prepended only when the model's
  tokenizer adds one to raw text AND the rendered text does not already start with it.
- End of turn: the token the template writes after an assistant message (`<|im_end|>`, `<|eot_id|>`,
  `<end_of_turn>`, `<|end|>`, `</s>` ...), found by rendering a probe conversation, plus the model's EOS
  and its generation config's EOS list. Training appends the first; every engine stops on all of them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from stages.errors import StageError

log = logging.getLogger(__name__)

Tokenize = Callable[[str], list[int]]  # text -> ids, special tokens parsed, nothing added

# A probe answer no template rewrites; what the template writes right after it closes an assistant turn.
_PROBE_ANSWER = "PROBE0ANSWER"
_PROBE = [{"role": "user", "content": "PROBE0QUESTION"}, {"role": "assistant", "content": _PROBE_ANSWER}]


def _raise(message: str) -> None:
    raise StageError(f"chat template: {message}")


def _tojson(value, ensure_ascii: bool = False, indent: int | None = None, separators=None,
            sort_keys: bool = False) -> str:
    # transformers' filter: Jinja's own tojson HTML-escapes, which would change the rendered prompt.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _generation_block():
    """`{% generation %}...{% endgeneration %}` (transformers marks assistant tokens with it): renders its body."""
    import jinja2.ext
    from jinja2 import nodes

    class GenerationBlock(jinja2.ext.Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    return GenerationBlock


def compile_template(template: str):
    """A Jinja template compiled like transformers compiles chat templates (sandboxed)."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    _GenerationBlock = _generation_block()
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols, _GenerationBlock])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(template)
    except jinja2.TemplateError as e:
        raise StageError(f"chat template does not compile ({e}); fix chat_template.jinja of the model") from None


@dataclass(frozen=True)
class ChatContract:
    template: str | None
    bos_token: str                      # text of BOS ("" when the model has none)
    eos_token: str
    bos_id: int | None
    add_bos: bool                       # the tokenizer prepends BOS to raw text
    end_of_turn_ids: tuple[int, ...]    # [0] closes an assistant turn in training; generation stops on all
    stop_strings: tuple[str, ...]       # the end-of-turn tokens as text (Modelfile, upstream peers)
    template_vars: dict = field(default_factory=dict, compare=False)  # other special tokens the template reads

    @property
    def end_of_turn_id(self) -> int:
        return self.end_of_turn_ids[0]

    @cached_property
    def _compiled(self):
        if not self.template:
            raise StageError("the model has no chat template (tokenizer.chat_template); add chat_template.jinja "
                             "to the model folder or set model.chat_template, or send raw prompts")
        return compile_template(self.template)

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        # tools/documents None as transformers passes them: templates test `tools is not none`.
        variables = {**self.template_vars, "bos_token": self.bos_token, "eos_token": self.eos_token,
                     "tools": None, "documents": None}
        return self._compiled.render(messages=messages, add_generation_prompt=add_generation_prompt, **variables)

    def prompt_ids(self, text: str, tokenize: Tokenize) -> list[int]:
        """`text` tokenized once; BOS only where the model adds one and the text does not start with it."""
        ids = tokenize(text) if text else []
        needs_bos = self.add_bos and self.bos_id is not None and not (self.bos_token and text.startswith(self.bos_token))
        return [self.bos_id, *ids] if needs_bos else ids

    def chat_ids(self, messages: list[dict], tokenize: Tokenize) -> list[int]:
        return self.prompt_ids(self.render(messages), tokenize)

    def scored_ids(self, prompt: str, continuation: str, tokenize: Tokenize,
                   close_turn: bool = False) -> tuple[list[int], list[int]]:
        """(context, target) ids for scoring `continuation` after `prompt`; close_turn: the continuation is an
        assistant answer, closed by the end-of-turn token as training supervises it. With no prompt the first
        token only conditions the rest (nothing predicts it), so it is not scored."""
        context = self.prompt_ids(prompt, tokenize)
        target = tokenize(continuation) + ([self.end_of_turn_id] if close_turn else [])
        return (context, target) if context else (target[:1], target[1:])

    # -- reading it from a model ----------------------------------------------------------------------------
    @classmethod
    def build(cls, template: str | None, bos_token: str, eos_token: str, bos_id: int | None, eos_ids: Iterable[int],
              add_bos: bool, tokenize: Tokenize, is_special: Callable[[int], bool], token_text: Callable[[int], str],
              template_vars: dict | None = None) -> ChatContract:
        """The contract from raw facts of a tokenizer; the end-of-turn token is read off the template."""
        eos_ids = [int(i) for i in eos_ids if i is not None and int(i) >= 0]
        probe = cls(template, bos_token, eos_token, bos_id, add_bos, tuple(eos_ids), (), template_vars or {})
        turn_end = template_end_of_turn(probe, tokenize, is_special) if template else None
        ids = list(dict.fromkeys(([turn_end] if turn_end is not None else []) + eos_ids))
        if not ids:
            raise StageError("the tokenizer has no EOS token and its chat template closes no turn with a special "
                             "token: set eos_token in the model's tokenizer_config.json")
        stops = tuple(dict.fromkeys(t for t in (token_text(i) for i in ids) if t))
        return cls(template, bos_token, eos_token, bos_id, add_bos, tuple(ids), stops, template_vars or {})

    @classmethod
    def from_hf(cls, tokenizer, generation_config=None) -> ChatContract:
        """From a transformers tokenizer (and the model's generation config, whose EOS list may be longer)."""
        def tokenize(text: str) -> list[int]:
            return list(tokenizer(text, add_special_tokens=False)["input_ids"])

        special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
        gen_eos = getattr(generation_config, "eos_token_id", None)
        gen_eos = gen_eos if isinstance(gen_eos, list) else [gen_eos]
        with_special = list(tokenizer("a", add_special_tokens=True)["input_ids"])
        bos_id = tokenizer.bos_token_id
        add_bos = bos_id is not None and bool(with_special) and with_special[0] == bos_id and with_special != tokenize("a")
        template_vars = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
        return cls.build(tokenizer.chat_template, tokenizer.bos_token or "", tokenizer.eos_token or "", bos_id,
                         [tokenizer.eos_token_id, *gen_eos], add_bos, tokenize, special.__contains__,
                         lambda i: tokenizer.convert_ids_to_tokens(i), template_vars)

    @classmethod
    def from_gguf(cls, llm) -> ChatContract:
        """From a loaded llama_cpp.Llama (metadata + vocabulary; `vocab_only=True` is enough)."""
        import llama_cpp

        model = llm._model
        vocab = llama_cpp.llama_model_get_vocab(model.model)
        bos, eos = model.token_bos(), model.token_eos()
        eot = llama_cpp.llama_vocab_eot(vocab)

        def text(i: int) -> str:
            return model.token_get_text(i) if i is not None and i >= 0 else ""

        def is_special(i: int) -> bool:
            return bool(llama_cpp.llama_vocab_is_control(vocab, i) or llama_cpp.llama_vocab_is_eog(vocab, i))

        def tokenize(t: str) -> list[int]:
            return llm.tokenize(t.encode("utf-8"), add_bos=False, special=True)

        return cls.build(llm.metadata.get("tokenizer.chat_template"), text(bos), text(eos), bos if bos >= 0 else None,
                         [eos, eot], bool(model.add_bos_token()) and bos >= 0, tokenize, is_special, text)


def template_end_of_turn(contract: ChatContract, tokenize: Tokenize, is_special: Callable[[int], bool]) -> int | None:
    """The special token a template writes right after an assistant message, or None (no such token)."""
    _ = contract._compiled  # a template that does not compile is the model's bug: say so, do not guess
    try:
        rendered = contract.render(_PROBE, add_generation_prompt=False)
    except Exception as e:  # a template may reject the probe (e.g. it demands a system turn): EOS ends turns
        log.warning("chat template rejected the probe conversation (%s); end of turn = EOS", e)
        return None
    at = rendered.rfind(_PROBE_ANSWER)
    if at < 0:
        return None
    after = rendered[at + len(_PROBE_ANSWER):].lstrip()  # e.g. "\n<|end|>" in some templates
    ids = tokenize(after) if after else []
    return ids[0] if ids and is_special(ids[0]) else None
