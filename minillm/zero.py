"""ZeRO stages 1, 2 and 3 by hand: data parallelism that shards the model states.

Plain data parallelism (stage 0) keeps a full copy of everything on every
rank: weights, gradients and AdamW's two moments. ZeRO (Rajbhandari et al.
2020) splits each of them into N shards, one per rank, in three stages:

    stage 1  optimizer states: rank r keeps AdamW's m, v for its shard only.
             Gradients are reduce-scattered (rank r gets the average of its
             shard), r updates its shard, and an all-gather rebuilds the weights.
    stage 2  + gradients: each parameter's gradient is reduce-scattered the
             moment backward has produced it, and the full gradient is freed.
    stage 3  + weights: between uses a rank stores only its weight shard. A
             layer's weights are all-gathered just before its forward, freed
             after it, and gathered again just before its backward.

Every tensor is flattened and cut into N equal chunks (zero-padded), rank r
owning chunk r, and all communication goes through ``minillm.distributed.Comm``,
so ``comm.sent`` counts the bytes each stage moves. The update is AdamW
written out (``adamw_``), the same formula as ``torch.optim.AdamW``.

Stage 3 frees a weight by shrinking its storage to zero bytes and refills the
*same* storage before backward (what FSDP does): autograd's saved references
to the weight (and to views like ``weight.t()``) then see the regathered
values, and nothing holds a stale full copy in between.
"""
from __future__ import annotations

import math

import torch

from minillm.distributed import Comm


