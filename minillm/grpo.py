"""GRPO: Group Relative Policy Optimization (Shao et al. 2024, DeepSeek-R1).

Reinforcement learning from a reward a program computes. One step:

    1. take P prompts and sample G completions of each (a *group*), with the
       current policy, at temperature 1 (exploration);
    2. score every completion (``minillm.rewards``): r_i;
    3. advantage = how much better than its own group:
           A_i = (r_i - mean(r_group)) / (std(r_group) + eps)
       No value network (PPO's critic): the group mean is the baseline. A group
       whose completions all score the same has A = 0 everywhere: it teaches
       nothing (``zero_std`` in the history is the share of such groups);
    4. update the policy on the clipped surrogate, per completion token t:
           ratio_t = pi(o_t | ...) / pi_old(o_t | ...)
           loss_t  = -min(ratio_t A, clip(ratio_t, 1 - eps, 1 + eps) A)
                     + beta * KL_t,  KL_t = exp(ref - logp) - (ref - logp) - 1
       (k3, Schulman's unbiased, always non-negative estimator of KL(pi || ref)),
       and average the token losses in one of three ways (``LOSS_TYPES``):
           "grpo"     mean over each sequence's tokens, then over sequences
                      (the GRPO paper; a long completion's tokens weigh less),
           "dapo"     sum over all tokens / number of tokens in the batch
                      (DAPO; every token weighs the same; trl's default),
           "dr_grpo"  sum over all tokens / (sequences * max_new_tokens)
                      (Dr. GRPO; a constant normaliser, no length bias).

With one policy update per batch of samples (``updates_per_batch=1``, trl's
default) pi_old is the current policy, the ratio is exactly 1 and the clip
never acts; the gradient is then the plain policy gradient A * grad log pi.
More updates per batch make the ratio move and the clip matter.

``grpo_loss`` is the loss alone on given log-probs, tested against trl's
``GRPOTrainer._compute_loss``; ``train_grpo`` is the whole loop (sampling with
``minillm.generate``, rewards, update), resumable from its checkpoint.

Shapes: N = P * G completions, C completion tokens (right-padded).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from minillm.chat import encode_chat
from minillm.checkpoint import load_training_state, save_training_state
from minillm.generate import generate
from minillm.loss import IGNORE_INDEX, token_losses
from minillm.rewards import TAGS, chain_terms, score

LOSS_TYPES = ("grpo", "dapo", "dr_grpo")
END = "<|end|>"


@dataclass
class GRPOConfig:
    """One GRPO run. ``steps`` policy steps, each on ``prompts_per_step``
    prompts x ``group_size`` samples; ``beta`` weighs the KL penalty (0: no
    reference model, as in trl's default); ``epsilon``: the clip range;
    ``scale_rewards``: divide by the group's std (False: Dr. GRPO's plain
    r - mean); ``std_eps``: the eps added to the std (trl: 1e-4);
    ``step_weight``: the weight of the process reward (``rewards.step_reward``,
    the share of the chain's additions right before the first mistake) in the
    total reward (0: format + accuracy only, R1-Zero's rewards)."""

    steps: int = 150
    prompts_per_step: int = 8
    group_size: int = 8
    lr: float = 1e-4
    beta: float = 0.0
    epsilon: float = 0.2
    loss_type: str = "dapo"
    scale_rewards: bool = True
    std_eps: float = 1e-4
    temperature: float = 1.0
    max_new_tokens: int = 64
    updates_per_batch: int = 1
    grad_clip: float | None = 1.0
    seed: int = 0
    checkpoint_every: int = 25
    step_weight: float = 0.0

    def __post_init__(self):
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type={self.loss_type!r} is unknown; choose one of {LOSS_TYPES}")
        for name in ("steps", "prompts_per_step", "max_new_tokens", "updates_per_batch"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not isinstance(self.group_size, int) or self.group_size < 2:
            raise ValueError(f"group_size must be an integer >= 2 (a group of one has no "
                             f"baseline), got {self.group_size!r}")
        if not self.step_weight >= 0:
            raise ValueError(f"step_weight must be >= 0, got {self.step_weight!r}")
        if not (self.lr > 0 and self.beta >= 0 and 0 < self.epsilon < 1 and self.temperature > 0):
            raise ValueError(f"need lr > 0, beta >= 0, 0 < epsilon < 1, temperature > 0; got lr={self.lr}, "
                             f"beta={self.beta}, epsilon={self.epsilon}, temperature={self.temperature}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------- the math

def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True,
                     eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """rewards [N] (groups of ``group_size`` consecutive entries) ->
    (advantages [N], std per group [N / group_size]).

    A = r - mean(group), divided by (std + eps) when ``scale``. The std is the
    sample std (Bessel's n - 1, as trl), and eps keeps an all-equal group at
    A = 0 instead of 0 / 0."""
    rewards = torch.as_tensor(rewards, dtype=torch.float32)
    if rewards.dim() != 1 or len(rewards) % group_size:
        raise ValueError(f"rewards must be [N] with N a multiple of group_size={group_size}, "
                         f"got shape {tuple(rewards.shape)}")
    groups = rewards.view(-1, group_size)
    std = groups.std(dim=1)
    advantages = groups - groups.mean(dim=1, keepdim=True)
    if scale:
        advantages = advantages / (std[:, None] + eps)
    return advantages.flatten(), std


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(pi || ref) from samples of pi: [N, C] -> [N, C].

    exp(ref - logp) - (ref - logp) - 1 >= 0, zero where the two agree; its
    mean over samples of pi is exactly the KL (Schulman 2020, "k3")."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, ref_logp: torch.Tensor | None = None, *, beta: float = 0.0,
              epsilon: float = 0.2, loss_type: str = "dapo",
              max_completion_length: int | None = None) -> tuple[torch.Tensor, dict]:
    """The clipped GRPO loss and its diagnostics.

    logp, old_logp, ref_logp: [N, C] log-probs of the sampled tokens under the
    policy (with grad), the policy that sampled them, the reference model.
    advantages [N]; mask [N, C]: 1 on completion tokens, 0 on padding.
    ``max_completion_length`` is the Dr. GRPO normaliser (default C).
    Returns (scalar loss, {"kl", "clip_fraction"} as floats).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type={loss_type!r} is unknown; choose one of {LOSS_TYPES}")
    if not logp.shape == old_logp.shape == mask.shape or advantages.shape != logp.shape[:1]:
        raise ValueError(f"logp {tuple(logp.shape)}, old_logp {tuple(old_logp.shape)}, mask "
                         f"{tuple(mask.shape)} must be [N, C] and advantages {tuple(advantages.shape)} [N]")
    if beta and ref_logp is None:
        raise ValueError("beta > 0 needs ref_logp (the reference model's log-probs)")
    mask = mask.to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    adv = advantages[:, None]
    per_token = -torch.min(ratio * adv, ratio.clamp(1 - epsilon, 1 + epsilon) * adv)
    kl = k3_kl(logp, ref_logp) if ref_logp is not None else torch.zeros_like(logp)
    if beta:
        per_token = per_token + beta * kl
    if loss_type == "grpo":
        loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    elif loss_type == "dapo":
        loss = (per_token * mask).sum() / mask.sum().clamp(min=1.0)
    else:
        loss = (per_token * mask).sum() / (len(logp) * (max_completion_length or logp.shape[1]))
    clipped = ((ratio < 1 - epsilon) & (adv < 0)) | ((ratio > 1 + epsilon) & (adv > 0))
    n = mask.sum().clamp(min=1.0)
    return loss, {"kl": float((kl.detach() * mask).sum() / n),
                  "clip_fraction": float((clipped * mask).sum() / n)}


# ----------------------------------------------------------------- the model side

def encode_prompt(question: str, tokenizer) -> list[int]:
    """The chat prompt that asks ``question`` and opens the assistant's turn."""
    return encode_chat([{"role": "user", "content": question}], tokenizer, add_generation_prompt=True)[0]


def encode_completion(trace: str, tokenizer) -> list[int]:
    """A worked trace as the model should write it: the tags as their single
    special tokens, then ``<|end|>``."""
    return tokenizer.encode(trace, allowed_special=TAGS) + [tokenizer.special_tokens[END]]


def decode_completion(ids: list[int], tokenizer) -> tuple[str, bool]:
    """(text before ``<|end|>``, whether the completion ended)."""
    end = tokenizer.special_tokens[END]
    return (tokenizer.decode(ids[:ids.index(end)]), True) if end in ids else (tokenizer.decode(ids), False)


def join(prompts: list[list[int]], completions: list[list[int]], pad_id: int) -> dict:
    """Left-padded prompts + right-padded completions, one row each.

    Returns input_ids, attention_mask, position_ids [N, Tp + C], labels
    (IGNORE_INDEX outside the completions), completion_mask [N, C]."""
    tp, c = max(map(len, prompts)), max(1, max(map(len, completions)))
    n = len(prompts)
    ids = torch.full((n, tp + c), pad_id, dtype=torch.long)
    attention = torch.zeros(n, tp + c, dtype=torch.long)
    for i, (p, o) in enumerate(zip(prompts, completions)):
        ids[i, tp - len(p):tp + len(o)] = torch.tensor(p + o, dtype=torch.long)
        attention[i, tp - len(p):tp + len(o)] = 1
    completion_mask = attention[:, tp:].clone()
    labels = ids.masked_fill(attention == 0, IGNORE_INDEX)
    labels[:, :tp] = IGNORE_INDEX
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": ids, "attention_mask": attention, "position_ids": positions,
            "labels": labels, "completion_mask": completion_mask, "prompt_length": tp}


def completion_log_probs(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """log pi(o_t | prompt, o_<t) of every completion token: [N, C] (0 on padding).

    One forward. The logits at position t score token t + 1, so the
    completion's tokens are scored at positions Tp - 1 ... Tp + C - 2: only the
    last C + 1 positions go through the LM head (the widest matrix product of
    a small model; the prompt's positions would be wasted on it)."""
    tp = batch["prompt_length"]
    logits = model(batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"], logits_to_keep=batch["input_ids"].shape[1] - tp + 1)
    return -token_losses(logits, batch["labels"][:, tp - 1:])[:, :-1]


def sample_groups(model, tokenizer, problems: list[dict], config: GRPOConfig,
                  generator: torch.Generator) -> dict:
    """Sample ``group_size`` completions of each problem and score them.

    Returns the joined batch (``join``) plus rewards: "format", "accuracy",
    "total" [N] tensors ("steps" too when ``config.step_weight`` > 0), the
    texts and the completion lengths."""
    prompts = [encode_prompt(p["question"], tokenizer) for p in problems for _ in range(config.group_size)]
    truths = [p["answer"] for p in problems for _ in range(config.group_size)]
    was_training = model.training
    model.eval()
    completions = generate(model, prompts, config.max_new_tokens, temperature=config.temperature,
                           eos_id=tokenizer.special_tokens[END], generator=generator)
    model.train(was_training)
    texts, finished = zip(*(decode_completion(c, tokenizer) for c in completions))
    terms = None
    if config.step_weight:
        terms = [chain_terms(p["question"]) for p in problems for _ in range(config.group_size)]
    rewards = {k: torch.tensor(v) for k, v in
               score(texts, truths, finished, terms, config.step_weight).items()}
    batch = {**join(prompts, completions, tokenizer.special_tokens["<|pad|>"]), **rewards,
             "lengths": torch.tensor([len(c) for c in completions])}
    device = next(model.parameters()).device
    return {**{k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}, "texts": list(texts)}


# ----------------------------------------------------------------- the loop

def train_grpo(model: torch.nn.Module, tokenizer, problems: list[dict], config: GRPOConfig,
               checkpoint_path: str | Path | None = None, on_step=None,
               reference: torch.nn.Module | None = None) -> list[dict]:
    """Train ``model`` in place with GRPO on ``problems`` ({"question",
    "answer": int}); returns the history, one dict per step:

    reward, format, accuracy (means over the step's N samples), length (mean
    completion tokens), zero_std (share of groups with all-equal rewards),
    group_std (mean within-group std of the total reward), loss, kl,
    clip_fraction, seconds. With ``checkpoint_path``, the full state (weights,
    optimizer, random generators, history) is saved every
    ``checkpoint_every`` steps and a rerun resumes from it.
    ``on_step(step, record)`` is called after each step (e.g. for plots).
    ``reference``: the frozen model of the KL penalty (needed when beta > 0;
    default: a copy of ``model`` as it is now, which a resumed run must pass
    explicitly, since ``model`` has moved on by then).
    """
    if not problems:
        raise ValueError("train_grpo needs at least one problem")
    missing = [k for k in ("question", "answer") if k not in problems[0]]
    if missing:
        raise ValueError(f"problems need the keys 'question' and 'answer'; missing {missing}")
    rng = random.Random(config.seed)
    # The sampler's generator lives where the model does (a CPU generator cannot drive CUDA draws).
    generator = torch.Generator(next(model.parameters()).device).manual_seed(config.seed)
    torch.manual_seed(config.seed)
    resuming = checkpoint_path is not None and Path(checkpoint_path).exists()
    if not config.beta:
        reference = None
    elif reference is None:
        if resuming:
            raise ValueError("resuming a run with beta > 0 needs reference= (the model it started from)")
        reference = copy.deepcopy(model)
    if reference is not None:
        reference.eval().requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                  betas=(0.9, 0.99), weight_decay=0.0)
    history, start = [], 0
    if resuming:
        header = load_training_state(checkpoint_path, model, optimizer)
        history, start = header["history"], header["step"]
        rng.setstate(_tuple_state(header["data"]["rng"]))
        generator.set_state(torch.tensor(header["data"]["generator"], dtype=torch.uint8))
    model.train()
    for step in range(start, config.steps):
        t0 = time.time()
        batch = sample_groups(model, tokenizer, rng.sample(problems, config.prompts_per_step), config,
                              generator)
        advantages, std = group_advantages(batch["total"], config.group_size, config.scale_rewards,
                                           config.std_eps)
        mask = batch["completion_mask"]
        with torch.no_grad():
            ref = completion_log_probs(reference, batch) if reference is not None else None
        stats, old = {"loss": 0.0, "kl": 0.0, "clip_fraction": 0.0}, None
        for _ in range(config.updates_per_batch):
            logp = completion_log_probs(model, batch)
            if old is None:  # before the first update the policy is pi_old: no second forward
                old = logp.detach()
            loss, info = grpo_loss(logp, old, advantages, mask, ref, beta=config.beta,
                                   epsilon=config.epsilon, loss_type=config.loss_type,
                                   max_completion_length=config.max_new_tokens)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            stats = {"loss": float(loss.detach()), **info}
        record = {"step": step + 1, "reward": float(batch["total"].mean()),
                  "format": float(batch["format"].mean()), "accuracy": float(batch["accuracy"].mean()),
                  **({"steps": float(batch["steps"].mean())} if "steps" in batch else {}),
                  "length": float(batch["lengths"].float().mean()),
                  "zero_std": float((std < 1e-6).float().mean()), "group_std": float(std.mean()),
                  **stats, "seconds": round(time.time() - t0, 3)}
        history.append(record)
        if on_step is not None:
            on_step(step + 1, record)
        last = step + 1 == config.steps
        if checkpoint_path is not None and (last or (step + 1) % config.checkpoint_every == 0):
            save_training_state(checkpoint_path, model, optimizer, step=step + 1,
                                train_config=config.to_dict(), history=history,
                                data_state={"rng": rng.getstate(), "generator": generator.get_state().tolist()})
    model.eval()
    return history


def _tuple_state(state):
    """random.Random state from JSON (lists back to tuples)."""
    return tuple(tuple(x) if isinstance(x, list) else x for x in state)



# ----------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate(model, tokenizer, problems: list[dict], temperature: float = 0.0, seed: int = 0,
             max_new_tokens: int = 64, batch_size: int = 200) -> list[dict]:
    """One completion per problem (greedy at ``temperature=0``, else sampled
    with a generator seeded by ``seed``), scored by both rewards.

    Returns one row per problem: question, template, answer, completion,
    format, accuracy (floats in {0, 1})."""
    generator = torch.Generator(next(model.parameters()).device).manual_seed(seed)
    end = tokenizer.special_tokens[END]
    was_training = model.training
    model.eval()
    rows = []
    for i in range(0, len(problems), batch_size):
        chunk = problems[i:i + batch_size]
        prompts = [encode_prompt(p["question"], tokenizer) for p in chunk]
        outs = generate(model, prompts, max_new_tokens, temperature=temperature, eos_id=end,
                        generator=generator)
        texts, finished = zip(*(decode_completion(o, tokenizer) for o in outs))
        scores = score(texts, [p["answer"] for p in chunk], finished)
        for p, text, f, a in zip(chunk, texts, scores["format"], scores["accuracy"]):
            rows.append({"question": p["question"], "template": p.get("template"), "answer": p["answer"],
                         "completion": text, "format": f, "accuracy": a})
    model.train(was_training)
    return rows


def summarize(rows: list[dict]) -> dict[str, float]:
    """Mean format and accuracy of ``evaluate``'s rows, overall and per template."""
    out = {"format": sum(r["format"] for r in rows) / len(rows),
           "accuracy": sum(r["accuracy"] for r in rows) / len(rows)}
    for template in sorted({r["template"] for r in rows if r["template"] is not None}):
        mine = [r for r in rows if r["template"] == template]
        out[f"accuracy/{template}"] = sum(r["accuracy"] for r in mine) / len(mine)
    return out


# ----------------------------------------------------------------- cold start

def cold_start_data(problems: list[dict], tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """SFT rows for the worked traces: (input_ids, labels) [N, T], one problem
    per row, right-padded; labels are IGNORE_INDEX on the prompt and padding,
    so the loss covers exactly what the model must write (trace + ``<|end|>``)."""
    pad = tokenizer.special_tokens["<|pad|>"]
    rows = [(encode_prompt(p["question"], tokenizer), encode_completion(p["trace"], tokenizer))
            for p in problems]
    t = max(len(a) + len(b) for a, b in rows)
    ids = torch.full((len(rows), t), pad, dtype=torch.long)
    labels = torch.full((len(rows), t), IGNORE_INDEX, dtype=torch.long)
    for i, (prompt, completion) in enumerate(rows):
        ids[i, :len(prompt) + len(completion)] = torch.tensor(prompt + completion)
        labels[i, len(prompt):len(prompt) + len(completion)] = torch.tensor(completion)
    return ids, labels


def tag_weighted_loss(tokenizer, tag_weight: float):
    """A ``Trainer`` loss_fn: the SFT loss with each tag token's loss weighted
    ``tag_weight`` times (a weighted mean; 1.0 is the plain SFT loss)."""
    tags = torch.tensor([tokenizer.special_tokens[t] for t in TAGS])

    def loss_fn(model, batch):
        input_ids, labels = batch[:2]
        _, losses = model(input_ids, labels=labels, reduction="none")  # [B, T]; t scores t + 1
        targets = torch.nn.functional.pad(labels, (0, 1), value=IGNORE_INDEX)[:, 1:]
        weights = (targets != IGNORE_INDEX).float()
        weights = torch.where(torch.isin(targets, tags.to(targets.device)), weights * tag_weight, weights)
        return (losses * weights).sum() / weights.sum().clamp(min=1.0)

    return loss_fn


# ----------------------------------------------------------------- pipeline stages

def run_cold_start(recipe, parent: Path, out: Path, work: Path, verbose: bool, device: str) -> dict:
    """Pipeline stage: SFT of the parent on TinyWorld's worked traces
    (``recipe.data[0]``, ``reasoning_train``), loss on the completion only;
    ``options["tag_weight"]`` weighs the tag tokens' loss (default 1).
    ``options["replay"]`` = n mixes n chats of ``recipe.data[1]`` (a random
    sample, seeded) into the traces, and ``options["replay_text"]`` = m mixes
    m documents of ``recipe.data[2]``, and ``options["replay_pairs"]`` = k
    chosen replies of the preference pairs in ``recipe.data[3]`` (with
    ``options["short_refusal"]``, their refusals shortened as the DPO recipe
    trained them), so that a parent which already answers (and refuses) keeps
    doing so (the capstone's assistant)."""
    import json

    from minillm import tinyworld
    from minillm.checkpoint import load_model, save_model
    from minillm.data import encode_documents
    from minillm.dpo import chosen_chats, shorten_refusals
    from minillm.sft import encode_examples, pad_examples
    from minillm.tokenizer import load_book_tokenizer
    from minillm.train import Trainer, one_thread_on_cpu

    tokenizer = load_book_tokenizer()
    model = load_model(parent / "model.safetensors").to(device)
    data = cold_start_data(tinyworld.load(recipe.data[0]), tokenizer)
    rng, special = random.Random(recipe.train_config().seed), tokenizer.special_tokens
    replay = []  # (ids, loss mask) of chats (replies scored) and documents (every token scored)
    if recipe.options.get("replay"):
        replay += encode_examples(rng.sample(tinyworld.load(recipe.data[1]), recipe.options["replay"]),
                                  tokenizer)
    if recipe.options.get("replay_pairs"):
        pairs = rng.sample(tinyworld.load(recipe.data[3]), recipe.options["replay_pairs"])
        if recipe.options.get("short_refusal"):
            pairs = shorten_refusals(pairs)
        replay += encode_examples(chosen_chats(pairs), tokenizer)
    if recipe.options.get("replay_text"):
        documents = rng.sample(tinyworld.load(recipe.data[2]), recipe.options["replay_text"])
        replay += [(ids, [False] + [True] * (len(ids) - 1))  # <|bos|> is never a target
                   for ids in encode_documents([d["text"] for d in documents], tokenizer)]
    if replay:
        rows = pad_examples(replay, special["<|pad|>"])
        width = max(data[0].shape[1], rows["input_ids"].shape[1])
        data = tuple(torch.cat([torch.nn.functional.pad(a, (0, width - a.shape[1]), value=fill),
                                torch.nn.functional.pad(b, (0, width - b.shape[1]), value=fill)])
                     for a, b, fill in ((data[0], rows["input_ids"], special["<|pad|>"]),
                                        (data[1], rows["labels"], IGNORE_INDEX)))
    partial = work / "partial.safetensors"
    trainer = Trainer(model, recipe.train_config(), data, checkpoint_path=partial, progress=verbose,
                      loss_fn=tag_weighted_loss(tokenizer, recipe.options.get("tag_weight", 1.0)))
    if partial.exists():
        trainer.load_checkpoint(partial)
    with one_thread_on_cpu(device):
        history = trainer.fit()
    save_model(model, out / "model.safetensors")
    (out / "history.json").write_text(json.dumps(history))
    return {"final_loss": history[-1]["loss"]}


def run_grpo(recipe, parent: Path, out: Path, work: Path, verbose: bool, device: str) -> dict:
    """Pipeline stage: GRPO of the parent on ``reasoning_train`` with
    ``GRPOConfig(**recipe.options)``; resumes from its checkpoint in ``work``."""
    import json

    from minillm import tinyworld
    from minillm.checkpoint import load_model, save_model
    from minillm.train import one_thread_on_cpu
    from minillm.tokenizer import load_book_tokenizer

    tokenizer = load_book_tokenizer()
    model = load_model(parent / "model.safetensors").to(device)
    config = GRPOConfig(**recipe.options)
    reference = load_model(parent / "model.safetensors").to(device) if config.beta else None

    def report(step, record):
        if verbose:
            print(f"grpo step {step}: reward {record['reward']:.2f} accuracy {record['accuracy']:.2f} "
                  f"zero_std {record['zero_std']:.2f}", flush=True)

    with one_thread_on_cpu(device):
        history = train_grpo(model, tokenizer, tinyworld.load("reasoning_train"), config,
                             checkpoint_path=work / "partial.safetensors", on_step=report,
                             reference=reference)
    save_model(model, out / "model.safetensors")
    (out / "history.json").write_text(json.dumps(history))
    return {"grpo_seconds": round(sum(r["seconds"] for r in history), 1)}
