"""GRPO's verifiable rewards on hand cases: the number, the cited passage, the end of turn."""

from __future__ import annotations

from stages.align.rewards import citation_reward, numeric_close_reward, numeric_reward, stop_reward


def test_numeric_reward_checks_the_exact_number_and_skips_other_questions():
    completions = ["The savings grow to $106702.42.", "The savings grow to $106,000.", "A bond is a loan.",
                   [{"role": "assistant", "content": "It is 106702.42 dollars."}]]
    wanted = [106702.42, 106702.42, None, 106702.42]
    assert numeric_reward(["p"] * 4, completions, numeric_answer=wanted) == [1.0, 0.0, None, 1.0]


def test_numeric_close_reward_gives_partial_credit_for_the_last_number():
    completions = ["ROI = ($300 - $100) / $100 x 100 = 200%.", "ROI = ($300 - $100) / $100 x 100 = 150%.",
                   "ROI = 100 / 100 x 100 = 600%.", "It grew a lot.", "A bond is a loan."]
    wanted = [200.0, 200.0, 200.0, 200.0, None]
    # the last number is the result: the inputs written before it (300, 100) earn nothing
    assert numeric_close_reward(["p"] * 5, completions, numeric_answer=wanted) == [1.0, 0.75, 0.0, 0.0, None]


def test_citation_reward_needs_a_passage_holding_the_answer():
    completions = ["Equity is assets minus liabilities [2].", "Equity is assets minus liabilities [1].",
                   "Equity is assets minus liabilities.", "Equity [2][7].", "Plain answer."]
    gold = [[2], [2], [2], [2], []]
    n = [3, 3, 3, 3, 0]
    assert citation_reward(["p"] * 5, completions, gold_passages=gold, n_passages=n) == [1.0, 0.0, 0.0, 0.0, None]


def test_stop_reward_reads_the_last_token():
    ids = [[5, 6, 2], [5, 6, 7], []]
    assert stop_reward(["p"] * 3, ["a", "b", ""], completion_ids=ids, end_of_turn_id=[2, 2, 2]) == [1.0, 0.0, 0.0]
    assert stop_reward(["p"], ["a"]) == [None]
