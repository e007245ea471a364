"""Decoding: turning a model's next-token logits into text.

A language model only scores the next token. A *decoding strategy* decides
what to do with those scores, one step at a time:

    logits [B, V] -> repetition penalty -> temperature -> top-k -> top-p
                  -> min-p -> argmax (greedy, T = 0) or a random draw from softmax

The five processors are small pure functions on a [B, V] logits tensor, so a
notebook can apply and plot each one alone. ``generate`` chains them on top of
the KV cache (the prompt is read once, then one token per step), for one
prompt or a batch of prompts of different lengths (left-padded, so every row's
next token sits in the same column); ``greedy`` is ``generate`` at
temperature 0; ``beam_search`` keeps the best few partial sequences instead
of one. Two repetition metrics measure what the strategies do to the text.
(Scoring a given completion, ``sequence_log_prob``, lives in ``minillm.loss``.)

Shapes: B batch, T tokens, V vocabulary.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .attention import KVCache


# ------------------------------------------------------- checking arguments

def _check_number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}: {value!r}")
    if math.isnan(value):
        raise ValueError(f"{name} is NaN")
    return float(value)


def _check_count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_logits(logits: torch.Tensor) -> torch.Tensor:
    """Logits [B, V] in float32 at least: a bf16 softmax over V tokens is coarse."""
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ValueError(f"logits must be a [B, V] tensor, got {getattr(logits, 'shape', type(logits))}")
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


# ------------------------------------------------------- logits processors

def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / T for T > 0: T < 1 sharpens softmax, T > 1 flattens it.

    T = 0 is the limit, greedy: every token but the argmax (the first one on
    a tie) gets -inf, so softmax puts all its mass on the argmax.
    """
    logits, T = _check_logits(logits), _check_number("temperature", temperature)
    if T < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if T > 0:
        return logits / T
    keep = F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).bool()
    return logits.masked_fill(~keep, -math.inf)


