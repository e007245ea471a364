"""The model's configuration: one validated dataclass, named presets, and the
two formulas every chapter needs (parameter count, FLOPs per token).

A config is the whole architecture. Two models built from equal configs have the
same shapes, the same parameter names and the same behaviour, which is what lets
``minillm.hf`` translate one into a Llama or Qwen2 checkpoint and back.

    >>> cfg = ModelConfig.preset("tiny")
    >>> cfg.head_dim, count_parameters(cfg)
    (32, 1049728)
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .validate import check_int, check_positive

#: RoPE context-extension methods (see ``minillm.rope``); ``None`` = plain RoPE.
ROPE_SCALINGS = (None, "linear", "ntk", "dynamic", "yarn")
#: Feed-forward layers the MLP factory in ``minillm.model`` can build (a mixture
#: of experts is chosen by ``ModelConfig.moe``, not here).
MLP_KINDS = ("swiglu", "relu")
#: How a mixture of experts keeps its experts evenly loaded (``minillm.moe``):
#: "aux" = Switch's auxiliary loss, "bias" = DeepSeek-V3's bias update, None = nothing.
ROUTER_BALANCES = (None, "aux", "bias")


@dataclass
class MoEConfig:
    """A mixture of experts in every block's MLP slot (``minillm.moe``).

    ``n_experts`` SwiGLU experts of width ``expert_d_ff`` (default: the model's
    ``d_ff``), each token routed to ``experts_top_k`` of them, plus
    ``n_shared_experts`` that every token uses; gate weights renormalised over
    the chosen k (``router_norm_topk``); ``capacity_factor`` c caps each expert
    at ceil(c * tokens * k / n_experts) tokens (None: no cap, nothing dropped);
    ``router_balance`` (``ROUTER_BALANCES``) with ``aux_loss_weight`` (added to
    the loss by ``Transformer.forward``) or ``bias_update_rate`` (applied after
    each optimizer step by the ``minillm.moe.RouterBiasUpdate`` callback).
    """

    n_experts: int = 8
    experts_top_k: int = 2
    n_shared_experts: int = 0
    expert_d_ff: int | None = None
    capacity_factor: float | None = None
    router_balance: str | None = None
    router_norm_topk: bool = True
    aux_loss_weight: float = 0.01
    bias_update_rate: float = 0.001

    def __post_init__(self) -> None:
        for name in ("n_experts", "experts_top_k", "n_shared_experts", "expert_d_ff"):
            if not (name == "expert_d_ff" and self.expert_d_ff is None):
                check_int(getattr(self, name), f"MoEConfig.{name}", 0 if name == "n_shared_experts" else 1)
        if self.experts_top_k > self.n_experts:
            raise ValueError(f"MoEConfig.experts_top_k={self.experts_top_k} is larger than "
                             f"n_experts={self.n_experts}: a token cannot use more experts "
                             f"than exist")
        if self.capacity_factor is not None and not (
                isinstance(self.capacity_factor, (int, float)) and self.capacity_factor > 0):
            raise ValueError(f"MoEConfig.capacity_factor must be > 0 or None, "
                             f"got {self.capacity_factor!r}")
        if self.router_balance not in ROUTER_BALANCES:
            raise ValueError(f"MoEConfig.router_balance={self.router_balance!r} is unknown; "
                             f"choose one of {ROUTER_BALANCES}")
        for name in ("aux_loss_weight", "bias_update_rate"):
            check_positive(getattr(self, name), f"MoEConfig.{name}", allow_zero=True)

    def replace(self, **changes) -> "MoEConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


@dataclass
class ModelConfig:
    """Shape and options of a decoder-only transformer (Llama/Qwen2 family).

    Sizes: ``vocab_size`` tokens, ``d_model`` residual width, ``n_layers`` blocks,
    ``n_heads`` query heads sharing ``n_kv_heads`` key/value heads (GQA; equal to
    ``n_heads`` is plain multi-head attention, 1 is MQA), ``d_ff`` hidden width of
    the MLP (default: Llama's rule, about 8/3 d_model rounded up to 64).
    ``max_seq_len`` is the context length the model is meant for.

    RoPE: base ``rope_theta``; ``rope_scaling`` one of ``ROPE_SCALINGS`` with
    ``rope_factor`` s (the context is stretched s times) relative to the
    training length ``rope_original_max_seq_len`` (default ``max_seq_len``);
    ``yarn_beta_fast``/``yarn_beta_slow`` bound YaRN's ramp.

    Options: ``tie_embeddings`` (LM head shares the embedding matrix),
    ``qkv_bias`` (biases on q, k, v only: Qwen2), ``attention_bias`` (biases on
    q, k, v and o: Llama's switch of that name), ``mlp_bias``, ``mlp`` (which
    feed-forward layer: ``MLP_KINDS``), ``norm_eps`` (RMSNorm epsilon),
    ``init_std`` (std of the normal weight init).

    ``moe``: a ``MoEConfig`` puts a mixture of experts in every block's MLP
    slot (``minillm.moe``); None (the default) keeps the dense ``mlp``.
    """

    vocab_size: int = 4096
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None
    d_ff: int | None = None
    max_seq_len: int = 256
    rope_theta: float = 10000.0
    rope_scaling: str | None = None
    rope_factor: float = 1.0
    rope_original_max_seq_len: int | None = None
    yarn_beta_fast: float = 32.0
    yarn_beta_slow: float = 1.0
    tie_embeddings: bool = True
    qkv_bias: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    mlp: str = "swiglu"
    norm_eps: float = 1e-5
    init_std: float = 0.02
    moe: MoEConfig | None = None

    def __post_init__(self) -> None:
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.d_ff is None:
            self.d_ff = 64 * math.ceil(8 * self.d_model / 3 / 64)
        if self.rope_original_max_seq_len is None:
            self.rope_original_max_seq_len = self.max_seq_len
        if isinstance(self.moe, dict):  # from_dict / JSON
            self.moe = MoEConfig(**self.moe)
        self._validate()

    def _validate(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff",
                     "max_seq_len", "rope_original_max_seq_len"):
            check_int(getattr(self, name), f"ModelConfig.{name}")
        for name in ("rope_theta", "norm_eps", "init_std", "rope_factor"):
            check_positive(getattr(self, name), f"ModelConfig.{name}")
        if self.d_model % self.n_heads:
            raise ValueError(f"ModelConfig.d_model={self.d_model} is not divisible by "
                             f"n_heads={self.n_heads}: every head needs the same width")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"ModelConfig.n_heads={self.n_heads} is not a multiple of "
                             f"n_kv_heads={self.n_kv_heads}: each key/value head serves a "
                             f"whole group of query heads")
        if self.head_dim % 2:
            raise ValueError(f"ModelConfig head_dim = d_model/n_heads = {self.head_dim} is odd: "
                             f"RoPE rotates pairs of dimensions, so it must be even")
        if self.rope_scaling not in ROPE_SCALINGS:
            raise ValueError(f"ModelConfig.rope_scaling={self.rope_scaling!r} is unknown; "
                             f"choose one of {ROPE_SCALINGS}")
        if self.rope_scaling is not None and self.rope_factor < 1:
            raise ValueError(f"ModelConfig.rope_factor={self.rope_factor} must be >= 1 "
                             f"(it is how many times the context is stretched)")
        if self.rope_scaling == "yarn" and not self.yarn_beta_fast > self.yarn_beta_slow > 0:
            raise ValueError(f"ModelConfig needs yarn_beta_fast > yarn_beta_slow > 0, got "
                             f"{self.yarn_beta_fast} and {self.yarn_beta_slow}")
        if self.mlp not in MLP_KINDS:
            raise ValueError(f"ModelConfig.mlp={self.mlp!r} is unknown; choose one of {MLP_KINDS}")
        if self.moe is not None and not isinstance(self.moe, MoEConfig):
            raise ValueError(f"ModelConfig.moe must be a MoEConfig or None, got {self.moe!r}")

    @property
    def head_dim(self) -> int:
        """Width of one attention head, d_model / n_heads."""
        return self.d_model // self.n_heads

    def replace(self, **changes) -> "ModelConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def expert_d_ff(self) -> int:
        """Hidden width of one expert of a mixture (``moe.expert_d_ff`` or ``d_ff``)."""
        if self.moe is None:
            raise ValueError("expert_d_ff: this config has no mixture of experts (moe=None)")
        return self.d_ff if self.moe.expert_d_ff is None else self.moe.expert_d_ff

    def to_dict(self) -> dict:
        """The fields as a (JSON-ready) dict; a dense model leaves out ``moe``, so
        every config and recipe hash written before chapter 9 reads as before."""
        d = dataclasses.asdict(self)
        if d["moe"] is None:
            del d["moe"]
        return d

    def __repr__(self) -> str:
        """Like the dataclass repr, without ``moe`` for a dense model."""
        fields = {k: getattr(self, k) for k in self.to_dict()}
        return f"ModelConfig({', '.join(f'{k}={v!r}' for k, v in fields.items())})"

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """Inverse of ``to_dict``; unknown keys are an error, not silently dropped."""
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s): {unknown}")
        return cls(**d)

    @classmethod
    def preset(cls, name: str, **overrides) -> "ModelConfig":
        """A named configuration (``PRESETS``) with optional field overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


#: Named shapes. tiny: the book's CPU model (~1M parameters, seconds per step);
#: small: ~14M, a few CPU minutes per useful run; base: ~100M, for a GPU.
PRESETS: dict[str, dict] = {
    "tiny": dict(vocab_size=2048, d_model=128, n_layers=4, n_heads=4, n_kv_heads=2,
                 d_ff=384, max_seq_len=256),
    "small": dict(vocab_size=4096, d_model=384, n_layers=8, n_heads=6, n_kv_heads=2,
                  d_ff=1024, max_seq_len=512),
    "base": dict(vocab_size=4096, d_model=768, n_layers=14, n_heads=12, n_kv_heads=4,
                 d_ff=2304, max_seq_len=1024),
}


def count_parameters(config: ModelConfig) -> int:
    """Number of parameters of ``Transformer(config)``, by formula (== numel sum).

    Per block: attention (q and o are d x d, k and v are d x (n_kv_heads*head_dim)),
    the MLP, two RMSNorm weight vectors; plus the embedding, the final norm and,
    unless tied, the LM head.
    """
    return sum(parameter_breakdown(config).values())


def active_parameters(config: ModelConfig) -> int:
    """Parameters one token actually uses: all of them for a dense model; for a
    mixture of experts, only its ``experts_top_k`` routed experts per layer
    (plus the router, the shared experts and everything outside the MLP)."""
    return sum(parameter_breakdown(config, active=True).values())


def _swiglu_parameters(d: int, f: int, bias: bool) -> int:
    return 3 * d * f + (2 * f + d if bias else 0)


def parameter_breakdown(config: ModelConfig, active: bool = False) -> dict[str, int]:
    """``count_parameters`` split into embedding / attention / mlp / norms / lm_head.

    ``active=True`` counts only the experts a token is routed to (MoE): the
    ``mlp`` entry then holds the parameters one token passes through."""
    d, L = config.d_model, config.n_layers
    kv = config.n_kv_heads * config.head_dim
    attention = 2 * d * d + 2 * d * kv
    if config.qkv_bias or config.attention_bias:
        attention += d + 2 * kv
    if config.attention_bias:
        attention += d
    f, moe = config.d_ff, config.moe
    if moe is not None:  # router + routed experts + shared experts (one wide SwiGLU)
        routed = moe.experts_top_k if active else moe.n_experts
        width, bias = config.expert_d_ff, config.mlp_bias
        mlp = (d * moe.n_experts + routed * _swiglu_parameters(d, width, bias)
               + (_swiglu_parameters(d, moe.n_shared_experts * width, bias)
                  if moe.n_shared_experts else 0))
    else:
        n_mats = {"swiglu": 3, "relu": 2}[config.mlp]
        mlp = n_mats * d * f + ((n_mats - 1) * f + d if config.mlp_bias else 0)
    return {
        "embedding": config.vocab_size * d,
        "attention": L * attention,
        "mlp": L * mlp,
        "norms": (2 * L + 1) * d,
        "lm_head": 0 if config.tie_embeddings else config.vocab_size * d,
    }


def flops_per_token(config: ModelConfig, seq_len: int | None = None, training: bool = True) -> int:
    """Matmul FLOPs per token: 2N + 4*L*T*d (forward), three times that to train.

    N counts the weights that take part in a matrix product: every block weight
    and the LM head, but not the input embedding (a table lookup costs no
    FLOPs). Each weight costs a multiply and an add per token (2N); backward
    costs twice the forward, hence 6N to train (Kaplan et al. 2020). The
    attention term is QK^T and AV over a context of T = ``seq_len`` positions
    (default ``max_seq_len``), counted in full as in PaLM's 6N + 12LTd (the
    causal mask halves the useful work, but kernels mostly do not save it).
    Norms, softmax and biases are left out: they are a rounding error.
    A mixture of experts counts only the experts a token is routed to.
    """
    T = config.max_seq_len if seq_len is None else seq_len
    parts = parameter_breakdown(config, active=True)
    n_matmul = parts["attention"] + parts["mlp"] + config.vocab_size * config.d_model
    forward = 2 * n_matmul + 4 * config.n_layers * T * config.n_heads * config.head_dim
    return 3 * forward if training else forward
