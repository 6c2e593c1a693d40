"""Every cleaning step on real records, on and off, with dropped rows counted by reason."""

from __future__ import annotations

import random

import pytest

from stages.errors import StageError
from stages.prepare.cleaning import CleaningConfig, clean_records, clean_text, example_text, length_function
from stages.prepare.dedup import NearDuplicateIndex, jaccard, normalize_for_matching, shingles
from stages.prepare.records import make_record

ALL_OFF = CleaningConfig(decode_html=False, remove_urls=False, remove_emails=False, normalize_whitespace=False,
                         strip_special_chars=False, drop_empty=False, dedup_exact=False, dedup_near=False,
                         min_instruction_length=0, min_output_length=0, max_length=0, length_unit="chars")


def with_(**changes) -> CleaningConfig:
    return CleaningConfig(**{**ALL_OFF.__dict__, **changes})


def rec(instruction: str, output: str = "A full answer in plain words.", domain: str = "legal",
        input_text: str = "") -> dict:
    return make_record(domain, instruction, output, "local_file:t.jsonl", input_text=input_text,
                       system_prompt="SYS")


@pytest.mark.parametrize(("step", "raw", "cleaned"), [
    ("decode_html", "Tom &amp; Jerry &lt;3 &quot;law&quot; &#39;x&#39;", "Tom & Jerry <3 \"law\" 'x'"),
    ("remove_urls", "See https://example.org/a?b=1 or www.law.gov/x for more", "See  or  for more"),
    ("remove_emails", "Write to jane.doe+law@firm.co.uk today", "Write to  today"),
    ("normalize_whitespace", "  What\t is \u00a0a   lien? \n\n\n\n Answer  \n", "What is a lien?\n\nAnswer"),
    ("strip_special_chars", "caf\u00e9\x00 zero\u200bwidth \x07bell\ufffd\nline\ttab", "caf\u00e9 zerowidth bell\nline\ttab"),
])
def test_each_text_step_on_and_off(step, raw, cleaned):
    assert clean_text(raw, with_(**{step: True})) == cleaned
    assert clean_text(raw, ALL_OFF) == raw


def test_cleaned_text_refreshes_messages_and_id():
    record = rec("What is a &quot;lien&quot;?   ", output="A claim   on property.")
    old_id = record["id"]
    (kept,), dropped, _ = clean_records([record], CleaningConfig(length_unit="chars"), "SYS", seed=0)
    assert kept["instruction"] == 'What is a "lien"?' and kept["output"] == "A claim on property."
    assert kept["messages"] == [{"role": "system", "content": "SYS"}, {"role": "user", "content": 'What is a "lien"?'},
                                {"role": "assistant", "content": "A claim on property."}]
    assert kept["id"] != old_id and not dropped


def test_empty_rows_are_dropped_and_counted():
    records = [rec("What is a lien?"), rec("   ", output="answer"), rec("What is a tort?", output=""),
               rec("https://only-a-link.example.com", output="some answer")]
    kept, dropped, _ = clean_records(records, CleaningConfig(length_unit="chars"), None, seed=0)
    assert [r["instruction"] for r in kept] == ["What is a lien?"]
    assert dropped == {"empty": 3}
    kept, dropped, _ = clean_records([rec("   ", output="answer")], with_(drop_empty=False), None, seed=0)
    assert len(kept) == 1 and not dropped


def test_length_limits_in_characters():
    config = with_(min_instruction_length=5, min_output_length=3, max_length=60)
    records = [rec("Why?"), rec("What is a lien?", output="OK"), rec("What is a lien?", output="x" * 60),
               rec("What is a tort?", output="A civil wrong.")]
    kept, dropped, unit = clean_records(records, config, None, seed=0)
    assert unit == "chars" and [r["instruction"] for r in kept] == ["What is a tort?"]
    assert dropped == {"too_short_instruction": 1, "too_short_output": 1, "too_long": 1}


