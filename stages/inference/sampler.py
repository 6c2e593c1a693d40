"""One sequence's llama.cpp sampler chain, built from SamplingParams (grammar, penalties, top-k/p, min-p,
temperature, seed; greedy at temperature 0). Built on the caller's thread, so a grammar is parsed there and not
on the decode thread; the scheduler owns and frees it from `submit` on."""

from __future__ import annotations

import random
from collections.abc import Sequence

import llama_cpp

from stages.errors import StageError
from stages.inference.types import PENALTY_LAST_N, SamplingParams


def build_sampler(vocab, params: SamplingParams, banned: Sequence[int] = ()):
    """llama.cpp sampler chain for one sequence; `banned` tokens are never sampled (the end-of-turn tokens when
    params.ignore_eos asks for a fixed-length decode). The penalties start empty: they see the tokens this
    sequence generates (each sampled token is accepted into the chain), not its prompt (types.PENALTY_LAST_N)."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = lambda s: llama_cpp.llama_sampler_chain_add(chain, s)  # noqa: E731 - the chain owns what it is given
    if banned:
        biases = (llama_cpp.llama_logit_bias * len(banned))(*[(int(t), float("-inf")) for t in banned])
        add(llama_cpp.llama_sampler_init_logit_bias(llama_cpp.llama_vocab_n_tokens(vocab), len(banned), biases))
    if params.grammar:
        grammar = llama_cpp.llama_sampler_init_grammar(vocab, params.grammar.encode("utf-8"), b"root")
        if not grammar:
            llama_cpp.llama_sampler_free(chain)
            raise StageError("grammar: llama.cpp could not parse it (GBNF); fix the grammar or the JSON schema")
        add(grammar)
    if params.repeat_penalty != 1.0 or params.frequency_penalty or params.presence_penalty:
        penalties = llama_cpp.llama_sampler_init_penalties(llama_cpp.llama_vocab_n_tokens(vocab), PENALTY_LAST_N,
                                                           params.repeat_penalty,
                                                           params.frequency_penalty, params.presence_penalty)
        add(penalties)
    if params.temperature <= 0:
        add(llama_cpp.llama_sampler_init_greedy())
        return chain
    if params.top_k > 0:
        add(llama_cpp.llama_sampler_init_top_k(params.top_k))
    if params.top_p < 1.0:
        add(llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
    if params.min_p > 0:
        add(llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
    add(llama_cpp.llama_sampler_init_temp(params.temperature))
    add(llama_cpp.llama_sampler_init_dist(params.seed if params.seed is not None else random.getrandbits(32)))
    return chain
