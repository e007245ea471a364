"""Several processes, one model: launching ranks, and collectives by hand.

Data parallelism runs one copy of the training step per *rank* (a process,
usually one per GPU) on a different slice of the batch, and keeps the copies
identical by averaging their gradients with an **all-reduce**. This module:

* ``launch(fn, world_size, ...)`` starts ``world_size`` fresh processes on
  127.0.0.1, joins them into one ``torch.distributed`` process group (gloo on
  CPU, nccl on CUDA), runs ``fn`` on every rank and returns the per-rank
  results. It is what the chapter's notebooks call: a spawned process must
  *import* the function it runs, so ``fn`` lives in a module (here, or in
  ``minillm.zero``), never in a notebook cell. It fails loudly, with the
  worker's traceback, on any error or after ``timeout`` seconds, and kills
  whatever is left.
* ``Comm``: the collectives written with point-to-point ``send``/``recv`` on a
  ring, counting the bytes this rank sends. A ring all-reduce is a
  reduce-scatter followed by an all-gather; each rank sends
  ``2 (N - 1) / N`` times the tensor's size, whatever N is.

The ``torchrun`` entry point for the minillm trainer is ``minillm.ddp``.
"""
from __future__ import annotations

import os
import pickle
import queue as queue_module
import time
import traceback
from collections import Counter
from datetime import timedelta

import torch
import torch.distributed as dist

HOST = "127.0.0.1"