def train_tokenizer(path):
    """A small real BPE tokenizer.json (what the base stage writes to models/base), built in milliseconds."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    corpus = ["What is a lien? A claim on property.", "Compound interest grows on interest.", "A tort is a wrong."]
    tokenizer.train_from_iterator(corpus * 20, trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer.save(str(path))
    return path


def test_length_in_tokens_of_the_model_tokenizer(tmp_path):
    from tokenizers import Tokenizer

    tokenizer_path = train_tokenizer(tmp_path / "tokenizer.json")
    length, unit = length_function(CleaningConfig(length_unit="auto"), tokenizer_path)
    text = "Compound interest on 1000 at 5% for 3 years"
    assert unit == "tokens"
    assert length(text) == len(Tokenizer.from_file(str(tokenizer_path)).encode(text, add_special_tokens=False).ids)
    assert length(text) != len(text)
    # a max of N tokens keeps an example of N tokens that an N-character max drops
    record = rec("What is a lien?", output="A claim on property.")
    n_tokens = length(example_text(record))
    assert n_tokens < len(example_text(record))
    kept, _, unit = clean_records([dict(record)], with_(max_length=n_tokens, length_unit="auto"), None, 0,
                                  tokenizer_path)
    assert unit == "tokens" and len(kept) == 1
    kept, dropped, unit = clean_records([dict(record)], with_(max_length=n_tokens, length_unit="chars"), None, 0,
                                        tokenizer_path)
    assert unit == "chars" and not kept and dropped == {"too_long": 1}
    # no tokenizer file: characters
    assert length_function(CleaningConfig(length_unit="tokens"), tmp_path / "none.json")[1] == "chars"


def test_exact_duplicates_judged_on_normalised_prompt():
    records = [rec("What is a lien?"), rec("what is a LIEN", output="Another answer."),
               rec("What is a lien?", input_text="In Texas."), rec("What is a tort?")]
    kept, dropped, _ = clean_records(records, with_(dedup_exact=True), None, seed=0)
    assert len(kept) == 3 and dropped == {"duplicate_exact": 1}
    kept, dropped, _ = clean_records(records, ALL_OFF, None, seed=0)
    assert len(kept) == 4 and not dropped


def test_near_duplicates_dropped_distinct_prompts_kept():
    base = ("Explain how a court decides whether a contract term is unconscionable and what remedies a party "
            "can ask for when the term is struck out by the judge in a consumer dispute")
    records = [rec(base), rec(base + " today"), rec("What are the elements of negligence in a personal injury case "
                                                      "brought by a pedestrian against a driver?")]
    kept, dropped, _ = clean_records(records, with_(dedup_near=True, near_dup_threshold=0.9), None, seed=0)
    assert len(kept) == 2 and dropped == {"duplicate_near": 1}
    kept, dropped, _ = clean_records(records, with_(dedup_near=True, near_dup_threshold=0.99), None, seed=0)
    assert len(kept) == 3 and not dropped


def test_near_duplicate_index_finds_variants_among_many():
    rng = random.Random(1)
    words = [f"w{i}" for i in range(3000)]
    texts = [" ".join(rng.choices(words, k=30)) for _ in range(3000)]
    index = NearDuplicateIndex(threshold=0.8)
    for i, text in enumerate(texts):
        index.add(text, i)
    found = 0
    for i in range(0, 3000, 30):
        variant = texts[i] + " extra"  # one more word: Jaccard 28/29 ~ 0.97
        assert jaccard(shingles(normalize_for_matching(variant)), shingles(normalize_for_matching(texts[i]))) > 0.9
        hit = index.find(variant)
        found += hit is not None and hit[0] == i
    assert found == 100
    assert index.find(" ".join(rng.choices(words, k=30))) is None
    with pytest.raises(ValueError):
        NearDuplicateIndex(threshold=0)


def test_domain_balancing_caps_every_domain_at_the_smallest():
    records = [rec(f"Legal question number {i} about contracts?", domain="legal") for i in range(10)]
    records += [rec(f"Tax question number {i} about deductions?", domain="tax") for i in range(4)]
    kept, dropped, _ = clean_records([dict(r) for r in records], with_(balance_domains=True), None, seed=3)
    assert sorted(r["domain"] for r in kept).count("legal") == 4 and len(kept) == 8
    assert dropped == {"domain_balancing": 6}
    again, _, _ = clean_records([dict(r) for r in records], with_(balance_domains=True), None, seed=3)
    assert [r["id"] for r in again] == [r["id"] for r in kept]  # seeded


def test_unknown_cleaning_key_and_unit_are_errors():
    with pytest.raises(StageError, match="unknown key"):
        CleaningConfig.from_cfg({"dedup": True})
    with pytest.raises(StageError, match="length_unit"):
        CleaningConfig.from_cfg({"length_unit": "words"})
