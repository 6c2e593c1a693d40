"""Each metric against values computed by hand on small fixed inputs, including edge cases."""

from __future__ import annotations

import math

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from stages.evaluate import metrics as m


def test_normalize_answer_lowercases_strips_punctuation_articles_whitespace():
    assert m.normalize_answer("The Answer, is:  A cat!") == "answer is cat"
    # case option keeps case but still drops articles whatever their case
    assert m.normalize_answer("The Answer, is:  A cat!", case_sensitive=True) == "Answer is cat"
    # Unicode punctuation (« », em dash) and full-width letters (NFKC)
    assert m.normalize_answer("«Ｐａｒｉｓ» — capital") == "paris capital"
    assert m.normalize_answer("") == ""


@pytest.mark.parametrize(("pred", "ref", "case_sensitive", "expected"), [
    ("The Paris.", "paris", False, 1.0),
    ("The Paris.", "paris", True, 0.0),
    ("identical string", "identical string", False, 1.0),
    ("", "", False, 1.0),
    ("", "paris", False, 0.0),
    ("Zürich", "zürich", False, 1.0),
    ("Zurich", "Zürich", False, 0.0),
    ("Ｐａｒｉｓ！", "paris", False, 1.0),
    ("paris france", "paris", False, 0.0),
])
def test_exact_match(pred, ref, case_sensitive, expected):
    assert m.exact_match(pred, ref, case_sensitive) == expected


def test_token_accuracy_is_positional_over_reference_length():
    # normalised: pred [cat, sat, down], ref [cat, sat, on, mat] -> positions 0, 1 match -> 2/4
    assert m.token_accuracy("the cat sat down", "a cat sat on the mat") == 0.5
    # shifted by one token: no position matches although every token occurs
    assert m.token_accuracy("x cat sat", "cat sat") == 0.0
    # extra prediction tokens beyond the reference are ignored
    assert m.token_accuracy("cat sat on mat extra words", "cat sat") == 1.0
    assert m.token_accuracy("", "cat sat") == 0.0
    assert m.token_accuracy("", "") == 1.0
    assert m.token_accuracy("anything", "") == 0.0
    assert m.token_accuracy("naïve café", "Naïve café") == 1.0


def test_token_prf_bag_of_tokens():
    prf = m.token_prf("cat cat dog", "cat dog dog mouse")
    # common = min(2,1) cat + min(1,2) dog = 2 -> P = 2/3, R = 2/4, F1 = 4/7
    assert prf.precision == pytest.approx(2 / 3)
    assert prf.recall == pytest.approx(0.5)
    assert prf.f1 == pytest.approx(4 / 7)
    assert m.token_prf("", "") == m.PRF(1.0, 1.0, 1.0)
    assert m.token_prf("", "cat") == m.PRF(0.0, 0.0, 0.0)
    assert m.token_prf("dog", "cat") == m.PRF(0.0, 0.0, 0.0)
    assert m.token_prf("日本 語", "日本 語").f1 == 1.0


def test_rouge_hand_computed_with_stemming():
    # stemmed tokens: pred [the, cat, sat], ref [the, cat, sat, on, the, mat]
    scores = m.rouge("the cats sat", "the cat sat on the mat")
    assert scores["rouge1"] == pytest.approx(2 / 3)       # P 3/3, R 3/6
    assert scores["rouge2"] == pytest.approx(4 / 7)       # bigrams: P 2/2, R 2/5
    assert scores["rougeL"] == pytest.approx(2 / 3)       # LCS 3
    assert m.rouge("same words here", "same words here") == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}
    assert m.rouge("", "the cat") == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


def test_rouge_matches_rouge_score_default_on_ascii_and_keeps_unicode_words():
    pred = "Running quickly, the runners ran to the finishing lines!"
    ref = "The runner runs quick to the finish line."
    default = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True).score(ref, pred)
    ours = m.rouge(pred, ref)
    for name in ("rouge1", "rouge2", "rougeL"):
        assert ours[name] == pytest.approx(default[name].fmeasure)
    # the default tokenizer deletes non-ASCII letters (identical CJK strings score 0 there); ours does not
    assert m.rouge("日本 語", "日本 語")["rouge1"] == 1.0
    assert m.rouge("日本 語", "中国 語")["rouge1"] == pytest.approx(0.5)