def default_backend() -> str:
    """nccl when CUDA is there (one GPU per rank), gloo on CPU."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def launch(fn, world_size: int = 2, *args, timeout: float = 120.0, backend: str | None = None,
           threads: int = 1, **kwargs) -> list:
    """Run ``fn(*args, **kwargs)`` on ``world_size`` new processes that form one
    process group; return the list of their results, rank 0 first.

    fn: a module-level function (the spawned processes import it by name).
    timeout: seconds for the whole run; past it every process is killed and a
        TimeoutError raised, so a hung collective never hangs a notebook.
    threads: torch threads per process (``world_size * threads`` <= cores, or
        the ranks slow each other down).
    The rendezvous store lives in this process on a port the OS picks, so two
    launches running at once (two notebooks under test) never collide.
    """
    if getattr(fn, "__module__", "__main__") == "__main__" or "<locals>" in fn.__qualname__:
        raise ValueError(f"launch needs a function defined at the top of an importable module; "
                         f"{fn.__qualname__!r} lives in {fn.__module__!r}, which spawned processes "
                         f"cannot import (move it into a .py file)")
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
    backend = backend or default_backend()
    store = dist.TCPStore(HOST, 0, world_size + 1, is_master=True, wait_for_workers=False,
                          timeout=timedelta(seconds=timeout))
    ctx = torch.multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_run_rank, daemon=True,
                         args=(fn, rank, world_size, store.port, backend, threads, timeout,
                               results, args, kwargs))
             for rank in range(world_size)]
    try:
        for p in procs:
            p.start()
        out, deadline = {}, time.monotonic() + timeout
        while len(out) < world_size:
            try:
                rank, ok, payload = results.get(timeout=0.2)
            except queue_module.Empty:
                dead = [r for r, p in enumerate(procs) if p.exitcode not in (None, 0) and r not in out]
                if dead:
                    raise RuntimeError(f"rank {dead[0]} died (exit code {procs[dead[0]].exitcode}) "
                                       f"without reporting a result")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{fn.__name__} on {world_size} ranks did not finish in "
                                       f"{timeout:.0f} s (waiting for ranks "
                                       f"{sorted(set(range(world_size)) - set(out))}); killed them")
                continue
            if not ok:
                raise RuntimeError(f"{fn.__name__} failed on rank {rank}:\n{payload}")
            out[rank] = pickle.loads(payload)
        for p in procs:
            p.join(timeout=max(1.0, deadline - time.monotonic()))
        return [out[r] for r in range(world_size)]
    finally:
        for p in procs:
            if p.pid is not None:  # started
                if p.is_alive():
                    p.kill()
                p.join(timeout=5)
        results.close()
        del store


def _run_rank(fn, rank, world_size, port, backend, threads, timeout, results, args, kwargs):
    """Body of one spawned rank: join the group, run fn, report (pickled) result."""
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # stay on the loopback interface
    torch.set_num_threads(threads)
    try:
        store = dist.TCPStore(HOST, port, world_size + 1, is_master=False,
                              timeout=timedelta(seconds=timeout))
        if backend == "nccl":
            torch.cuda.set_device(rank % torch.cuda.device_count())
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=timeout))
        result = fn(*args, **kwargs)
        dist.barrier()
        results.put((rank, True, pickle.dumps(result)))
    except BaseException:  # report everything, including KeyboardInterrupt, then exit
        results.put((rank, False, traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


# ---------------------------------------------------------------- collectives


def ring_bytes(n_bytes: float, world_size: int, op: str = "all_reduce") -> float:
    """Bytes each rank sends in a ring collective on a tensor of ``n_bytes``.

    reduce-scatter and all-gather: N - 1 steps of one chunk (n_bytes / N);
    all-reduce = reduce-scatter + all-gather: 2 (N - 1) / N * n_bytes.
    """
    share = {"all_reduce": 2, "reduce_scatter": 1, "all_gather": 1}
    if op not in share:
        raise ValueError(f"op must be one of {sorted(share)}, got {op!r}")
    return share[op] * (world_size - 1) / world_size * n_bytes


class Comm:
    """Ring collectives from ``send``/``recv``, counting this rank's bytes.

        comm = Comm()                        # inside an initialised process group
        total = comm.all_reduce(t)           # == dist.all_reduce (sum)
        comm.sent                            # Counter: op -> bytes sent by this rank

    Tensors are flattened and split into N chunks (zero-padded to a multiple
    of N); rank r ends a reduce-scatter owning chunk r.
    """

    def __init__(self, group=None):
        self.group = group
        self.rank, self.world_size = dist.get_rank(group), dist.get_world_size(group)
        self.sent: Counter = Counter()
        self.calls: Counter = Counter()

    def chunks(self, t: torch.Tensor) -> torch.Tensor:
        """t (any shape, numel n) -> [N, ceil(n / N)], a zero-padded copy."""
        n, N = t.numel(), self.world_size
        size = -(-n // N)
        flat = torch.zeros(N * size, dtype=t.dtype, device=t.device)
        flat[:n] = t.reshape(-1)
        return flat.view(N, size)

    def _exchange(self, send: torch.Tensor, recv: torch.Tensor, op: str) -> None:
        """Send to the next rank on the ring while receiving from the previous one."""
        right, left = (self.rank + 1) % self.world_size, (self.rank - 1) % self.world_size
        peer = (lambda r: dist.get_global_rank(self.group, r)) if self.group else (lambda r: r)
        # Both directions at once: a blocking send on every rank would deadlock.
        reqs = [dist.isend(send.contiguous(), peer(right), group=self.group),
                dist.irecv(recv, peer(left), group=self.group)]
        for req in reqs:
            req.wait()
        self.sent[op] += send.numel() * send.element_size()

    def reduce_scatter(self, t: torch.Tensor, op: str = "reduce_scatter") -> torch.Tensor:
        """Sum ``t`` over ranks and return only this rank's chunk [ceil(n / N)]."""
        N, r = self.world_size, self.rank
        self.calls[op] += 1
        buf = self.chunks(t)
        incoming = torch.empty_like(buf[0])
        for s in range(N - 1):
            # Pass on the partial sum of chunk r-s-1; add the neighbour's partial of r-s-2.
            self._exchange(buf[(r - s - 1) % N], incoming, op)
            buf[(r - s - 2) % N] += incoming
        return buf[r].clone()

    def all_gather(self, chunk: torch.Tensor, numel: int | None = None,
                   op: str = "all_gather") -> torch.Tensor:
        """Every rank's ``chunk`` [c], concatenated in rank order -> [N * c] (or
        the first ``numel`` of it, dropping the padding)."""
        N, r = self.world_size, self.rank
        self.calls[op] += 1
        buf = torch.empty(N, chunk.numel(), dtype=chunk.dtype, device=chunk.device)
        buf[r] = chunk.reshape(-1)
        for s in range(N - 1):
            # Forward the chunk received last (own chunk first) to the right.
            self._exchange(buf[(r - s) % N], buf[(r - s - 1) % N], op)
        out = buf.view(-1)
        return out if numel is None else out[:numel]

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum over ranks, same shape as ``t``: a reduce-scatter, then an all-gather."""
        mine = self.reduce_scatter(t, op="all_reduce")
        return self.all_gather(mine, t.numel(), op="all_reduce").view_as(t)

    def broadcast(self, t: torch.Tensor, src: int = 0) -> torch.Tensor:
        """``t`` from rank ``src`` on every rank, passed along the ring (a chain)."""
        N, r = self.world_size, self.rank
        self.calls["broadcast"] += 1
        out = t.clone()
        position = (r - src) % N  # 0 for the source, N - 1 for the end of the chain
        peer = (lambda q: dist.get_global_rank(self.group, q)) if self.group else (lambda q: q)
        if position > 0:
            dist.recv(out, peer((r - 1) % N), group=self.group)
        if position < N - 1:
            dist.send(out, peer((r + 1) % N), group=self.group)
            self.sent["broadcast"] += out.numel() * out.element_size()
        return out

    def reset(self) -> None:
        self.sent.clear()
        self.calls.clear()


# ------------------------------------------------- workers the notebooks launch


def collectives_demo(numels=(10, 1000, 100_000), seed: int = 0) -> dict:
    """On every rank: the hand-written ring collectives against torch.distributed's.

    Returns, for each size n, this rank's bytes sent by the ring all-reduce
    and the largest difference from ``dist.all_reduce``; plus what the
    built-in reduce-scatter / all-gather / broadcast give.
    """
    rank, N = dist.get_rank(), dist.get_world_size()
    comm, rows = Comm(), []
    for n in numels:
        torch.manual_seed(seed + 1000 * rank + n)
        t = torch.randn(n)
        comm.reset()
        mine = comm.all_reduce(t)
        ref = t.clone()
        dist.all_reduce(ref)
        rows.append({"numel": n, "bytes": 4 * n, "sent": comm.sent["all_reduce"],
                     "max_diff": (mine - ref).abs().max().item()})
    t = torch.arange(8.0) + 10 * rank
    chunk = comm.reduce_scatter(t)
    gathered = comm.all_gather(chunk, t.numel())
    total = t.clone()
    dist.all_reduce(total)
    builtin = {}
    try:  # gloo has all_gather; reduce_scatter support depends on the version
        out = torch.empty(t.numel() // N)
        scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
        scatter(out, t.clone())
        builtin["reduce_scatter"] = out.tolist()
    except (RuntimeError, NotImplementedError, ValueError) as error:
        builtin["reduce_scatter"] = f"{type(error).__name__}: {str(error).splitlines()[0]}"
    return {"rank": rank, "rows": rows, "input": t.tolist(), "chunk": chunk.tolist(),
            "all_gather(chunk)": gathered.tolist(), "all_reduce": total.tolist(),
            "broadcast": comm.broadcast(t, src=1 % N).tolist(), "builtin": builtin}
