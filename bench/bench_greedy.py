"""Interleaved timing: the removed greedy_decode loop vs minillm.generate.greedy.

Issue 9 folded model.greedy_decode into generate(temperature=0); this checks the
one greedy costs nothing (tiny preset, one prompt of 16 tokens, 64 new tokens,
one thread, 12 interleaved rounds). Run: python bench/bench_greedy.py
"""
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from minillm.config import ModelConfig  # noqa: E402
from minillm.generate import greedy  # noqa: E402
from minillm.model import Transformer  # noqa: E402

torch.set_num_threads(1)


@torch.no_grad()
def greedy_decode(model, input_ids, n):  # the removed model.greedy_decode, verbatim logic
    cache = model.new_kv_cache()
    ids, step = input_ids, input_ids
    for _ in range(n):
        nxt = model(step, kv_cache=cache, logits_to_keep=1)[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat((ids, nxt), 1); step = nxt
    return ids


torch.manual_seed(0)
m = Transformer(ModelConfig.preset("tiny")).eval()
p = torch.randint(0, 2048, (1, 16))
assert torch.equal(greedy_decode(m, p, 64)[:, 16:], greedy(m, p, 64))
t = {"old": [], "new": []}
for r in range(12):
    for k in (("old", "new") if r % 2 == 0 else ("new", "old")):
        s = time.perf_counter()
        greedy_decode(m, p, 64) if k == "old" else greedy(m, p, 64)
        t[k].append(time.perf_counter() - s)
ratios = [o / n for o, n in zip(t["old"], t["new"])]
print(f"old {64/statistics.median(t['old']):.0f} tok/s, new {64/statistics.median(t['new']):.0f} tok/s, "
      f"median old/new time ratio {statistics.median(ratios):.2f} "
      f"(middle half {sorted(ratios)[3]:.2f}-{sorted(ratios)[8]:.2f})")