def test_corpus_bleu_hand_computed_and_equal_to_sacrebleu():
    preds = ["the cat sat on the mat", "hello world"]
    refs = ["the cat sat on a mat", "hello there world"]
    out = m.corpus_bleu(preds, refs)
    # n-gram matches/totals summed over both segments: 7/8, 3/6, 2/4, 1/3; hyp 8 tokens, ref 9
    p = [7 / 8, 3 / 6, 2 / 4, 1 / 3]
    bp = math.exp(1 - 9 / 8)
    assert out["bleu"] == pytest.approx(bp * math.exp(sum(math.log(x) for x in p) / 4))
    for n in range(4):
        assert out[f"bleu_precision_{n + 1}"] == pytest.approx(p[n])
    assert out["bleu"] == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score / 100)


def test_bleu_edge_cases():
    assert m.corpus_bleu(["a b c d e"], ["a b c d e"])["bleu"] == pytest.approx(1.0)
    assert m.corpus_bleu([""], ["a b c d e"])["bleu"] == 0.0
    assert m.sentence_bleu("a b c d e", "a b c d e") == pytest.approx(1.0)
    assert m.sentence_bleu("", "a b") == 0.0


def test_perplexity_is_token_weighted():
    # (2 + 4) nats over (1 + 3) tokens
    assert m.corpus_perplexity([2.0, 4.0], [1, 3]) == pytest.approx(math.exp(1.5))
    assert m.sample_perplexity(3.0, 3) == pytest.approx(math.e)
    assert math.isnan(m.corpus_perplexity([], []))
    assert math.isnan(m.sample_perplexity(0.0, 0))


def test_extract_numbers():
    text = "At 5% for 10 years, pay $1,234.56; loss −3 and -2.5, range 3-4, .5 and COVID-19."
    assert m.extract_numbers(text) == [5.0, 10.0, 1234.56, -3.0, -2.5, 3.0, 4.0, 0.5, 19.0]
    assert m.extract_numbers("no numbers here") == []
    assert m.extract_numbers("") == []


@pytest.mark.parametrize(("pred", "expected", "correct"), [
    ("The monthly payment is $1,234.56.", 1234.56, 1.0),
    ("about 5.009", 5.0, 1.0),           # within the absolute tolerance 0.01
    ("about 5.02", 5.0, 0.0),
    ("1,000,050", 1_000_000.0, 1.0),     # within the relative tolerance 1e-4 (= 100)
    ("1,000,200", 1_000_000.0, 0.0),
    ("at 5% over 3 years you get 115.76", 115.76, 1.0),   # any number in the answer counts
    ("I cannot say", 42.0, 0.0),
    ("", 42.0, 0.0),
    ("-12.5", -12.5, 1.0),
])
def test_numeric_match(pred, expected, correct):
    assert m.numeric_match(pred, expected) == correct


@pytest.fixture(scope="module")
def similarity():
    return m.SemanticSimilarity()


def test_semantic_similarity(similarity):
    preds = ["The patient should see a cardiologist.", "", "The patient should see a heart specialist.",
             "Stock prices rose sharply today.", "", "Ça va très bien, merci."]
    refs = ["The patient should see a cardiologist.", "Take aspirin.", "The patient should see a cardiologist.",
            "The patient should see a cardiologist.", "", "Ça va très bien, merci."]
    sims = similarity(preds, refs)
    assert sims[0] == pytest.approx(1.0, abs=1e-5)      # identical
    assert sims[1] == 0.0                               # empty prediction, by definition
    assert sims[4] == 1.0                               # both empty
    assert sims[5] == pytest.approx(1.0, abs=1e-5)      # identical unicode
    assert sims[2] > sims[3] + 0.2                      # paraphrase well above an unrelated sentence
    assert all(-1.0 <= s <= 1.0 for s in sims)
    assert similarity([], []) == []


def test_repeats_flags_a_generation_stuck_in_a_loop_only():
    looped = "Psoriasis causes red patches on the elbows, knees, hips, elbows, knees, hips, elbows, knees, hips, elbows"
    assert m.repeats(looped) == 1.0
    assert m.repeats("hair loss, hair loss, hair loss, hair loss, hair loss, hair loss") == 1.0
    assert m.repeats("Psoriasis causes red, raised, scaly patches of skin, often on the elbows, knees and scalp.") == 0.0
    assert m.repeats("") == 0.0
