"""The minillm trainer on several processes: ``torchrun`` and DistributedDataParallel.

    torchrun --standalone --nproc_per_node 2 -m minillm.ddp --steps 50 --out runs/ddp
    python -m minillm.ddp --steps 50 --out runs/one        # the same, one process

Each rank builds the same model from the same seed, wraps it in
``DistributedDataParallel`` and trains it with the unchanged
``minillm.train.Trainer``, which draws this rank's share of every global batch
(``Batches(rank, world_size)``) and weights the loss by the targets of all
ranks, so that N ranks with a global batch of B blocks compute the same
update as one process with B blocks. DDP all-reduces the gradients in
buckets while backward is still running. Rank 0 alone writes the checkpoint
(weights of the unwrapped model, AdamW state, data position, random states);
``--resume`` makes every rank load it, so a killed run continues exactly.
The backend is nccl when CUDA is there (one GPU per rank), gloo otherwise.

``run_torchrun`` starts such a job from Python (a notebook), on 127.0.0.1 with
a port torchrun picks itself, and kills the whole process group on a timeout.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist

from minillm.distributed import default_backend

#: The chapter's model: small enough that a step takes milliseconds on a CPU.
MODEL = dict(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=160, max_seq_len=64)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m minillm.ddp", description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=16, help="global batch, in blocks")
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--documents", type=int, default=2000, help="TinyWorld texts to pack")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint-every", type=int, default=0)
    ap.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.safetensors")
    ap.add_argument("--kill-at-step", type=int, default=0,
                    help="SIGKILL rank 0 right after this step (to test resuming)")
    ap.add_argument("--out", required=True, help="folder for checkpoint, model and history")
    return ap.parse_args(argv)


def main(argv=None) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    from minillm import seed_everything, tinyworld
    from minillm.checkpoint import save_model, unwrap
    from minillm.config import ModelConfig
    from minillm.data import pack_texts
    from minillm.model import Transformer
    from minillm.tokenizer import load_book_tokenizer
    from minillm.train import TrainConfig, Trainer

    args = parse_args(argv)
    distributed = "RANK" in os.environ  # set by torchrun
    if distributed:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        dist.init_process_group(default_backend())
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    device = torch.device("cpu")
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = load_book_tokenizer()
    texts = [r["text"] for r in tinyworld.load("pretrain")][:args.documents]
    data = pack_texts(texts, tokenizer, args.block_size, shuffle_seed=0)
    seed_everything(args.seed)  # the same initial weights on every rank
    model = Transformer(ModelConfig(vocab_size=tokenizer.vocab_size, **MODEL)).to(device)
    if distributed:
        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size // args.grad_accum,
                         grad_accum=args.grad_accum, lr=args.lr, min_lr=args.lr / 10,
                         warmup_steps=min(10, args.steps // 5), eval_every=0,
                         checkpoint_every=args.checkpoint_every, seed=args.seed)
    checkpoint = out / "checkpoint.safetensors"
    trainer = Trainer(model, config, data, checkpoint_path=checkpoint, progress=False)
    if args.resume and checkpoint.exists():
        trainer.load_checkpoint(checkpoint)

    def maybe_die(trainer, record):
        if rank == 0 and (trainer.step % 10 == 0 or trainer.step == args.steps):
            print(f"step {trainer.step}: loss {record['loss']:.4f}", flush=True)
        if args.kill_at_step and trainer.step == args.kill_at_step and rank == 0:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, like a crash

    history = trainer.fit(on_step=maybe_die)
    if rank == 0:
        save_model(unwrap(model), out / "model.safetensors")
        (out / "history.json").write_text(json.dumps(
            {"world_size": world_size, "backend": dist.get_backend() if distributed else None,
             "history": history}, indent=1))
    if distributed:
        dist.destroy_process_group()


def no_sync_demo(config: dict, micro_batches: int = 4, batch_size: int = 4, seq_len: int = 32,
                 bucket_cap_mb: float = 0.1, seed: int = 0) -> dict:
    """On every rank: accumulate gradients over ``micro_batches`` with DDP, once
    all-reducing after every backward and once inside ``no_sync()`` for all but
    the last; count the buckets DDP all-reduces (a communication hook) and
    compare the final gradients with each other and with the gradient of the
    whole global batch computed in one process.
    """
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
    from torch.nn.parallel import DistributedDataParallel as DDP

    from minillm.config import ModelConfig
    from minillm.model import Transformer, lm_loss

    rank, N = dist.get_rank(), dist.get_world_size()
    cfg = ModelConfig(**config)
    g = torch.Generator().manual_seed(seed)
    batches = torch.randint(cfg.vocab_size, (micro_batches, batch_size * N, seq_len), generator=g)

    def grads(model) -> torch.Tensor:
        return torch.cat([p.grad.reshape(-1) for p in model.parameters()])

    torch.manual_seed(seed)
    single = Transformer(cfg)  # one process, the whole global batch
    for x in batches:
        (lm_loss(single(x), x) / micro_batches).backward()
    out = {"rank": rank, "n_params": sum(p.numel() for p in single.parameters())}
    for mode in ("sync every micro-batch", "no_sync until the last"):
        torch.manual_seed(seed)
        model = DDP(Transformer(cfg), bucket_cap_mb=bucket_cap_mb)
        count = {"all-reduces": 0, "bytes": 0}

        def hook(state, bucket):  # runs once per bucket that DDP all-reduces
            state["all-reduces"] += 1
            state["bytes"] += bucket.buffer().numel() * bucket.buffer().element_size()
            return allreduce_hook(None, bucket)

        model.register_comm_hook(count, hook)
        for i, x in enumerate(batches):
            local = x.chunk(N)[rank]
            last = i == micro_batches - 1
            with model.no_sync() if mode.startswith("no_sync") and not last else nullcontext():
                (lm_loss(model(local), local) / micro_batches).backward()
        out[mode] = {**count, "max_diff_vs_one_process": (grads(model.module) - grads(single)).abs().max().item()}
    return out


def throughput(config: dict, steps: int = 30, batch_size: int = 16, seq_len: int = 64,
               warmup: int = 5, repeats: int = 1) -> dict:
    """On every rank (or alone, world size 1): time ``steps`` AdamW steps of a
    DDP model on this rank's share of global batches of ``batch_size``
    sequences, ``repeats`` times after ``warmup`` steps; returns the global
    tokens per second of each repeat, as this rank saw it."""
    import time

    from torch.nn.parallel import DistributedDataParallel as DDP

    from minillm.config import ModelConfig
    from minillm.model import Transformer

    rank, N = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else \
        torch.device("cpu")
    cfg = ModelConfig(**config)
    torch.manual_seed(0)
    model = Transformer(cfg).to(device)
    wrapped = DDP(model) if N > 1 else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(cfg.vocab_size, (batch_size // N, seq_len), device=device)
    def train(n):
        for _ in range(n):
            wrapped(x, labels=x)[1].backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    train(warmup)
    rates = []
    for _ in range(repeats):
        dist.barrier()  # all ranks start the clock together
        start = time.perf_counter()
        train(steps)
        dist.barrier()  # and stop it when the slowest is done
        rates.append(steps * batch_size * seq_len / (time.perf_counter() - start))
    return {"rank": rank, "world_size": N, "tokens_per_s": rates, "device": str(device)}


def run_torchrun(args: list[str], nproc: int = 2, timeout: float = 300.0,
                 check: bool = True) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node nproc -m minillm.ddp *args``
    (nproc=0: plain ``python -m minillm.ddp``, one process, no torchrun).

    --standalone makes torchrun rendezvous on localhost with a port it picks,
    so parallel jobs never collide. On timeout the whole process group is
    killed and TimeoutError raised; with ``check``, a failure raises
    RuntimeError carrying the end of the job's output.
    """
    cmd = [sys.executable, "-m", "minillm.ddp", *map(str, args)]
    if nproc:
        cmd[1:3] = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                    "-m", "minillm.ddp"]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo"),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)  # its own group: killable as one
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise TimeoutError(f"{' '.join(cmd[2:])} did not finish in {timeout:.0f} s; killed it") from None
    result = subprocess.CompletedProcess(cmd, proc.returncode, output, "")
    if check and proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-30:])
        raise RuntimeError(f"{' '.join(cmd[2:])} failed with exit code {proc.returncode}:\n{tail}")
    return result


if __name__ == "__main__":
    main()
