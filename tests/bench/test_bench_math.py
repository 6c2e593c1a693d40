"""The arithmetic the benchmark verdicts rest on: growth exponents, percentiles, the summary table."""

from __future__ import annotations

import pytest

from bench.cost_growth import loglog_slope, marginal_exponent
from bench.run_info import percentile
from bench.summary import markdown_table

SIZES = [100, 400, 1600]


@pytest.mark.parametrize("power", [0.5, 1.0, 2.0])
def test_loglog_slope_recovers_the_power(power):
    assert loglog_slope(SIZES, [3.0 * n**power for n in SIZES]) == pytest.approx(power)


def test_marginal_exponent_cancels_a_fixed_startup_cost():
    linear_plus_startup = [12.0 + 0.05 * n for n in SIZES]
    quadratic_plus_startup = [12.0 + 1e-4 * n**2 for n in SIZES]
    assert loglog_slope(SIZES, linear_plus_startup) < 0.8  # the start-up hides linear growth...
    assert marginal_exponent(SIZES, linear_plus_startup) == pytest.approx(1.0)  # ...the increments do not
    assert marginal_exponent(SIZES, quadratic_plus_startup) > 1.9


def test_marginal_exponent_is_none_when_an_increment_is_noise():
    assert marginal_exponent(SIZES, [10.0, 9.5, 12.0]) is None


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert percentile(values, 50) == 10.0
    assert percentile(values, 95) == 19.0
    assert percentile([4.0], 95) == 4.0


def test_markdown_table_has_one_line_per_row_plus_header():
    table = markdown_table(["a", "b"], [["1", "2"], ["3", "4"]])
    assert table.splitlines() == ["| a | b |", "| --- | --- |", "| 1 | 2 |", "| 3 | 4 |"]


def test_throughput_summary_takes_medians_and_compares_per_token_latency():
    from bench.api_throughput import ratios, summarize

    def run(tok_s: float, tpot: float) -> dict:
        return {"tokens_per_s": tok_s, "sustained_tokens_per_s": 1.25 * tok_s, "reported_tokens_per_s": tok_s, "requests_per_s": 1.0, "p50_latency_s": 1.0,
                "p95_latency_s": 2.0, "p50_ttft_s": 0.1, "p95_ttft_s": 0.2, "p50_tpot_s": tpot, "p95_tpot_s": tpot,
                "tokens_per_request": 30.0, "requests": 4, "failures": 0, "without_usage": 0, "failure_reasons": []}

    ours = summarize([run(100, 0.010), run(120, 0.008), run(90, 0.012)])
    assert ours["tokens_per_s"] == 100 and ours["p95_tpot_s"] == 0.01 and ours["requests"] == 12
    peer = summarize([run(50, 0.020)])
    assert ratios(ours, peer) == {"tokens_per_s": 2.0, "sustained_tokens_per_s": 2.0, "p95_latency": 1.0,
                                  "p95_ttft": 1.0, "p95_tpot": 0.5}


def test_sustained_window_keeps_only_the_text_that_arrived_in_time():
    from bench.api_throughput import text_by

    result = {"pieces": ["Para", "cetamol", " eases", " pain"], "arrived": [1.0, 1.5, 2.0, 2.5]}
    assert text_by(result, 2.0) == "Paracetamol eases"
    assert text_by(result, 0.5) == ""
    assert text_by(result, 9.0) == "Paracetamol eases pain"
