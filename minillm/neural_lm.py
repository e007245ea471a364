"""Neural language models before the Transformer: a fixed-window MLP and an
Elman RNN (chapter 3).

Both map token ids to *logits*, one score per vocabulary word; softmax turns
the logits into P(next token | context), and training minimises the
cross-entropy -log P(actual next token), the same quantity whose exponential
is the perplexity of chapter 1.

* :class:`MLPLanguageModel` (Bengio et al. 2003) sees the last
  ``context_size`` tokens, like an n-gram model with n = context_size + 1,
  but shares statistical strength between similar words through embeddings.
* :class:`ElmanRNN` (Elman 1990) reads a sequence one step at a time and
  carries everything it knows in one fixed-size hidden state
  ``h_t = tanh(W h_{t-1} + U x_t + b)``; :class:`RNNLanguageModel` puts an
  embedding before it and a linear read-out after it.

:func:`context_windows` turns a token-id list into (context, next token)
training pairs for the MLP, and :func:`model_nll` evaluates any of these models
(its mean is :func:`minillm.info.mean_nll`, the one definition of the book).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from minillm.info import mean_nll

#: Standard deviation of the initial embeddings of both language models.
EMBEDDING_INIT_STD = 0.1


def _check_positive_int(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def context_windows(ids: Sequence[int], context_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All (context window, next token) pairs of one token-id sequence.

    Pair i is ``(ids[i : i + context_size], ids[i + context_size])``, so a
    sequence of length T gives T - context_size pairs. Pad the front of the
    sequence yourself (e.g. with an end-of-text id) if its first tokens should
    also be predicted.

    Returns ``contexts`` of shape (T - context_size, context_size) and
    ``targets`` of shape (T - context_size,), both int64.
    """
    _check_positive_int(context_size, "context_size")
    ids = torch.as_tensor(list(ids), dtype=torch.long)
    if ids.ndim != 1:
        raise ValueError(f"ids must be a flat sequence of token ids, got shape {tuple(ids.shape)}")
    if len(ids) <= context_size:
        raise ValueError(f"a sequence of {len(ids)} ids has no window of {context_size} ids followed by a "
                         "next token: pad it or use a smaller context_size")
    contexts = ids.unfold(0, context_size, 1)[:-1]  # (T - c, c): window i = ids[i : i + c]
    return contexts.contiguous(), ids[context_size:]


class MLPLanguageModel(nn.Module):
    """A fixed-window neural LM (Bengio et al. 2003, without their direct
    embedding-to-output connections):

        x = concat(E[w_{t-c}], ..., E[w_{t-1}])        shape (c * d,)
        h = tanh(x H^T + b_h)                          shape (hidden,)
        logits = h O^T + b_o                           shape (V,)

    Parameters: V*d (embedding) + c*d*hidden + hidden + hidden*V + V.
    """

    def __init__(self, vocab_size: int, context_size: int, embed_dim: int, hidden_dim: int,
                 dropout: float = 0.0):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        for value, name in [(vocab_size, "vocab_size"), (context_size, "context_size"),
                            (embed_dim, "embed_dim"), (hidden_dim, "hidden_dim")]:
            _check_positive_int(value, name)
        self.vocab_size, self.context_size = vocab_size, context_size
        self.embedding = nn.Embedding(vocab_size, embed_dim)    # E, shape (V, d)
        # Small initial embeddings (PyTorch's default is N(0, 1)): the tanh layer does not
        # saturate, and a rare word's vector ends up shaped by training, not by its random start.
        nn.init.normal_(self.embedding.weight, std=EMBEDDING_INIT_STD)
        self.hidden = nn.Linear(context_size * embed_dim, hidden_dim)
        self.output = nn.Linear(hidden_dim, vocab_size)
        self.dropout = nn.Dropout(dropout)  # active in train() mode only; fights overfitting on small data

    def forward(self, contexts: torch.Tensor) -> torch.Tensor:
        """contexts: token ids, shape (B, context_size) -> logits, shape (B, V)."""
        if contexts.ndim != 2 or contexts.shape[1] != self.context_size:
            raise ValueError(f"expected contexts of shape (batch, {self.context_size}), got {tuple(contexts.shape)}")
        x = self.embedding(contexts).flatten(1)                 # (B, c * d): the c embeddings side by side
        h = torch.tanh(self.hidden(self.dropout(x)))            # (B, hidden)
        return self.output(self.dropout(h))                     # (B, V)


