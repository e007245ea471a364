import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from minillm.attention_viz import attention_explorer, attention_row, attention_weights, plot_attention  # noqa: E402


def test_attention_row_matches_causal_softmax():
    torch.manual_seed(0)
    q, k = torch.randn(5, 4), torch.randn(5, 4)
    full = torch.softmax((q @ k.T / 2).masked_fill(~torch.ones(5, 5, dtype=torch.bool).tril(), float("-inf")), -1)
    for i in range(5):
        assert torch.allclose(attention_row(q, k, i), full[i])
    assert torch.allclose(attention_row(q, k, 2, causal=False), torch.softmax(q @ k.T / 2, -1)[2])
    assert attention_row(q, k, 4, sharpness=50).max() > attention_row(q, k, 4, sharpness=0.01).max()


def test_attention_row_rejects_bad_input():
    q = torch.randn(3, 4)
    with pytest.raises(ValueError, match="query position 3"):
        attention_row(q, q, 3)
    with pytest.raises(ValueError, match="sharpness"):
        attention_row(q, q, 0, sharpness=0)
    with pytest.raises(ValueError, match="equal D"):
        attention_row(q, torch.randn(3, 5), 0)


def test_plot_attention_checks_labels():
    fig, ax = plt.subplots()
    plot_attention(ax, torch.eye(2), ["a", "b"], title="t")
    with pytest.raises(ValueError, match="do not match"):
        plot_attention(ax, torch.eye(2), ["a", "b", "c"])
    plt.close(fig)


def test_explorer_update_returns_what_it_draws():
    pytest.importorskip("ipywidgets")
    torch.manual_seed(0)
    q, k = torch.randn(4, 2), torch.randn(4, 2)
    widget, update = attention_explorer(q, k, ["a", "b", "c", "d"])
    assert torch.equal(update(1, 1.0), attention_row(q, k, 1))
    plt.close("all")


def test_attention_weights_reproduce_every_layer_output():
    from minillm.attention import repeat_kv
    from minillm.config import ModelConfig
    from minillm.model import Transformer

    torch.manual_seed(0)
    model = Transformer(ModelConfig.preset("tiny", n_layers=2)).eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 12))
    seen = []  # (input x, output) of each attention layer during a normal forward

    def keep(attn, args, output):
        seen.append((args[0], output))

    hooks = [block.attn.register_forward_hook(keep) for block in model.blocks]
    model(ids)
    for hook in hooks:
        hook.remove()
    weights = attention_weights(model, ids)
    assert len(weights) == 2 and weights[0].shape == (2, 4, 12, 12)
    for attn, w, (x, output) in zip((b.attn for b in model.blocks), weights, seen):
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 12))
        assert w.triu(1).abs().max() == 0                                   # causal
        v = attn.v_proj(x).view(2, 12, attn.n_kv_heads, attn.head_dim).transpose(1, 2)
        mixed = (w @ repeat_kv(v, attn.n_heads // attn.n_kv_heads)).transpose(1, 2).reshape(2, 12, -1)
        torch.testing.assert_close(attn.o_proj(mixed), output, atol=1e-5, rtol=1e-5)
    assert all(not block.attn._forward_pre_hooks for block in model.blocks)  # hooks removed