def _sort_descending(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # A stable sort puts equal logits in index order, so ties are cut the same
    # way on every run and every machine (torch.topk makes no such promise).
    return torch.sort(logits, dim=-1, descending=True, stable=True)


def _keep_sorted(logits: torch.Tensor, order: torch.Tensor, keep_sorted: torch.Tensor) -> torch.Tensor:
    """Set -inf on every token whose place in the sorted ``order`` is not kept."""
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return logits.masked_fill(~keep, -math.inf)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row [B, V], set the rest to -inf.

    k >= V keeps everything. On a tie at the k-th place, lower token ids win.
    """
    logits, k = _check_logits(logits), _check_count("top_k", k, 1)
    _, order = _sort_descending(logits)
    rank = torch.arange(logits.shape[-1], device=logits.device).expand_as(order)
    return _keep_sorted(logits, order, rank < k)


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering of logits [B, V] (Holtzman et al. 2020).

    Keep the smallest set of most probable tokens whose total probability
    reaches p, and set the rest to -inf. Walking down the sorted tokens, a token
    is kept if the mass *before* it is still < p: so the token that crosses p
    is kept, and the top token always is (the mass before it is 0). Ties are
    ordered by token id. p = 1 keeps every token of non-zero probability.
    """
    logits, p = _check_logits(logits), _check_number("top_p", p)
    if not 0 < p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    sorted_logits, order = _sort_descending(logits)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    return _keep_sorted(logits, order, (mass_before < p) & (probs > 0))


def min_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Min-p filtering of logits [B, V] (Nguyen et al. 2024).

    Keep the tokens whose probability is at least ``p`` times the top token's,
    and set the rest to -inf. The cut-off scales with the model's confidence:
    a peaked step keeps few tokens, a flat one many (top-p does the opposite
    at high temperature, where its nucleus swells with the flattened tail).
    The top token always survives; p = 0 keeps every token.
    """
    logits, p = _check_logits(logits), _check_number("min_p", p)
    if not 0 <= p <= 1:
        raise ValueError(f"min_p must be in [0, 1], got {p}")
    probs = logits.softmax(dim=-1)
    threshold = p * probs.max(dim=-1, keepdim=True).values
    return logits.masked_fill(probs < threshold, -math.inf)


def repetition_penalty(logits: torch.Tensor, previous_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Make tokens already in ``previous_ids`` [B, S] less likely (CTRL, Keskar et al. 2019).

    For each such token: a positive logit is divided by ``penalty``, a negative
    one multiplied by it. (Dividing a negative logit would *raise* it.) Each
    token is penalised once however often it occurred; penalty = 1 is a no-op,
    penalty < 1 rewards repetition.
    """
    logits, penalty = _check_logits(logits), _check_number("repetition_penalty", penalty)
    if penalty <= 0:
        raise ValueError(f"repetition_penalty must be > 0 (1 = no penalty), got {penalty}")
    if previous_ids.dim() != 2 or previous_ids.shape[0] != logits.shape[0]:
        raise ValueError(f"previous_ids must be [B, S] with B = {logits.shape[0]}, "
                         f"got shape {tuple(previous_ids.shape)}")
    seen = logits.gather(-1, previous_ids)
    seen = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits.scatter(-1, previous_ids, seen)  # repeated ids write the same value


def process_logits(logits: torch.Tensor, previous_ids: torch.Tensor | None = None, temperature: float = 1.0,
                   top_k: int | None = None, top_p: float | None = None,
                   penalty: float | None = None, min_p: float | None = None) -> torch.Tensor:
    """The processors in the usual order (as in HF ``generate``): [B, V] -> [B, V].

    The penalty comes first, so it acts on the model's own scores; top-k,
    top-p and min-p come after temperature, so the cut is measured on the
    distribution we actually sample from.
    """
    if penalty is not None and previous_ids is not None:
        logits = repetition_penalty(logits, previous_ids, penalty)
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    if min_p is not None:
        logits = min_p_filter(logits, min_p)
    return logits


# ------------------------------------------------------- generation

def _as_batch(model: torch.nn.Module, input_ids) -> tuple[torch.Tensor, bool]:
    """input_ids as a [B, T] tensor on the model's device, and whether a list came in."""
    device = next(model.parameters()).device
    if isinstance(input_ids, torch.Tensor):
        ids = input_ids[None] if input_ids.dim() == 1 else input_ids
        came_as_list = False
    else:
        ids, came_as_list = torch.tensor([list(input_ids)], dtype=torch.long), True
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise ValueError(f"input_ids must be a non-empty prompt [B, T] or list of ids, got shape {tuple(ids.shape)}")
    return ids.to(device), came_as_list


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int = 0,
             device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts of different lengths -> (input_ids [B, T], attention_mask [B, T]).

    Each row is padded on the *left*, so every prompt ends in the last column
    and the next token of every row is generated in the same place. The mask
    is 1 on real tokens, 0 on padding (the model attends to no padding)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("left_pad needs a non-empty list of non-empty prompts")
    T = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (T - len(p)) + list(p) for p in prompts], device=device)
    mask = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in prompts], device=device)
    return ids, mask


def _is_ragged(input_ids) -> bool:
    """A list of prompts (lists or 1-d tensors) rather than one prompt or a [B, T] tensor."""
    return (not isinstance(input_ids, torch.Tensor) and len(input_ids) > 0
            and not isinstance(input_ids[0], int) and hasattr(input_ids[0], "__len__"))