def adamw_(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, step: int,
           lr: float, betas: tuple[float, float], eps: float, weight_decay: float) -> None:
    """One AdamW update of p in place (m, v updated too); step counts from 1.

    Decoupled decay p <- p (1 - lr wd); then Adam with bias correction:
    p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
    """
    b1, b2 = betas
    p.mul_(1 - lr * weight_decay)
    m.lerp_(g, 1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    denom = (v.sqrt() / math.sqrt(1 - b2 ** step)).add_(eps)
    p.addcdiv_(m, denom, value=-lr / (1 - b1 ** step))


def default_units(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Stage 3's gather units: one per block of a minillm Transformer (plus
    the embedding, the final norm and the head); the whole model otherwise."""
    if all(hasattr(model, a) for a in ("embed", "blocks", "norm", "lm_head")):
        return [model.embed, *model.blocks, model.norm, model.lm_head]
    return [model]


class ZeRO:
    """AdamW across the ranks of a process group, with ZeRO ``stage`` 0-3.

        zero = ZeRO(model, stage=2, lr=1e-3)     # same init on every rank
        loss = lm_loss(model(x_local), y_local)  # this rank's share of the batch
        loss.backward()                          # stage >= 2: grads reduce-scattered here
        zero.step(); zero.zero_grad()
        zero.memory()       # bytes this rank holds: parameters, gradients, optimizer
        zero.comm.sent      # bytes this rank has sent, by collective

    Gradients are averaged over ranks (each rank's loss is a mean over its
    share). ``no_decay``: names of parameters without weight decay.
    """

    def __init__(self, model: torch.nn.Module, stage: int, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, no_decay=(), comm: Comm | None = None, units=None):
        if stage not in (0, 1, 2, 3):
            raise ValueError(f"ZeRO stage must be 0, 1, 2 or 3, got {stage!r}")
        self.model, self.stage, self.comm = model, stage, comm or Comm()
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        self.names, self.params = zip(*model.named_parameters())  # a tied weight appears once
        self.index = {id(p): i for i, p in enumerate(self.params)}
        unknown = set(no_decay) - set(self.names)
        if unknown:
            raise ValueError(f"no_decay names unknown parameters: {sorted(unknown)}")
        self.decay = [0.0 if n in no_decay else weight_decay for n in self.names]
        N, r = self.comm.world_size, self.comm.rank
        size = [p.numel() if stage == 0 else -(-p.numel() // N) for p in self.params]
        self.m = [torch.zeros(s, device=p.device) for s, p in zip(size, self.params)]
        self.v = [torch.zeros(s, device=p.device) for s, p in zip(size, self.params)]
        self.grad_shards: dict[int, torch.Tensor] = {}
        self.t = 0
        if stage >= 2:
            for p in self.params:
                p.register_post_accumulate_grad_hook(self._reduce_grad)
        if stage == 3:
            self.shards = [self.comm.chunks(p.detach())[r].clone() for p in self.params]
            self.full = [True] * len(self.params)
            for i in range(len(self.params)):
                self._free(i)
            for unit in units or default_units(model):
                unit.register_forward_pre_hook(self._before_forward)
                unit.register_forward_hook(self._after_forward)

    # --------------------------------------------------------- stage 3 weights
    def _unit_params(self, unit) -> list[int]:
        return sorted({self.index[id(p)] for p in unit.parameters()})

    def _gather(self, i: int) -> None:
        if self.full[i]:
            return
        p = self.params[i]
        storage = p.untyped_storage()
        storage.resize_(p.numel() * p.element_size())
        # A fresh tensor on the same storage: writing through it leaves p's
        # version counter alone, so autograd accepts the refilled weight.
        alias = torch.empty(0, dtype=p.dtype, device=p.device).set_(storage, 0, (p.numel(),))
        with torch.no_grad():
            alias.copy_(self.comm.all_gather(self.shards[i], p.numel()))
        self.full[i] = True

    def _free(self, i: int) -> None:
        self.params[i].untyped_storage().resize_(0)
        self.full[i] = False

    def _before_forward(self, unit, args) -> None:
        for i in self._unit_params(unit):
            self._gather(i)

    def _after_forward(self, unit, args, output) -> None:
        ids = self._unit_params(unit)
        for i in ids:
            self._free(i)
        if isinstance(output, torch.Tensor) and output.requires_grad:
            # Runs when the gradient of the unit's output is ready, i.e. just
            # before the unit's own backward needs its weights again.
            def regather(grad):
                for i in ids:
                    self._gather(i)
            output.register_hook(regather)

    # ------------------------------------------------------------- gradients
    def _reduce_grad(self, p: torch.Tensor) -> None:
        """Stage >= 2: average p's gradient over ranks, keep this rank's shard."""
        i = self.index[id(p)]
        shard = self.comm.reduce_scatter(p.grad) / self.comm.world_size
        self.grad_shards[i] = self.grad_shards[i] + shard if i in self.grad_shards else shard
        p.grad = None
        if self.stage == 3:
            self._free(i)

    @torch.no_grad()
    def step(self) -> None:
        """Update the weights from this step's gradients (all ranks call it)."""
        self.t += 1
        N, r = self.comm.world_size, self.comm.rank
        for i, p in enumerate(self.params):
            args = (self.m[i], self.v[i], self.t, self.lr, self.betas, self.eps,
                    self.decay[i])
            if self.stage == 0:  # plain data parallel: all-reduce, all update all
                adamw_(p.view(-1), self.comm.all_reduce(p.grad).view(-1) / N, *args)
                continue
            if self.stage >= 2:  # reduce-scattered during backward
                g = self.grad_shards.pop(i)
            else:
                g = self.comm.reduce_scatter(p.grad) / N
            if self.stage == 3:
                adamw_(self.shards[i], g, *args)  # the next forward gathers them
                continue
            shard = self.comm.chunks(p)[r]
            adamw_(shard, g, *args)
            p.copy_(self.comm.all_gather(shard, p.numel()).view_as(p))

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None
        self.grad_shards.clear()

    # --------------------------------------------------------- introspection
    def memory(self) -> dict[str, int]:
        """Bytes of model states this rank holds right now."""
        stored = sum(p.untyped_storage().nbytes() for p in self.params)
        if self.stage == 3:
            stored += sum(s.numel() * s.element_size() for s in self.shards)
        grads = sum(p.grad.numel() * p.grad.element_size() for p in self.params if p.grad is not None)
        grads += sum(g.numel() * g.element_size() for g in self.grad_shards.values())
        optim = sum(t.numel() * t.element_size() for t in (*self.m, *self.v))
        return {"parameters": stored, "gradients": grads, "optimizer": optim}

    @torch.no_grad()
    def full_parameters(self) -> dict[str, torch.Tensor]:
        """name -> the full weight (stage 3 gathers it; collective, all ranks call)."""
        if self.stage < 3:
            return {n: p.detach().clone() for n, p in zip(self.names, self.params)}
        return {n: self.comm.all_gather(s, p.numel(), op="gather for inspection").view(p.shape)
                for n, s, p in zip(self.names, self.shards, self.params)}


# ------------------------------------------------- workers the notebooks launch


def activation_bytes(fn, params) -> tuple[object, int]:
    """Run ``fn()``; bytes of the tensors autograd saves, minus the weights.

    Like ``minillm.memory.saved_tensor_bytes``, but a weight is recognised by
    its storage *when it is saved* (stage 3 moves weights between storages).
    """
    seen: dict[int, int] = {}

    def pack(tensor):
        ptr = tensor.untyped_storage().data_ptr()
        if ptr not in {p.untyped_storage().data_ptr() for p in params}:
            seen[ptr] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = fn()
    return result, sum(seen.values())


def zero_experiment(config: dict, stages=(0, 1, 2, 3), steps: int = 5, batch_size: int = 8,
                    seq_len: int = 32, lr: float = 3e-3, weight_decay: float = 0.1,
                    seed: int = 0) -> dict:
    """On every rank: train ``steps`` AdamW steps with DDP + ``torch.optim.AdamW``
    (the reference), then with ``ZeRO`` at each stage, from the same weights
    on the same global batches (``batch_size`` sequences, split over ranks).

    Returns per stage: the largest weight difference from the reference, the
    model-state bytes this rank held after the last backward, the activation
    bytes of its last forward, and the bytes it sent per step, by collective.
    """
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from minillm.config import ModelConfig
    from minillm.model import Transformer, lm_loss
    from minillm.train import param_groups, split_decay

    rank, N = dist.get_rank(), dist.get_world_size()
    cfg = ModelConfig(**config)
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(cfg.vocab_size, (steps, batch_size, seq_len), generator=g)
    local = [batch.chunk(N)[rank] for batch in tokens]  # this rank's share of each batch
    betas, eps = (0.9, 0.95), 1e-8

    torch.manual_seed(seed)
    model = Transformer(cfg)
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    ddp = DDP(model)
    opt = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps)
    for x in local:
        lm_loss(ddp(x), x).backward()
        opt.step()
        opt.zero_grad()
    reference = {n: p.detach().clone() for n, p in model.named_parameters()}
    n_params = sum(p.numel() for p in reference.values())

    moved = max((reference[n] - init[n]).abs().max().item() for n in reference)
    out = {"rank": rank, "world_size": N, "n_params": n_params, "moved": moved, "stages": {}}
    for stage in stages:
        torch.manual_seed(seed)
        model = Transformer(cfg)
        zero = ZeRO(model, stage, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                    no_decay=split_decay(model)[1])
        for x in local:
            loss, acts = activation_bytes(lambda: lm_loss(model(x), x), zero.params)
            loss.backward()
            memory = zero.memory()  # after backward, before the update: the peak of states
            zero.step()
            zero.zero_grad()
        sent = {op: b / steps for op, b in zero.comm.sent.items()}
        calls = {op: c / steps for op, c in zero.comm.calls.items()}
        full = zero.full_parameters()
        diff = max((full[n] - reference[n]).abs().max().item() for n in reference)
        out["stages"][stage] = {"max_diff": diff, "memory": memory, "activations": acts,
                                "sent_per_step": sent, "calls_per_step": calls}
    return out


