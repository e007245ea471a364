"""minillm.lora: the LoRA algebra, and parity with peft on the HF export of the model.

Reached on CPU (peft 0.21.2, transformers 5.24, torch 2.13): the logits of
minillm's LoRA model and peft's agree bit for bit in float32 (max difference
0; bound asserted: 1e-6), for q/v, all-linear and rsLoRA configs with nonzero B.
"""

import pytest
import torch

from minillm import hf
from minillm.config import ModelConfig
from minillm.lora import (
    ALL_LINEAR,
    LoRALinear,
    count_trainable,
    inject_lora,
    lora_layers,
    lora_parameter_count,
    lora_state_dict,
    merge_lora,
)
from minillm.model import Transformer

CONFIG = ModelConfig(
    vocab_size=97,
    d_model=32,
    n_layers=2,
    n_heads=4,
    n_kv_heads=2,
    d_ff=48,
    max_seq_len=32,
)


def base_model(seed=0, **overrides):
    torch.manual_seed(seed)
    config = ModelConfig(**{**CONFIG.to_dict(), **overrides}) if overrides else CONFIG
    return Transformer(config).eval()


def randomize_adapters(model, seed=1):
    """Nonzero B (a fresh adapter is exactly the base model, which proves little)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.1)


def ids(B=2, T=11, seed=3):
    return torch.randint(
        0, CONFIG.vocab_size, (B, T), generator=torch.Generator().manual_seed(seed)
    )


def test_fresh_adapter_is_the_base_model_and_only_adapters_train():
    model = base_model()
    x = ids()
    want = model(x)
    inject_lora(model, "all-linear", r=4, alpha=8)
    assert torch.equal(model(x), want)  # B = 0: exactly the base
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith((".lora_A", ".lora_B")) for n in trainable)
    assert count_trainable(model)[0] == lora_parameter_count(CONFIG, ALL_LINEAR, 4)
    assert len(lora_state_dict(model)) == 2 * 7 * CONFIG.n_layers


def test_only_b_gets_a_gradient_at_the_start():
    model = inject_lora(base_model(), ("q_proj",), r=2)
    model(ids()).sum().backward()
    layer = model.blocks[0].attn.q_proj
    assert layer.lora_B.grad.abs().sum() > 0
    assert layer.lora_A.grad.abs().sum() == 0  # dL/dA = s B^T (...) and B = 0
    assert model.blocks[0].attn.q_proj.base.weight.grad is None  # frozen


def test_forward_equals_formula_and_merge_unmerge_round_trip():
    torch.manual_seed(0)
    linear = torch.nn.Linear(6, 5)
    layer = LoRALinear(linear, r=3, alpha=12.0)
    torch.nn.init.normal_(layer.lora_B)
    x = torch.randn(4, 6)
    w0 = linear.weight.detach().clone()
    want = x @ (w0 + 4.0 * layer.lora_B @ layer.lora_A).T + linear.bias
    torch.testing.assert_close(layer(x), want, atol=1e-5, rtol=1e-5)
    layer.merge()
    torch.testing.assert_close(layer(x), want, atol=1e-5, rtol=1e-5)
    layer.unmerge()
    torch.testing.assert_close(linear.weight, w0, atol=1e-6, rtol=0)


def test_rslora_scaling_and_bad_input():
    assert LoRALinear(torch.nn.Linear(4, 4), r=16, alpha=8, rslora=True).scaling == 2.0
    assert LoRALinear(torch.nn.Linear(4, 4), r=16, alpha=8).scaling == 0.5
    with pytest.raises(ValueError, match="rank"):
        LoRALinear(torch.nn.Linear(4, 4), r=0)
    with pytest.raises(ValueError, match="no module of the model matches"):
        inject_lora(base_model(), ("qkv",))
    model = inject_lora(base_model(), ("q_proj",))
    with pytest.raises(ValueError, match="already has a LoRA adapter"):
        inject_lora(model, ("q_proj",))
    with pytest.raises(ValueError, match="unknown targets"):
        lora_parameter_count(CONFIG, ("qkv",))


def test_merge_lora_gives_a_plain_transformer():
    model = inject_lora(base_model(), "all-linear", r=4)
    randomize_adapters(model)
    x = ids()
    want = model(x)
    merged = merge_lora(model)
    assert not lora_layers(merged)
    assert set(merged.state_dict()) == set(base_model().state_dict())
    torch.testing.assert_close(merged(x), want, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ peft parity
peft = pytest.importorskip("peft")
pytest.importorskip("transformers")


def peft_twin(model, targets, r, alpha, rslora=False):
    """peft's LoRA on the HF export of the base, with ``model``'s A and B copied in."""
    base = base_model()  # the same seed: the same base weights as `model` had
    hf_model = hf.to_transformers(base)
    config = peft.LoraConfig(
        r=r,
        lora_alpha=alpha,
        target_modules=list(targets),
        lora_dropout=0.0,
        use_rslora=rslora,
        bias="none",
    )
    twin = peft.get_peft_model(hf_model, config)
    ours = dict(lora_layers(model))
    copied = 0
    for name, module in twin.named_modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            # base_model.model.model.layers.{i}.self_attn.q_proj
            #   -> blocks.{i}.attn.q_proj
            hf_name = name.removeprefix("base_model.model.")
            mine = hf._rename(hf_name + ".weight", to_hf=False).removesuffix(".weight")
            with torch.no_grad():
                module.lora_A["default"].weight.copy_(ours[mine].lora_A)
                module.lora_B["default"].weight.copy_(ours[mine].lora_B)
            copied += 1
    assert copied == len(ours)
    return twin.eval()


@pytest.mark.parametrize(
    "targets, r, alpha, rslora",
    [
        (("q_proj", "v_proj"), 8, 16, False),
        (ALL_LINEAR, 4, 8, False),
        (("k_proj", "down_proj"), 16, 8, True),
    ],
)
def test_logits_and_trainable_count_match_peft(targets, r, alpha, rslora):
    model = inject_lora(base_model(), targets, r=r, alpha=alpha, rslora=rslora)
    randomize_adapters(model)
    twin = peft_twin(model, targets, r, alpha, rslora)
    x = ids()
    with torch.no_grad():
        ours, theirs = model(x), twin(input_ids=x).logits
    assert (ours - theirs).abs().max() <= 1e-6
    trainable, total = twin.get_nb_trainable_parameters()
    assert count_trainable(model) == (trainable, total)


def test_merged_adapter_exports_and_loads_in_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    model = inject_lora(base_model(), ("q_proj", "v_proj"), r=8, alpha=16)
    randomize_adapters(model)
    twin = peft_twin(model, ("q_proj", "v_proj"), 8, 16)
    x = ids()
    with torch.no_grad():
        want = twin.merge_and_unload()(input_ids=x).logits
    hf.save_pretrained(merge_lora(model), tmp_path)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        got = loaded(input_ids=x).logits
    assert (got - want).abs().max() <= 1e-5
