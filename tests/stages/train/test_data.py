"""Answer-only labels, end-of-turn supervision, dynamic padding and length-grouped batches."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from stages.errors import StageError
from stages.fileio import write_jsonl
from stages.train.data import (
    IGNORE_INDEX,
    ChatCollator,
    hf_contract,
    load_chat_records,
    tokenize_chat,
    tokenize_chat_records,
)
from stages.train.loop import build_trainer
from stages.train.settings import TrainSettings
from tests.stages.train.conftest import chat_records


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_labels_mask_everything_but_the_answer_and_its_end_of_turn(tokenizer):
    messages = chat_records(1)[0]["messages"]
    input_ids, labels = tokenize_chat(*hf_contract(tokenizer), messages)
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])

    assert labels[:n_prompt] == [IGNORE_INDEX] * n_prompt  # system + user + "<|im_start|>assistant\n"
    assert labels[n_prompt:] == input_ids[n_prompt:]  # every answer token supervised, none masked
    assert IGNORE_INDEX not in labels[n_prompt:]
    assert labels[-1] == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.decode(input_ids[n_prompt:]) == messages[-1]["content"] + "<|im_end|>"
    # The supervised sequence is exactly what the chat template renders for the whole conversation.
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    assert full.startswith(tokenizer.decode(input_ids))


def test_collator_pads_to_the_longest_row_not_to_max_length():
    rows = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [1, 2, 3, 4, 5, 6], "labels": [1] * 6}]
    batch = ChatCollator(pad_token_id=0)(rows)
    assert batch["input_ids"].shape == (2, 6)
    assert batch["attention_mask"][0].tolist() == [1, 1, 1, 0, 0, 0]
    assert batch["labels"][0].tolist() == [-100, 6, 7, -100, -100, -100]  # padding never supervised


def test_length_grouped_batches_pad_less_than_random_ones(tokenizer, tmp_path):
    # Rows of very different lengths: short answers and long ones. transformers groups within "megabatches" of
    # min(n // (4 * batch), 50) batches, so grouping needs a few hundred rows to show.
    rows = chat_records(160)
    for i, row in enumerate(rows):
        if i % 2:
            row["messages"][-1]["content"] = " ".join(["The answer is long."] * 12)
    examples = tokenize_chat_records([r["messages"] for r in rows], tokenizer, 512)

    def padded_tokens(group_by_length: bool) -> int:
        settings = TrainSettings(batch_size=4, group_by_length=group_by_length, checkpoint_dir=str(tmp_path),
                                 max_steps=1)
        trainer = build_trainer(torch.nn.Linear(2, 2), tokenizer, examples, None, settings, on_cuda=False,
                                log_curves=False)
        return sum(int((b["attention_mask"] == 0).sum()) for b in trainer.get_train_dataloader())

    assert padded_tokens(True) < padded_tokens(False) / 3


def test_no_rows_is_a_clear_error(tmp_path):
    path = tmp_path / "train.jsonl"
    write_jsonl(path, [])
    with pytest.raises(StageError, match=r"train.jsonl: no rows"):
        load_chat_records(path)


def test_record_without_an_answer_names_the_record(tmp_path):
    rows = chat_records(2)
    rows[1]["messages"] = rows[1]["messages"][:-1]
    write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(StageError, match=r"record 2: field 'messages' must end with a non-empty assistant answer"):
        load_chat_records(tmp_path / "train.jsonl")


def test_rows_longer_than_max_seq_length_are_dropped_not_cut(tokenizer):
    messages = [r["messages"] for r in chat_records(3)]
    messages[0][-1]["content"] = "word " * 300
    examples = tokenize_chat_records(messages, tokenizer, max_seq_length=128)
    assert len(examples) == 2
    assert all(e["labels"][-1] == tokenizer.eos_token_id for e in examples)
    with pytest.raises(StageError, match="raise train.max_seq_length"):
        tokenize_chat_records(messages[:1], tokenizer, max_seq_length=128)
