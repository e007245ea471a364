"""Tests of minillm.train: schedule, parameter groups, accumulation, precision,
determinism, and checkpoints that survive a real kill."""
import math
import os
import signal
import subprocess
import sys

import pytest
import torch

from minillm import ROOT
from minillm.checkpoint import CheckpointError, save_model
from minillm.evals import dataset_loss as evaluate_loss
from minillm.loss import IGNORE_INDEX
from minillm.train import TrainConfig, lr_at, param_groups, split_decay

# A self-contained recipe: run here with exec() and in a subprocess that is killed.
RECIPE = '''
import torch
from minillm.config import ModelConfig
from minillm.model import Transformer
from minillm.train import TrainConfig, Trainer

def make_trainer(checkpoint_path=None, steps=12, **overrides):
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=32, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_seq_len=16))
    g = torch.Generator().manual_seed(1)
    pattern = torch.randint(0, 32, (8,), generator=g)
    x = torch.stack([pattern.roll(i) for i in range(40)])[:, :8]   # a learnable, periodic stream
    x = torch.where(torch.rand(x.shape, generator=g) < 0.2, torch.randint(0, 32, x.shape, generator=g), x)
    config = TrainConfig(**{**dict(steps=steps, batch_size=4, lr=1e-2, min_lr=1e-3, warmup_steps=3,
                                   eval_every=4, checkpoint_every=4), **overrides})
    return Trainer(model, config, (x, x.clone()), val=(x[:8], x[:8].clone()),
                   checkpoint_path=checkpoint_path, progress=False)
'''
_ns: dict = {}
exec(RECIPE, _ns)
make_trainer = _ns["make_trainer"]


