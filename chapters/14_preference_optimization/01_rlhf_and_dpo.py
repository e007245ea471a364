# DRAFT (not yet executed): chapter 14, notebook 1, in jupytext's percent format.
# Turn it into the notebook with `jupytext --to ipynb 01_rlhf_and_dpo.py`, execute it
# with `python -m minillm.book execute`, set the RM-loss bound and the asserts from the
# executed numbers, add it to _toc.yml, then delete this file. It is not in the table
# of contents, so the book build and the notebook checker ignore it.
# %% [markdown]
# # From preferences to DPO
#
# A model after supervised fine-tuning (chapter 12) has learned to *imitate*:
# every training example showed it one good answer, and it learned to produce
# answers of that shape. It has never seen a bad answer marked as bad. Ask it
# about someone it has never heard of and it answers anyway, in the same
# confident sentence, with an invented city. Imitation cannot teach "this
# answer is worse than that one"; **preferences** can.
#
# A preference is a prompt $x$ with two replies, one preferred ($y_w$, the
# winner, "chosen") and one not ($y_l$, the loser, "rejected"). This notebook
# goes from such pairs to a training objective:
#
# 1. the classic RLHF recipe in outline: a **reward model** trained on pairs
#    with the Bradley-Terry model (trained here for real), then a policy that
#    maximises reward under a KL leash to the SFT model (PPO, named, not built);
# 2. **Direct Preference Optimization** (DPO) derived from that same objective,
#    step by step, with every step checked numerically;
# 3. DPO implemented: sequence log-probabilities over the reply's tokens only,
#    a frozen reference computed once, the loss, implicit rewards and margins,
#    and how `minillm.dpo` is checked against Hugging Face's `trl`.
#
# The next notebook runs DPO on TinyWorld and measures what it buys and what
# goes wrong.

# %%
# Setup: on Colab, fetch the book's code first; then seeds, plot style, device.
import sys
if "google.colab" in sys.modules:
    !git clone --quiet --depth 1 https://github.com/minillm-book/minillm /content/minillm
    %pip install --quiet -e /content/minillm
    sys.path.insert(0, "/content/minillm")
import minillm
DEVICE = minillm.setup(seed=0)

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from myst_nb import glue

from minillm import dpo, reward_model, zoo
from minillm.model import IGNORE_INDEX
from minillm.train import TrainConfig, Trainer

# %% [markdown]
# ## TinyWorld's preference pairs
#
# TinyWorld ships 1,920 training pairs and 480 evaluation pairs of three kinds.
# Each teaches one thing:
#
# - **unknown**: a question about a person who appears in no text the model
#   ever read. Chosen: "I don't know anything about ...". Rejected: a
#   confident, invented answer (a hallucination).
# - **known_wrong**: a question about a person the model was fine-tuned on.
#   Chosen: the true answer. Rejected: the same sentence with another value.
# - **known_refusal**: the same kind of question. Chosen: the true answer.
#   Rejected: "I don't know" (a *needless* refusal). Without these pairs the
#   cheapest way to win every "unknown" pair would be to refuse everything.

# %%
train_pairs = dpo.load_pairs("dpo_train")
eval_pairs = dpo.load_pairs("dpo_eval")
examples = []
for kind in ("unknown", "known_wrong", "known_refusal"):
    r = next(p for p in train_pairs if p["kind"] == kind)
    examples.append({"kind": kind, "question": r["prompt"][-1]["content"],
                     "chosen": r["chosen"], "rejected": r["rejected"],
                     "train pairs": sum(p["kind"] == kind for p in train_pairs),
                     "eval pairs": sum(p["kind"] == kind for p in eval_pairs)})
pd.DataFrame(examples).set_index("kind")

# %% [markdown]
# The people in the evaluation pairs are not the training pairs' unknown
# people: the "unknown" evaluation names are new, so a model can only pass
# them by recognising that it has never read about someone, not by
# remembering which names to refuse.

# %%
train_unknown = {p["person"] for p in train_pairs if p["kind"] == "unknown"}
eval_unknown = {p["person"] for p in eval_pairs if p["kind"] == "unknown"}
assert not train_unknown & eval_unknown
glue("n_train_unknown_people", len(train_unknown), display=False)
glue("n_eval_unknown_people", len(eval_unknown), display=False)

