"""GRPO: advantages, the KL estimator, the loss against trl, batching, the loop."""
import dataclasses
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from minillm import grpo
from minillm.config import ModelConfig
from minillm.generate import generate
from minillm.model import Transformer


# ----------------------------------------------------------------- advantages

def test_advantages_on_hand_made_groups():
    rewards = torch.tensor([2.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])  # a mixed group, an all-equal group
    adv, std = grpo.group_advantages(rewards, 4, eps=0.0)
    mean, s = 1.0, (2.0 / 3.0) ** 0.5  # sample std of (2, 0, 1, 1): sqrt(2 / 3)
    assert torch.allclose(adv[:4], (rewards[:4] - mean) / s)
    assert std[1] == 0 and torch.isnan(adv[4:]).all()  # eps = 0: an all-equal group is 0 / 0
    adv, _ = grpo.group_advantages(rewards, 4)  # eps = 1e-4 (trl's)
    assert torch.equal(adv[4:], torch.zeros(4))  # no signal at all
    assert adv[:4].sum().abs() < 1e-6  # a group's advantages sum to zero
    plain, _ = grpo.group_advantages(rewards, 4, scale=False)
    assert torch.equal(plain, rewards - torch.tensor([1.0] * 8))  # Dr. GRPO: r - mean only
    with pytest.raises(ValueError, match="multiple of group_size=3"):
        grpo.group_advantages(rewards, 3)


def test_advantages_match_trl():
    from trl.trainer.utils import nanstd

    rewards = torch.rand(6 * 8, generator=torch.Generator().manual_seed(0)).round()
    grouped = rewards.view(-1, 8)
    std = nanstd(grouped, dim=1).repeat_interleave(8)
    expected = (rewards - grouped.mean(1).repeat_interleave(8)) / (std + 1e-4)
    assert torch.allclose(grpo.group_advantages(rewards, 8)[0], expected, atol=1e-6)


def test_k3_is_nonnegative_and_unbiased():
    assert torch.all(grpo.k3_kl(torch.randn(100), torch.randn(100)) >= 0)
    assert grpo.k3_kl(torch.tensor([-1.3]), torch.tensor([-1.3])) == 0
    # E over samples of pi of k3 = KL(pi || ref), here for two categoricals
    pi, ref = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.3, 0.3, 0.4])
    exact = (pi * (pi / ref).log()).sum()
    expected_k3 = (pi * grpo.k3_kl(pi.log(), ref.log())).sum()
    assert torch.allclose(expected_k3, exact, atol=1e-6)


# ----------------------------------------------------------------- the loss vs trl

def _trl_loss(logp, old, adv, mask, ref, beta, epsilon, loss_type, max_len):
    """trl's GRPOTrainer._compute_loss on given log-probs (the model call
    replaced by returning them), with one process and no accumulation."""
    from trl import GRPOTrainer

    one = SimpleNamespace(gather=lambda x: x, gather_for_metrics=lambda x: x,
                          reduce=lambda x, reduction: x, num_processes=1)
    fake = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, torch.zeros_like(logp), None),
        aux_loss_enabled=False, top_entropy_quantile=1.0, off_policy_mask_threshold=None,
        importance_sampling_level="token", beta=beta, loss_type=loss_type,
        epsilon_low=epsilon, epsilon_high=epsilon, use_vllm=False,
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1),
        model=SimpleNamespace(training=True), current_gradient_accumulation_steps=1,
        accelerator=one, max_completion_length=max_len, _entropy_bonus_enabled=False,
        _metrics={"train": defaultdict(list)})
    inputs = {"prompt_ids": torch.zeros(len(logp), 1, dtype=torch.long),
              "prompt_mask": torch.ones(len(logp), 1, dtype=torch.long),
              "completion_ids": torch.zeros_like(mask, dtype=torch.long), "completion_mask": mask,
              "advantages": adv, "old_per_token_logps": old, "ref_per_token_logps": ref,
              "num_items_in_batch": mask.sum()}
    return GRPOTrainer._compute_loss(fake, None, inputs)


@pytest.mark.parametrize("loss_type", grpo.LOSS_TYPES)
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_loss_matches_trl(loss_type, beta):
    """Same log-probs, advantages and masks -> the same loss and gradient (trl 1.x)."""
    pytest.importorskip("trl")
    g = torch.Generator().manual_seed(1)
    n, c = 12, 9
    old = -torch.rand(n, c, generator=g) * 3
    logp = (old + 0.3 * torch.randn(n, c, generator=g)).requires_grad_()  # ratios beyond the clip
    ref = old + 0.2 * torch.randn(n, c, generator=g)
    lengths = torch.randint(1, c + 1, (n,), generator=g)
    mask = (torch.arange(c)[None] < lengths[:, None]).long()
    adv = torch.randn(n, generator=g)
    ours, info = grpo.grpo_loss(logp, old, adv, mask, ref, beta=beta, epsilon=0.2, loss_type=loss_type,
                                max_completion_length=c + 3)
    theirs = _trl_loss(logp, old, adv, mask, ref, beta, 0.2, loss_type, c + 3)
    assert info["clip_fraction"] > 0  # the clip really acted
    assert abs(ours.item() - theirs.item()) <= 1e-6
    g1, = torch.autograd.grad(ours, logp)
    g2, = torch.autograd.grad(theirs, logp)
    assert torch.allclose(g1, g2, atol=1e-7)