@torch.no_grad()
def generate(model: torch.nn.Module, input_ids, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, repetition_penalty: float | None = None,
             eos_id: int | None = None, generator: torch.Generator | None = None, use_cache: bool = True,
             pad_id: int | None = None, min_p: float | None = None):
    """Continue each prompt by up to ``max_new_tokens`` tokens.

    ``input_ids``: one prompt (a list of ints), a batch [B, T0] of prompts of
    equal length, or a list of prompts of any lengths (lists of ints), which
    are left-padded (``left_pad``) with matching attention mask and positions.
    Returns the new ids [B, n] (n <= max_new_tokens) for a tensor, a list of
    ints for one list prompt, and a list of lists for a list of prompts (each
    cut after its ``eos_id``). ``temperature=0`` is greedy; otherwise each token
    is drawn from softmax of the processed logits with ``generator`` (seed it
    for reproducible samples). The repetition penalty looks at prompt and
    output. A row that emits ``eos_id`` keeps it and is then padded with
    ``pad_id`` (default ``eos_id``); generation stops once every row has finished.

    ``min_p`` (optional) keeps the tokens at least that fraction as likely as
    the top one (``min_p_filter``), after top-k and top-p.

    ``use_cache=True`` reads the prompt once and then feeds one token per step;
    ``use_cache=False`` re-reads the whole sequence every step: quadratic cost,
    the same logits up to float rounding, so the same seed draws the same
    samples (unless rounding moves a draw across a boundary: very rare).
    """
    max_new_tokens = _check_count("max_new_tokens", max_new_tokens, 0)
    # Run the processors once on a dummy row: a bad setting fails now, not mid-generation.
    process_logits(torch.zeros(1, 1), torch.zeros(1, 0, dtype=torch.long), temperature, top_k, top_p,
                   repetition_penalty, min_p)
    ragged = _is_ragged(input_ids)
    if ragged:
        device = next(model.parameters()).device
        ids, mask = left_pad([list(map(int, p)) for p in input_ids], 0, device)
        came_as_list = False
        if bool(mask.all()):
            mask = None  # equal lengths: no padding, the plain causal path
    else:
        (ids, came_as_list), mask = _as_batch(model, input_ids), None
    # Positions count real tokens only, so a left-padded row reads its prompt
    # exactly as it would alone: position 0 is its first real token.
    positions = None if mask is None else (mask.cumsum(-1) - 1).clamp(min=0)
    pad_id = eos_id if pad_id is None else pad_id
    plain_greedy = temperature == 0 and repetition_penalty is None
    cache = model.new_kv_cache() if use_cache else None
    step_input, step_positions, new_ids = ids, positions, []
    finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    for _ in range(max_new_tokens):
        logits = model(step_input, attention_mask=mask, kv_cache=cache, position_ids=step_positions,
                       logits_to_keep=1)[:, -1]  # [B, V]
        if not plain_greedy:  # plain greedy: the filters cannot change the argmax
            logits = process_logits(logits, ids, temperature, top_k, top_p, repetition_penalty, min_p)
        if temperature == 0:
            next_id = logits.argmax(dim=-1)  # no random draw: greedy uses no RNG
        else:
            next_id = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)[:, 0]
        if eos_id is not None:
            next_id = next_id.masked_fill(finished, pad_id)
            finished |= next_id == eos_id
        new_ids.append(next_id)
        ids = torch.cat((ids, next_id[:, None]), dim=1)
        if mask is not None:
            mask = F.pad(mask, (0, 1), value=1)
            positions = torch.cat((positions, positions[:, -1:] + 1), dim=1)
        step_input = next_id[:, None] if use_cache else ids
        step_positions = None if positions is None else (positions[:, -1:] if use_cache else positions)
        if bool(finished.all()):
            break
    out = torch.stack(new_ids, dim=1) if new_ids else ids[:, :0]
    if ragged:
        return [_cut_after(row, eos_id) for row in out.tolist()]
    return out[0].tolist() if came_as_list else out


def _cut_after(ids: list[int], eos_id: int | None) -> list[int]:
    """ids up to and including the first ``eos_id`` (all of them if none)."""
    return ids[:ids.index(eos_id) + 1] if eos_id is not None and eos_id in ids else ids


def greedy(model: torch.nn.Module, input_ids, max_new_tokens: int, eos_id: int | None = None,
           use_cache: bool = True):
    """The most likely token at every step: ``generate`` with temperature 0
    (deterministic, uses no random numbers); same inputs and outputs."""
    return generate(model, input_ids, max_new_tokens, temperature=0.0, eos_id=eos_id,
                    use_cache=use_cache)


# ------------------------------------------------------- beam search

def reorder_cache(cache: KVCache, beam_idx: torch.Tensor) -> None:
    """Row b of the cache becomes old row beam_idx[b], in place (may grow or shrink B)."""
    for layer in range(len(cache.keys)):
        cache.keys[layer] = cache.keys[layer].index_select(0, beam_idx)
        cache.values[layer] = cache.values[layer].index_select(0, beam_idx)


