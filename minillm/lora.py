"""LoRA: fine-tune a frozen model through small low-rank updates (Hu et al. 2021).

What this adds over ``minillm.model``: nothing in the model changes. A chosen
``nn.Linear`` y = W x + b is wrapped so that it computes

    h = W x + b + s * B (A drop(x)),     A [r, in], B [out, r], s = alpha / r

with W and b frozen and only A and B trained. B starts at zero, so the wrapped
model starts *exactly* at the base model (h = W x + b), and A starts random
(like ``nn.Linear``: Kaiming-uniform with a = sqrt(5)), so B's gradient
B.grad = s * dh^T (A x) is not zero and training can leave the start. This
is peft's convention too (``peft.LoraConfig``), and ``tests/test_lora.py``
checks that both give the same logits for the same A and B. rsLoRA
(Kalajdzievski 2023) scales by alpha / sqrt(r) instead, which keeps the size
of the update from shrinking as r grows.

After training, ``merge`` folds the update into W (W += s B A): the merged
model is a plain ``Transformer`` again, no slower than the base, and
``minillm.hf`` exports it like any other. ``unmerge`` subtracts it back.

The wrapped layer may be any module with ``in_features``/``out_features`` and
a ``forward`` (``minillm.quant.Linear4bit`` for QLoRA): LoRA only adds to its
output. Shapes: ``...`` any leading dims, ``in``/``out`` the layer's sizes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: Every weight matrix of a transformer block, by the names HF and minillm use.
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
ALL_LINEAR = ATTENTION + MLP


class LoRALinear(nn.Module):
    """A frozen layer plus a trainable low-rank update: [..., in] -> [..., out].

    ``base``: the wrapped layer (its parameters are frozen here). ``r``: the
    rank; ``alpha``: the scale numerator; ``dropout``: applied to the adapter's
    input only (the base path sees x untouched); ``rslora``: scale alpha/sqrt(r).
    """

    def __init__(
        self,
        base: nn.Module,
        r: int = 8,
        alpha: float = 16.0,
        dropout: float = 0.0,
        rslora: bool = False,
    ):
        super().__init__()
        if not isinstance(r, int) or r < 1:
            raise ValueError(f"LoRA rank r must be a positive integer, got {r!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {dropout!r}")
        in_f, out_f = getattr(base, "in_features", None), getattr(
            base, "out_features", None
        )
        if in_f is None or out_f is None:
            raise TypeError(
                "LoRA wraps a layer with in_features and out_features, "
                f"got {type(base).__name__}"
            )
        self.base, self.r, self.alpha, self.rslora = base, r, alpha, rslora
        self.in_features, self.out_features = in_f, out_f
        self.scaling = alpha / math.sqrt(r) if rslora else alpha / r
        for p in base.parameters():
            p.requires_grad_(False)
        weight = next(
            iter([*base.parameters(), *base.buffers()]), None
        )  # Linear4bit: buffers
        kw = dict(
            dtype=torch.float32, device=weight.device if weight is not None else None
        )
        self.lora_A = nn.Parameter(torch.empty(r, in_f, **kw))
        self.lora_B = nn.Parameter(torch.zeros(out_f, r, **kw))
        nn.init.kaiming_uniform_(
            self.lora_A, a=math.sqrt(5)
        )  # nn.Linear's init, as peft
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """The update s * B A, [out, in]: what ``merge`` adds to W."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., in] -> [..., out]: base(x) + s B A drop(x); base(x) once merged."""
        result = self.base(x)
        if self.merged:
            return result
        # Two thin products (x A^T, then B^T): r (in + out) multiply-adds per
        # token instead of in * out for a materialised B A.
        h = self.dropout(x).to(self.lora_A.dtype) @ self.lora_A.T
        return result + (h @ self.lora_B.T * self.scaling).to(result.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        """W <- W + s B A in place; forward then runs the base layer alone."""
        if self.merged:
            raise RuntimeError("this LoRA layer is already merged")
        if not isinstance(self.base, nn.Linear):
            raise TypeError(
                f"can only merge into an nn.Linear, not {type(self.base).__name__} "
                f"(dequantize a 4-bit base first: minillm.quant.dequantize_model)"
            )
        self.base.weight += self.delta_weight().to(self.base.weight.dtype)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W <- W - s B A: undo ``merge`` (up to float rounding)."""
        if not self.merged:
            raise RuntimeError("this LoRA layer is not merged")
        self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
        self.merged = False

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, r={self.r}, "
                f"scaling={self.scaling:g}")


def _matches(name: str, targets) -> bool:
    """peft's rule for a list of target names: the module's name ends with one."""
    return any(name == t or name.endswith("." + t) for t in targets)


def inject_lora(
    model: nn.Module,
    targets=("q_proj", "v_proj"),
    r: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    rslora: bool = False,
) -> nn.Module:
    """Freeze every parameter of ``model`` and wrap its target layers in LoRA.

    targets: module names or suffixes (``"q_proj"`` matches every
    ``blocks.{i}.attn.q_proj``), or "all-linear" for every projection of the
    blocks (``ALL_LINEAR``). Returns the same model, changed in place.
    """
    targets = (
        ALL_LINEAR
        if targets == "all-linear"
        else tuple([targets] if isinstance(targets, str) else targets)
    )
    names = [n for n, m in model.named_modules() if _matches(n, targets)]
    wrapped = [n for n in names if isinstance(model.get_submodule(n), LoRALinear)]
    if wrapped:
        raise ValueError(
            f"{wrapped[0]} already has a LoRA adapter "
            "(merge_lora first to stack another)"
        )
    linear_names = {n.split(".")[-1] for n, m in model.named_modules()
                    if isinstance(m, nn.Linear)}
    if not names:
        raise ValueError(
            f"no module of the model matches targets {list(targets)}; its linear "
            f"layers are named like {sorted(linear_names)}"
        )
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(
            parent, child, LoRALinear(getattr(parent, child), r, alpha, dropout, rslora)
        )
    return model


def lora_layers(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    """(name, layer) of every LoRA layer of ``model``, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its weight and unwrap it: the model becomes a plain
    ``Transformer`` again (same parameter names as before ``inject_lora``), all
    of whose parameters are trainable as before injection. Changes it in place."""
    for name, layer in lora_layers(model):
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        setattr(
            model.get_submodule(parent_name) if parent_name else model,
            child,
            layer.base,
        )
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapters' tensors (``...lora_A``, ``...lora_B``): what a LoRA
    checkpoint stores; a few percent of the model's size."""
    return {
        k: v
        for k, v in model.state_dict().items()
        if k.endswith((".lora_A", ".lora_B"))
    }


def count_trainable(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts, each shared tensor counted once
    (as ``peft``'s ``get_nb_trainable_parameters`` does)."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():  # parameters() already yields a tied tensor once
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


def lora_parameter_count(config, targets=ALL_LINEAR, r: int = 8) -> int:
    """r (in + out) per targeted matrix per block, by formula from a ``ModelConfig``."""
    d, kv, f = config.d_model, config.n_kv_heads * config.head_dim, config.d_ff
    shapes = {
        "q_proj": (d, config.n_heads * config.head_dim),
        "k_proj": (d, kv),
        "v_proj": (d, kv),
        "o_proj": (config.n_heads * config.head_dim, d),
        "gate_proj": (d, f),
        "up_proj": (d, f),
        "down_proj": (f, d),
    }
    targets = ALL_LINEAR if targets == "all-linear" else targets
    unknown = set(targets) - set(shapes)
    if unknown:
        raise ValueError(
            f"unknown targets {sorted(unknown)}; choose from {list(shapes)}"
        )
    return config.n_layers * sum(r * sum(shapes[t]) for t in targets)