# %% [markdown]
# ({glue:text}`n_train_unknown_people` unknown people in training,
# {glue:text}`n_eval_unknown_people` different ones in evaluation.)
#
# ## RLHF, step 1: a reward model from comparisons
#
# People find it much easier to say which of two answers is better than to
# score one on an absolute scale. RLHF {cite}`christiano2017deep,ouyang2022instructgpt`
# therefore learns a scalar reward $r(x, y)$ from comparisons, through the
# **Bradley-Terry** model {cite}`bradley1952rank`: the probability that $y_w$
# is preferred is a logistic function of the reward *difference*,
#
# $$
# P(y_w \succ y_l \mid x) = \sigma\big(r(x, y_w) - r(x, y_l)\big),
# \qquad \sigma(z) = \frac{1}{1 + e^{-z}}.
# $$
#
# Maximising the likelihood of the observed preferences gives the loss
#
# $$
# \mathcal{L}_\text{RM} = -\,\mathbb{E}_{(x, y_w, y_l)}\,
# \log \sigma\big(r(x, y_w) - r(x, y_l)\big),
# $$
#
# a logistic regression on pairs. Only differences enter, so the reward is
# defined up to a constant per prompt: a reward of 3 means nothing on its
# own, only that it is 3 more than something else.
#
# The reward model is the language model with its LM head (which maps the
# last hidden state to 2,048 token logits) swapped for a head that maps it to
# one number, read at the reply's final `<|end|>` token, which has attended
# to the whole prompt and reply. `minillm.reward_model.RewardModel` does this
# (the head starts at zero, so every reward starts at 0 and the first loss is
# $\log 2$). We start it from the pretrained base model, train it for one
# epoch on the 1,920 pairs with the book's `Trainer` and `bradley_terry_loss` as the loss
# function, and score the 480 evaluation pairs.

# %%
base, tokenizer = zoo.load("tinyworld-base")
train_data = dpo.encode_pairs(train_pairs, tokenizer)
eval_data = dpo.encode_pairs(eval_pairs, tokenizer)
{k: tuple(v.shape) for k, v in train_data.items()}

# %% tags=["nbval-ignore-output"]
torch.manual_seed(0)
rm = reward_model.RewardModel(base)
rm_config = TrainConfig(steps=120, batch_size=16, lr=1e-3, min_lr=1e-4, warmup_steps=20,
                        weight_decay=0.0, eval_every=0, seed=0)
rm_trainer = Trainer(rm, rm_config, dpo.PairBatches(train_data, 16, seed=0),
                     loss_fn=reward_model.bradley_terry_loss, progress=False)
rm_history = rm_trainer.fit()
first_loss, last_loss = rm_history[0]["loss"], np.mean([r["loss"] for r in rm_history[-20:]])
print(f"Bradley-Terry loss: {first_loss:.3f} at step 1 (log 2 = {math.log(2):.3f}), "
      f"{last_loss:.3f} over the last 20 steps")
assert abs(first_loss - math.log(2)) < 1e-4 and last_loss < 0.3

# %% tags=["nbval-ignore-output"]
r_chosen, r_rejected = reward_model.score_pairs(rm, eval_data)
kinds = np.array([p["kind"] for p in eval_pairs])
rows = []
for kind in ("unknown", "known_wrong", "known_refusal", "all"):
    sel = torch.from_numpy(kinds == kind) if kind != "all" else torch.ones(len(kinds), dtype=torch.bool)
    rows.append({"kind": kind, "pairs": int(sel.sum()),
                 "pairwise accuracy": (r_chosen[sel] > r_rejected[sel]).float().mean().item(),
                 "mean r(chosen) - r(rejected)": (r_chosen[sel] - r_rejected[sel]).mean().item()})
rm_table = pd.DataFrame(rows).set_index("kind")
for kind in rm_table.index:
    glue(f"rm_acc_{kind}", 100 * rm_table.loc[kind, "pairwise accuracy"], display=False)
assert rm_table.loc["unknown", "pairwise accuracy"] > 0.9
assert rm_table.loc["known_refusal", "pairwise accuracy"] > 0.9
rm_table.style.format({"pairwise accuracy": "{:.1%}", "mean r(chosen) - r(rejected)": "{:.2f}"})