@torch.no_grad()
def beam_search(model: torch.nn.Module, input_ids, num_beams: int, max_new_tokens: int,
                length_penalty: float = 1.0, eos_id: int | None = None) -> list[tuple[list[int], float]]:
    """Keep the ``num_beams`` best partial continuations of one prompt.

    input_ids: one prompt (list of ids, [T0] or [1, T0]). Returns up to
    ``num_beams`` (new_ids, score) pairs, best first. The score of a sequence
    of L new tokens is  sum of log p(token | prefix) / L ** length_penalty:
    raw sums favour short sequences (every token adds a negative term), so
    length_penalty > 0 gives longer ones a chance; 0 ranks by the raw sum.

    Each step extends every live beam by every token (K x V candidates). An
    extension by ``eos_id`` is a finished hypothesis; the best K others live
    on. The KV cache follows its beams: row b is copied from its parent beam
    (``reorder_cache``). There is no early stop: it runs ``max_new_tokens``
    steps, and unfinished beams then compete with the finished ones.
    """
    num_beams = _check_count("num_beams", num_beams, 1)
    max_new_tokens = _check_count("max_new_tokens", max_new_tokens, 1)
    length_penalty = _check_number("length_penalty", length_penalty)
    prompt, _ = _as_batch(model, input_ids)
    if prompt.shape[0] != 1:
        raise ValueError(f"beam_search takes one prompt, got a batch of {prompt.shape[0]}")
    cache = model.new_kv_cache()
    logits = model(prompt, kv_cache=cache, logits_to_keep=1)[:, -1]  # one beam to start
    beams = prompt.new_zeros(1, 0)  # [K, t] new tokens of each live beam
    sums = torch.zeros(1, device=prompt.device, dtype=torch.float64)  # summed log-probs, [K]
    done: list[tuple[list[int], float, float]] = []  # (ids, raw sum, length) of finished ones

    for step in range(1, max_new_tokens + 1):
        candidates = sums[:, None] + F.log_softmax(logits.double(), dim=-1)  # [K, V]
        if eos_id is not None:
            for b in range(beams.shape[0]):
                done.append((beams[b].tolist() + [eos_id], candidates[b, eos_id].item(), step))
            candidates[:, eos_id] = -math.inf  # eos ends a beam; it does not live on
        top = candidates.flatten().topk(min(num_beams, candidates.numel()))
        alive = top.values > -math.inf  # a tiny vocabulary can run out of candidates
        parent = torch.div(top.indices[alive], candidates.shape[1], rounding_mode="floor")
        token = top.indices[alive] % candidates.shape[1]
        if len(token) == 0:
            break
        beams = torch.cat((beams[parent], token[:, None]), dim=1)
        sums = top.values[alive]
        if step < max_new_tokens:  # the last step's tokens need no logits
            reorder_cache(cache, parent)
            logits = model(token[:, None], kv_cache=cache, logits_to_keep=1)[:, -1]

    done += [(beams[b].tolist(), sums[b].item(), beams.shape[1]) for b in range(beams.shape[0])]
    scored = [(ids, raw / length ** length_penalty) for ids, raw, length in done]
    scored.sort(key=lambda pair: -pair[1])  # stable: equal scores keep their order
    return scored[:num_beams]


# ------------------------------------------------------- repetition metrics

def _ngrams(ids, n: int) -> list[tuple]:
    _check_count("n", n, 1)
    ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    return [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]


def distinct_n(sequences: Sequence, n: int) -> float:
    """Distinct n-grams / all n-grams over a set of sequences (Li et al. 2016).

    1.0: no n-gram occurs twice anywhere; near 0: the samples repeat each other
    (or themselves). 0.0 if the sequences hold no n-gram at all.
    """
    grams = [g for seq in sequences for g in _ngrams(seq, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repeated_ngram_fraction(ids, n: int) -> float:
    """Fraction of the n-grams of one sequence that already occurred earlier in it.

    "a b a b a b" with n = 2: 5 bigrams, of which the last three repeat: 0.6.
    0.0 if the sequence is shorter than n.
    """
    seen, repeats = set(), 0
    grams = _ngrams(ids, n)
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams) if grams else 0.0
