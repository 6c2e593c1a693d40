"""Continuous batching on the real llama.cpp runtime (SmolLM2 Q4_1 GGUF): the scheduler's step function driven
by the test thread (no HTTP, no owner thread), and the engine's concurrent generate/stream."""

from __future__ import annotations

import json
import threading
import time

import llama_cpp
import pytest

from bench.run_info import QUESTIONS, chat_messages
from stages.errors import StageError
from stages.inference import SamplingParams, load_engine
from stages.inference.slots import PACKING_WORTH, SequenceRequest, SlotScheduler, common_prefix
from stages.inference.types import Generation

GREEDY = SamplingParams(max_new_tokens=24)


@pytest.fixture(scope="module")
def engine(smollm2_gguf):
    engine = load_engine("gguf", smollm2_gguf, threads=1, n_ctx=512, parallel=4)
    yield engine
    engine.close()


def scheduler_for(engine, parallel: int = 4, n_batch: int = 512, kv_unified: bool = False) -> SlotScheduler:
    """A second scheduler on the engine's model, owned by the test thread (the engine's own one keeps its
    owner thread)."""
    params = type(engine.llm.context_params).from_buffer_copy(engine.llm.context_params)
    model = engine.llm._model
    return SlotScheduler(model, params, parallel, 512, engine.is_end_of_turn,
                         lambda t: model.detokenize([t]), n_batch=n_batch, kv_unified=kv_unified)


def chat_ids(engine, question: str) -> list[int]:
    return engine.prompt_ids(engine.apply_chat_template(chat_messages(question)))


def drain(request: SequenceRequest) -> tuple[list[str], Generation | Exception]:
    pieces = []
    while not request.events.empty():
        kind, value = request.events.get()
        if kind == "piece":
            pieces.append(value)
        else:
            return pieces, value
    return pieces, None


def kv_positions(scheduler: SlotScheduler, seq_id: int) -> int:
    return llama_cpp.llama_memory_seq_pos_max(scheduler.memory, seq_id) + 1


def test_sequences_join_and_leave_between_steps_and_slots_keep_their_prompt_cache(engine):
    scheduler = scheduler_for(engine)
    try:
        first = SequenceRequest(chat_ids(engine, QUESTIONS[0]), SamplingParams(max_new_tokens=6))
        scheduler.submit(first)
        scheduler.step()  # prefill of `first` + its first token
        assert scheduler.slots[0].request is first and scheduler.batch.n_tokens == len(first.ids)
        scheduler.step()
        second = SequenceRequest(chat_ids(engine, QUESTIONS[1]), SamplingParams(max_new_tokens=20))
        scheduler.submit(second)
        scheduler.step()  # `first` decodes one token in the same llama_decode as `second`'s whole prompt
        assert scheduler.slots[1].request is second
        assert scheduler.batch.n_tokens == 1 + len(second.ids) - scheduler.stats["prefix_tokens_reused"]
        while scheduler.slots[0].request is not None:
            scheduler.step()
        pieces, result = drain(first)
        assert result.completion_tokens == 6 and result.finish_reason == "length" and "".join(pieces) == result.text
        # The slot is free at once; its KV stays as its prompt cache (prompt + 5 decoded answer tokens).
        assert scheduler.slots[0].request is None and kv_positions(scheduler, 0) == len(first.ids) + 5
        assert scheduler.slots[1].request is second and kv_positions(scheduler, 1) > len(second.ids)
        while scheduler.step():
            pass
        assert isinstance(drain(second)[1], Generation)
        # The same prompt again: slot 0 reuses all of it but the last token; the answer drops the old tail.
        reused = scheduler.stats["prefix_tokens_reused"]
        again = SequenceRequest(first.ids, SamplingParams(max_new_tokens=6))
        scheduler.submit(again)
        scheduler.step()
        assert scheduler.slots[0].request is again and scheduler.batch.n_tokens == 1
        assert scheduler.stats["prefix_tokens_reused"] == reused + len(first.ids) - 1
        while scheduler.step():
            pass
        assert drain(again)[1].text == result.text
    finally:
        scheduler.close()


def run_alone(scheduler: SlotScheduler, prompt: list[int], forget_slots: bool) -> str:
    if forget_slots:  # drop every idle slot's prompt cache: a shared prefix can then only come from the holder
        for slot in scheduler.slots:
            scheduler._free(slot)
    request = SequenceRequest(prompt, GREEDY)
    scheduler.submit(request)
    while scheduler.step():
        pass
    return drain(request)[1].text


