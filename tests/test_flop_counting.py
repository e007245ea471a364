"""Tests of the measured side of minillm.calculators: counted FLOPs and the
matrix-product rate, checked against hand counts and the 6N + 12 L T d rule."""
import math

import torch
import torch.nn.functional as F

from minillm.calculators import (attention_flops_per_token, counted_flops,
                                 matmul_flops_per_second)
from minillm.config import ModelConfig, count_parameters
from minillm.model import Transformer


def test_a_linear_layer_costs_2mkn_forward_and_twice_that_backward():
    layer = torch.nn.Linear(32, 48, bias=False)
    x = torch.randn(10, 32, requires_grad=True)
    forward = counted_flops(lambda: layer(x))
    assert forward["total"] == 2 * 10 * 32 * 48
    step = counted_flops(lambda: layer(x).sum().backward())
    assert step["total"] == 3 * forward["total"]   # grad of the input and of the weight


def test_cpu_attention_is_counted_like_the_gpu_kernels():
    b, h, t, d = 2, 4, 16, 8
    q, k, v = (torch.randn(b, h, t, d, requires_grad=True) for _ in range(3))
    forward = counted_flops(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert forward["total"] == 4 * b * h * t * t * d   # q k^T and p v, full square
    step = counted_flops(
        lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward())
    # the backward recomputes the scores, then four more products
    assert step["total"] == forward["total"] + 10 * b * h * t * t * d


def test_a_training_step_of_the_transformer_matches_the_6n_rule_plus_attention():
    config = ModelConfig(vocab_size=256, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2,
                         d_ff=96, max_seq_len=16)
    model = Transformer(config)
    x = torch.randint(0, 256, (3, 16))
    counted = counted_flops(lambda: model(x, labels=x)[1].backward())
    tokens = x.numel()
    norm_gains = (2 * config.n_layers + 1) * config.d_model   # no matrix product
    matmul_params = count_parameters(config) - norm_gains
    attention = attention_flops_per_token(config.n_layers, 16, config.d_model)
    # 6N for the weights; 12 L T d for attention (model FLOPs), of which the
    # counter sees 14 L T d because the backward recomputes the scores
    assert counted["total"] == tokens * (6 * matmul_params + attention * 14 / 12)


def test_the_matmul_rate_is_a_plausible_positive_number():
    rate = matmul_flops_per_second(size=256, seconds=0.05)
    assert math.isfinite(rate) and 1e7 < rate < 1e15