def test_loss_rejects_bad_input():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="loss_type='ppo' is unknown"):
        grpo.grpo_loss(x, x, torch.zeros(2), x, loss_type="ppo")
    with pytest.raises(ValueError, match="advantages"):
        grpo.grpo_loss(x, x, torch.zeros(3), x)
    with pytest.raises(ValueError, match="needs ref_logp"):
        grpo.grpo_loss(x, x, torch.zeros(2), x, beta=0.1)
    with pytest.raises(ValueError, match="group_size must be an integer >= 2"):
        grpo.GRPOConfig(group_size=1)
    with pytest.raises(ValueError, match="step_weight must be >= 0"):
        grpo.GRPOConfig(step_weight=-1.0)


def test_token_vs_sequence_aggregation():
    """grpo weighs each sequence equally; dapo weighs each token equally."""
    logp = torch.zeros(2, 4)
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1]])
    adv = torch.tensor([1.0, -1.0])  # per-token loss -A: -1 on the short row, +1 on the long one
    seq, _ = grpo.grpo_loss(logp, logp, adv, mask, loss_type="grpo")
    tok, _ = grpo.grpo_loss(logp, logp, adv, mask, loss_type="dapo")
    dr, _ = grpo.grpo_loss(logp, logp, adv, mask, loss_type="dr_grpo", max_completion_length=8)
    assert seq.item() == pytest.approx(0.0) and tok.item() == pytest.approx(3 / 5)
    assert dr.item() == pytest.approx(3 / 16)


# ----------------------------------------------------------------- batching and sampling

def _tiny_model(seed=0):
    torch.manual_seed(seed)
    return Transformer(ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2,
                                   d_ff=64, max_seq_len=64)).eval()


def test_left_padded_generation_equals_unpadded():
    model = _tiny_model()
    prompts = [[5, 6, 7, 8, 9], [3, 4], [10, 11, 12]]
    batched = generate(model, prompts, 6, temperature=0.0)
    alone = [generate(model, p, 6, temperature=0.0) for p in prompts]
    assert batched == alone


def test_completion_log_probs_match_unpadded_scoring():
    model = _tiny_model()
    prompts, completions = [[1, 2, 3, 4], [5, 6]], [[7, 8], [9, 10, 11]]
    batch = grpo.join(prompts, completions, pad_id=0)
    logp = grpo.completion_log_probs(model, batch)
    for i, (p, o) in enumerate(zip(prompts, completions)):
        logits = model(torch.tensor([p + o]))[0].log_softmax(-1)
        alone = torch.stack([logits[len(p) - 1 + t, o[t]] for t in range(len(o))])
        assert torch.allclose(logp[i, :len(o)], alone, atol=1e-5)
        assert torch.all(logp[i, len(o):] == 0)
    assert batch["completion_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]


# ----------------------------------------------------------------- the loop

def _problems():
    return [{"question": f"What is {a} + {b}?", "answer": a + b} for a in range(1, 5) for b in range(1, 4)]


def test_train_grpo_records_dynamics_and_resumes_exactly(tmp_path):
    from minillm.tokenizer import load_book_tokenizer

    tokenizer = load_book_tokenizer()

    def fresh():
        torch.manual_seed(0)
        return Transformer(ModelConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_layers=1, n_heads=2,
                                       n_kv_heads=1, d_ff=64, max_seq_len=64))

    config = grpo.GRPOConfig(steps=3, prompts_per_step=2, group_size=3, max_new_tokens=6, lr=1e-2,
                             checkpoint_every=2)
    straight = fresh()
    history = grpo.train_grpo(straight, tokenizer, _problems(), config)
    assert [r["step"] for r in history] == [1, 2, 3]
    assert {"reward", "format", "accuracy", "length", "zero_std", "group_std", "kl", "loss"} <= set(history[0])
    # An untrained model never writes the format: every group is all zeros, so no gradient.
    assert all(r["zero_std"] == 1.0 and r["loss"] == 0.0 for r in history)

    path = tmp_path / "grpo.safetensors"
    first = fresh()
    grpo.train_grpo(first, tokenizer, _problems(), dataclasses.replace(config, steps=2), checkpoint_path=path)
    resumed = fresh()
    again = grpo.train_grpo(resumed, tokenizer, _problems(), config, checkpoint_path=path)
    assert [r["step"] for r in again] == [1, 2, 3]
    assert again[2]["length"] == history[2]["length"]  # the same samples as the straight run
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_sample_groups_adds_the_process_reward_to_the_total(monkeypatch):
    from minillm.tokenizer import load_book_tokenizer

    tokenizer = load_book_tokenizer()
    traces = ["<think>1 + 1 = 2.</think><answer>2</answer>",   # right
              "<think>1 + 1 = 3.</think><answer>2</answer>"]   # right answer, wrong step
    completions = [grpo.encode_completion(t, tokenizer) for t in traces]
    monkeypatch.setattr(grpo, "generate", lambda *args, **kwargs: completions)
    config = grpo.GRPOConfig(prompts_per_step=1, group_size=2, step_weight=0.5)
    model = Transformer(ModelConfig(vocab_size=tokenizer.vocab_size, d_model=16, n_layers=1, n_heads=2,
                                    n_kv_heads=1, d_ff=32, max_seq_len=64))
    batch = grpo.sample_groups(model, tokenizer, _problems()[:1], config, torch.Generator())
    assert batch["steps"].tolist() == [1.0, 0.0]
    assert batch["total"].tolist() == [2.5, 2.0]


def test_train_grpo_rejects_bad_problems():
    with pytest.raises(ValueError, match="missing \\['answer'\\]"):
        grpo.train_grpo(_tiny_model(), None, [{"question": "q"}], grpo.GRPOConfig())