# %% [markdown]
# On pairs it never saw, the reward model ranks the chosen reply higher in
# {glue:text}`rm_acc_all:.1f`% of cases. The kinds are not equally hard. To
# prefer "I don't know" for a stranger ({glue:text}`rm_acc_unknown:.1f`%) it
# only has to notice that the name is not one it read about in pretraining;
# to prefer a true answer over a refusal ({glue:text}`rm_acc_known_refusal:.1f`%)
# it only has to notice that the name *is* familiar. Telling the true city
# from a false one ({glue:text}`rm_acc_known_wrong:.1f`%) requires the fact
# itself, recalled by a 1M-parameter model from the biographies it was
# pretrained on: the reward model is only as knowledgeable as its backbone.
#
# ## RLHF, step 2: maximise reward, but stay close
#
# With a reward model in hand, RLHF fine-tunes the policy $\pi_\theta$ (starting
# from the SFT model) to maximise
#
# $$
# J(\pi) = \mathbb{E}_{x,\; y \sim \pi(\cdot \mid x)}\big[r(x, y)\big]
# \;-\; \beta\, \mathrm{KL}\big(\pi(\cdot \mid x)\,\|\,\pi_\text{ref}(\cdot \mid x)\big),
# $$
#
# where $\pi_\text{ref}$ is the frozen SFT model. The KL term is the leash: the
# reward model is only accurate near the replies it was trained on, and a
# policy free to wander finds replies the reward model scores absurdly high
# (reward hacking). $\beta$ sets the length of the leash.
#
# InstructGPT {cite}`ouyang2022instructgpt` optimises $J$ with **PPO**
# {cite}`schulman2017ppo`: sample replies from the policy, score them with
# the reward model, and take clipped policy-gradient steps, with a learned
# value model to reduce the variance. That is four models in memory (policy,
# reference, reward, value) and a sampling loop inside the training loop. We
# do not build it; chapter 15's GRPO is a simpler sibling. DPO's observation
# is that for this particular objective we do not need to.
#
# ## The optimal policy in closed form
#
# Fix a prompt $x$ and write $\pi(y)$ for $\pi(y \mid x)$. The objective is a
# sum over replies:
#
# $$
# J(\pi) = \sum_y \pi(y)\Big[r(y) - \beta \log \frac{\pi(y)}{\pi_\text{ref}(y)}\Big].
# $$
#
# Define $\pi^*(y) = \frac{1}{Z}\,\pi_\text{ref}(y)\, e^{r(y)/\beta}$ with
# $Z = \sum_y \pi_\text{ref}(y)\, e^{r(y)/\beta}$ (the **partition function**,
# which makes $\pi^*$ sum to 1). Then $r(y) = \beta \log \frac{\pi^*(y)}{\pi_\text{ref}(y)} + \beta \log Z$,
# and substituting,
#
# $$
# J(\pi) = \sum_y \pi(y)\Big[\beta \log \frac{\pi^*(y)}{\pi(y)} + \beta \log Z\Big]
#        = \beta \log Z \;-\; \beta\,\mathrm{KL}(\pi \,\|\, \pi^*).
# $$
#
# A KL divergence is never negative and is zero only when the two
# distributions are equal, so $\pi^*$ is *the* maximiser, and the maximum is
# $\beta \log Z$. Let us check that on a prompt with six possible replies.

# %%
gen = torch.Generator().manual_seed(0)
K = 6
pi_ref = torch.rand(K, generator=gen, dtype=torch.float64) + 0.2
pi_ref /= pi_ref.sum()
r = torch.randn(K, generator=gen, dtype=torch.float64)


def objective(pi, r, pi_ref, beta):
    """J(pi) = E_pi[r] - beta * KL(pi || pi_ref), for distributions over K replies."""
    return (pi * r).sum() - beta * (pi * (pi / pi_ref).log()).sum()


def optimal(r, pi_ref, beta):
    """pi*(y) = pi_ref(y) exp(r(y) / beta) / Z, computed stably as a softmax."""
    return torch.softmax(pi_ref.log() + r / beta, dim=-1)


