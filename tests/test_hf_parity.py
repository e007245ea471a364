"""minillm's Transformer against HF transformers' Llama and Qwen2 (identical weights).

Tolerances reached (transformers 5.23, torch 2.13, CPU): the logits agree bit
for bit (max difference 0) in float32 and in float64, for every config here;
the asserted bounds (1e-6 and 1e-13 relative) leave room for other kernels and
platforms. HF computes
RMSNorm statistics and RoPE angles in float32 even inside a float64 model (a
choice made for bf16 training); the float64 comparison lifts those two
computations to float64 on the HF side so that it compares the architectures
at float64 precision instead of HF's float32 shortcuts. The float32 comparison
uses HF unchanged. (Unpatched, float64 HF differs from exact float64 by ~1e-7.)
"""
import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers.modeling_rope_utils import dynamic_rope_update  # noqa: E402
from transformers.models.llama import modeling_llama  # noqa: E402
from transformers.models.qwen2 import modeling_qwen2  # noqa: E402

from minillm import hf  # noqa: E402
from minillm.checkpoint import CheckpointError  # noqa: E402
from minillm.config import ModelConfig  # noqa: E402
from minillm.generate import greedy  # noqa: E402
from minillm.model import Transformer  # noqa: E402

CONFIGS = {
    "llama-mha": dict(n_kv_heads=4),
    "llama-gqa": dict(n_kv_heads=2),
    "llama-mqa-untied": dict(n_kv_heads=1, tie_embeddings=False),
    "llama-all-biases": dict(attention_bias=True, mlp_bias=True, tie_embeddings=False),
    "llama3-theta": dict(rope_theta=500000.0, norm_eps=1e-6),
    "qwen2": dict(qkv_bias=True),
    "qwen2-untied-mqa": dict(qkv_bias=True, tie_embeddings=False, n_kv_heads=1),
    "rope-linear": dict(rope_scaling="linear", rope_factor=2.0),
    "rope-ntk": dict(rope_scaling="ntk", rope_factor=4.0),  # exported as plain RoPE, larger theta
    "rope-dynamic": dict(rope_scaling="dynamic", rope_factor=2.0, rope_original_max_seq_len=16),
    "rope-yarn": dict(rope_scaling="yarn", rope_factor=4.0, rope_original_max_seq_len=16, max_seq_len=64),
}


def make(name: str, dtype=torch.float32, seed=0) -> Transformer:
    base = dict(vocab_size=128, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=96, max_seq_len=64)
    torch.manual_seed(seed)
    model = Transformer(ModelConfig(**{**base, **CONFIGS[name]}))
    with torch.no_grad():  # biases are zero at init; make them count
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.to(dtype).eval()


def relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


@pytest.fixture
def hf_in_float64(monkeypatch):
    """HF with RMSNorm and RoPE angles in the input's precision (float64 here)."""
    def rms_norm(self, x):
        h = x.to(torch.promote_types(x.dtype, torch.float32))
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * h.to(x.dtype)

    @torch.no_grad()
    @dynamic_rope_update
    def rotary(self, x, position_ids):
        work = torch.promote_types(x.dtype, torch.float32)
        angles = position_ids[..., None].to(work) * self.inv_freq.to(x.device, work)
        angles = torch.cat((angles, angles), dim=-1)
        return (angles.cos() * self.attention_scaling).to(x.dtype), (angles.sin() * self.attention_scaling).to(x.dtype)

    for module, prefix in ((modeling_llama, "Llama"), (modeling_qwen2, "Qwen2")):
        monkeypatch.setattr(getattr(module, prefix + "RMSNorm"), "forward", rms_norm)
        monkeypatch.setattr(getattr(module, prefix + "RotaryEmbedding"), "forward", rotary)