class ElmanRNN(nn.Module):
    """The simple recurrent network (Elman 1990), written out step by step:

        h_t = tanh(W h_{t-1} + U x_t + b)

    with W of shape (H, H), U of shape (H, E) and b of shape (H,). (Rows are
    batch elements in the code, so it computes ``h @ W.T + x @ U.T + b``.)
    """

    def __init__(self, input_dim: int, hidden_dim: int):
        super().__init__()
        _check_positive_int(input_dim, "input_dim")
        _check_positive_int(hidden_dim, "hidden_dim")
        self.hidden_dim = hidden_dim
        bound = 1 / math.sqrt(hidden_dim)  # PyTorch's nn.RNN initialisation
        self.W = nn.Parameter(torch.empty(hidden_dim, hidden_dim).uniform_(-bound, bound))
        self.U = nn.Parameter(torch.empty(hidden_dim, input_dim).uniform_(-bound, bound))
        self.b = nn.Parameter(torch.zeros(hidden_dim))

    def step(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One step: h (B, H), x (B, E) -> the next hidden state (B, H)."""
        return torch.tanh(h @ self.W.T + x @ self.U.T + self.b)

    def forward(self, xs: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """xs: inputs, shape (B, T, E); h0: (B, H), zeros if None.

        Returns all hidden states, shape (B, T, H), and the last one, (B, H).
        """
        if xs.ndim != 3:
            raise ValueError(f"expected inputs of shape (batch, time, features), got {tuple(xs.shape)}")
        h = xs.new_zeros(xs.shape[0], self.hidden_dim) if h0 is None else h0
        states = []
        for t in range(xs.shape[1]):  # the recurrence: step t needs step t-1, so no parallelism over time
            h = self.step(h, xs[:, t])
            states.append(h)
        return torch.stack(states, dim=1), h


class RNNLanguageModel(nn.Module):
    """Embedding -> :class:`ElmanRNN` -> linear read-out: at every position t
    the logits for token t+1 depend on all tokens 0..t through h_t."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int):
        super().__init__()
        _check_positive_int(vocab_size, "vocab_size")
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        nn.init.normal_(self.embedding.weight, std=EMBEDDING_INIT_STD)
        self.rnn = ElmanRNN(embed_dim, hidden_dim)
        self.output = nn.Linear(hidden_dim, vocab_size)

    def forward(self, ids: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """ids: (B, T) -> logits (B, T, V) and the last hidden state (B, H)
        (pass it as h0 of the next chunk to carry context across chunks)."""
        if ids.ndim != 2:
            raise ValueError(f"expected token ids of shape (batch, time), got {tuple(ids.shape)}")
        states, h = self.rnn(self.embedding(ids), h0)
        return self.output(states), h


@torch.no_grad()
@torch.no_grad()
def target_log_probs(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                     batch_size: int = 4096) -> torch.Tensor:
    """Natural-log probability the model gives each target token, float64, shape
    ``targets.flatten().shape``. The model's ``forward(inputs)`` returns logits (or
    a tuple starting with logits) whose last dimension is the vocabulary.

    inputs: (N, ...) model inputs; targets: token ids with the logits' shape
    minus the vocabulary dimension.
    """
    if len(inputs) != len(targets):
        raise ValueError(f"inputs and targets differ in length: {len(inputs)} vs {len(targets)}")
    was_training = model.training
    model.eval()
    parts = []
    for i in range(0, len(inputs), batch_size):
        logits = model(inputs[i:i + batch_size])
        logits = logits[0] if isinstance(logits, tuple) else logits
        log_p = F.log_softmax(logits.flatten(0, -2).double(), dim=-1)
        parts.append(log_p.gather(1, targets[i:i + batch_size].reshape(-1, 1)).squeeze(1))
    model.train(was_training)
    return torch.cat(parts)


def model_nll(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int = 4096) -> float:
    """Mean negative log-likelihood (nats per token) of ``targets`` under ``model``:
    :func:`minillm.info.mean_nll` of :func:`target_log_probs`. exp() of it is the
    perplexity."""
    return mean_nll(target_log_probs(model, inputs, targets, batch_size).numpy())
