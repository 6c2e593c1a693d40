"""Chat examples -> token ids with answer-only labels, and a collator that pads each batch to its own longest row.

    records = load_chat_records(Path("data/processed/healthcare/train.jsonl"))
    examples = tokenize_chat_records(records, tokenizer, max_seq_length=256, source="train.jsonl")
    batch = ChatCollator(pad_token_id=tokenizer.pad_token_id)(examples[:8])

Why the prompt and the answer are tokenised separately: at inference the prompt is rendered with
`add_generation_prompt=True`, tokenised, and the model continues it. Training on exactly that prompt's ids followed
by the answer's ids and the end-of-turn token teaches the same continuation, including when to stop. Template,
BOS and end-of-turn token come from the model's chat contract (stages/inference/chat.py), shared with the engines.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from stages.errors import StageError
from stages.fileio import read_jsonl
from stages.inference.chat import ChatContract, Tokenize, hf_tokenizer
from stages.inference.grounding import GROUNDING

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # labels with this value are left out of the loss (torch cross-entropy's ignore_index)


def validate_messages(messages: object, where: str) -> list[dict]:
    """A chat record needs a user turn and ends with a non-empty assistant answer."""
    if not isinstance(messages, list) or not messages:
        raise StageError(f"{where}: field 'messages' must be a non-empty list of {{role, content}}; "
                         "re-run `domain-llm prepare`")
    for turn in messages:
        if not isinstance(turn, dict) or not isinstance(turn.get("role"), str) or not isinstance(
                turn.get("content"), str):
            raise StageError(f"{where}: field 'messages' has an entry without string 'role' and 'content'")
    if messages[-1]["role"] != "assistant" or not messages[-1]["content"].strip():
        raise StageError(f"{where}: field 'messages' must end with a non-empty assistant answer")
    if not any(turn["role"] == "user" for turn in messages):
        raise StageError(f"{where}: field 'messages' has no user turn")
    return messages


def load_chat_records(path: Path) -> list[list[dict]]:
    """Read a prepared split and return its conversations; no rows is an error, not an empty training run."""
    records = read_jsonl(path)
    if not records:
        raise StageError(f"{path}: no rows; check the prepare stage's output (data.num_samples, cleaning filters)")
    conversations = []
    for i, record in enumerate(records, start=1):
        if "messages" not in record:
            raise StageError(f"{path}: record {i}: field 'messages' missing; re-run `domain-llm prepare`")
        conversations.append(validate_messages(record["messages"], f"{path}: record {i}"))
    return conversations


def drop_system_prompts(conversations: list[list[dict]], share: float, seed: int) -> list[list[dict]]:
    """The conversations with the system message removed from a seeded `share` of the plain ones (system, user,
    assistant), so the model also learns to answer and end its turn when a client sends no system prompt (without
    any, greedy answers looped to max_new_tokens). Grounded chats keep theirs: it carries the instruction to read
    the numbered passages."""
    plain = [i for i, c in enumerate(conversations)
             if len(c) == 3 and c[0]["role"] == "system" and GROUNDING not in c[0]["content"]]
    chosen = set(random.Random(f"{seed}:no-system-prompt").sample(plain, round(len(plain) * share)))
    return [c[1:] if i in chosen else c for i, c in enumerate(conversations)]


def tokenize_chat(contract: ChatContract, tokenize: Tokenize, messages: list[dict],
                  plain: Tokenize | None = None) -> tuple[list[int], list[int]]:
    """(input_ids, labels): the templated prompt masked with IGNORE_INDEX, then answer ids + the model's end-of-turn
    token supervised. The prompt ids are exactly what the engines generate from (`contract.chat_ids`); message
    text is tokenized as text (`plain`: control-token text inside a message never becomes a control token; without
    it such a message is refused rather than forged)."""
    if plain is None:
        plain = _refuse_control_text(contract, tokenize)
    prompt_ids = contract.chat_ids(messages[:-1], tokenize, plain)
    answer_ids = contract.answer_ids(messages[-1]["content"], plain)
    return prompt_ids + answer_ids, [IGNORE_INDEX] * len(prompt_ids) + answer_ids


def _refuse_control_text(contract: ChatContract, tokenize: Tokenize) -> Tokenize:
    """A `plain` stand-in for callers that have none: text holding control-token text is refused."""
    def plain(text: str) -> list[int]:
        if any(token in text for token in contract.control_tokens):
            raise StageError("chat: an answer holds control-token text; pass the plain tokenizer "
                             "(stages.inference.chat.hf_tokenizer(tokenizer, control=False))")
        return tokenize(text)
    return plain


def hf_contract(tokenizer) -> tuple[ChatContract, Tokenize]:
    """The chat contract of an HF tokenizer and its tokenize function (special tokens parsed, none added).
    Training needs only the turn-closing token, which the template decides (EOS when it writes none)."""
    if tokenizer.chat_template is None:
        raise StageError("the base model's tokenizer has no chat template: add chat_template.jinja to models/base")
    return ChatContract.from_hf(tokenizer), lambda text: list(tokenizer(text, add_special_tokens=False)["input_ids"])


def tokenize_chat_records(conversations: list[list[dict]], tokenizer, max_seq_length: int,
                          source: str = "data") -> list[dict]:
    """Tokenise every conversation; rows longer than max_seq_length are dropped (a cut answer would teach the
    model to stop mid-sentence or never see its end-of-turn), and the count is logged."""
    contract, tokenize = hf_contract(tokenizer)
    plain = hf_tokenizer(tokenizer, control=False)
    examples, too_long = [], 0
    for messages in conversations:
        input_ids, labels = tokenize_chat(contract, tokenize, messages, plain)
        if len(input_ids) > max_seq_length:
            too_long += 1
            continue
        examples.append({"input_ids": input_ids, "labels": labels})
    if too_long:
        log.warning("%s: dropped %d of %d rows longer than train.max_seq_length=%d tokens",
                    source, too_long, len(conversations), max_seq_length)
    if not examples:
        raise StageError(f"{source}: all {len(conversations)} rows are longer than train.max_seq_length="
                         f"{max_seq_length} tokens; raise train.max_seq_length")
    return examples


class ChatExamples(torch.utils.data.Dataset):
    """A list of tokenised examples; transformers' LengthGroupedSampler reads len(row['input_ids'])."""

    def __init__(self, examples: list[dict]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        return self.examples[index]

    def num_tokens(self) -> int:
        return sum(len(e["input_ids"]) for e in self.examples)


@dataclass
class ChatCollator:
    """Right-pads a batch to its longest row (dynamic padding), never to max_seq_length."""

    pad_token_id: int
    pad_to_multiple_of: int = 1

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        width = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            input_ids[row, :n] = torch.tensor(f["input_ids"], dtype=torch.long)
            labels[row, :n] = torch.tensor(f["labels"], dtype=torch.long)
            attention_mask[row, :n] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
