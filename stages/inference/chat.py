"""The chat contract of a model, read once from the model itself and passed to everything that talks to it.

    contract = ChatContract.from_hf(tokenizer, model.generation_config)   # HF folder (training, HF engine)
    contract = ChatContract.from_gguf(llm)                                # GGUF metadata (llama.cpp engine)
    text = contract.render(messages)                                      # a ChatPrompt (a str)
    ids = contract.prompt_ids(text, tokenize, plain)                      # BOS added at most once
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
- Message text is text: `<|im_end|>` typed into a message must not close its turn and open a forged system
  turn. Control-token text in any message string is wrapped in markers while the template renders, so the
  rendered `ChatPrompt` knows which control-token text came from a message; `prompt_ids` tokenizes that text
  with `plain` (the tokenizer without control-token parsing) and everything else as before. A conversation
  without such text renders and tokenizes exactly as it did before this existed. A plain `str` prompt is raw
  text its caller wrote in full: its control-token text is parsed, as llama.cpp and transformers do.
  Tokenizers: `hf_tokenizer(tokenizer, control)` and `llama_tokenizer(llm, control)`.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from stages.errors import StageError

log = logging.getLogger(__name__)

Tokenize = Callable[[str], list[int]]  # text -> ids, nothing added; parses control tokens unless said "plain"

# A probe answer no template rewrites; what the template writes right after it closes an assistant turn.
_PROBE_ANSWER = "PROBE0ANSWER"
_PROBE = [{"role": "user", "content": "PROBE0QUESTION"}, {"role": "assistant", "content": _PROBE_ANSWER}]


# Unicode noncharacters, reserved for a program's internal use: while a template renders they wrap the
# control-token text found in message strings, so the rendered text says which control-token text a message
# brought. Message strings lose any they hold themselves (only when a message holds control-token text), so
# none can be forged.
_OPEN, _CLOSE = "\ufdd0", "\ufdd1"
_MARKED = re.compile(f"{_OPEN}([^{_OPEN}{_CLOSE}]*){_CLOSE}")
_MARKER = re.compile(f"[{_OPEN}{_CLOSE}]")


class ChatPrompt(str):
    """A rendered chat: the text the template wrote, and that text cut into `pieces`, each (text,
    from_message), where from_message marks control-token text that a message brought (tokenized as plain
    text). A chat whose messages hold no control-token text is one piece. String operations (`+`, slicing,
    `str()`) give a plain `str`, i.e. a raw prompt: pass the ChatPrompt itself to `prompt_ids`, `generate` and
    `score`."""

    pieces: tuple[tuple[str, bool], ...]

    def __new__(cls, text: str = "", pieces: Iterable[tuple[str, bool]] = ()) -> ChatPrompt:
        pieces = tuple((t, bool(m)) for t, m in pieces if t)
        prompt = super().__new__(cls, "".join(t for t, _ in pieces) if pieces else text)
        prompt.pieces = pieces or ((text, False),)
        return prompt

    @property
    def has_message_control_text(self) -> bool:
        return any(from_message for _, from_message in self.pieces)


def _map_strings(value, edit: Callable[[str], str]):
    """`value` (messages: dicts, lists, content parts) with every string value passed through `edit`."""
    if isinstance(value, str):
        return edit(value)
    if isinstance(value, dict):
        return {key: _map_strings(item, edit) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_map_strings(item, edit) for item in value]
    return value


def _mark_control_text(messages, control: re.Pattern):
    """The messages (any nesting of lists, tuples and dicts) with each control-token text in their strings
    between markers; None if they hold none."""
    found = 0

    def mark(text: str) -> str:
        nonlocal found
        marked, n = control.subn(lambda m: f"{_OPEN}{m.group(0)}{_CLOSE}", _MARKER.sub("", text))
        found += n
        return marked

    marked = _map_strings(messages, mark)
    return marked if found else None


def _marked_pieces(rendered: str) -> list[tuple[str, bool]]:
    """Pieces of a chat rendered from marked messages. A lone marker (a template string method split a marked
    token) is dropped but still ends a piece, so text on either side cannot join into a control token."""
    pieces: list[tuple[str, bool]] = []
    for i, part in enumerate(_MARKED.split(rendered)):  # text, marked control text, text, ...
        if i % 2:
            pieces.append((part, True))
        else:
            pieces.extend((text, False) for text in _MARKER.split(part))
    return pieces


def _continued_ids(text: str, tokenize: Tokenize) -> list[int]:
    """`text` tokenized as the continuation of text before it: a tokenizer that marks the start of its input
    (SentencePiece's prefix space) must not mark it mid-prompt. Tokenized after a newline, whose ids are then
    dropped; if the newline merged with the text, tokenized alone."""
    head, ids = tokenize("\n"), tokenize("\n" + text)
    return ids[len(head):] if ids[:len(head)] == head else tokenize(text)


def hf_tokenizer(tokenizer, control: bool = True) -> Tokenize:
    """A transformers tokenizer as a Tokenize; control=False: special-token text stays plain text
    (transformers' `split_special_tokens`). Each call sets that mode on the shared Rust tokenizer, so like the
    HF engine a tokenizer is used from one thread at a time."""
    def tokenize(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False, split_special_tokens=not control)["input_ids"])

    return tokenize


def llama_tokenizer(llm, control: bool = True) -> Tokenize:
    """A llama_cpp.Llama's tokenizer as a Tokenize; control=False: control-token text stays plain text
    (llama.cpp's `parse_special`; user-defined added tokens are matched either way, as in transformers)."""
    def tokenize(text: str) -> list[int]:
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=control) if text else []

    return tokenize


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
    # Texts the tokenizer reads as control tokens (llama.cpp CONTROL/UNKNOWN, transformers special added
    # tokens): only the template may write them; in message text they are plain text.
    control_tokens: tuple[str, ...] = field(default=(), compare=False)

    @property
    def end_of_turn_id(self) -> int:
        return self.end_of_turn_ids[0]

    @cached_property
    def _compiled(self):
        if not self.template:
            raise StageError("the model has no chat template (tokenizer.chat_template); add chat_template.jinja "
                             "to the model folder or set model.chat_template, or send raw prompts")
        return compile_template(self.template)

    @cached_property
    def _control_re(self) -> re.Pattern | None:
        texts = sorted({t for t in self.control_tokens if t}, key=len, reverse=True)  # longest match first
        return re.compile("|".join(map(re.escape, texts))) if texts else None

    def _render(self, chat: tuple[list[dict], list[dict] | None], add_generation_prompt: bool) -> str:
        messages, tools = chat
        # tools/documents None as transformers passes them: templates test `tools is not none`.
        variables = {**self.template_vars, "bos_token": self.bos_token, "eos_token": self.eos_token,
                     "tools": tools or None, "documents": None}
        return self._compiled.render(messages=messages, add_generation_prompt=add_generation_prompt, **variables)

    def render(self, messages: list[dict], add_generation_prompt: bool = True,
               tools: list[dict] | None = None) -> ChatPrompt:
        """The model's template over `messages` (and OpenAI-style `tools`, for templates that render them);
        control-token text inside either is marked as message text."""
        control = self._control_re
        chat = (messages, tools)
        marked = _mark_control_text(chat, control) if control is not None else None
        if marked is None:
            return ChatPrompt(self._render(chat, add_generation_prompt))
        pieces = _marked_pieces(self._render(marked, add_generation_prompt))
        # The template's own control tokens are those of the same chat with the control text taken out of the
        # messages; a template that rewrites message text past the markers (escapes it, joins parts into a
        # token) would leave a message's control text unmarked: refuse the chat rather than let it through.
        neutral = self._render(_map_strings(chat, lambda t: control.sub("\ufffd", _MARKER.sub("", t))),
                               add_generation_prompt)
        markup = Counter(t for text, message in pieces if not message for t in control.findall(text))
        if markup != Counter(control.findall(neutral)):
            raise StageError("chat: a message holds control-token text and this chat template rewrites "
                             "message text, so it cannot be kept apart from the template's own tokens; "
                             "remove it")
        return ChatPrompt(pieces=pieces)

    def prompt_ids(self, text: str, tokenize: Tokenize, plain: Tokenize | None = None) -> list[int]:
        """`text` tokenized; BOS only where the model adds one and the text does not start with it.
        A ChatPrompt's message control text is tokenized with `plain`, its other pieces with `tokenize` (each
        as the continuation of the one before); any other text, and a chat without such text, in one call."""
        if isinstance(text, ChatPrompt) and text.has_message_control_text:
            if plain is None:
                raise StageError("chat: a message holds control-token text; tokenizing it needs the plain "
                                 "tokenizer (plain=hf_tokenizer(tok, control=False) or "
                                 "llama_tokenizer(llm, control=False))")
            ids: list[int] = []
            for i, (piece, from_message) in enumerate(text.pieces):
                encode = plain if from_message else tokenize
                ids += _continued_ids(piece, encode) if i else encode(piece)
        else:
            ids = tokenize(str(text)) if text else []
        needs_bos = self.add_bos and self.bos_id is not None and not (self.bos_token and text.startswith(self.bos_token))
        return [self.bos_id, *ids] if needs_bos else ids

    def chat_ids(self, messages: list[dict], tokenize: Tokenize, plain: Tokenize | None = None) -> list[int]:
        return self.prompt_ids(self.render(messages), tokenize, plain)

    def answer_ids(self, content: str, plain: Tokenize) -> list[int]:
        """An assistant answer as training supervises it: its text (plain: message text is text) closed by the
        end-of-turn token."""
        return [*plain(content), self.end_of_turn_id]

    def scored_ids(self, prompt: str, continuation: str, tokenize: Tokenize, close_turn: bool = False,
                   plain: Tokenize | None = None) -> tuple[list[int], list[int]]:
        """(context, target) ids for scoring `continuation` after `prompt`; close_turn: the continuation is an
        assistant answer (`answer_ids`, with `plain` when given), closed by the end-of-turn token as training
        supervises it. With no prompt the first token only conditions the rest (nothing predicts it), so it is
        not scored."""
        context = self.prompt_ids(prompt, tokenize, plain)
        target = self.answer_ids(continuation, plain or tokenize) if close_turn else tokenize(continuation)
        return (context, target) if context else (target[:1], target[1:])

    # -- reading it from a model ----------------------------------------------------------------------------
    @classmethod
    def build(cls, template: str | None, bos_token: str, eos_token: str, bos_id: int | None, eos_ids: Iterable[int],
              add_bos: bool, tokenize: Tokenize, is_special: Callable[[int], bool], token_text: Callable[[int], str],
              template_vars: dict | None = None, control_tokens: Iterable[str] = ()) -> ChatContract:
        """The contract from raw facts of a tokenizer; the end-of-turn token is read off the template."""
        eos_ids = [int(i) for i in eos_ids if i is not None and int(i) >= 0]
        control = tuple(dict.fromkeys(t for t in control_tokens if t))
        probe = cls(template, bos_token, eos_token, bos_id, add_bos, tuple(eos_ids), (), template_vars or {},
                    control)
        turn_end = template_end_of_turn(probe, tokenize, is_special) if template else None
        ids = list(dict.fromkeys(([turn_end] if turn_end is not None else []) + eos_ids))
        if not ids:
            raise StageError("the tokenizer has no EOS token and its chat template closes no turn with a special "
                             "token: set eos_token in the model's tokenizer_config.json")
        stops = tuple(dict.fromkeys(t for t in (token_text(i) for i in ids) if t))
        return cls(template, bos_token, eos_token, bos_id, add_bos, tuple(ids), stops, template_vars or {},
                   control)

    @classmethod
    def from_hf(cls, tokenizer, generation_config=None) -> ChatContract:
        """From a transformers tokenizer (and the model's generation config, whose EOS list may be longer)."""
        tokenize = hf_tokenizer(tokenizer)
        special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
        # What split_special_tokens leaves as text: the special added tokens.
        control = [t.content for t in tokenizer.added_tokens_decoder.values() if t.special]
        gen_eos = getattr(generation_config, "eos_token_id", None)
        gen_eos = gen_eos if isinstance(gen_eos, list) else [gen_eos]
        with_special = list(tokenizer("a", add_special_tokens=True)["input_ids"])
        bos_id = tokenizer.bos_token_id
        add_bos = bos_id is not None and bool(with_special) and with_special[0] == bos_id and with_special != tokenize("a")
        template_vars = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
        return cls.build(tokenizer.chat_template, tokenizer.bos_token or "", tokenizer.eos_token or "", bos_id,
                         [tokenizer.eos_token_id, *gen_eos], add_bos, tokenize, special.__contains__,
                         lambda i: tokenizer.convert_ids_to_tokens(i), template_vars, control)

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

        # What parse_special=False leaves as text: CONTROL and UNKNOWN tokens (~20 ms for a 49k vocabulary).
        parsed_only_as_special = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
        control = [text(i) for i in range(llama_cpp.llama_vocab_n_tokens(vocab))
                   if llama_cpp.llama_vocab_get_attr(vocab, i) & parsed_only_as_special]
        return cls.build(llm.metadata.get("tokenizer.chat_template"), text(bos), text(eos),
                         bos if bos >= 0 else None, [eos, eot], bool(model.add_bos_token()) and bos >= 0,
                         llama_tokenizer(llm), is_special, text, control_tokens=control)


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
