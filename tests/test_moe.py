"""minillm.moe: routing, dispatch, capacity, balancing, and the MoE transformer."""
import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.config import MoEConfig, ModelConfig, active_parameters, count_parameters, flops_per_token, parameter_breakdown
from minillm.model import SwiGLU, Transformer
from minillm.moe import (MoE, aux_loss, balance_loss, expert_capacity, expert_load, load_imbalance, moe_layers,
                         route, update_router_biases)


def moe_config(**overrides):
    base = dict(vocab_size=64, d_model=16, n_layers=2, n_heads=2, d_ff=32, max_seq_len=16)
    moe_fields = {f.name for f in dataclasses.fields(MoEConfig)}
    moe = {"n_experts": 4, "experts_top_k": 2, **{k: v for k, v in overrides.items() if k in moe_fields}}
    rest = {k: v for k, v in overrides.items() if k not in moe_fields}
    return ModelConfig(**{**base, **rest}, moe=MoEConfig(**moe))


def random_layer(seed=0, **overrides):
    torch.manual_seed(seed)
    layer = MoE(moe_config(**overrides))
    for p in layer.parameters():
        torch.nn.init.normal_(p, 0.0, 0.3)
    return layer


def reference_moe(layer, x):
    """Brute force, token by token: softmax, top-k, renormalise, weighted sum."""
    cfg = layer.config
    out = torch.zeros_like(x.reshape(-1, x.shape[-1]))
    for n, token in enumerate(x.reshape(-1, x.shape[-1])):
        probs = torch.softmax(layer.router.weight @ token, -1)
        chosen = torch.topk(probs + (layer.router_bias if cfg.router_balance == "bias" else 0), cfg.experts_top_k).indices
        weights = probs[chosen] / (probs[chosen].sum() if cfg.router_norm_topk else 1)
        for w, e in zip(weights, chosen):
            out[n] += w * layer.experts[int(e)](token)
        if layer.shared is not None:
            out[n] += layer.shared(token)
    return out.reshape(x.shape)


def test_shapes_and_stats():
    layer = random_layer()
    y = layer(torch.randn(3, 5, 16))
    assert y.shape == (3, 5, 16)
    assert layer.stats["load"].shape == (4,) and int(layer.stats["load"].sum()) == 3 * 5 * 2
    assert layer.stats["dropped"] == 0 and torch.equal(layer.stats["kept"], layer.stats["load"])


@pytest.mark.parametrize("overrides", [{}, dict(n_shared_experts=2), dict(experts_top_k=1, router_norm_topk=False),
                                       dict(router_balance="bias"), dict(experts_top_k=4, n_experts=4)])
def test_dispatch_equals_brute_force(overrides):
    layer = random_layer(**overrides)
    layer.router_bias.normal_(0, 0.2)
    x = torch.randn(2, 7, 16)
    torch.testing.assert_close(layer(x), reference_moe(layer, x), rtol=1e-5, atol=1e-5)


def test_one_expert_is_a_dense_swiglu():
    layer = random_layer(n_experts=1, experts_top_k=1)
    dense = SwiGLU(moe_config().replace(moe=None))
    dense.load_state_dict(layer.experts[0].state_dict())
    x = torch.randn(2, 6, 16)
    torch.testing.assert_close(layer(x), dense(x))


def test_route_and_bias_only_changes_selection():
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
    experts, gates = route(probs, 2)
    assert experts.tolist() == [[0, 1], [2, 1]]
    torch.testing.assert_close(gates, torch.tensor([[0.625, 0.375], [0.7 / 0.9, 0.2 / 0.9]]))
    experts, gates = route(probs, 1, bias=torch.tensor([0.0, 0.0, 0.4]), norm_topk=False)
    assert experts.tolist() == [[2], [2]]
    torch.testing.assert_close(gates, torch.tensor([[0.2], [0.7]]))  # the bias never enters the gate
    with pytest.raises(ValueError, match="top_k=4 .* 3"):
        route(probs, 4)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 64), st.integers(1, 8), st.floats(0.1, 3.0))