beta = 0.5
best = optimal(r, pi_ref, beta)
Z = (pi_ref * (r / beta).exp()).sum()
random_policies = torch.distributions.Dirichlet(torch.ones(K, dtype=torch.float64)).sample((10_000,))
others = torch.stack([objective(p, r, pi_ref, beta) for p in random_policies])
assert torch.isclose(objective(best, r, pi_ref, beta), beta * Z.log())
assert (others < objective(best, r, pi_ref, beta)).all()
glue("j_best", objective(best, r, pi_ref, beta).item(), display=False)
glue("j_random_max", others.max().item(), display=False)

# %% [markdown]
# $J(\pi^*)$ = {glue:text}`j_best:.4f` $= \beta \log Z$, and the best of 10,000
# random policies reaches {glue:text}`j_random_max:.4f`. The formula also reads
# well: $\pi^*$ is the reference **reweighted** by $e^{r/\beta}$. A small
# $\beta$ (a short leash... or rather, a cheap KL) lets the reward dominate,
# and $\pi^*$ piles onto the best reply; a large $\beta$ keeps it at
# $\pi_\text{ref}$.

# %%
betas = [0.05, 0.2, 0.5, 2.0, 10.0]
fig, ax = plt.subplots(figsize=(8, 3.2))
width = 0.8 / (len(betas) + 1)
ax.bar(np.arange(K) - 0.4 + width / 2, pi_ref, width, label=r"$\pi_\mathrm{ref}$", color="0.6")
for i, b in enumerate(betas):
    ax.bar(np.arange(K) - 0.4 + width * (i + 1.5), optimal(r, pi_ref, b), width, label=fr"$\pi^*$, $\beta$={b}")
ax.set_xticks(range(K), [f"y{k}\nr={v:+.2f}" for k, v in enumerate(r.tolist())])
ax.set_xlabel("reply (and its reward)")
ax.set_ylabel("probability")
ax.set_title(r"The KL-regularised optimum: $\pi_\mathrm{ref}$ reweighted by $e^{r/\beta}$")
ax.legend(fontsize=8, ncol=2)
plt.show()

# %% [markdown]
# ## DPO: the partition function cancels
#
# The closed form is useless as it stands: $Z(x)$ sums over *every possible
# reply*, all $2048^{T}$ token sequences. But read it backwards. Any policy
# $\pi$ defines a reward for which it is optimal,
#
# $$
# r_\pi(x, y) = \beta \log \frac{\pi(y \mid x)}{\pi_\text{ref}(y \mid x)} + \beta \log Z(x),
# $$
#
# and Bradley-Terry only ever looks at reward **differences for the same
# prompt**, where $\beta \log Z(x)$ cancels:
#
# $$
# r_\pi(x, y_w) - r_\pi(x, y_l)
#   = \beta \log \frac{\pi(y_w \mid x)}{\pi_\text{ref}(y_w \mid x)}
#   - \beta \log \frac{\pi(y_l \mid x)}{\pi_\text{ref}(y_l \mid x)}.
# $$
#
# So we can fit the *policy* to the preferences with the reward model's own
# loss, the reward written in terms of the policy. That is the DPO loss
# {cite}`rafailov2023dpo`:
#
# $$
# \mathcal{L}_\text{DPO}(\theta) = -\,\mathbb{E}\,\log \sigma\Big(
#   \beta \log \frac{\pi_\theta(y_w \mid x)}{\pi_\text{ref}(y_w \mid x)}
# - \beta \log \frac{\pi_\theta(y_l \mid x)}{\pi_\text{ref}(y_l \mid x)}\Big).
# $$
#
# No reward model, no sampling: two log-probabilities per reply, one from the
# model being trained and one from the frozen reference. The quantity
# $\hat r(x, y) = \beta \log \frac{\pi_\theta(y \mid x)}{\pi_\text{ref}(y \mid x)}$
# is the policy's **implicit reward**. Numerically, on the toy prompt: the
# implicit rewards of $\pi^*$ are *not* the true rewards (they are off by
# $\beta \log Z$), but every difference is exact.

# %%
implicit = beta * (best / pi_ref).log()
print("true r      ", np.round(r.numpy(), 4))
print("implicit r  ", np.round(implicit.numpy(), 4))
print("offset      ", np.round((r - implicit).numpy(), 4), " beta log Z =", round(beta * Z.log().item(), 4))
diffs_true = r[:, None] - r[None, :]
diffs_implicit = implicit[:, None] - implicit[None, :]
assert torch.allclose(r - implicit, beta * Z.log().expand(K))
assert torch.allclose(diffs_true, diffs_implicit)

