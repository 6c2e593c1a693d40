"""The speed measurement: fixed-length requests, one at a time, on a tiny real model; and its summary."""

from __future__ import annotations

import math
import time

import pytest
import torch

from stages.evaluate.speed import RequestTiming, speed_summary, time_requests
from stages.inference import SamplingParams, load_engine


def test_each_prompt_is_one_request_of_exactly_the_asked_length(tiny_model_dir):
    torch.set_num_threads(1)
    engine = load_engine("hf", tiny_model_dir, threads=1, batch_size=8)
    chats = ([{"role": "user", "content": "hi"}], [{"role": "user", "content": "What is a tort, in two lines?"}],
             [{"role": "user", "content": "Define compound interest. " * 6}])
    prompts = [engine.apply_chat_template(c) for c in chats]
    started = time.perf_counter()
    # the quality pass's max_new_tokens (2) must not shorten the timed requests
    timings = time_requests(engine, prompts, SamplingParams(max_new_tokens=2), tokens=12,
                            warmup_prompts=prompts[:1])
    wall = time.perf_counter() - started
    assert [t.completion_tokens for t in timings] == [12, 12, 12]
    assert all(t.seconds > 0 for t in timings) and sum(t.seconds for t in timings) < wall
    # one wall time per request, not one shared by a batch
    assert len({t.seconds for t in timings}) == 3
    summary = speed_summary(timings)
    assert summary["speed_completion_tokens"] == 12
    assert summary["tokens_per_second"] == pytest.approx(36 / sum(t.seconds for t in timings))


def test_summary_is_percentiles_of_requests_and_tokens_over_their_time():
    timings = [RequestTiming(1.0, 16), RequestTiming(2.0, 16), RequestTiming(3.0, 16), RequestTiming(4.0, 10)]
    summary = speed_summary(timings)
    assert summary["tokens_per_second"] == pytest.approx(58 / 10)
    assert summary["latency_p50_s"] == pytest.approx(2.5)
    assert summary["latency_p95_s"] == pytest.approx(3.85)   # numpy's linear interpolation between 3 and 4 s
    assert summary["speed_completion_tokens"] == pytest.approx(14.5)  # one request ended early: it shows
    assert all(math.isnan(v) for v in speed_summary([]).values())
