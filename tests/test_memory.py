"""minillm.memory: model-state bytes, the activation formula against autograd's
saved tensors, and gradient checkpointing (same gradients, fewer saved bytes)."""
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from minillm.config import ModelConfig, count_parameters
from minillm.memory import (BYTES_PER_PARAMETER, activation_bytes, gradient_checkpointing, model_state_bytes,
                            peak_memory_bytes, saved_tensor_bytes)
from minillm.model import Transformer

torch.set_num_threads(1)


def _model(**overrides):
    torch.manual_seed(0)
    config = ModelConfig.preset("tiny", vocab_size=256, n_layers=2, **overrides)
    return config, Transformer(config)


def test_sixteen_bytes_per_parameter():
    assert sum(BYTES_PER_PARAMETER["mixed"].values()) == 16
    assert sum(BYTES_PER_PARAMETER["fp32"].values()) == 16
    states = model_state_bytes(7e9, "mixed")
    assert states["weights"] == 14e9 and sum(states.values()) == 112e9
    with pytest.raises(ValueError, match="fp8"):
        model_state_bytes(10, "fp8")
    with pytest.raises(ValueError, match="-1"):
        model_state_bytes(-1)


@pytest.mark.parametrize("batch,seq", [(1, 8), (2, 24), (3, 40)])
@pytest.mark.parametrize("attention", ["flash", "math"])
def test_formula_equals_saved_tensor_bytes(batch, seq, attention):
    config, model = _model()
    x = torch.randint(0, config.vocab_size, (batch, seq))
    backend = SDPBackend.FLASH_ATTENTION if attention == "flash" else SDPBackend.MATH
    with sdpa_kernel(backend):
        _, measured = saved_tensor_bytes(lambda: model(x, labels=x)[1], exclude=model.parameters())
    assert measured == activation_bytes(config, batch, seq, attention)["total"]


def test_checkpointing_keeps_block_inputs_and_same_gradients():
    config, model = _model()
    x = torch.randint(0, config.vocab_size, (2, 32))
    loss, plain = saved_tensor_bytes(lambda: model(x, labels=x)[1], exclude=model.parameters())
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with gradient_checkpointing(model):
        loss2, ckpt = saved_tensor_bytes(lambda: model(x, labels=x)[1], exclude=model.parameters())
        loss2.backward()
        with pytest.raises(RuntimeError, match="already active"):
            with gradient_checkpointing(model):
                pass
    assert "forward" not in vars(model.blocks[0])  # restored
    assert loss2.item() == loss.item()
    for g, p in zip(grads, model.parameters()):
        assert torch.equal(g, p.grad)
    assert ckpt == activation_bytes(config, 2, 32, checkpointing=True)["total"] < plain


def test_checkpointing_leaves_generation_alone():
    config, model = _model()
    x = torch.randint(0, config.vocab_size, (1, 5))
    with torch.no_grad():
        want = model(x)
        with gradient_checkpointing(model):
            assert torch.equal(model(x), want)
            cache = model.new_kv_cache()
            model(x, kv_cache=cache)
            assert len(cache) == 5


def test_bad_inputs():
    config, _ = _model()
    with pytest.raises(ValueError, match="seq"):
        activation_bytes(config, 2, 0)
    with pytest.raises(ValueError, match="attention"):
        activation_bytes(config, 2, 4, attention="paged")
    with pytest.raises(TypeError, match="Linear"):
        with gradient_checkpointing(torch.nn.Linear(2, 2)):
            pass
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            peak_memory_bytes(lambda: None, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_peak_memory_on_cuda():
    config, model = _model()
    model = model.cuda()
    x = torch.randint(0, config.vocab_size, (4, 64), device="cuda")
    _, peak = peak_memory_bytes(lambda: model(x, labels=x)[1], "cuda")
    assert peak > 0


def test_peak_tensor_bytes_counts_live_storages():
    from minillm.memory import peak_tensor_bytes

    a = torch.randn(1000)                                  # exists before: not counted
    _, peak = peak_tensor_bytes(lambda: (a * 2) + 1)       # two 4000-byte temporaries alive
    assert peak == 8000
    _, peak = peak_tensor_bytes(lambda: a.view(10, 100).add_(0))   # views, in place: nothing new
    assert peak == 0

    def chain():
        x = a * 2          # 4000, freed when x is rebound below
        for _ in range(5):
            x = x + 1      # at most two alive at once
        return x
    _, peak = peak_tensor_bytes(chain)
    assert peak == 8000


@pytest.mark.parametrize("mode,layout", [("fp32", "fp32"), ("bf16 autocast", "autocast"),
                                         ("fp16 + GradScaler", "autocast"), ("pure bf16", "pure bf16")])
def test_held_state_bytes_match_the_layouts(mode, layout):
    from minillm.data import Batches
    from minillm.memory import held_state_bytes
    from minillm.precision import AUTOCAST_DTYPES, train_in_precision

    torch.manual_seed(0)
    config = ModelConfig(vocab_size=64, d_model=16, n_layers=1, n_heads=2, max_seq_len=8)
    model = Transformer(config)
    if mode == "pure bf16":
        model.to(torch.bfloat16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, 64, (4, 8))
    train_in_precision(model, mode, Batches(ids, ids, batch_size=2), 1, 1e-3, optimizer=optimizer)
    dtype = AUTOCAST_DTYPES[mode]
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        model(ids, labels=ids)[1].backward()  # the gradients, in the dtype backward gives them
    held = held_state_bytes(model, optimizer)
    n = sum(p.numel() for p in model.parameters())
    assert held == {k: v for k, v in model_state_bytes(n, layout).items() if k != "master weights"}
