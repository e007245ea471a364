"""minillm.moe_study: chapter 9.2's fresh data, compared models, training loop and capacity sweep."""
import torch

from minillm.config import ModelConfig, MoEConfig, active_parameters, count_parameters, parameter_breakdown
from minillm.model import Transformer
from minillm.moe import moe_layers
from minillm.moe_study import ACTIVE_WIDTH, TOTAL_WIDTH, capacity_drops, fresh_biographies, study_configs, train
from minillm.tinyworld import load_people
from minillm.tokenizer import load_book_tokenizer


def test_fresh_biographies_are_new_sentences_about_known_people():
    tokenizer = load_book_tokenizer()
    a = fresh_biographies(tokenizer, per_person=1)
    b = fresh_biographies(tokenizer, per_person=1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])       # deterministic
    other = fresh_biographies(tokenizer, per_person=1, stage="another stage")
    assert not torch.equal(a[0][:4], other[0][:4])                   # its own random stream
    text = tokenizer.decode([t for t in a[0][:8].flatten().tolist() if t >= 0])
    known = [p for p in load_people() if p.known]
    assert any(p.name in text for p in known)


def test_study_configs_match_active_and_total_widths():
    configs = study_configs(vocab_size=128)
    mlp = {name: parameter_breakdown(c)["mlp"] for name, c in configs.items()}
    mlp_active = {name: parameter_breakdown(c, active=True)["mlp"] for name, c in configs.items()}
    d, L = 64, 2
    assert mlp["dense, equal active"] == L * 3 * d * ACTIVE_WIDTH
    assert mlp["dense, equal total"] == L * 3 * d * TOTAL_WIDTH
    for name, config in configs.items():
        if config.moe is None:
            continue
        router = L * d * config.moe.n_experts
        assert mlp[name] == mlp["dense, equal total"] + router
        assert mlp_active[name] == mlp["dense, equal active"] + router
        assert count_parameters(config) > active_parameters(config)


def test_train_is_reproducible_and_logs_held_out_loss():
    torch.manual_seed(0)
    x = torch.randint(0, 128, (1, 16)).repeat(32, 1)   # one block, so the loss must fall
    blocks = (x, x.roll(-1, dims=1))
    config = study_configs(vocab_size=128)["MoE 8x16 top-2"].replace(max_seq_len=16)
    m1, log1 = train(config, blocks, steps=4, batch_size=4, val=blocks, eval_every=2)
    m2, log2 = train(config, blocks, steps=4, batch_size=4, val=blocks, eval_every=2)
    assert log1 == log2 and list(log1["val"]) == [2, 4] and len(log1["train"]) == 4
    assert log1["train"][-1] < log1["train"][0]
    assert torch.count_nonzero(moe_layers(m1)[0].router_bias) > 0    # the bias moved


def test_capacity_drops_counts_overflow_and_restores_the_layers():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=64, d_model=16, n_layers=1, n_heads=2, max_seq_len=8,
                         moe=MoEConfig(n_experts=4, experts_top_k=2, expert_d_ff=8))
    model = Transformer(config)
    x = torch.randint(0, 64, (8, 8))
    blocks = (x, x.roll(-1, dims=1))
    free = capacity_drops(model, blocks, None)
    assert free["dropped"] == 0 and 0.25 <= free["top_share"] <= 1
    half = capacity_drops(model, blocks, 0.5)
    assert half["dropped"] >= 0.5            # the slots hold at most half the assignments
    assert moe_layers(model)[0].config.capacity_factor is None
    assert capacity_drops(model, blocks, 100.0)["loss"] == free["loss"]