def _local_bytes(tensors) -> int:
    """Bytes of this rank's part of each tensor (a DTensor's local shard)."""
    total = 0
    for t in tensors:
        t = t.to_local() if hasattr(t, "to_local") else t
        total += t.numel() * t.element_size()
    return total


def torch_sharding_experiment(config: dict, steps: int = 5, batch_size: int = 8, seq_len: int = 32,
                              lr: float = 3e-3, weight_decay: float = 0.1, seed: int = 0) -> dict:
    """On every rank: PyTorch's own sharding against DDP + AdamW, as in
    ``zero_experiment``: ``ZeroRedundancyOptimizer`` (ZeRO-1) and FSDP2's
    ``fully_shard`` per block with ``reshard_after_forward`` False (weights
    stay gathered between forward and backward, like ZeRO-2) and True (ZeRO-3).
    Returns per method the largest weight difference from the reference and
    the bytes of parameters, gradients and optimizer states held on this rank.
    """
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel as DDP

    from minillm.config import ModelConfig
    from minillm.model import Transformer, lm_loss
    from minillm.train import param_groups

    rank, N = dist.get_rank(), dist.get_world_size()
    cfg = ModelConfig(**config)
    g = torch.Generator().manual_seed(seed)
    local = [b.chunk(N)[rank] for b in torch.randint(cfg.vocab_size, (steps, batch_size, seq_len),
                                                      generator=g)]
    betas = (0.9, 0.95)

    def run(make):
        torch.manual_seed(seed)
        model = Transformer(cfg)
        wrapped, opt = make(model)
        for x in local:
            lm_loss(wrapped(x), x).backward()
            if x is local[-1]:
                grads = _local_bytes(p.grad for p in model.parameters())
            opt.step()
            opt.zero_grad()
        full = {n: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone()
                for n, p in model.named_parameters()}
        inner = opt.optim if isinstance(opt, ZeroRedundancyOptimizer) else opt
        states = [t for st in inner.state.values() for t in st.values() if t.dim() > 0]
        return full, {"parameters": _local_bytes(model.parameters()), "gradients": grads,
                      "optimizer": _local_bytes(states)}

    def adamw(params):
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)

    def fsdp(reshard):
        def make(model):
            for block in model.blocks:
                fully_shard(block, reshard_after_forward=reshard)
            fully_shard(model, reshard_after_forward=reshard)
            return model, adamw(param_groups(model, weight_decay))
        return make

    reference, memory = run(lambda m: (DDP(m), adamw(param_groups(m, weight_decay))))
    methods = {"DDP + AdamW": (reference, memory)}
    methods["ZeroRedundancyOptimizer"] = run(lambda m: (DDP(m), ZeroRedundancyOptimizer(
        param_groups(m, weight_decay), optimizer_class=torch.optim.AdamW, lr=lr, betas=betas)))
    methods["FSDP2, reshard_after_forward=False"] = run(fsdp(False))
    methods["FSDP2, reshard_after_forward=True"] = run(fsdp(True))
    return {"rank": rank, "n_params": sum(p.numel() for p in reference.values()), "methods": {
        name: {"max_diff": max((full[n] - reference[n]).abs().max().item() for n in reference),
               "memory": mem} for name, (full, mem) in methods.items()}}


def sharding_experiments(config: dict, **kwargs) -> dict:
    """``zero_experiment`` and ``torch_sharding_experiment`` in one launch (one
    process start-up instead of two)."""
    return {"zero": zero_experiment(config, **kwargs), "torch": torch_sharding_experiment(config, **kwargs)}
