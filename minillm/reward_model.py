"""A Bradley-Terry reward model: the first half of classic RLHF.

RLHF (Christiano et al. 2017; Ouyang et al. 2022) learns a reward r(x, y) from
human comparisons, then optimises the policy against it with PPO. The
comparisons are modelled with Bradley and Terry's (1952) rule:

    P(y_w preferred to y_l | x) = sigmoid(r(x, y_w) - r(x, y_l))

so the reward model is trained by logistic regression on the *difference* of
two scores: loss = -log sigmoid(r_w - r_l). Only differences are learned;
adding a constant to every reward changes nothing.

The model is the language model with its LM head (d_model -> vocabulary)
swapped for a score head (d_model -> 1), read at the reply's last token (its
``<|end|>``), which has attended to the whole prompt and reply. This is what
``transformers``' ``...ForSequenceClassification`` with one label does.

Shapes: B pairs, T tokens.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from minillm.model import IGNORE_INDEX, Transformer


class RewardModel(nn.Module):
    """r(x, y): a copy of ``backbone`` whose LM head is a zero-initialised
    score head (so every reward starts at 0 and the first loss is log 2)."""

    def __init__(self, backbone: Transformer):
        super().__init__()
        self.backbone = copy.deepcopy(backbone)
        self.backbone.lm_head = nn.Linear(backbone.config.d_model, 1, bias=False)
        nn.init.zeros_(self.backbone.lm_head.weight)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """input_ids, labels [B, T] (labels mark the reply, as ``dpo.encode_pairs``
        makes them) -> rewards [B], the score at each row's last reply token."""
        if not (labels != IGNORE_INDEX).any(-1).all():
            raise ValueError("every row needs a reply (labels not all IGNORE_INDEX)")
        positions = torch.arange(labels.shape[1], device=labels.device)
        last = ((labels != IGNORE_INDEX) * positions).argmax(-1)  # [B]
        width = int(last.max()) + 1  # the padding after the longest reply changes nothing
        scores = self.backbone(input_ids[:, :width])[..., 0]  # [B, width]
        return scores.gather(1, last[:, None])[:, 0].float()


def pair_rewards(model: RewardModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(r_chosen, r_rejected) [B], both replies scored in one forward pass."""
    B = len(batch["chosen_ids"])
    ids = torch.cat((batch["chosen_ids"], batch["rejected_ids"]))
    rewards = model(ids, torch.cat((batch["chosen_labels"], batch["rejected_labels"])))
    return rewards[:B], rewards[B:]


def bradley_terry_loss(model: RewardModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean -log sigmoid(r_chosen - r_rejected): a ``Trainer`` loss_fn."""
    chosen, rejected = pair_rewards(model, batch)
    return -F.logsigmoid(chosen - rejected).mean()


@torch.no_grad()
def score_pairs(model: RewardModel, data: dict[str, torch.Tensor],
                batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards of every pair's chosen and rejected reply, [N] each. Pairwise
    accuracy is ``(chosen > rejected).float().mean()``."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    chosen, rejected = [], []
    keys = ("chosen_ids", "chosen_labels", "rejected_ids", "rejected_labels")
    for i in range(0, len(data["chosen_ids"]), batch_size):
        c, r = pair_rewards(model, {k: data[k][i:i + batch_size].to(device) for k in keys})
        chosen.append(c.cpu())
        rejected.append(r.cpu())
    model.train(was_training)
    return torch.cat(chosen), torch.cat(rejected)