def test_capacity_formula(n, e, c):
    k = min(2, e)
    assert expert_capacity(n, e, k, c) == math.ceil(c * n * k / e)
    assert expert_capacity(n, e, k, None) is None


def test_capacity_drops_the_overflow():
    layer = random_layer(capacity_factor=0.5)
    with torch.no_grad():  # every token prefers experts 0 and 1
        layer.router.weight.zero_()
        layer.router.weight[0, 0] = layer.router.weight[1, 0] = 1.0
    x = torch.randn(1, 8, 16)
    x[..., 0] = 5.0
    y = layer(x)
    cap = math.ceil(0.5 * 8 * 2 / 4)
    assert cap == 2 and layer.stats["load"].tolist() == [8, 8, 0, 0]
    assert layer.stats["kept"].tolist() == [2, 2, 0, 0] and layer.stats["dropped"] == 12
    # Tokens 2..7 lost both experts: the layer adds nothing for them.
    assert torch.all(y[0, 2:] == 0) and torch.all(y[0, :2].abs().sum(-1) > 0)


def test_balance_loss_is_one_when_uniform_and_larger_when_skewed():
    E, N = 4, 8
    uniform_probs = torch.full((N, E), 1 / E)
    uniform_choice = torch.arange(N * 2).remainder(E).view(N, 2)
    assert balance_loss(uniform_probs, uniform_choice, E).item() == pytest.approx(1.0)
    skewed_probs = torch.tensor([[0.7, 0.1, 0.1, 0.1]]).repeat(N, 1)
    skewed_choice = torch.tensor([[0, 1]]).repeat(N, 1)
    assert balance_loss(skewed_probs, skewed_choice, E).item() == pytest.approx(4 * (0.5 * 0.7 + 0.5 * 0.1))
    assert balance_loss(skewed_probs, skewed_choice, E).item() > 1


def test_bias_update_moves_a_skewed_router_toward_uniform():
    layer = random_layer(router_balance="bias", experts_top_k=1, n_experts=4)
    with torch.no_grad():
        layer.router.weight[0, 0] += 1.5  # every token has x_0 = 1: expert 0 is favoured
    x = torch.randn(1, 256, 16)
    x[..., 0] = 1.0
    layer.train()
    before = None
    for _ in range(200):
        with torch.no_grad():
            layer(x)
        imbalance = load_imbalance(layer.stats["load"]).item()
        before = imbalance if before is None else before
        layer.update_bias(0.01)
    assert before > 2.0 and imbalance < 1.3
    assert layer.router_bias[0] < 0 and "router_bias" in layer.state_dict()
    assert not any(name.endswith("router_bias") for name, _ in layer.named_parameters())


def test_parameter_counts_match_numel():
    for overrides in [{}, dict(n_shared_experts=2, expert_d_ff=8), dict(mlp_bias=True, n_shared_experts=1),
                      dict(n_experts=1, experts_top_k=1)]:
        cfg = moe_config(**overrides)
        model = Transformer(cfg)
        assert count_parameters(cfg) == sum(p.numel() for p in model.parameters())
    cfg = moe_config(n_experts=8, experts_top_k=2, expert_d_ff=8)
    per_expert = 3 * 16 * 8
    assert count_parameters(cfg) - active_parameters(cfg) == cfg.n_layers * 6 * per_expert
    dense = moe_config().replace(moe=None)
    assert active_parameters(dense) == count_parameters(dense)
    assert parameter_breakdown(cfg, active=True)["mlp"] < parameter_breakdown(cfg)["mlp"]
    assert flops_per_token(cfg) < flops_per_token(cfg.replace(moe=cfg.moe.replace(experts_top_k=8)))


