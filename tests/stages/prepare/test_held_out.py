"""Held-out means held out: the predicate (whole answers, cut windows, taught template wording), grounded
prompts over the real fact-sheet index, and prepare refusing a planted leak."""

from __future__ import annotations

import re

import pytest

from stages.errors import StageError
from stages.index.chunking import chunk_text
from stages.inference.retrieval import Chunk, Hit, Retriever
from stages.prepare.held_out import MIN_SHARED_WORDS, HeldOutAnswers, HeldOutFact, skip_held_out, words
from stages.prepare.main import main
from stages.prepare.records import make_record

from .conftest import read_split
from .leak_counts import leak_counts

# 40 words: cut by chunk_text(max_words=15, overlap_words=5) into windows of words 0-14, 10-24, 20-34, 30-39
HELD_OUT = ("Compound interest grows a deposit because the interest of each period is added to the balance "
            "and then earns interest itself, so a saver who leaves the money alone for decades sees the "
            "balance rise faster than under simple interest.")
OTHERS = ("Inflation is the general rise of prices over time, which erodes what money buys.",
          "A budget lists expected income and spending for a month or a year.")
MISREPRESENTATION = ("Misrepresentation belongs to contract law, among the factors that can make a contract "
                     "voidable, and overlaps with tort law.")
DURESS = ("Duress belongs to contract law, among the factors that can make a contract voidable; duress is "
          "also a defense in criminal law.")


def fact(answer: str, name: str = "finance.compound_interest.definition") -> HeldOutFact:
    return HeldOutFact("test_facts", name, answer)


def test_every_window_cut_from_a_held_out_paragraph_states_it():
    assert len(words(HELD_OUT)) == len(HELD_OUT.split()) == 40
    held_out = HeldOutAnswers([fact(HELD_OUT)], taught=OTHERS)
    chunks = chunk_text("\n\n".join([OTHERS[0], HELD_OUT, OTHERS[1]]), max_words=15, overlap_words=5)
    tokens = HELD_OUT.split()
    windows = [" ".join(tokens[i:i + 15]) for i in (0, 10, 20, 30)]
    from_paragraph = [any(w in c for w in windows) for c in chunks]
    assert sum(from_paragraph) == 4 and not any(HELD_OUT in c for c in chunks)  # only pieces, never whole
    assert [held_out.stated_in(c) is not None for c in chunks] == from_paragraph
    assert held_out.stated_in(OTHERS[0]) is None


def test_a_piece_counts_from_min_shared_words_and_the_whole_answer_always():
    held_out = HeldOutAnswers([fact(HELD_OUT)])
    tokens = HELD_OUT.split()
    piece = " ".join(tokens[5:5 + MIN_SHARED_WORDS])
    assert held_out.stated_in(f"Note: {piece} (see above)") == fact(HELD_OUT)
    assert held_out.stated_in(" ".join(tokens[5:5 + MIN_SHARED_WORDS - 1])) is None
    # case, spacing and punctuation (what cleaning and chunking change) do not matter
    assert held_out.stated_in(piece.upper().replace(" ", "  ,")) == fact(HELD_OUT)
    short = HeldOutAnswers([fact("Gout is treated with colchicine.", "healthcare.gout.treatment")])
    assert short.stated_in("[2] Gout: Gout is treated with colchicine. It flares at night.") is not None
    assert short.stated_in("Gout is treated with care.") is None


def test_template_wording_a_taught_answer_shares_does_not_count():
    """duress and misrepresentation share 13 words; with duress taught, its paragraph does not state the
    held-out misrepresentation fact, while a window naming misrepresentation still does."""
    misrepresentation = fact(MISREPRESENTATION, "legal.misrepresentation.area")
    assert HeldOutAnswers([misrepresentation]).stated_in(DURESS) == misrepresentation  # without the exemption
    held_out = HeldOutAnswers([misrepresentation], taught=[DURESS])
    assert held_out.stated_in(f"Duress\n{DURESS}") is None
    window = "Misrepresentation belongs to contract law, among the factors"
    assert held_out.stated_in(window) == misrepresentation
    assert held_out.stated_in(f"Misrepresentation\n{MISREPRESENTATION}") == misrepresentation
    # a taught answer holding the held-out one whole does not exempt it
    assert HeldOutAnswers([misrepresentation], taught=[f"{MISREPRESENTATION} More."]).stated_in(
        MISREPRESENTATION) == misrepresentation