@pytest.mark.parametrize("name", CONFIGS)
def test_logits_match_in_float32(name):
    ours = make(name)
    theirs = hf.to_transformers(ours)
    assert type(theirs).__name__ == ("Qwen2ForCausalLM" if "qwen2" in name else "LlamaForCausalLM")
    ids = torch.randint(0, 128, (2, 40))  # 40 > 16: dynamic NTK and YaRN are active
    with torch.no_grad():
        assert relative_error(ours(ids), theirs(ids).logits) <= 1e-6
        torch.testing.assert_close(ours(ids, labels=ids)[1], theirs(ids, labels=ids).loss, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", CONFIGS)
def test_logits_match_in_float64(name, hf_in_float64):
    ours = make(name, torch.float64)
    theirs = hf.to_transformers(ours)
    ids = torch.randint(0, 128, (2, 40))
    with torch.no_grad():
        assert relative_error(ours(ids), theirs(ids).logits) <= 1e-13


@pytest.mark.parametrize("name", ["llama-gqa", "qwen2"])
def test_padded_batches_match(name, hf_in_float64):
    ours = make(name, torch.float64)
    theirs = hf.to_transformers(ours)
    ids = torch.randint(1, 128, (3, 12))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding
    mask[1, -3:] = 0  # right padding
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        a = ours(ids, attention_mask=mask, position_ids=positions)
        b = theirs(ids, attention_mask=mask, position_ids=positions).logits
    real = mask.bool()
    assert relative_error(a[real], b[real]) <= 1e-13


@pytest.mark.parametrize("name", ["llama-gqa", "qwen2-untied-mqa", "rope-yarn"])
def test_exported_model_generates_identically_in_transformers(name, tmp_path):
    ours = make(name)
    hf.save_pretrained(ours, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == ("qwen2" if "qwen2" in name else "llama")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()  # a local folder only
    prompt = torch.randint(0, 128, (2, 6))
    expected = torch.cat((prompt, greedy(ours, prompt, 24)), dim=1)
    generated = theirs.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=24,
                                min_new_tokens=24, do_sample=False, pad_token_id=0)
    assert torch.equal(generated, expected)
    assert torch.equal(expected[:, prompt.shape[1]:], greedy(ours, prompt, 24, use_cache=False))

    back = hf.from_pretrained(tmp_path)  # and home again
    assert back.config == ours.config
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), ours.state_dict().values()))


def test_import_from_a_transformers_folder_and_model(tmp_path):
    torch.manual_seed(0)
    hf_config = transformers.Qwen2Config(vocab_size=100, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=64, tie_word_embeddings=False)
    theirs = transformers.Qwen2ForCausalLM(hf_config).eval()
    theirs.save_pretrained(tmp_path)
    ids = torch.randint(0, 100, (1, 10))
    for ours in (hf.from_pretrained(tmp_path), hf.from_transformers(theirs)):
        assert ours.config.qkv_bias and not ours.config.attention_bias and ours.config.norm_eps == 1e-6
        with torch.no_grad():
            assert relative_error(ours.eval()(ids), theirs(ids).logits) <= 1e-6


def test_export_errors_say_why():
    relu = Transformer(ModelConfig(vocab_size=10, d_model=16, n_heads=2, n_layers=1, mlp="relu"))
    with pytest.raises(ValueError, match="SwiGLU"):
        hf.save_pretrained(relu, "unused")
    with pytest.raises(ValueError, match="neither"):
        hf.hf_family(ModelConfig(qkv_bias=True, mlp_bias=True))
    with pytest.raises(ValueError, match="'qwen2'"):
        hf.hf_config_dict(ModelConfig(), family="qwen2")
    with pytest.raises(ValueError, match="gpt2"):
        hf.config_from_hf({"model_type": "gpt2"})
    with pytest.raises(ValueError, match="sliding"):
        hf.config_from_hf({**hf.hf_config_dict(ModelConfig(qkv_bias=True)), "use_sliding_window": True})


def test_import_reports_mismatched_weights(tmp_path):
    hf.save_pretrained(make("llama-gqa"), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "intermediate_size": 128}))
    with pytest.raises(CheckpointError, match=r"model.layers.0.mlp.up_proj.weight|mlp.up_proj.weight: checkpoint"):
        hf.from_pretrained(tmp_path)