def test_config_validation_and_dict_round_trip():
    with pytest.raises(ValueError, match="experts_top_k=5 .* n_experts=4"):
        moe_config(experts_top_k=5)
    with pytest.raises(ValueError, match="router_balance"):
        moe_config(router_balance="loss")
    with pytest.raises(ValueError, match="capacity_factor"):
        moe_config(capacity_factor=0)
    with pytest.raises(ValueError, match="n_shared_experts"):
        moe_config(n_shared_experts=-1)
    with pytest.raises(ValueError, match="moe=MoEConfig"):
        MoE(ModelConfig.preset("tiny"))
    dense = ModelConfig.preset("tiny")
    assert "moe" not in dense.to_dict() and "moe" not in repr(dense)  # dense configs read as before
    cfg = moe_config(n_shared_experts=1, capacity_factor=1.25, router_balance="aux")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_gradients_reach_router_and_experts_and_aux_loss_is_added():
    torch.manual_seed(0)
    model = Transformer(moe_config(router_balance="aux", aux_loss_weight=0.5, n_shared_experts=1))
    x = torch.randint(0, 64, (2, 12))
    _, loss = model(x, labels=x)
    from minillm.loss import lm_loss
    torch.testing.assert_close(loss, lm_loss(model(x), x) + 0.5 * aux_loss(model))
    loss.backward()
    layer = moe_layers(model)[0]
    assert layer.router.weight.grad.abs().sum() > 0 and layer.shared.up_proj.weight.grad.abs().sum() > 0
    used = [e for e in range(4) if layer.stats["load"][e] > 0]
    assert all(layer.experts[e].down_proj.weight.grad.abs().sum() > 0 for e in used)
    assert expert_load(model).shape == (2, 4)


def test_trains_with_trainer_and_bias_updates():
    from minillm.train import TrainConfig, Trainer

    torch.manual_seed(0)
    model = Transformer(moe_config(router_balance="bias", bias_update_rate=0.01))
    data = torch.randint(0, 64, (32, 16))
    trainer = Trainer(model, TrainConfig(steps=6, batch_size=8, warmup_steps=1, eval_every=0), (data, data),
                      progress=False)
    history = trainer.fit(on_step=lambda t, r: update_router_biases(t.model))
    assert len(history) == 6 and all(math.isfinite(r["loss"]) for r in history)
    assert all(m.router_bias.abs().sum() > 0 for m in moe_layers(model))


def test_router_bias_callback_equals_updating_by_hand():
    from minillm.moe import RouterBiasUpdate
    from minillm.train import TrainConfig, Trainer

    data = torch.randint(0, 64, (32, 16))
    models = []
    for by_hand in (True, False):
        torch.manual_seed(0)
        model = Transformer(moe_config(router_balance="bias", bias_update_rate=0.01))
        callbacks = [] if by_hand else [RouterBiasUpdate()]
        trainer = Trainer(model, TrainConfig(steps=4, batch_size=8, warmup_steps=1, eval_every=0),
                          (data, data), callbacks=callbacks, progress=False)
        trainer.fit(on_step=(lambda t, r: update_router_biases(t.model)) if by_hand else None)
        models.append(model)
    for a, b in zip(*(moe_layers(m) for m in models)):
        assert torch.equal(a.router_bias, b.router_bias) and a.router_bias.abs().sum() > 0


def test_matches_hf_mixtral_sparse_moe_block():
    mixtral = pytest.importorskip("transformers.models.mixtral.modeling_mixtral")
    from transformers import MixtralConfig

    layer = random_layer(n_experts=4, experts_top_k=2)
    hf_cfg = MixtralConfig(hidden_size=16, intermediate_size=32, num_local_experts=4, num_experts_per_tok=2,
                           router_jitter_noise=0.0)
    block = mixtral.MixtralSparseMoeBlock(hf_cfg).eval()
    with torch.no_grad():
        block.gate.weight.copy_(layer.router.weight)
        for e, expert in enumerate(layer.experts):
            block.experts.gate_up_proj[e].copy_(torch.cat([expert.gate_proj.weight, expert.up_proj.weight]))
            block.experts.down_proj[e].copy_(expert.down_proj.weight)
    x = torch.randn(2, 5, 16)
    out = block(x)
    out = out[0] if isinstance(out, tuple) else out
    torch.testing.assert_close(layer(x), out, rtol=1e-5, atol=1e-5)
