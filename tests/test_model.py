"""Tests of minillm.config, minillm.attention, minillm.model and minillm.checkpoint."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.attention import repeat_kv
from minillm.checkpoint import CheckpointError, check_state_dict, load_model, load_weights, save_model
from minillm.config import ModelConfig, count_parameters, flops_per_token, parameter_breakdown
from minillm.model import (
    IGNORE_INDEX, MLP_CLASSES, RMSNorm, Transformer, build_attention_mask, build_mlp, lm_loss,
)


def small_config(**overrides) -> ModelConfig:
    base = dict(vocab_size=97, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48, max_seq_len=64)
    return ModelConfig(**{**base, **overrides})


def make_model(dtype=torch.float64, seed=0, **overrides) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(small_config(**overrides)).to(dtype).eval()


# --------------------------------------------------------------------- config

@st.composite
def configs(draw):
    n_kv = draw(st.integers(1, 3))
    n_heads = n_kv * draw(st.integers(1, 3))
    head_dim = 2 * draw(st.integers(1, 4))
    return ModelConfig(
        vocab_size=draw(st.integers(1, 50)), d_model=n_heads * head_dim, n_layers=draw(st.integers(1, 3)),
        n_heads=n_heads, n_kv_heads=n_kv, d_ff=draw(st.integers(1, 20)),
        tie_embeddings=draw(st.booleans()), qkv_bias=draw(st.booleans()),
        attention_bias=draw(st.booleans()), mlp_bias=draw(st.booleans()), mlp=draw(st.sampled_from(sorted(MLP_CLASSES))),
    )


@settings(max_examples=40, deadline=None)
@given(configs())
def test_count_parameters_equals_numel(config):
    model = Transformer(config)
    assert count_parameters(config) == sum(p.numel() for p in model.parameters())
    assert sum(parameter_breakdown(config).values()) == count_parameters(config)


def test_presets_have_the_advertised_sizes():
    sizes = {name: count_parameters(ModelConfig.preset(name)) for name in ("tiny", "small", "base")}
    assert 1e6 <= sizes["tiny"] <= 3e6
    assert 10e6 <= sizes["small"] <= 20e6
    assert 90e6 <= sizes["base"] <= 110e6
    tiny = ModelConfig.preset("tiny", vocab_size=4096)
    assert tiny.vocab_size == 4096 and tiny.d_model == 128 and tiny.n_kv_heads == 2


def test_defaults_are_derived():
    config = ModelConfig(d_model=96, n_heads=4, max_seq_len=100)
    assert config.n_kv_heads == 4 and config.head_dim == 24
    assert config.d_ff == 256  # 8/3 * 96 = 256, already a multiple of 64
    assert config.rope_original_max_seq_len == 100
    assert ModelConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("overrides, words", [
    (dict(d_model=30, n_heads=4), ["d_model=30", "n_heads=4"]),
    (dict(n_heads=4, n_kv_heads=3), ["n_heads=4", "n_kv_heads=3"]),
    (dict(d_model=12, n_heads=4, n_kv_heads=4), ["head_dim", "3", "odd"]),
    (dict(n_layers=0), ["n_layers", "0"]),
    (dict(vocab_size=-5), ["vocab_size", "-5"]),
    (dict(d_ff=2.5), ["d_ff", "2.5"]),
    (dict(n_heads=True), ["n_heads"]),
    (dict(norm_eps=0.0), ["norm_eps"]),
    (dict(rope_scaling="cubic"), ["rope_scaling", "cubic"]),
    (dict(rope_scaling="linear", rope_factor=0.5), ["rope_factor", "0.5"]),
    (dict(rope_scaling="yarn", yarn_beta_fast=1.0, yarn_beta_slow=2.0), ["yarn_beta_fast"]),
    (dict(mlp="geglu"), ["mlp", "geglu"]),
])
def test_bad_configs_name_the_field(overrides, words):
    with pytest.raises(ValueError) as info:
        small_config(**overrides)
    for word in words:
        assert word in str(info.value)


def test_unknown_preset_and_fields():
    with pytest.raises(ValueError, match="huge"):
        ModelConfig.preset("huge")
    with pytest.raises(ValueError, match="n_embd"):
        ModelConfig.from_dict({"n_embd": 3})


def test_flops_per_token():
    config = small_config()
    n = parameter_breakdown(config)["attention"] + parameter_breakdown(config)["mlp"] + 97 * 32
    attention = 4 * 2 * 10 * 32  # 4 L T d
    assert flops_per_token(config, seq_len=10, training=False) == 2 * n + attention
    assert flops_per_token(config, seq_len=10) == 6 * n + 3 * attention


# ------------------------------------------------------------------ attention

def test_repeat_kv_is_repeat_interleave_not_repeat():
    x = torch.randn(2, 3, 5, 4)
    assert torch.equal(repeat_kv(x, 2), x.repeat_interleave(2, dim=1))
    assert not torch.equal(repeat_kv(x, 2), x.repeat(1, 2, 1, 1))
    assert repeat_kv(x, 1) is x


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])  # MHA, GQA, MQA
def test_cached_decoding_equals_full_forward(n_kv_heads):
    model = make_model(n_kv_heads=n_kv_heads)
    ids = torch.randint(0, 97, (2, 12))
    full = model(ids)
    cache = model.new_kv_cache()
    pieces = [model(ids[:, :5], kv_cache=cache), model(ids[:, 5:8], kv_cache=cache)]  # prefill, a chunk
    pieces += [model(ids[:, t:t + 1], kv_cache=cache) for t in range(8, 12)]  # then one at a time
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-12, atol=1e-12)
    assert len(cache) == 12
    assert cache.nbytes() == 2 * 2 * 2 * n_kv_heads * 12 * 8 * 8  # k,v x layers x B x K x S x D x 8 bytes


def test_gqa_kernel_equals_repeat_kv_path():
    model = make_model()
    ids = torch.randint(0, 97, (2, 9))
    fast = model(ids)  # no mask: SDPA's enable_gqa path
    explicit = model(ids, attention_mask=torch.ones(2, 9, dtype=torch.long))  # all ones: same fast path
    masked = torch.ones(2, 9, dtype=torch.long)
    masked[1, 0] = 0  # forces the explicit-mask path (repeat_kv) for the whole batch
    torch.testing.assert_close(model(ids, attention_mask=masked)[0], fast[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(explicit, fast, rtol=0, atol=0)


def test_padding_gives_the_unpadded_result():
    model = make_model()
    ids = torch.randint(1, 97, (1, 7))
    alone = model(ids)
    left = torch.cat((torch.zeros(1, 3, dtype=torch.long), ids), dim=1)
    mask = torch.tensor([[0, 0, 0] + [1] * 7])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # first real token at position 0
    out = model(left, attention_mask=mask, position_ids=positions)
    assert torch.isfinite(out).all()  # fully masked padding rows must not produce NaN
    torch.testing.assert_close(out[:, 3:], alone, rtol=1e-12, atol=1e-12)
    right = torch.cat((ids, torch.zeros(1, 2, dtype=torch.long)), dim=1)
    out = model(right, attention_mask=torch.tensor([[1] * 7 + [0, 0]]))
    torch.testing.assert_close(out[:, :7], alone, rtol=1e-12, atol=1e-12)


def test_attention_mask_shape():
    mask = build_attention_mask(torch.tensor([[0, 1, 1, 1]]), T=2, S=4)
    assert mask.shape == (1, 1, 2, 4)
    assert mask[0, 0].tolist() == [[False, True, True, False], [False, True, True, True]]
    assert build_attention_mask(None, T=4, S=4) is None and build_attention_mask(None, T=1, S=9) is None


def test_bad_inputs_raise_clear_errors():
    model = make_model()
    with pytest.raises(ValueError, match="attention_mask"):
        model(torch.zeros(2, 5, dtype=torch.long), attention_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        lm_loss(torch.zeros(2, 5, 7), torch.zeros(2, 4, dtype=torch.long))


# ---------------------------------------------------------------------- model

def test_rmsnorm_is_per_row_and_float32():
    norm = RMSNorm(8, eps=1e-6)
    x = torch.randn(3, 8, dtype=torch.float64)
    y = norm(x)
    torch.testing.assert_close(y, x / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt())
    x2 = x.clone()
    x2[0] *= 100  # another row's scale must not matter
    torch.testing.assert_close(norm(x2)[1:], y[1:])
    h = (torch.randn(4, 512) * 50).bfloat16()
    want = (h.double() / h.double().pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()).bfloat16()
    out = RMSNorm(512, eps=1e-6).bfloat16()(h)  # a bf16 model: statistics still in float32
    assert out.dtype == torch.bfloat16 and torch.equal(out, want)


def test_loss_shifts_labels_once_and_ignores_minus_100():
    model = make_model()
    ids = torch.randint(0, 97, (2, 6))
    logits = model(ids)
    manual = F.cross_entropy(logits[:, :-1].reshape(-1, 97), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(model(ids, labels=ids)[1], manual)
    labels = ids.clone()
    labels[:, :3] = IGNORE_INDEX  # a prompt: its tokens are never targets
    manual = F.cross_entropy(logits[:, 2:-1].reshape(-1, 97), ids[:, 3:].reshape(-1))
    torch.testing.assert_close(lm_loss(logits, labels), manual)
    mask = torch.ones_like(ids)
    mask[:, -2:] = 0
    padded = F.cross_entropy(model(ids, attention_mask=mask)[:, :3].reshape(-1, 97), ids[:, 1:4].reshape(-1))
    labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
    torch.testing.assert_close(model(ids, labels=labels, attention_mask=mask)[1], padded)
    per_token = model(ids, labels=labels, attention_mask=mask, reduction="none")[1]
    assert per_token.shape == (2, 6) and torch.all(per_token[:, 3:] == 0)
    torch.testing.assert_close(per_token.sum() / 6, padded)
    torch.testing.assert_close(model(ids, labels=labels, attention_mask=mask, reduction="sum")[1],
                               per_token.sum())
    with pytest.raises(ValueError, match="reduction"):
        model(ids, labels=ids, reduction="avg")


def test_tied_and_untied_heads():
    tied = make_model()
    assert tied.lm_head.weight is tied.embed.weight
    untied = make_model(tie_embeddings=False)
    assert untied.lm_head.weight is not untied.embed.weight


def test_init_scales_residual_projections():
    model = make_model(dtype=torch.float32, d_model=256, n_heads=4, n_kv_heads=4, d_ff=512, n_layers=8)
    assert abs(model.blocks[0].attn.q_proj.weight.std().item() - 0.02) < 0.002
    assert abs(model.blocks[0].attn.o_proj.weight.std().item() - 0.02 / 4) < 0.0005  # sqrt(2 * 8) = 4


def test_mlp_factory_is_the_extension_point():
    class Doubler(torch.nn.Module):
        def __init__(self, config):
            super().__init__()

        def forward(self, x):
            return 2 * x

    MLP_CLASSES["doubler"] = Doubler
    try:
        config = small_config()
        object.__setattr__(config, "mlp", "doubler")  # bypass validation, as a new kind would register itself
        assert isinstance(build_mlp(config), Doubler)
    finally:
        del MLP_CLASSES["doubler"]


def test_logits_to_keep_scores_only_the_last_positions():
    model = make_model()
    ids = torch.randint(0, 97, (2, 8))
    torch.testing.assert_close(model(ids, logits_to_keep=3), model(ids)[:, -3:], rtol=1e-12, atol=1e-12)


def test_greedy_with_and_without_cache():
    from minillm.generate import greedy

    model = make_model()
    prompt = torch.randint(0, 97, (2, 4))
    with_cache = greedy(model, prompt, 10)
    assert with_cache.shape == (2, 10)
    assert torch.equal(with_cache, greedy(model, prompt, 10, use_cache=False))


def test_bf16_autocast_trains():
    model = make_model(dtype=torch.float32).train()
    ids = torch.randint(0, 97, (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, loss = model(ids, labels=ids)
    loss.backward()
    assert torch.isfinite(loss) and model.embed.weight.grad is not None


# ----------------------------------------------------------------- checkpoint

@pytest.mark.parametrize("tie", [True, False])
def test_checkpoint_round_trip(tmp_path, tie):
    model = make_model(dtype=torch.float32, tie_embeddings=tie)
    path = save_model(model, tmp_path / "model.safetensors")
    loaded = load_model(path)
    assert loaded.config == model.config
    assert loaded.lm_head.weight is loaded.embed.weight if tie else True
    ids = torch.randint(0, 97, (1, 5))
    assert torch.equal(loaded.eval()(ids), model(ids))
    assert not list(tmp_path.glob("*.tmp"))


def test_corrupt_or_missing_checkpoint(tmp_path):
    path = save_model(make_model(dtype=torch.float32), tmp_path / "model.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated download
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model(path)
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_weights(make_model(), path)
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(make_model(), tmp_path / "nope.safetensors")


def test_mismatched_checkpoint_lists_every_problem(tmp_path):
    path = save_model(make_model(dtype=torch.float32, d_ff=64, n_layers=3), tmp_path / "m.safetensors")
    model = make_model(dtype=torch.float32, tie_embeddings=False)  # d_ff 48, 2 layers, own head
    with pytest.raises(CheckpointError) as info:
        load_weights(model, path)
    message = str(info.value)
    assert "missing keys (1): lm_head.weight" in message
    assert "unexpected keys (" in message and "blocks.2.attn.q_proj.weight" in message
    assert "blocks.0.mlp.up_proj.weight: checkpoint (64, 32) vs model (48, 32)" in message
    state = model.state_dict()
    state["extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unexpected keys \\(1\\): extra"):
        check_state_dict(model, state)