@pytest.mark.parametrize("kv_unified", [False, True], ids=["stream-per-sequence", "unified"])
def test_the_shared_system_prompt_is_computed_once_and_copied_into_new_sequences(engine, kv_unified):
    scheduler = scheduler_for(engine, kv_unified=kv_unified)
    try:
        ids = [chat_ids(engine, q) for q in QUESTIONS[:4]]
        shared = next(i for i in range(len(ids[0])) if ids[0][i] != ids[1][i])
        run_alone(scheduler, ids[0], forget_slots=False)
        run_alone(scheduler, ids[1], forget_slots=False)  # reuses slot 0's cache; the holder learns the prefix
        assert scheduler.holders[None].tokens == ids[0][:shared] and shared > 20
        assert scheduler.stats["prefix_tokens_reused"] == shared
        copied = [run_alone(scheduler, prompt, forget_slots=True) for prompt in ids[2:]]
        # The 3rd and 4th prompts started from the holder's copy instead of computing the prefix again.
        assert scheduler.stats["prefix_tokens_reused"] == 3 * shared
        # What the copy holds is the prefix's own KV: the answers are those of a scheduler that never shares.
        fresh = scheduler_for(engine, kv_unified=kv_unified)
        fresh._remember_prefix = lambda slot: None
        try:
            assert [run_alone(fresh, prompt, forget_slots=True) for prompt in ids[2:]] == copied
            assert fresh.stats["prefix_tokens_reused"] == 0
        finally:
            fresh.close()
    finally:
        scheduler.close()


def test_a_long_prompt_is_prefilled_in_chunks_while_others_keep_decoding(engine):
    scheduler = scheduler_for(engine, n_batch=16)
    try:
        short = SequenceRequest(chat_ids(engine, QUESTIONS[0]), SamplingParams(max_new_tokens=40))
        scheduler.submit(short)
        while scheduler.slots[0].pending is None:  # until it is decoding
            scheduler.step()
        long_ids = chat_ids(engine, " ".join(QUESTIONS) * 4)
        long = SequenceRequest(long_ids, SamplingParams(max_new_tokens=4))
        scheduler.submit(long)
        steps, decoded = 0, []
        while scheduler.slots[1].prefilling or scheduler.slots[1].request is None:
            before = scheduler.slots[0].n_completion
            scheduler.step()
            steps += 1
            decoded.append(scheduler.slots[0].n_completion - before)
            assert scheduler.batch.n_tokens <= 16
        assert steps >= len(long_ids) // 16, "the long prompt took several steps"
        assert all(d == 1 for d in decoded), "the decoding sequence got a token in every step of the prefill"
        while scheduler.step():
            pass
        assert drain(long)[1].completion_tokens == 4
    finally:
        scheduler.close()


def test_busy_slots_stay_consecutive_unless_a_kept_prompt_saves_more(engine):
    """llama.cpp decodes a batch over per-sequence KV streams as one ubatch per run of consecutive sequence ids:
    a new request takes a free slot next to the busy ones (or in a gap between them) and the batch's rows go in
    slot order, unless another slot's kept KV saves more than PACKING_WORTH prompt tokens; with nothing busy,
    the slot that saves the most."""
    scheduler = scheduler_for(engine)
    try:
        running = SequenceRequest(chat_ids(engine, QUESTIONS[0]), SamplingParams(max_new_tokens=400))
        brief = SequenceRequest(chat_ids(engine, QUESTIONS[1]), SamplingParams(max_new_tokens=2))
        long_ids = chat_ids(engine, " ".join(QUESTIONS) * 4)
        long = SequenceRequest(long_ids, SamplingParams(max_new_tokens=2))
        for request in (running, brief, long):
            scheduler.submit(request)
        scheduler.step()  # all three admitted: slots 0, 1 and 2
        while scheduler.slots[1].request is not None or scheduler.slots[2].request is not None:
            scheduler.step()
        assert scheduler.slots[0].request is running  # slots 1 and 2 free with their prompt caches, 3 unused
        shared = common_prefix(scheduler.slots[1].cached, long_ids)
        assert len(long_ids) - 1 - PACKING_WORTH > shared
        again = SequenceRequest(long_ids, SamplingParams(max_new_tokens=2))
        scheduler.submit(again)
        scheduler.step()
        assert scheduler.slots[2].request is again, "its own kept prompt saves more than packing is worth"
        new = SequenceRequest(chat_ids(engine, QUESTIONS[2]), SamplingParams(max_new_tokens=2))
        scheduler.submit(new)
        scheduler.step()
        assert scheduler.slots[1].request is new, "the gap between busy slots 0 and 2"
        rows = [scheduler.batch.seq_id[i][0] for i in range(scheduler.batch.n_tokens)]
        assert rows == sorted(rows) and set(rows) == {0, 1, 2}, "rows in slot order, the prompt chunk in its place"
        running.should_stop = lambda: True
        while scheduler.step():
            pass
        assert drain(again)[1].completion_tokens == 2 and drain(new)[1].completion_tokens == 2
        repeat = SequenceRequest(new.ids, SamplingParams(max_new_tokens=2))
        scheduler.submit(repeat)
        scheduler.step()
        assert scheduler.slots[1].request is repeat, "nothing busy: the slot holding the prompt"
        while scheduler.step():
            pass
    finally:
        scheduler.close()


