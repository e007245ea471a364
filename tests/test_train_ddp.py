"""The Trainer under DistributedDataParallel on two real gloo processes.

The seam's point: the Trainer touches the model only through ``model(...)``,
so a DDP wrapper sees every forward and averages the gradients. On two ranks
with different data, the gradients each rank steps with must be identical
through DDP, and different without it (each rank's own batch).
"""
import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from minillm.config import ModelConfig
from minillm.model import Transformer
from minillm.train import TrainConfig, Trainer


def gradients_across_ranks():
    """Largest difference between the two ranks' gradients at the optimizer step,
    with and without DDP (each run from the same initial weights)."""
    rank, world_size = dist.get_rank(), dist.get_world_size()
    data = torch.randint(0, 64, (32, 16), generator=torch.Generator().manual_seed(1))
    out = {}
    for wrapped in (True, False):
        torch.manual_seed(0)
        model = Transformer(ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2,
                                        d_ff=64, max_seq_len=16))
        trainer = Trainer(DDP(model) if wrapped else model,
                          TrainConfig(steps=1, batch_size=8, warmup_steps=0, eval_every=0),
                          (data, data.clone()), progress=False)
        seen = {}
        step = trainer.optimizer.step

        def capture(*args, **kwargs):  # the gradients the optimizer is about to use
            seen["grad"] = torch.cat([p.grad.flatten() for p in model.parameters()])
            return step(*args, **kwargs)

        trainer.optimizer.step = capture
        trainer.train_step()
        both = [torch.empty_like(seen["grad"]) for _ in range(world_size)]
        dist.all_gather(both, seen["grad"])
        out["ddp" if wrapped else "plain"] = (both[0] - both[1]).abs().max().item()
    return out


@pytest.mark.slow
def test_trainer_gradients_are_synchronised_through_ddp():
    from minillm.distributed import launch

    results = launch(gradients_across_ranks, 2, timeout=300)
    assert all(r["ddp"] == 0.0 for r in results)   # identical, bit for bit
    assert all(r["plain"] > 1e-3 for r in results)  # each rank alone: its own batch
