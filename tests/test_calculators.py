"""Tests of minillm.calculators: the formulas agree with real modules and papers."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from minillm.calculators import (
    GPT2_SMALL, GPT3_175B, GPT3_TABLE, attention_flops_per_token, gpt_parameter_breakdown,
    gpt_parameter_count, pf_days, training_days, training_flops, weight_bytes,
)


class GPTBlock(nn.Module):
    """The GPT-2 block's parameters (no forward needed to count them)."""

    def __init__(self, d, f):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.c_attn, self.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.c_fc, self.mlp_proj = nn.Linear(d, f), nn.Linear(f, d)


class GPT(nn.Module):
    def __init__(self, n_layers, d_model, vocab_size, n_ctx, d_ff=None, tie_embeddings=True):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab_size, d_model), nn.Embedding(n_ctx, d_model)
        self.h = nn.ModuleList(GPTBlock(d_model, d_ff or 4 * d_model) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        if tie_embeddings:
            self.lm_head.weight = self.wte.weight


def numel(**shape) -> int:
    with torch.device("meta"):  # shapes only: no memory, so GPT-3 itself fits
        return sum(p.numel() for p in GPT(**shape).parameters())


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(1, 40), st.integers(1, 100), st.integers(1, 50),
       st.one_of(st.none(), st.integers(1, 90)), st.booleans())
def test_formula_equals_numel(L, d, V, n_ctx, f, tied):
    shape = dict(n_layers=L, d_model=d, vocab_size=V, n_ctx=n_ctx, d_ff=f, tie_embeddings=tied)
    assert gpt_parameter_count(**shape) == numel(**shape)
    assert sum(gpt_parameter_breakdown(**shape).values()) == gpt_parameter_count(**shape)


def test_gpt2_small_and_gpt3():
    assert gpt_parameter_count(**GPT2_SMALL) == 124_439_808 == numel(**GPT2_SMALL)
    n = gpt_parameter_count(**GPT3_175B)
    assert n == numel(**GPT3_175B)
    assert abs(n / 175e9 - 1) < 0.01
    for L, d, published in GPT3_TABLE.values():  # every row of GPT-3's Table 2.1 within 2%
        assert abs(gpt_parameter_count(L, d, 50257, 2048) / published - 1) < 0.02
    # GPT-3's Table D.1: 3.14e23 FLOPs = 3640 PF-days for 300B tokens.
    flops = training_flops(n, 300e9)
    assert round(flops / 1e23, 2) == 3.14
    assert abs(pf_days(flops) / 3640 - 1) < 0.01


def test_gpt2_matches_hugging_face():
    transformers = pytest.importorskip("transformers")
    with torch.device("meta"):
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config())
    assert sum(p.numel() for p in model.parameters()) == gpt_parameter_count(**GPT2_SMALL)


def test_flops_time_and_memory():
    assert training_flops(2, 3) == 36
    assert attention_flops_per_token(2, 10, 8) == 3 * attention_flops_per_token(2, 10, 8, training=False) == 12 * 2 * 10 * 8
    assert pf_days(1e15 * 86400) == 1
    assert math.isclose(training_days(1e15 * 86400 * 10, n_devices=5, peak_flops_per_device=4e15, utilization=0.5), 1.0)
    assert weight_bytes(7e9) == 14e9 and weight_bytes(10, 4) == 40


@pytest.mark.parametrize("call, message", [
    (lambda: gpt_parameter_count(0, 768, 50257, 1024), "n_layers"),
    (lambda: gpt_parameter_count(12, 768, 50257, 1024, d_ff=-1), "d_ff"),
    (lambda: gpt_parameter_count(12, True, 50257, 1024), "d_model"),
    (lambda: training_flops(-1, 10), "n_params"),
    (lambda: training_days(1e20, 8, 1e15, 1.5), "utilization"),
    (lambda: training_days(1e20, 0, 1e15, 0.5), "n_devices"),
])
def test_bad_input_names_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()