def test_concurrent_greedy_outputs_match_the_same_requests_alone(engine):
    prompts = [engine.apply_chat_template(chat_messages(q)) for q in QUESTIONS[:4]]
    alone = [engine.generate([p], GREEDY)[0] for p in prompts]
    together = engine.generate(prompts, GREEDY)
    assert [g.prompt_tokens for g in together] == [g.prompt_tokens for g in alone]
    same = sum(a.text == b.text for a, b in zip(alone, together, strict=True))
    print(f"\ngreedy, 4 sequences in one batch vs alone: {same}/4 identical texts")
    # Batched matrix products may round differently from one-row ones, so long generations can drift apart;
    # the first tokens must not.
    for a, b in zip(alone, together, strict=True):
        assert a.text[:20] == b.text[:20], (a.text, b.text)
    assert same >= 3


def test_streams_from_several_threads_decode_together_and_one_cancel_stops_only_its_own(engine):
    prompts = [engine.apply_chat_template(chat_messages(q)) for q in QUESTIONS[:4]]
    params, endless = SamplingParams(max_new_tokens=40), SamplingParams(max_new_tokens=2000)
    deadline = time.monotonic() + 0.3
    engine.scheduler.stats["max_active"] = 0
    started = time.monotonic()
    # Two sequences asked for 2000 tokens (~30 s of decoding here): one client leaves after 3 pieces, the
    # other's deadline passes after 0.3 s. Both must stop at once; the two others run to their own end.
    streams = [engine.stream(prompts[0], endless), engine.stream(prompts[1], params),
               engine.stream(prompts[2], endless, should_stop=lambda: time.monotonic() > deadline),
               engine.stream(prompts[3], params)]
    results: dict[int, Generation | None] = {}

    def consume(i: int) -> None:
        for k, _ in enumerate(streams[i]):
            if i == 0 and k == 2:
                streams[i].close()  # the client went away after 3 pieces
                break
        results[i] = streams[i].result

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results[0] is None and len(streams[0].text) > 0  # closed: no result, only what it read
    assert results[2].finish_reason == "stop" and results[2].completion_tokens < 2000, "the deadline stops it"
    for i in (1, 3):
        assert results[i].completion_tokens > 0 and results[i].finish_reason in ("stop", "length")
    assert engine.scheduler.stats["max_active"] >= 3, "the streams were not decoded together"
    wait = time.monotonic() + 5
    while engine.scheduler.busy() and time.monotonic() < wait:
        time.sleep(0.01)
    assert not engine.scheduler.busy(), "the cancelled sequence left its slot"
    assert time.monotonic() - started < 15, "2000-token sequences ran on after their stop"


def test_close_answers_requests_in_flight_and_waiting(smollm2_gguf):
    from stages.inference.types import EngineClosed

    engine = load_engine("gguf", smollm2_gguf, threads=1, n_ctx=256, parallel=1)
    prompt = engine.apply_chat_template(chat_messages(QUESTIONS[0]))
    running = engine.stream(prompt, SamplingParams(max_new_tokens=200))
    next(running)  # decoding
    waiting = engine.stream(prompt, SamplingParams(max_new_tokens=200))  # no free slot: waits
    engine.close()
    for stream in (running, waiting):
        with pytest.raises(EngineClosed):
            list(stream)
    with pytest.raises(EngineClosed):
        engine.generate([prompt], SamplingParams(max_new_tokens=4))


