"""Speed of minillm's Transformer against HF transformers' LlamaForCausalLM.

Both models get the same config and the same weights (``minillm.hf``). Rows:

* train: tokens/s of one optimisation step (forward, loss, backward, AdamW),
  fp32 and bf16 autocast, for each preset;
* generate: greedy decoding tokens/s, with and without the KV cache.

Measurements are interleaved (minillm, HF, HF, minillm, ...) so that noise
from other processes hits both alike; each cell is the median over rounds, and
a speed-up is the median of the per-round time ratios HF/minillm (> 1: minillm
faster), by wall clock (with the interquartile range of the per-round ratios,
to show how much a single round varies) and by this process's CPU time (the
latter is steadier when other programs share the CPU).

    python bench/bench_model.py                      # tiny and small, CPU
    python bench/bench_model.py --threads 1              # steadier on a shared CPU
    python bench/bench_model.py --presets tiny --rounds 5 --device cuda
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from minillm import hf
from minillm.config import ModelConfig, count_parameters
from minillm.generate import greedy
from minillm.model import Transformer


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds of this process) of one call."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved(fns: dict, rounds: int, device: str) -> dict[str, list[tuple[float, float]]]:
    """(wall, cpu) seconds per call of each fn, alternating the order every round."""
    for fn in fns.values():  # warm-up: allocator, kernels, lazy init
        fn()
    times = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(timed(fns[name], device))
    return times


def train_step_fns(ours, theirs, batch, bf16, device):
    """One training step for each model; identical data and optimiser settings."""
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-4)
    opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=1e-4)
    amp = dict(device_type=device, dtype=torch.bfloat16, enabled=bf16)

    def step_ours():
        with torch.autocast(**amp):
            _, loss = ours(batch, labels=batch)
        loss.backward()
        opt_ours.step()
        opt_ours.zero_grad(set_to_none=True)

    def step_theirs():
        with torch.autocast(**amp):
            loss = theirs(batch, labels=batch).loss
        loss.backward()
        opt_theirs.step()
        opt_theirs.zero_grad(set_to_none=True)

    return {"minillm": step_ours, "hf": step_theirs}


def row(kind, preset, setting, tokens, times):
    """Median tokens/s of each model, and the per-round speed ratios HF/minillm
    (wall clock: median and interquartile range; CPU time: median)."""
    ours, theirs = times["minillm"], times["hf"]
    wall_ratios = [h[0] / m[0] for m, h in zip(ours, theirs)]
    q1, _, q3 = statistics.quantiles(wall_ratios, n=4) if len(wall_ratios) > 1 else wall_ratios * 3
    cpu_ratio = statistics.median(h[1] / m[1] for m, h in zip(ours, theirs))
    return (kind, preset, setting, tokens / statistics.median(m[0] for m in ours),
            tokens / statistics.median(h[0] for h in theirs), statistics.median(wall_ratios), q1, q3, cpu_ratio)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=8, help="interleaved measurements per cell")
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is steadiest on a busy machine)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    torch.manual_seed(0)
    rows = []
    for preset in args.presets:
        config = ModelConfig.preset(preset)
        ours = Transformer(config).to(args.device).train()
        theirs = hf.to_transformers(ours).to(args.device).train()
        batch = torch.randint(0, config.vocab_size, (args.batch, args.seq), device=args.device)
        for bf16 in (False, True):
            times = interleaved(train_step_fns(ours, theirs, batch, bf16, args.device), args.rounds, args.device)
            rows.append(row("train", preset, "bf16 autocast" if bf16 else "fp32", batch.numel(), times))
        ours.eval(), theirs.eval()
        prompt = torch.randint(0, config.vocab_size, (1, args.prompt), device=args.device)
        n = args.new_tokens
        for cache in (True, False):
            fns = {
                "minillm": lambda: greedy(ours, prompt, n, use_cache=cache),
                "hf": lambda: theirs.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                              use_cache=cache, attention_mask=torch.ones_like(prompt),
                                              pad_token_id=0),
            }
            times = interleaved(fns, max(2, args.rounds // 2), args.device)
            rows.append(row("generate", preset, "KV cache" if cache else "no cache", n, times))
        del ours, theirs

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, device {args.device}, "
          f"threads {torch.get_num_threads()}; train batch {args.batch}x{args.seq}, "
          f"generate 1x{args.prompt} + {args.new_tokens} greedy; median of {args.rounds} interleaved rounds")
    print("params: " + ", ".join(f"{p} {count_parameters(ModelConfig.preset(p)) / 1e6:.1f}M" for p in args.presets))
    print()
    print("| kind | preset | setting | minillm tok/s | HF tok/s | speed-up (wall) | middle half of rounds "
          "| speed-up (CPU time) |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for kind, preset, setting, a, b, wall, q1, q3, cpu in rows:
        print(f"| {kind} | {preset} | {setting} | {a:,.0f} | {b:,.0f} | {wall:.2f} | {q1:.2f}-{q3:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
