"""Pictures of attention: heatmaps of weight matrices and an interactive explorer.

Chapter 4 draws many [queries x keys] weight matrices; these helpers keep the
notebooks about attention rather than about matplotlib. What it adds over
``minillm.attention``: the weights themselves, which the model's fused kernel
computes and throws away. The explorer needs
``ipywidgets`` (imported only when it is built).
"""
from __future__ import annotations

import torch


def attention_row(q: torch.Tensor, k: torch.Tensor, query: int, sharpness: float = 1.0,
                  causal: bool = True) -> torch.Tensor:
    """Weights of one query over the keys: softmax(sharpness * q[query] . k / sqrt(D)).

    q [T, D], k [S, D] -> [S]. ``sharpness`` multiplies the usual 1/sqrt(D)
    scale (1 = standard attention; it acts like an inverse temperature).
    With ``causal``, keys after the query position get weight 0.
    """
    if q.dim() != 2 or k.dim() != 2 or q.shape[1] != k.shape[1]:
        raise ValueError(f"need q [T, D] and k [S, D] with equal D, got {tuple(q.shape)} and {tuple(k.shape)}")
    if not 0 <= query < q.shape[0]:
        raise ValueError(f"query position {query} is outside 0 .. {q.shape[0] - 1}")
    if not sharpness > 0:
        raise ValueError(f"sharpness must be positive, got {sharpness}")
    scores = sharpness * (k @ q[query]) / q.shape[1] ** 0.5
    if causal:
        scores[query + 1:] = float("-inf")
    return torch.softmax(scores, dim=0)


def plot_attention(ax, weights, tokens_q, tokens_k=None, title: str = "", vmax: float | None = 1.0,
                   colorbar: bool = True):
    """Heatmap of a weight matrix [T, S] (rows: queries, columns: keys) with token labels."""
    weights = torch.as_tensor(weights).detach().float().cpu()
    tokens_k = tokens_q if tokens_k is None else tokens_k
    if weights.shape != (len(tokens_q), len(tokens_k)):
        raise ValueError(f"weights {tuple(weights.shape)} do not match {len(tokens_q)} query and "
                         f"{len(tokens_k)} key labels")
    image = ax.imshow(weights.numpy(), cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(tokens_k)), [repr(t)[1:-1] for t in tokens_k], rotation=90, fontsize=8)
    ax.set_yticks(range(len(tokens_q)), [repr(t)[1:-1] for t in tokens_q], fontsize=8)
    ax.set(xlabel="key (attended to)", ylabel="query (attending)", title=title)
    ax.grid(False)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label="attention weight")
    return image


def attention_explorer(q: torch.Tensor, k: torch.Tensor, tokens: list[str]):
    """An ipywidgets explorer: pick a query position and a sharpness, see its weights.

    Returns (widget, update); ``update(query, sharpness)`` redraws and returns
    the weights it drew (``attention_row`` with causal masking), so notebooks
    can test what the widget shows.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    out = widgets.Output()

    def update(query: int, sharpness: float) -> torch.Tensor:
        weights = attention_row(q, k, query, sharpness)
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(7, 2.8))
            ax.bar(range(len(tokens)), weights.numpy())
            ax.set_xticks(range(len(tokens)), [repr(t)[1:-1] for t in tokens], rotation=90, fontsize=8)
            ax.set(ylim=(0, 1), xlabel="key token", ylabel="attention weight",
                   title=f"query {query} ({tokens[query]!r}), sharpness {sharpness:g}")
            plt.show()
        return weights

    query = widgets.IntSlider(value=len(tokens) - 1, min=0, max=len(tokens) - 1, description="query")
    sharpness = widgets.FloatLogSlider(value=1.0, base=10, min=-1, max=1, step=0.1, description="sharpness")
    widgets.interactive_output(update, {"query": query, "sharpness": sharpness})
    return widgets.VBox([widgets.HBox([query, sharpness]), out]), update


@torch.no_grad()
def attention_weights(model, input_ids: torch.Tensor) -> list[torch.Tensor]:
    """The attention weights of every layer of a ``minillm.model.Transformer``.

    input_ids [B, T] -> a list with one [B, H, T, T] float32 tensor per layer
    (rows: queries, columns: keys). The model itself calls fused SDPA, which
    never materialises the weights; a hook on each ``Attention`` layer takes
    the inputs it receives (normalised x, cos, sin), projects them with the
    layer's own ``project`` and recomputes softmax(q k^T / sqrt(D) + causal
    mask), exactly as SDPA does.
    Memory is B * H * T^2 floats per layer: keep B * T^2 modest.
    """
    import math

    from .attention import repeat_kv

    found = []

    def grab(attn, args):
        x, cos, sin = args[:3]
        T = x.shape[1]
        q, k, _ = attn.project(x, cos, sin)
        k = repeat_kv(k, attn.n_heads // attn.n_kv_heads)
        scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(attn.head_dim)
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        found.append(scores.masked_fill(future, float("-inf")).softmax(-1))

    hooks = [block.attn.register_forward_pre_hook(grab) for block in model.blocks]
    try:
        model(input_ids)
    finally:
        for hook in hooks:
            hook.remove()
    return found
