"""Export to and import from the Hugging Face format (Llama and Qwen2).

An HF checkpoint is a folder with ``config.json`` (the architecture) and
``model.safetensors`` (the weights under HF's names). minillm's ``Transformer``
has the same architecture, so converting is two small translations: config
fields (``hf_config_dict`` / ``config_from_hf``) and parameter names
(``NAME_MAP``). Neither needs ``transformers`` installed; only
``to_transformers`` / ``from_transformers`` (in-memory models) do.

Which family? Qwen2 has biases on q, k, v only and none elsewhere; Llama has
either no attention biases or biases on all four projections
(``attention_bias``), and optionally MLP biases. ``hf_family`` picks the one
that can express a config, or says why neither can.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from .checkpoint import CheckpointError, check_state_dict, read_safetensors, write_safetensors
from .config import ModelConfig
from .model import Transformer
from .rope import ntk_theta

ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}

#: (minillm prefix, HF prefix) pairs: a one-to-one renaming; {i} is the layer.
NAME_MAP = [
    ("embed.", "model.embed_tokens."),
    ("blocks.{i}.attn_norm.", "model.layers.{i}.input_layernorm."),
    ("blocks.{i}.attn.", "model.layers.{i}.self_attn."),
    ("blocks.{i}.mlp_norm.", "model.layers.{i}.post_attention_layernorm."),
    ("blocks.{i}.mlp.", "model.layers.{i}.mlp."),
    ("norm.", "model.norm."),
    ("lm_head.", "lm_head."),
]


def _rename(name: str, to_hf: bool) -> str:
    """``blocks.3.attn.q_proj.weight`` <-> ``model.layers.3.self_attn.q_proj.weight``."""
    for ours, theirs in NAME_MAP:
        src, dst = (ours, theirs) if to_hf else (theirs, ours)
        match = re.match(src.replace(".", r"\.").replace("{i}", r"(?P<i>\d+)"), name)
        if match:
            return dst.format(**match.groupdict()) + name[match.end():]
    return name  # unknown: left as is, so the key check reports it as unexpected


def hf_family(config: ModelConfig) -> str:
    """"qwen2" for q/k/v-only biases, "llama" otherwise; ValueError if neither fits."""
    if config.moe is not None:
        raise ValueError("a mixture-of-experts model cannot be exported: HF Llama/Qwen2 are "
                         "dense, and a Mixtral export is not written")
    if config.mlp != "swiglu":
        raise ValueError(f"HF Llama/Qwen2 use a SwiGLU MLP; config.mlp={config.mlp!r} cannot be exported")
    if config.qkv_bias and not config.attention_bias:
        if config.mlp_bias:
            raise ValueError("qkv_bias with mlp_bias fits neither Llama (biases on all four attention "
                             "projections) nor Qwen2 (no MLP bias)")
        return "qwen2"
    return "llama"


def _rope_parameters(config: ModelConfig) -> tuple[dict, int]:
    """HF ``rope_parameters`` and ``max_position_embeddings`` for config's RoPE."""
    theta, kind, s = config.rope_theta, config.rope_scaling, config.rope_factor
    if kind is None:
        return {"rope_type": "default", "rope_theta": theta}, config.max_seq_len
    if kind == "ntk":  # static NTK is plain RoPE with a larger base
        return {"rope_type": "default", "rope_theta": ntk_theta(theta, s, config.head_dim)}, config.max_seq_len
    if kind == "linear":
        return {"rope_type": "linear", "rope_theta": theta, "factor": s}, config.max_seq_len
    if kind == "dynamic":  # HF's dynamic NTK measures lengths against max_position_embeddings
        return {"rope_type": "dynamic", "rope_theta": theta, "factor": s}, config.rope_original_max_seq_len
    return {"rope_type": "yarn", "rope_theta": theta, "factor": s,
            "original_max_position_embeddings": config.rope_original_max_seq_len,
            "beta_fast": config.yarn_beta_fast, "beta_slow": config.yarn_beta_slow}, config.max_seq_len


def hf_config_dict(config: ModelConfig, family: str | None = None, dtype: str = "float32") -> dict:
    """The ``config.json`` of an HF Llama or Qwen2 model equal to ``config``."""
    natural = hf_family(config)
    if family not in (None, natural):
        raise ValueError(f"this config can be exported as {natural!r} only, not as {family!r}")
    family = natural
    rope, max_pos = _rope_parameters(config)
    d = {
        "architectures": [ARCHITECTURES[family]], "model_type": family,
        "vocab_size": config.vocab_size, "hidden_size": config.d_model,
        "intermediate_size": config.d_ff, "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads, "num_key_value_heads": config.n_kv_heads,
        "head_dim": config.head_dim, "hidden_act": "silu", "max_position_embeddings": max_pos,
        "rms_norm_eps": config.norm_eps, "tie_word_embeddings": config.tie_embeddings,
        "initializer_range": config.init_std, "use_cache": True,
        "dtype": dtype, "torch_dtype": dtype,  # transformers 5 and 4.x names
        # transformers 5 reads rope_parameters; 4.x reads rope_theta and rope_scaling.
        "rope_parameters": rope, "rope_theta": rope["rope_theta"],
        "rope_scaling": None if rope["rope_type"] == "default" else {k: v for k, v in rope.items() if k != "rope_theta"},
    }
    if family == "llama":
        d.update(attention_bias=config.attention_bias, mlp_bias=config.mlp_bias)
    else:
        d.update(use_sliding_window=False, sliding_window=None, max_window_layers=config.n_layers)
    return d


