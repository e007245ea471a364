"""Chapter 11 on real processes: ring collectives, hand-written ZeRO against DDP
and PyTorch's own sharding, and torchrun training that resumes exactly.

Every test that starts processes uses two gloo ranks on 127.0.0.1 and a timeout,
so a hung collective fails the test instead of hanging the suite."""
import json
import time

import pytest
import torch
from safetensors.torch import load_file

from minillm.calculators import devices_needed, zero_model_state_bytes
from minillm.distributed import collectives_demo, launch, ring_bytes
from minillm.zero import adamw_, torch_sharding_experiment, zero_experiment

CONFIG = dict(vocab_size=256, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=160,
              max_seq_len=64, tie_embeddings=False)


def failing_worker():
    raise ValueError("boom on purpose")


def sleeping_worker():
    time.sleep(60)


@pytest.mark.slow
def test_launch_reports_errors_and_timeouts():
    with pytest.raises(RuntimeError, match="boom on purpose"):
        launch(failing_worker, 2, timeout=60)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="did not finish"):
        launch(sleeping_worker, 1, timeout=15)
    assert time.monotonic() - start < 40
    with pytest.raises(ValueError, match="importable module"):
        launch(lambda: None, 2)
    with pytest.raises(ValueError, match="world_size"):
        launch(failing_worker, 0)


@pytest.mark.slow
def test_ring_collectives_equal_torch():
    ranks = launch(collectives_demo, 2, timeout=120)
    for r, out in enumerate(ranks):
        for row in out["rows"]:
            assert row["max_diff"] == 0.0  # two ranks: the same two numbers added
            assert row["sent"] == ring_bytes(row["bytes"], 2) == row["bytes"]
        assert out["all_gather(chunk)"] == out["all_reduce"]
        assert out["chunk"] == out["all_reduce"][4 * r:4 * r + 4]
        assert out["broadcast"] == ranks[1]["input"]
        assert out["builtin"]["reduce_scatter"] == out["chunk"]


@pytest.mark.slow
def test_ring_on_three_ranks_sends_the_formula():
    """N = 3: chunks are padded to ceil(n / 3) elements, and the sums are added in
    another order than gloo's, so they agree to rounding, not bit for bit."""
    for out in launch(collectives_demo, 3, timeout=240):
        for row in out["rows"]:
            padded = 4 * 3 * -(-row["numel"] // 3)
            assert row["sent"] == ring_bytes(padded, 3) and row["max_diff"] < 1e-5
        assert out["all_gather(chunk)"][:8] == out["all_reduce"]


def test_ring_bytes_formula():
    assert ring_bytes(1000, 4) == 1500 and ring_bytes(1000, 4, "all_gather") == 750
    assert ring_bytes(1000, 1) == 0
    with pytest.raises(ValueError, match="op must be"):
        ring_bytes(10, 2, "gather")


def test_adamw_by_hand_equals_torch():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(50))
    mine, m, v = p.detach().clone(), torch.zeros(50), torch.zeros(50)
    opt = torch.optim.AdamW([p], lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    for t in range(1, 6):
        g = torch.randn(50)
        p.grad = g.clone()
        opt.step()
        adamw_(mine, g, m, v, t, 1e-2, (0.9, 0.95), 1e-8, 0.1)
    torch.testing.assert_close(mine, p.detach(), rtol=0, atol=1e-7)


@pytest.mark.slow
def test_zero_stages_equal_ddp_memory_and_bytes():
    ranks = launch(zero_experiment, 2, CONFIG, steps=3, timeout=240)
    for out in ranks:
        psi, stages = out["n_params"], out["stages"]
        assert out["moved"] > 1e-3  # the reference really trained
        assert psi % 2 == 0 and all(s["max_diff"] < 1e-6 for s in stages.values())
        for stage, s in stages.items():
            want = zero_model_state_bytes(psi, stage, 2, weight_bytes=4, grad_bytes=4, optimizer_bytes=8)
            got = s["memory"]
            # every tensor of this config splits evenly: measured == formula, exactly
            assert (got["parameters"], got["gradients"], got["optimizer"]) == (
                want["weights"], want["gradients"], want["optimizer states"]), stage
            assert s["activations"] == stages[0]["activations"]  # ZeRO never shards activations
        dp = sum(stages[0]["sent_per_step"].values())
        assert dp == 4 * psi  # 2 (N-1)/N * 4 Psi bytes with N = 2
        assert sum(stages[1]["sent_per_step"].values()) == dp == sum(stages[2]["sent_per_step"].values())
        assert sum(stages[3]["sent_per_step"].values()) == 1.5 * dp


@pytest.mark.slow
def test_pytorch_sharding_matches_ddp():
    ranks = launch(torch_sharding_experiment, 2, CONFIG, steps=3, timeout=240)
    for out in ranks:
        psi = out["n_params"]
        for name, m in out["methods"].items():
            assert m["max_diff"] < 1e-5, name
        assert out["methods"]["FSDP2, reshard_after_forward=True"]["memory"]["parameters"] == 4 * psi / 2
    zro = [out["methods"]["ZeroRedundancyOptimizer"]["memory"]["optimizer"] for out in ranks]
    assert sum(zro) == 8 * ranks[0]["n_params"] and zro[0] != zro[1]  # whole tensors: uneven


@pytest.mark.slow
def test_torchrun_matches_one_process_and_resumes_exactly(tmp_path):
    from minillm.ddp import run_torchrun

    args = ["--steps", 12, "--batch-size", 8, "--documents", 300, "--checkpoint-every", 4]
    run_torchrun([*args, "--out", tmp_path / "one"], nproc=0, timeout=300)
    run_torchrun([*args, "--out", tmp_path / "two"], nproc=2, timeout=300)
    killed = run_torchrun([*args, "--out", tmp_path / "killed", "--kill-at-step", 6], nproc=2,
                          timeout=300, check=False)
    assert killed.returncode != 0 and not (tmp_path / "killed" / "model.safetensors").exists()
    run_torchrun([*args, "--out", tmp_path / "killed", "--resume"], nproc=2, timeout=300)
    one, two, resumed = (load_file(tmp_path / d / "model.safetensors") for d in ("one", "two", "killed"))
    assert max((one[k] - two[k]).abs().max().item() for k in one) < 1e-5
    assert all(torch.equal(two[k], resumed[k]) for k in two)  # bit for bit
    history = json.loads((tmp_path / "two" / "history.json").read_text())
    assert history["world_size"] == 2 and history["backend"] == "gloo"
    h1 = json.loads((tmp_path / "one" / "history.json").read_text())["history"]
    assert max(abs(a["loss"] - b["loss"]) for a, b in zip(h1, history["history"])) < 1e-4


def test_zero_calculator():
    gb = 1e9
    assert zero_model_state_bytes(7e9, 0, 8)["total"] == 16 * 7e9
    assert zero_model_state_bytes(7e9, 1, 4)["total"] == 4 * 7e9 + 12 * 7e9 / 4
    assert zero_model_state_bytes(7e9, 2, 4)["total"] == 2 * 7e9 + 14 * 7e9 / 4
    assert zero_model_state_bytes(7e9, 3, 4)["total"] == 16 * 7e9 / 4
    assert [devices_needed(7e9, s, 80 * gb) for s in range(4)] == [None, 2, 2, 2]
    assert [devices_needed(70e9, s, 80 * gb) for s in range(4)] == [None, None, None, 14]
    with pytest.raises(ValueError, match="stage"):
        zero_model_state_bytes(1e9, 4, 2)
    with pytest.raises(ValueError, match="n_devices"):
        zero_model_state_bytes(1e9, 1, 0)
