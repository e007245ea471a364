"""Tests of minillm.sweeps: a short run repeats exactly and depends on its seed."""
from minillm import sweeps, zoo


def test_a_short_run_repeats_exactly_and_each_seed_is_another_run():
    def run(seed):
        return sweeps.short_pretrain(zoo.TINYWORLD_BASE, lr=3e-3, seed=seed, steps=3,
                                     batch_size=2, warmup_steps=1)

    first, again, other = run(0), run(0), run(1)
    assert first == again
    assert first["val_loss"] != other["val_loss"]
    assert first["tokens"] == 3 * 2 * zoo.TINYWORLD_BASE.block_size
    assert 0 < first["val_loss"] < 8.5     # about ln 2048 = 7.6 after three steps