def config_from_hf(d: dict) -> ModelConfig:
    """Inverse of ``hf_config_dict`` for Llama and Qwen2 ``config.json`` dicts."""
    family = d.get("model_type")
    if family not in ARCHITECTURES:
        raise ValueError(f"model_type {family!r} is not supported; expected one of {sorted(ARCHITECTURES)}")
    if d.get("hidden_act", "silu") != "silu":
        raise ValueError(f"hidden_act={d['hidden_act']!r}: only silu (SwiGLU) is supported")
    n_heads = d["num_attention_heads"]
    if d.get("head_dim") not in (None, d["hidden_size"] // n_heads):
        raise ValueError(f"head_dim={d['head_dim']} != hidden_size/num_attention_heads is not supported")
    if d.get("use_sliding_window"):
        raise ValueError("use_sliding_window=True (sliding-window attention) is not supported")
    rope = dict(d.get("rope_parameters") or d.get("rope_scaling") or {})  # transformers 5, then 4.x
    theta = rope.get("rope_theta", d.get("rope_theta", 10000.0))
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind not in ("default", "linear", "dynamic", "yarn"):
        raise ValueError(f"rope_type {kind!r} is not supported")
    max_pos = d.get("max_position_embeddings", 2048)
    fields = dict(rope_theta=theta)
    if kind != "default":
        fields.update(rope_scaling=kind, rope_factor=rope["factor"])
    if kind == "yarn":
        fields.update(rope_original_max_seq_len=rope.get("original_max_position_embeddings", max_pos),
                      yarn_beta_fast=rope.get("beta_fast") or 32.0, yarn_beta_slow=rope.get("beta_slow") or 1.0)
    return ModelConfig(
        vocab_size=d["vocab_size"], d_model=d["hidden_size"], n_layers=d["num_hidden_layers"],
        n_heads=n_heads, n_kv_heads=d.get("num_key_value_heads") or n_heads,
        d_ff=d["intermediate_size"], max_seq_len=max_pos, norm_eps=d.get("rms_norm_eps", 1e-6),
        tie_embeddings=d.get("tie_word_embeddings", False), init_std=d.get("initializer_range", 0.02),
        qkv_bias=family == "qwen2", attention_bias=family == "llama" and d.get("attention_bias", False),
        mlp_bias=family == "llama" and d.get("mlp_bias", False), **fields)


def to_hf_state_dict(model: Transformer) -> dict[str, torch.Tensor]:
    """The model's weights under HF names (the tied LM head is stored once, as HF does)."""
    state = model.state_dict()
    if model.config.tie_embeddings:
        state.pop("lm_head.weight")
    return {_rename(name, to_hf=True): tensor for name, tensor in state.items()}


def from_hf_state_dict(config: ModelConfig, hf_state: dict[str, torch.Tensor]) -> Transformer:
    """A ``Transformer(config)`` holding HF-named weights; mismatches raise CheckpointError."""
    ignored = re.compile(r".*rotary_emb\.inv_freq$")  # old checkpoints saved RoPE tables
    state = {_rename(k, to_hf=False): v for k, v in hf_state.items() if not ignored.match(k)}
    if config.tie_embeddings:
        state.pop("lm_head.weight", None)  # HF may store the tied copy; it is the embedding
    model = Transformer(config)
    check_state_dict(model, state)
    model.load_state_dict(state, strict=False)  # strict already checked, minus the tied key
    return model


def save_pretrained(model: Transformer, directory: str | Path, family: str | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` that ``transformers`` loads."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    config = hf_config_dict(model.config, family, dtype)
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_safetensors(to_hf_state_dict(model), directory / "model.safetensors", metadata={"format": "pt"})
    return directory


def save_tokenizer(tokenizer, directory: str | Path, eos_token: str = "<|eos|>") -> Path:
    """Write ``tokenizer.json`` and ``tokenizer_config.json`` (with the book's
    chat template) so that ``transformers.AutoTokenizer.from_pretrained``
    loads the tokenizer, ids and ``apply_chat_template`` included. ``export``
    saves it next to ``save_pretrained``'s files, with ``eos_token="<|end|>"``
    (a chat model's reply ends there), to ship a model HF can chat with."""
    from .chat import HF_CHAT_TEMPLATE

    directory = Path(directory)
    tokenizer.save_hf(directory / "tokenizer.json")
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|bos|>", "eos_token": eos_token,
              "pad_token": "<|pad|>", "chat_template": HF_CHAT_TEMPLATE,
              "model_max_length": 1_000_000, "clean_up_tokenization_spaces": False}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return directory


def export(model: Transformer, tokenizer, directory: str | Path,
           family: str | None = None) -> Path:
    """Write a finished chat model as a folder HF ``transformers`` loads and chats with:

        model = AutoModelForCausalLM.from_pretrained(directory)
        tokenizer = AutoTokenizer.from_pretrained(directory)
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                            return_dict=False)  # transformers 5: a dict otherwise
        reply = model.generate(torch.tensor([ids]))[0, len(ids):]  # greedy; ends with <|end|>

    Files: ``config.json`` and ``model.safetensors`` (``save_pretrained``),
    ``tokenizer.json`` and ``tokenizer_config.json`` (``save_tokenizer``, with
    eos = ``<|end|>``, the token that ends a reply), and ``generation_config.json``
    (greedy, stop at ``<|end|>``, pad with ``<|pad|>``, at most the model's
    context length in all). The chat template gives ``minillm.chat.encode_chat``'s
    ids, and HF's greedy ``generate`` gives ``minillm.generate.greedy``'s tokens
    (tests/test_hf_export.py, transformers 5.24). Two differences: HF reads a
    special token's text typed inside a message as the special token, minillm
    as plain bytes (see ``minillm.chat``); and for a Qwen2-family model
    (``hf_family``), transformers 5's ``AutoTokenizer`` swaps in its own
    ``Qwen2Tokenizer`` (Qwen's pre-split regex and NFC), so load that folder's
    tokenizer with ``transformers.PreTrainedTokenizerFast.from_pretrained``.
    The book's models are Llama-family: ``AutoTokenizer`` is right for them.
    """
    from .chat import BOS, END

    special = tokenizer.special_tokens
    missing = [t for t in (BOS, END, "<|pad|>") if t not in special]
    if missing:
        raise ValueError(f"the tokenizer lacks the special tokens {missing} a chat export needs")
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                         f"{model.config.vocab_size} embeddings: they do not belong together")
    directory = save_pretrained(model, directory, family)
    save_tokenizer(tokenizer, directory, eos_token=END)
    ids = {"bos_token_id": special[BOS], "eos_token_id": special[END],
           "pad_token_id": special["<|pad|>"]}
    config = {**json.loads((directory / "config.json").read_text()), **ids}
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    generation = {**ids, "do_sample": False, "max_length": model.config.max_seq_len}
    (directory / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    return directory


def from_pretrained(directory: str | Path) -> Transformer:
    """Load an HF Llama/Qwen2 folder (``config.json`` + safetensors, possibly sharded).

    The weights land in a float32 model whatever their stored dtype; call
    ``.to(torch.bfloat16)`` afterwards to keep a bf16 checkpoint's size.
    """
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory} has no config.json: not an HF model folder")
    config = config_from_hf(json.loads((directory / "config.json").read_text()))
    index = directory / "model.safetensors.index.json"
    if index.is_file():  # sharded: the index maps each tensor to its file
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(read_safetensors(directory / file))
    return from_hf_state_dict(config, state)


def to_transformers(model: Transformer, family: str | None = None):
    """The same model as an in-memory HF ``...ForCausalLM`` (needs transformers)."""
    import transformers

    d = hf_config_dict(model.config, family)
    for key in ("architectures", "dtype", "torch_dtype", "rope_theta", "rope_scaling"):
        d.pop(key)
    hf_config = transformers.AutoConfig.for_model(d.pop("model_type"), **d)
    hf_model = transformers.AutoModelForCausalLM.from_config(hf_config)
    result = hf_model.load_state_dict(to_hf_state_dict(model), strict=False)
    allowed = {"lm_head.weight"} if model.config.tie_embeddings else set()  # HF ties it itself
    if set(result.missing_keys) - allowed or result.unexpected_keys:
        raise CheckpointError(f"HF model disagrees: missing {result.missing_keys}, "
                              f"unexpected {result.unexpected_keys}")
    return hf_model.to(next(model.parameters()).dtype).eval()


def from_transformers(hf_model) -> Transformer:
    """A minillm ``Transformer`` equal to an in-memory HF Llama/Qwen2 model."""
    config = config_from_hf(hf_model.config.to_dict())
    return from_hf_state_dict(config, hf_model.state_dict()).to(hf_model.dtype)