def test_from_splits_reads_both_held_out_splits_and_teaches_train_and_validation_only():
    asked = make_record("legal", "Which area is misrepresentation in?", MISREPRESENTATION, "synthetic",
                        fact_id="legal.misrepresentation.area")
    no_fact_id = make_record("legal", "Which area is duress in?", DURESS, "synthetic")
    taught = make_record("legal", "What is duress?", DURESS, "synthetic", fact_id="legal.duress.area")
    held_out = HeldOutAnswers.from_splits({"test_facts": [asked, asked], "validation_facts": [no_fact_id],
                                           "test": [taught]})
    assert held_out.facts == [HeldOutFact("test_facts", "legal.misrepresentation.area", MISREPRESENTATION),
                              HeldOutFact("validation_facts", no_fact_id["id"], DURESS)]
    assert held_out.stated_in(DURESS).split == "validation_facts"  # the test split teaches nothing
    assert HeldOutAnswers.from_splits({"test_facts": [asked], "train": [taught]}).stated_in(DURESS) is None


def test_skip_held_out_keeps_the_order_of_the_other_passages():
    hits = [Hit(Chunk(f"c{i}", "d", title, text), 1.0 - i / 10) for i, (title, text) in enumerate(
        [("Budget", OTHERS[1]), ("Compound interest", HELD_OUT), ("Inflation", OTHERS[0])])]
    assert [h.chunk.chunk_id for h in skip_held_out(hits, HeldOutAnswers([fact(HELD_OUT)]))] == ["c0", "c2"]
    assert skip_held_out(hits, None) == hits and skip_held_out(hits, HeldOutAnswers([])) == hits


@pytest.fixture(scope="module")
def one_torch_thread():
    """MiniLM embeds the passages and each grounded question: on the shared 2-core test box one thread is
    several times faster than contending for both (measured 2 s vs 77 s for the grounding test)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def finance_index(tmp_path_factory, one_torch_thread):
    """models/index over the finance fact sheets (every fact, held-out ones included), by the index stage."""
    from stages.config import compose
    from stages.index.main import main as index_stage

    root = tmp_path_factory.mktemp("finance_index")
    index_stage(compose(["domains=[finance]", f"paths.index={root / 'index'}",
                         f"paths.metrics={root / 'metrics'}", f"index.docs_dir={root / 'no_docs'}"]))
    return root / "index"


def test_grounded_prompts_skip_held_out_facts_and_still_hold_the_answer(tmp_path, prep_cfg, finance_index):
    # 60 samples: ~13 grounded prompts per run, plenty to meet held-out passages among their top 3
    cfg = prep_cfg("domain=finance", f"paths.index={finance_index}", "data.num_samples=60")
    counts = leak_counts(cfg)
    # without the filter the top passages hand the model held-out answers (the leak this closes) ...
    assert sum(leaked for leaked, _ in counts["before"].values()) > 0, counts
    # ... with it none is in any train or validation prompt
    assert counts["after"] == {split: (0, total) for split, (_, total) in counts["before"].items()}

    metrics = main(cfg)
    assert metrics["checks"]["held_out_text"]
    train = read_split(tmp_path, "finance", "train")
    grounded = [r for r in train if r.get("grounded")]
    wanted = round(cfg.prepare.grounded.share * len(train))
    assert len(grounded) == metrics["grounded_train_examples"] == wanted
    held = {r["output"] for split in ("test_facts", "validation_facts")
            for r in read_split(tmp_path, "finance", split)}
    chunks = {c.chunk_id: c.text for c in Retriever.load(finance_index).chunks}
    for record in grounded:
        passages = [chunks[chunk_id] for chunk_id in record["passages"]]
        assert len(passages) == cfg.prepare.grounded.top_k and any(record["output"] in p for p in passages)
        assert not [a for a in held for p in passages if a in p], record["id"]


def test_prepare_refuses_a_training_prompt_that_states_a_held_out_fact(tmp_path, prep_cfg, monkeypatch):
    """A leak planted in the source (standing in for a future bug): the real check stops the run."""
    import stages.prepare.main as stage

    real_source, planted = stage.load_source, {}

    def source_with_a_leak(cfg):
        loaded = real_source(cfg)
        asked = next(r for r in loaded.records if r.get("unseen_fact") and not r.get("validation_fact"))
        leak = make_record("legal", "Summarise the note below in one sentence.", "It is about the law.",
                           "synthetic", input_text=f"Note: {asked['output']}",
                           system_prompt=cfg.domain.system_prompt)
        planted.update(leak=leak, fact=asked["fact_id"])
        loaded.records.append(leak)
        return loaded

    monkeypatch.setattr(stage, "load_source", source_with_a_leak)
    with pytest.raises(StageError) as error:
        stage.main(prep_cfg("domain=legal", "prepare.grounded.share=0"))
    line = str(error.value)
    assert "\n" not in line and line.startswith("data validation failed, nothing written: held_out_text: ")
    assert re.search(rf"\(e\.g\. (train|validation):{planted['leak']['id']} messages\[1\] \(user\) states "
                     rf"test_facts fact {re.escape(planted['fact'])}\)$", line), line
    assert "1 train/validation records state one" in line
    assert not (tmp_path / "data").exists() and not (tmp_path / "metrics").exists()