@pytest.fixture(autouse=True)
def one_thread():
    """Micro models are all overhead: extra threads only wait on each other
    (16x slower on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


# ------------------------------------------------------------ schedule and groups

def test_lr_schedule_warms_up_then_decays_to_min():
    lrs = [lr_at(s, 1.0, 10, 110, 0.1) for s in range(120)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[60] == pytest.approx(0.55) and lrs[110] == pytest.approx(0.1)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:11]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(0.1)  # stays at the floor past the end
    assert lr_at(0, 1.0, 0, 100) == 1.0  # no warmup: start at the peak


def test_only_matrices_get_weight_decay():
    model = make_trainer().model
    decay, no_decay = split_decay(model)
    assert "embed.weight" in no_decay and "lm_head.weight" not in decay + no_decay  # tied: listed once
    assert all(n.endswith("norm.weight") or n == "embed.weight" for n in no_decay)
    assert "blocks.0.attn.q_proj.weight" in decay and "blocks.0.mlp.down_proj.weight" in decay
    assert "embed.weight" in split_decay(model, decay_embeddings=True)[0]
    groups = param_groups(model, 0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in model.parameters())


def test_train_config_rejects_bad_values():
    for bad, match in [(dict(steps=0), "steps"), (dict(min_lr=1.0, lr=0.1), "min_lr"),
                       (dict(precision="int8"), "precision"), (dict(grad_clip=0), "grad_clip"),
                       (dict(warmup_steps=-1), "warmup_steps")]:
        with pytest.raises(ValueError, match=match):
            TrainConfig(**bad)


# ------------------------------------------------------------ the loop

def test_training_lowers_the_loss_and_records_history():
    trainer = make_trainer(steps=30, lr=3e-2)
    history = trainer.fit()
    assert [r["step"] for r in history] == list(range(1, 31))
    assert history[-1]["loss"] < history[0]["loss"] - 0.5
    assert [r["step"] for r in history if "val_loss" in r] == [4, 8, 12, 16, 20, 24, 28, 30]
    assert history[-1]["val_loss"] == pytest.approx(trainer.evaluate())
    assert history[0]["lr"] == pytest.approx(3e-2 / 3) and history[-1]["tokens"] == 30 * 4 * 8


def test_training_is_deterministic_given_the_seed():
    a, b = make_trainer(), make_trainer()
    assert [r["loss"] for r in a.fit()] == [r["loss"] for r in b.fit()]
    assert_same(params(a.model), params(b.model))
    c = make_trainer(seed=1)  # another data order
    assert [r["loss"] for r in c.fit()] != [r["loss"] for r in a.history]


def test_gradient_accumulation_equals_a_bigger_batch():
    big, accum = make_trainer(steps=3, batch_size=8), make_trainer(steps=3, batch_size=2, grad_accum=4)
    for t in (big, accum):  # unequal target counts per micro-batch: the weighting must be by tokens
        t.batches.labels[::3, 2:5] = IGNORE_INDEX
        t.fit()
    assert [r["loss"] for r in big.history] == pytest.approx([r["loss"] for r in accum.history], abs=1e-6)
    for k, v in params(big.model).items():
        assert torch.allclose(v, params(accum.model)[k], atol=1e-6), k


def test_clipping_caps_the_update():
    t = make_trainer(steps=1, grad_clip=1e-3, lr=1.0, warmup_steps=0, weight_decay=0.0)
    record = t.train_step()
    assert record["grad_norm"] > 1e-3  # reported before clipping


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains(precision):
    t = make_trainer(steps=20, lr=3e-2, precision=precision)
    history = t.fit()
    assert all(math.isfinite(r["loss"]) for r in history)
    assert history[-1]["loss"] < history[0]["loss"]
    assert ("loss_scale" in history[-1]) == (precision == "fp16")  # GradScaler only for fp16
    assert t.model.embed.weight.dtype == torch.float32  # autocast keeps fp32 master weights


def test_evaluate_loss_is_the_token_weighted_mean():
    t = make_trainer()
    x, y = t.val
    y = y.clone()
    y[0, 3:] = IGNORE_INDEX
    want = t.model(x, labels=y)[1].item()  # one batch: lm_loss's own token mean
    assert evaluate_loss(t.model, x, y, batch_size=3) == pytest.approx(want, rel=1e-5)


# ------------------------------------------------------------ checkpoints

class Interrupt(Exception):
    pass


def test_resume_after_an_exception_matches_an_uninterrupted_run(tmp_path):
    full = make_trainer()
    full.fit()

    def crash(trainer, record):
        if record["step"] == 6:  # after the checkpoint of step 4: steps 5-6 are lost
            raise Interrupt

    path = tmp_path / "run.safetensors"
    with pytest.raises(Interrupt):
        make_trainer(path).fit(on_step=crash)
    resumed = make_trainer(path)
    resumed.load_checkpoint(path)
    assert resumed.step == 4 and len(resumed.history) == 4
    resumed.fit()
    assert_same(params(full.model), params(resumed.model))
    assert resumed.history == full.history


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    path = tmp_path / "run.safetensors"
    child = RECIPE + f'''
import os, signal
torch.set_num_threads(1)
def kill(trainer, record):
    if record["step"] == 9:
        os.kill(os.getpid(), signal.SIGKILL)   # no cleanup, no finally: a real crash
make_trainer({str(path)!r}).fit(on_step=kill)
'''
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()[-2000:]
    resumed = make_trainer(path)
    resumed.load_checkpoint(path)
    assert resumed.step == 8
    resumed.fit()
    full = make_trainer()
    full.fit()
    assert_same(params(full.model), params(resumed.model))
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history]


def test_fp16_resume_restores_the_loss_scale(tmp_path):
    path = tmp_path / "fp16.safetensors"
    t = make_trainer(path, steps=4, precision="fp16")
    t.fit()
    u = make_trainer(path, steps=4, precision="fp16")
    u.load_checkpoint(path)
    assert u.scaler.get_scale() == t.scaler.get_scale()


def test_corrupt_checkpoints_give_clear_errors(tmp_path):
    path = tmp_path / "run.safetensors"
    t = make_trainer(path, steps=4)
    t.fit()
    data = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.safetensors"):
        make_trainer().load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="not found"):
        make_trainer().load_checkpoint(tmp_path / "missing.safetensors")
    model_only = save_model(t.model, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="no trainer state"):
        make_trainer().load_checkpoint(model_only)
    other = make_trainer()
    other.model.config = other.model.config.replace(d_model=32)
    with pytest.raises(CheckpointError, match="another model config: d_model is 16 in the checkpoint but 32 here"):
        other.load_checkpoint(path)
    with pytest.raises(CheckpointError, match="batch_size=4 differs"):
        make_trainer(batch_size=5).load_checkpoint(path)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "run.safetensors"
    t = make_trainer(path, steps=4)
    t.fit()
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("minillm.checkpoint.os.replace", fail)
    with pytest.raises(OSError):
        t.save_checkpoint(path)
    assert path.read_bytes() == before  # the old checkpoint survives a failed write


def test_trainer_applies_moe_balancing():
    """router_balance="aux": the balance loss is part of the trained loss (so the
    router gets its gradient); "bias": the router biases move after each step."""
    from minillm.config import ModelConfig, MoEConfig
    from minillm.model import Transformer
    from minillm.moe import RouterBiasUpdate
    from minillm.train import Trainer

    base = dict(vocab_size=32, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_seq_len=16)
    moe = MoEConfig(n_experts=4, experts_top_k=2, expert_d_ff=16)
    x = torch.randint(0, 32, (16, 8), generator=torch.Generator().manual_seed(0))
    routers = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        model = Transformer(ModelConfig(**base, moe=moe.replace(router_balance="aux",
                                                                 aux_loss_weight=weight)))
        record = Trainer(model, TrainConfig(steps=1, batch_size=4, warmup_steps=0, eval_every=0),
                         (x, x.clone()), progress=False).train_step()
        routers[weight] = [p.detach().clone() for n, p in model.named_parameters() if "router" in n]
        if weight:
            from minillm.moe import aux_loss
            assert record["loss"] > 0 and float(aux_loss(model).detach()) > 0
    assert any(not torch.equal(a, b) for a, b in zip(routers[0.0], routers[1.0]))
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**base, moe=moe.replace(router_balance="bias")))
    Trainer(model, TrainConfig(steps=2, batch_size=4, warmup_steps=0, eval_every=0), (x, x.clone()),
            callbacks=[RouterBiasUpdate()], progress=False).fit()
    biases = [b for n, b in model.named_buffers() if "router_bias" in n]
    assert biases and any(b.abs().sum() > 0 for b in biases)