def test_seeded_sampling_repeats_and_penalties_and_min_p_are_applied(smollm2_gguf):
    # One slot, warmed up: every run below decodes under the same conditions (the slot's prompt cache holds the
    # prompt; only its last token is computed again), so equal settings must give equal texts.
    engine = load_engine("gguf", smollm2_gguf, threads=1, n_ctx=256, parallel=1)
    prompt = engine.apply_chat_template(chat_messages(QUESTIONS[0]))
    engine.generate([prompt], SamplingParams(max_new_tokens=1))
    sampled = SamplingParams(max_new_tokens=24, temperature=1.0, top_p=0.95, top_k=40, min_p=0.05, seed=7)
    first, again = (engine.generate([prompt], sampled)[0] for _ in range(2))
    assert first.text == again.text, "one seed, one answer"
    others = {engine.generate([prompt], SamplingParams(**{**sampled.__dict__, "seed": s}))[0].text for s in range(4)}
    assert len(others) > 1
    greedy = engine.generate([prompt], SamplingParams(max_new_tokens=48))[0]
    for change in ({"repeat_penalty": 1.5}, {"frequency_penalty": 1.5}, {"presence_penalty": 1.5}):
        penalised = engine.generate([prompt], SamplingParams(max_new_tokens=48, **change))[0]
        assert penalised.text != greedy.text, change
    # min_p 1.0 keeps only the most likely token: sampling at any temperature becomes greedy.
    hot = SamplingParams(max_new_tokens=48, temperature=2.0, min_p=1.0, seed=3)
    assert engine.generate([prompt], hot)[0].text == greedy.text
    engine.close()


def test_json_schema_grammar_gives_json_that_validates(engine):
    import jsonschema_rs
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    schema = {"type": "object", "properties": {"condition": {"type": "string", "maxLength": 40},
                                               "severity": {"enum": ["low", "medium", "high"]},
                                               "urgent": {"type": "boolean"}},
              "required": ["condition", "severity", "urgent"], "additionalProperties": False}
    grammar = json_schema_to_gbnf(json.dumps(schema))
    prompt = engine.apply_chat_template(chat_messages("Describe hypertension as JSON."))
    outputs = engine.generate([prompt, prompt], SamplingParams(max_new_tokens=96, grammar=grammar))
    for g in outputs:
        assert g.finish_reason == "stop", g.text
        jsonschema_rs.validate(schema, json.loads(g.text))


def test_a_bad_grammar_fails_its_own_request_only(engine):
    prompt = engine.apply_chat_template(chat_messages(QUESTIONS[0]))
    other = engine.stream(prompt, SamplingParams(max_new_tokens=24))  # in flight meanwhile
    with pytest.raises(StageError, match="grammar"):
        engine.generate([prompt], SamplingParams(max_new_tokens=8, grammar="root ::= ("))
    assert "".join(other) and other.result.completion_tokens == 24
    [g] = engine.generate([prompt], SamplingParams(max_new_tokens=8))
    assert g.completion_tokens == 8


def test_pieces_handed_to_a_consumer_arrive_in_order_and_a_failing_consumer_ends_only_its_own_stream(engine):
    scheduler = scheduler_for(engine)
    try:
        params = SamplingParams(max_new_tokens=12)
        reference = SequenceRequest(chat_ids(engine, QUESTIONS[0]), params)
        scheduler.submit(reference)
        while scheduler.step():
            pass
        expected = drain(reference)[1].text
        piped, failing = (SequenceRequest(chat_ids(engine, QUESTIONS[0]), params) for _ in range(2))

        def broken(piece: str) -> None:
            raise RuntimeError("event loop is closed")

        failing.hand_pieces_to(broken)
        scheduler.submit(piped)
        scheduler.submit(failing)
        for _ in range(4):  # some pieces are queued before the consumer takes over
            scheduler.step()
        assert not piped.events.empty()
        got: list[str] = []
        assert piped.hand_pieces_to(got.append) is None
        assert piped.events.empty(), "the queued pieces went to the consumer first"
        while scheduler.step():
            pass
        kind, result = piped.events.get_nowait()
        assert kind == "done" and "".join(got) == result.text == expected
        kind, ended = failing.events.get_nowait()
        assert kind == "done" and ended.finish_reason == "stop" and ended.completion_tokens < 12
    finally:
        scheduler.close()


def test_a_piped_stream_gets_its_pieces_from_the_decode_thread(engine):
    prompt = engine.apply_chat_template(chat_messages(QUESTIONS[1]))
    [expected] = engine.generate([prompt], GREEDY)
    pieces: list[tuple[str, str]] = []
    result = engine.stream(prompt, GREEDY).pipe(lambda p: pieces.append((p, threading.current_thread().name)))
    assert "".join(p for p, _ in pieces) == result.text == expected.text
    assert {name for _, name in pieces} == {"gguf-decode-0"}, "each piece is handed over by the decode thread"