# %% [markdown]
# What does a gradient step of DPO do? Writing $\Delta = \hat r(x, y_w) - \hat r(x, y_l)$,
#
# $$
# \nabla_\theta \mathcal{L}_\text{DPO} = -\beta\, \sigma(-\Delta)\,
# \big[\nabla_\theta \log \pi_\theta(y_w \mid x) - \nabla_\theta \log \pi_\theta(y_l \mid x)\big].
# $$
#
# Two things to notice. The weight $\sigma(-\Delta)$ is near 1 for pairs the
# implicit reward ranks the wrong way and near 0 for pairs already ranked
# right, so learning concentrates where it is needed. And the loss only asks
# for the *difference* of the two log-probabilities to grow. Nothing in it
# says $\log \pi_\theta(y_w)$ must go up: both may fall, as long as the
# rejected one falls faster. The next notebook measures exactly that.
#
# ## Implementation: log-probabilities of the reply only
#
# $\log \pi(y \mid x)$ of a reply $y = (y_1, \dots, y_m)$ is the sum of its
# tokens' log-probabilities, each given everything before it:
#
# $$
# \log \pi(y \mid x) = \sum_{t=1}^{m} \log \pi(y_t \mid x, y_{<t}).
# $$
#
# The prompt's tokens are context, not part of $y$: they are scored by
# neither term. `dpo.encode_pairs` lays each pair out as two rows (prompt +
# chosen, prompt + rejected) whose labels are the reply's tokens and
# `IGNORE_INDEX` everywhere else, exactly the assistant-only mask of SFT, and
# `dpo.completion_log_probs` sums the log-probs of the labelled tokens. The
# reply includes its closing `<|end|>`: whether the model stops is part of
# the answer. Here is one pair, token by token, under the base model.

# %%
pair = eval_data_one = {k: v[:1] for k, v in eval_data.items()}
ids, labels = pair["chosen_ids"][0], pair["chosen_labels"][0]
pad = tokenizer.special_tokens["<|pad|>"]
n = int((ids != pad).sum())
with torch.no_grad():
    logp = base(ids[None, :n])[0].log_softmax(-1)  # [n, V]; row t predicts token t + 1
token_logp = [logp[t - 1, ids[t]].item() if t > 0 else float("nan") for t in range(n)]
table = pd.DataFrame({"token": [tokenizer.decode([i]) for i in ids[:n].tolist()],
                      "in the reply": (labels[:n] != IGNORE_INDEX).tolist(),
                      "log p(token | before)": token_logp})
by_hand = table.loc[table["in the reply"], "log p(token | before)"].sum()
ours, count = dpo.completion_log_probs(base, pair["chosen_ids"], pair["chosen_labels"])
assert abs(by_hand - ours.item()) < 1e-4 and count.item() == table["in the reply"].sum()
glue("by_hand_logp", by_hand, display=False)
glue("reply_tokens", int(count), display=False)
table.T.style.format(precision=2)

# %% [markdown]
# The {glue:text}`reply_tokens` reply tokens sum to
# $\log \pi(y_w \mid x)$ = {glue:text}`by_hand_logp:.2f` nats, and
# `dpo.completion_log_probs` agrees. In a batch, the chosen and rejected rows
# of all pairs go through the model as one batch of $2B$ rows
# (`dpo.pair_log_probs`).
#
# ## The frozen reference, computed once
#
# $\pi_\text{ref}$ never changes during training, so its log-probabilities
# of the training pairs are fixed numbers. `dpo.add_reference_log_probs`
# computes them in one pass before training and stores them with the data
# (`ref_chosen`, `ref_rejected`); each training step then runs one model, not
# two, and the reference need not even stay in memory. (`trl` offers the same
# as `precompute_ref_log_probs=True`.)
#
# ## The loss, by hand and in `minillm.dpo`
#
# At the start of training the policy *is* the reference: every implicit
# reward is 0 and the loss is $-\log \sigma(0) = \log 2$ for every pair. To see
# the loss move, we compare the reference with a policy one step of plain
# gradient descent away.

