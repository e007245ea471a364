"""Tests of minillm.generate: logits processors, sampling, beam search, scoring, metrics."""
import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.config import ModelConfig
from minillm.generate import (
    apply_temperature, beam_search, distinct_n, generate, process_logits, repeated_ngram_fraction,
    min_p_filter, repetition_penalty, top_k_filter, top_p_filter,
)
from minillm.loss import sequence_log_prob
from minillm.model import Transformer


@torch.no_grad()
def greedy_decode(model, input_ids, max_new_tokens):
    """Reference: append the argmax token n times, re-reading everything (no cache)."""
    ids = input_ids
    for _ in range(max_new_tokens):
        ids = torch.cat((ids, model(ids)[:, -1].argmax(-1, keepdim=True)), dim=1)
    return ids

INF = math.inf


def micro_model(seed=0, vocab_size=13, init_std=0.5) -> Transformer:
    """A random float64 model; a large init_std makes its distributions peaked, like a trained one's."""
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=vocab_size, d_model=16, n_layers=2, n_heads=2, n_kv_heads=1, d_ff=32,
                         max_seq_len=64, init_std=init_std)
    return Transformer(config).double().eval()


def seeded(seed=0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


PROMPTS = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]])


@pytest.fixture(autouse=True)
def one_thread():
    """Micro models run single-threaded: on a busy 2-core machine, handing each tiny
    matmul to a second OpenMP thread made these tests ~100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------ processors

def test_temperature_divides_and_zero_is_argmax_with_first_tie():
    logits = torch.tensor([[1.0, 3.0, 3.0, -2.0]])
    assert torch.equal(apply_temperature(logits, 2.0), logits / 2)
    assert torch.equal(apply_temperature(logits, 0), torch.tensor([[-INF, 3.0, -INF, -INF]]))


def test_top_k_keeps_k_largest_and_breaks_ties_by_id():
    logits = torch.tensor([[0.5, 2.0, 1.0, 2.0, 1.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    want = torch.tensor([[-INF, 2.0, 1.0, 2.0, -INF], [5.0, 4.0, 3.0, -INF, -INF]])  # the tie at 1.0: id 2 wins
    assert torch.equal(top_k_filter(logits, 3), want)
    assert torch.equal(top_k_filter(logits, 99), logits)


@pytest.mark.parametrize("p, kept", [(0.01, [1]), (0.4, [1]), (0.6, [1, 3]), (0.7, [1, 3, 2]),
                                     (0.9, [1, 3, 2, 0]), (1.0, [0, 1, 2, 3, 4])])
def test_top_p_keeps_exactly_the_nucleus(p, kept):
    probs = torch.tensor([[0.1, 0.4, 0.2, 0.25, 0.05]], dtype=torch.float64)
    out = top_p_filter(probs.log(), p)
    assert sorted(torch.isfinite(out[0]).nonzero()[:, 0].tolist()) == sorted(kept)
    assert torch.equal(out[torch.isfinite(out)], probs.log()[torch.isfinite(out)])  # kept logits unchanged


def test_top_p_ties_are_cut_by_token_id():
    # Four equal tokens of 0.25 each: p = 0.5 is reached exactly by two of them, the two lowest ids.
    out = top_p_filter(torch.zeros(1, 4), 0.5)
    assert torch.isfinite(out[0]).tolist() == [True, True, False, False]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=1, max_size=12), st.floats(0.01, 1.0))
def test_top_p_set_is_the_smallest_that_reaches_p(values, p):
    logits = torch.tensor([values], dtype=torch.float64)
    probs = logits.softmax(-1)[0]
    kept = torch.isfinite(top_p_filter(logits, p))[0]
    assert kept[logits[0].argmax()]  # the top token is always kept
    mass = probs[kept].sum().item()
    assert mass >= p - 1e-9  # reaches p ...
    assert mass - probs[kept].min().item() < p + 1e-9  # ... and would not without its least likely member
    assert probs[kept].min() >= probs[~kept].max() if (~kept).any() else True  # the most probable ones


def test_min_p_keeps_tokens_at_least_p_times_the_top_probability():
    logits = torch.tensor([[2.0, 1.0, 0.0, -3.0], [0.0, 0.0, 0.0, 0.0]])
    probs = logits.softmax(-1)
    for p in (0.0, 0.1, 0.3, 0.5, 1.0):
        kept = min_p_filter(logits, p) > -INF
        assert torch.equal(kept, probs >= p * probs.max(-1, keepdim=True).values)
        assert kept[:, 0].all() and kept[1].all()  # the top token; a flat row keeps all
    assert torch.equal(min_p_filter(logits, 0.0), logits)
    assert min_p_filter(logits, 0.3)[0].isfinite().tolist() == [True, True, False, False]


def test_min_p_1_samples_the_greedy_tokens_and_min_p_0_changes_nothing():
    model = micro_model()
    greedy = greedy_decode(model, PROMPTS, 10)[:, PROMPTS.shape[1]:]
    assert torch.equal(generate(model, PROMPTS, 10, min_p=1.0, generator=seeded()), greedy)
    assert torch.equal(generate(model, PROMPTS, 10, min_p=0.0, generator=seeded(3)),
                       generate(model, PROMPTS, 10, generator=seeded(3)))
    with pytest.raises(ValueError, match="min_p"):
        generate(model, PROMPTS, 3, min_p=1.5)


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    logits = torch.tensor([[2.0, -1.0, 0.5, -3.0]])
    previous = torch.tensor([[0, 1, 1]])  # token 1 twice: still penalised once
    assert torch.equal(repetition_penalty(logits, previous, 2.0), torch.tensor([[1.0, -2.0, 0.5, -3.0]]))
    assert torch.equal(repetition_penalty(logits, previous, 1.0), logits)


def test_processors_do_not_modify_their_input():
    logits = torch.tensor([[2.0, -1.0, 0.5, -3.0]])
    before = logits.clone()
    process_logits(logits, torch.tensor([[0]]), temperature=0.5, top_k=2, top_p=0.5, penalty=1.5)
    assert torch.equal(logits, before)


# ------------------------------------------------------------ generate

@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_equals_greedy_decode(use_cache):
    model = micro_model()
    out = generate(model, PROMPTS, 10, temperature=0, use_cache=use_cache)
    assert torch.equal(out, greedy_decode(model, PROMPTS, 10)[:, PROMPTS.shape[1]:])


def test_low_temperature_and_top_k_1_sample_the_greedy_tokens():
    model = micro_model()
    greedy = greedy_decode(model, PROMPTS, 10)[:, PROMPTS.shape[1]:]
    assert torch.equal(generate(model, PROMPTS, 10, temperature=1e-6, generator=seeded()), greedy)
    assert torch.equal(generate(model, PROMPTS, 10, temperature=1.5, top_k=1, generator=seeded()), greedy)


def test_cached_and_uncached_sampling_agree_for_the_same_seed():
    model = micro_model()
    sampling = dict(temperature=1.2, top_k=8, top_p=0.95, repetition_penalty=1.3)
    cached = generate(model, PROMPTS, 20, generator=seeded(7), **sampling)
    uncached = generate(model, PROMPTS, 20, generator=seeded(7), use_cache=False, **sampling)
    assert torch.equal(cached, uncached)
    assert not torch.equal(cached, generate(model, PROMPTS, 20, generator=seeded(8), **sampling))


def test_list_prompt_gives_a_list():
    model = micro_model()
    out = generate(model, [1, 2, 3], 5, temperature=0)
    assert out == greedy_decode(model, torch.tensor([[1, 2, 3]]), 5)[0, 3:].tolist()


def test_eos_stops_rows_and_pads_them():
    model = micro_model()
    greedy = greedy_decode(model, PROMPTS, 12)[:, PROMPTS.shape[1]:].tolist()
    eos = greedy[0][2]  # row 0 meets eos at its 3rd token at the latest
    pad = 12
    assert all(pad not in row for row in greedy)  # so padding is visible
    out = generate(model, PROMPTS, 12, temperature=0, eos_id=eos, pad_id=pad).tolist()
    stops = [full.index(eos) + 1 if eos in full else 12 for full in greedy]
    assert min(stops) < max(stops)  # some row really is padded
    for row, full, stop in zip(out, greedy, stops):
        assert row[:stop] == full[:stop]  # the same tokens up to and including eos
        assert row[stop:] == [pad] * (len(row) - stop)  # then padding
    assert len(out[0]) == max(stops)  # it stops as soon as every row has finished
    finishing = [b for b in range(3) if stops[b] < 12]
    early = generate(model, PROMPTS[finishing], 12, temperature=0, eos_id=eos)
    assert early.shape[1] == max(stops[b] for b in finishing) < 12


def test_sampling_frequencies_match_softmax():
    # One step from the same prompt N times: each token's count is Binomial(N, p).
    model = micro_model(init_std=0.1)
    N, T = 20_000, 0.7
    logits = model(PROMPTS[:1])[0, -1] / T
    for top_k in (None, 4):
        want = process_logits(logits[None], temperature=1.0, top_k=top_k).softmax(-1)[0]
        out = generate(model, PROMPTS[:1].expand(N, -1), 1, temperature=T, top_k=top_k, generator=seeded(1))
        freq = torch.bincount(out[:, 0], minlength=len(want)).double() / N
        tolerance = 5 * (want * (1 - want) / N).sqrt() + 1e-12  # 5 standard deviations per token
        assert ((freq - want).abs() <= tolerance).all(), (freq, want)


# ------------------------------------------------------------ beam search

def test_one_beam_is_greedy():
    model = micro_model()
    (ids, score), = beam_search(model, [1, 2, 3], num_beams=1, max_new_tokens=8)
    greedy = greedy_decode(model, torch.tensor([[1, 2, 3]]), 8)[0, 3:].tolist()
    assert ids == greedy
    assert score == pytest.approx(sequence_log_prob(model, [1, 2, 3], greedy).item() / 8)


@pytest.mark.parametrize("seed", range(4))
def test_more_beams_score_at_least_greedy_over_two_steps(seed):
    # Over two steps the greedy path is always among the candidates of the last
    # step (its first token is the top one), so the best beam cannot score less.
    model = micro_model(seed, init_std=0.1)
    greedy = greedy_decode(model, torch.tensor([[5, 6]]), 2)[0, 2:].tolist()
    best_ids, best_score = beam_search(model, [5, 6], num_beams=3, max_new_tokens=2)[0]
    assert best_score >= sequence_log_prob(model, [5, 6], greedy).item() / 2 - 1e-12


def test_enough_beams_find_the_exact_best_sequences():
    # With V**(n-1) beams nothing is pruned before the last step: beam search is
    # exhaustive and returns exactly the best num_beams of all V**n sequences.
    model = micro_model(vocab_size=4, init_std=0.3)
    everything = [list(c) for c in itertools.product(range(4), repeat=3)]
    exact = sorted(((sequence_log_prob(model, [1, 2], c).item(), c) for c in everything), reverse=True)[:16]
    results = beam_search(model, [1, 2], num_beams=16, max_new_tokens=3, length_penalty=0)
    assert [ids for ids, _ in results] == [c for _, c in exact]
    assert [score for _, score in results] == pytest.approx([score for score, _ in exact])


def test_beam_scores_are_length_penalised_log_probs_best_first():
    model = micro_model()
    prompt = [1, 2, 3]
    eos = greedy_decode(model, torch.tensor([prompt]), 3)[0, 4].item()  # likely early: finishes some beams
    results = beam_search(model, prompt, num_beams=4, max_new_tokens=6, length_penalty=0.7, eos_id=eos)
    assert len(results) == 4
    assert [s for _, s in results] == sorted((s for _, s in results), reverse=True)
    assert any(ids[-1] == eos for ids, _ in results)
    for ids, score in results:
        assert eos not in ids[:-1]  # a beam ends at its first eos
        assert score == pytest.approx(sequence_log_prob(model, prompt, ids).item() / len(ids) ** 0.7)


# ------------------------------------------------------------ scoring

def test_sequence_log_prob_matches_a_manual_sum():
    model = micro_model()
    prompt, completion = [3, 1, 4], [1, 5, 9, 2]
    logits = model(torch.tensor([prompt + completion]))[0]  # position t predicts token t + 1
    manual = sum(logits[len(prompt) - 1 + i].log_softmax(-1)[tok] for i, tok in enumerate(completion))
    assert sequence_log_prob(model, prompt, completion).item() == pytest.approx(manual.item())


def test_sequence_log_prob_batches_and_has_gradients():
    model = micro_model()
    prompts, completions = torch.tensor([[3, 1, 4], [2, 7, 1]]), torch.tensor([[1, 5], [8, 2]])
    batch = sequence_log_prob(model, prompts, completions)
    assert batch.shape == (2,)
    for b in range(2):
        assert batch[b].item() == pytest.approx(sequence_log_prob(model, prompts[b], completions[b]).item())
    batch.sum().backward()
    assert model.embed.weight.grad is not None


# ------------------------------------------------------------ metrics

def test_repetition_metrics():
    assert repeated_ngram_fraction("a b a b a b".split(), 2) == pytest.approx(3 / 5)
    assert repeated_ngram_fraction([1, 2, 3, 4], 1) == 0.0
    assert repeated_ngram_fraction([1], 2) == 0.0
    assert distinct_n([[1, 2, 3], [1, 2, 4]], 2) == pytest.approx(3 / 4)  # 12 twice, 23, 24
    assert distinct_n([[1, 1, 1]], 1) == pytest.approx(1 / 3)
    assert distinct_n([torch.tensor([1, 2]), []], 3) == 0.0


# ------------------------------------------------------------ bad arguments

LOGITS = torch.zeros(1, 5)


@pytest.mark.parametrize("call, error, message", [
    (lambda: apply_temperature(LOGITS, -1.0), ValueError, "temperature must be >= 0"),
    (lambda: apply_temperature(LOGITS, "hot"), TypeError, "temperature must be a number"),
    (lambda: top_k_filter(LOGITS, 0), ValueError, "top_k must be >= 1, got 0"),
    (lambda: top_k_filter(LOGITS, 2.5), TypeError, "top_k must be an int"),
    (lambda: top_p_filter(LOGITS, 0.0), ValueError, r"top_p must be in \(0, 1\], got 0.0"),
    (lambda: top_p_filter(LOGITS, 1.5), ValueError, r"top_p must be in \(0, 1\], got 1.5"),
    (lambda: repetition_penalty(LOGITS, torch.tensor([[0]]), 0.0), ValueError, "repetition_penalty must be > 0"),
    (lambda: repetition_penalty(LOGITS, torch.tensor([0]), 1.2), ValueError, r"previous_ids must be \[B, S\]"),
    (lambda: top_k_filter(torch.zeros(5), 2), ValueError, r"logits must be a \[B, V\] tensor"),
    (lambda: generate(micro_model(), [1, 2], 3, top_p=2.0), ValueError, "top_p must be in"),
    (lambda: generate(micro_model(), [1, 2], -1), ValueError, "max_new_tokens must be >= 0, got -1"),
    (lambda: generate(micro_model(), [], 3), ValueError, "non-empty prompt"),
    (lambda: beam_search(micro_model(), [1, 2], 0, 3), ValueError, "num_beams must be >= 1, got 0"),
    (lambda: beam_search(micro_model(), PROMPTS, 2, 3), ValueError, "one prompt, got a batch of 3"),
    (lambda: distinct_n([[1, 2]], 0), ValueError, "n must be >= 1, got 0"),
])
def test_bad_arguments_raise_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()