# %%
data = dpo.add_reference_log_probs(base, {k: v[:64] for k, v in train_data.items()})
policy = zoo.load("tinyworld-base")[0].train()
loss_fn = dpo.DPOLoss(beta=0.1)
loss_at_start = loss_fn(policy, data)
loss_at_start.backward()
with torch.no_grad():
    for p in policy.parameters():
        p -= 1.0 * p.grad
beta = 0.1
logp = dpo.pair_log_probs(policy, data)
chosen_reward = beta * (logp["chosen"] - data["ref_chosen"])
rejected_reward = beta * (logp["rejected"] - data["ref_rejected"])
by_hand = -F.logsigmoid(chosen_reward - rejected_reward).mean()
losses, c, r_ = dpo.dpo_loss(logp["chosen"], logp["rejected"], data["ref_chosen"], data["ref_rejected"], beta)
assert abs(loss_at_start.item() - math.log(2)) < 1e-5
assert torch.allclose(by_hand, losses.mean()) and torch.allclose(c, chosen_reward.detach())
start = loss_fn.pop_metrics()  # what DPOLoss recorded at the reference
assert start["reward_accuracy"] == 0.0 and start["reward_margin"] == 0.0
pd.DataFrame({"loss": [loss_at_start.item(), by_hand.item()],
              "reward accuracy": [start["reward_accuracy"],
                                  (chosen_reward > rejected_reward).float().mean().item()],
              "mean margin": [start["reward_margin"], (chosen_reward - rejected_reward).mean().item()]},
             index=["policy = reference", "after one gradient step"]).style.format(precision=4)

# %% [markdown]
# Two numbers to watch during DPO training come straight out of the implicit
# rewards: the **reward accuracy** (the fraction of pairs whose chosen reply
# has the larger implicit reward) and the **margin**
# $\hat r(x, y_w) - \hat r(x, y_l)$. (The accuracy counts a tie as wrong, as
# trl does, so it starts at 0: at the reference every reward is exactly 0.) `DPOLoss` records both, plus the mean chosen
# and rejected log-probabilities, at every call.
#
# ## Checked against `trl`
#
# Hugging Face's `trl` is what most people run DPO with, so `minillm.dpo` is
# tested against it (`tests/test_dpo.py`, trl 1.16). What trl 1.x does by
# default: the sigmoid loss with $\beta = 0.1$ on log-probabilities *summed*
# over the reply's tokens; for a chat dataset the reply's tokens are whatever
# the chat template puts after the prompt, here the text and its `<|end|>`
# (for plain-text data trl appends the EOS token itself). The tests check
# that
#
# - trl's tokenisation of TinyWorld's pairs (through the book's chat template
#   exported with `minillm.hf.save_tokenizer`) gives exactly
#   `dpo.encode_pair`'s prompt and reply ids;
# - on the *same* per-token log-probabilities, trl's loss, mean chosen and
#   rejected rewards, margin and reward accuracy, and the gradient of the
#   loss with respect to every log-probability, equal minillm's to within
#   $10^{-9}$ (float64), for the sigmoid loss and the two variants below;
# - end to end, a minillm model exported with `minillm.hf.to_transformers`
#   and trained by trl's loss gets the same loss, rewards and parameter
#   gradients as the minillm model under `DPOLoss`, within float32 noise
#   ($2 \times 10^{-6}$ relative).
#
# One trap found on the way: `DPOConfig` defaults to `bf16=True` even on a
# CPU, which runs the models in bfloat16 (about 3 significant digits), so
# the reference log-probabilities differ from float32 ones around $10^{-4}$.
# Set `bf16=False` when comparing.
#
# ## Two variants: IPO and robust DPO
#
# The sigmoid loss never reaches zero: for a pair the data says is
# *always* preferred, it keeps pushing the margin up forever, and with it
# the policy away from the reference, whatever $\beta$ says.
# **IPO** {cite}`azar2024ipo` replaces it by a squared loss with a target:
# $\big(\Delta' - \tfrac{1}{2\beta}\big)^2$, where $\Delta'$ is the log-ratio
# difference with each reply's log-ratio averaged over its tokens (trl's
# form). **Robust DPO** {cite}`chowdhury2024robust` assumes a fraction
# $\varepsilon$ of the labels are flipped and de-biases the sigmoid loss for
# it; its minimum moves to a finite margin. `dpo.dpo_loss(..., loss_type=...)`
# has both; here is each loss as a function of the margin.

# %%
margin = torch.linspace(-4, 10, 300, dtype=torch.float64)
zero = torch.zeros_like(margin)
one = torch.ones_like(margin)
fig, ax = plt.subplots(figsize=(7, 3.2))
for name, kwargs in [("sigmoid (DPO)", dict(loss_type="sigmoid")),
                     ("robust, eps = 0.1", dict(loss_type="robust", label_smoothing=0.1)),
                     ("IPO, beta = 0.25", dict(loss_type="ipo"))]:
    b = 0.25 if name.startswith("IPO") else 1.0
    losses, _, _ = dpo.dpo_loss(margin / b, zero, zero, zero, beta=b, chosen_tokens=one,
                                rejected_tokens=one, **kwargs)
    ax.plot(margin, losses, label=name)
ax.axvline(2.0, color="0.7", ls=":", lw=1)
ax.set_ylim(0, 5)
ax.set_xlabel(r"margin $\beta\,\Delta$ (IPO: $\Delta'$, its target $1/(2\beta)$ = 2 dotted)")
ax.set_ylabel("loss per pair")
ax.set_title("Sigmoid keeps pushing; IPO and robust DPO stop at a finite margin")
ax.legend()
plt.show()

# %% [markdown]
# ## Exercises
#
# **1. The reply's log-probability.** Given the logits of one sequence
# (`logits[t]` predicts token `t + 1`) and its token ids, return the summed
# log-probability of the tokens from `prompt_len` on.

# %% tags=["hide-input"] mystnb={"code_prompt_show": "Show solution", "code_prompt_hide": "Hide solution"}
import torch

def completion_log_prob(logits, ids, prompt_len):
    '''logits [T, V], ids [T] -> sum over t >= prompt_len of log p(ids[t] | ids[:t]).'''
    ### BEGIN SOLUTION
    logp = logits.log_softmax(-1)
    targets = ids[prompt_len:]
    return logp[prompt_len - 1:-1].gather(-1, targets[:, None]).sum()
    ### END SOLUTION

# %%
from minillm.exercises import check_completion_log_prob
check_completion_log_prob(completion_log_prob)

# %% [markdown]
# **2. The DPO loss.** From the summed log-probabilities of the chosen and
# rejected replies under the policy and the reference (four tensors of shape
# `[B]`), return the mean sigmoid DPO loss.

# %% tags=["hide-input"] mystnb={"code_prompt_show": "Show solution", "code_prompt_hide": "Hide solution"}
import torch
import torch.nn.functional as F

def dpo_sigmoid_loss(chosen, rejected, ref_chosen, ref_rejected, beta):
    '''Four [B] tensors of summed log-probs -> the mean DPO loss (a scalar).'''
    ### BEGIN SOLUTION
    margin = beta * ((chosen - ref_chosen) - (rejected - ref_rejected))
    return -F.logsigmoid(margin).mean()
    ### END SOLUTION

# %%
from minillm.exercises import check_dpo_sigmoid_loss
check_dpo_sigmoid_loss(dpo_sigmoid_loss)

# %% [markdown]
# **3. The optimal policy.** Given a reference distribution over $K$ replies,
# their rewards and $\beta$, return the distribution that maximises
# $\mathbb{E}_\pi[r] - \beta\,\mathrm{KL}(\pi \,\|\, \pi_\text{ref})$.

# %% tags=["hide-input"] mystnb={"code_prompt_show": "Show solution", "code_prompt_hide": "Hide solution"}
import torch

def optimal_policy(ref_probs, rewards, beta):
    '''ref_probs [K] (sums to 1), rewards [K], beta > 0 -> probs [K].'''
    ### BEGIN SOLUTION
    weights = ref_probs * torch.exp(rewards / beta)
    return weights / weights.sum()
    ### END SOLUTION

# %%
from minillm.exercises import check_optimal_policy
check_optimal_policy(optimal_policy)

# %% [markdown]
# **4. (Think.)** The reward model above ranks unknown-person pairs almost
# perfectly and true-vs-false-value pairs much less well. Using the DPO
# gradient, explain which kind of pair will dominate DPO's updates late in
# training, and why that is the kind most exposed to both chosen and rejected
# log-probabilities falling together.
