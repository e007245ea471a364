"""minillm.hf.export: a finished chat model as a folder HF transformers loads and chats with.

Checked with transformers 5.24.0 (torch 2.13, CPU): the chat template's ids are
encode_chat's, HF's greedy generate gives minillm's greedy tokens and stops at
<|end|>, and the logits agree to 1e-5 or better (bit for bit here).
"""
import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from minillm import hf  # noqa: E402
from minillm.chat import encode_chat  # noqa: E402
from minillm.config import ModelConfig  # noqa: E402
from minillm.generate import greedy  # noqa: E402
from minillm.model import Transformer  # noqa: E402
from minillm.tokenizer import load_book_tokenizer  # noqa: E402

TOKENIZER = load_book_tokenizer()
END = TOKENIZER.special_tokens["<|end|>"]
SYSTEM = {"role": "system", "content": "You answer questions about the people of TinyWorld."}
CHATS = [
    [{"role": "user", "content": "What is 2 + 9 + 4?"}],
    [SYSTEM, {"role": "user", "content": "Where was Kedal Nard born?"}],
    [SYSTEM, {"role": "user", "content": "Where was Kedal Nard born?"},
     {"role": "assistant", "content": "Kedal Nard was born in Gaidiwyn."},
     {"role": "user", "content": "Ünïcode, 中文 and  spaces?"}],
]


def random_model(family: str) -> Transformer:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=TOKENIZER.vocab_size, d_model=64, n_layers=2, n_heads=4,
                         n_kv_heads=2, d_ff=96, max_seq_len=128, qkv_bias=family == "qwen2")
    model = Transformer(config)
    with torch.no_grad():  # biases are zero at init; make them count
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


def load_hf(folder, family="llama"):
    """transformers 5's AutoTokenizer loads a qwen2 folder as Qwen2Tokenizer,
    which replaces tokenizer.json's pre-split regex with Qwen's: load it directly."""
    tokenizer = transformers.AutoTokenizer
    if family == "qwen2":
        tokenizer = transformers.PreTrainedTokenizerFast
    return (transformers.AutoModelForCausalLM.from_pretrained(folder).eval(),
            tokenizer.from_pretrained(folder))


def hf_greedy(hf_model, ids: list[int], max_new_tokens: int) -> list[int]:
    out = hf_model.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens)
    return out[0, len(ids):].tolist()


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_export_chat_template_logits_and_greedy_match(family, tmp_path):
    ours = random_model(family)
    hf_model, hf_tokenizer = load_hf(hf.export(ours, TOKENIZER, tmp_path), family)
    assert type(hf_model).__name__ == hf.ARCHITECTURES[family]
    assert hf_tokenizer.eos_token == "<|end|>" and hf_tokenizer.eos_token_id == END
    generation = hf_model.generation_config
    assert generation.eos_token_id == END and not generation.do_sample
    assert hf_tokenizer.pad_token == "<|pad|>" and hf_tokenizer.bos_token == "<|bos|>"
    for messages in CHATS:
        ids = encode_chat(messages, TOKENIZER, add_generation_prompt=True)[0]
        hf_ids = hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                  return_dict=False)
        assert hf_ids == ids
        with torch.no_grad():
            diff = (ours(torch.tensor([ids])) - hf_model(torch.tensor([ids])).logits).abs().max()
        assert diff <= 1e-5
        assert hf_greedy(hf_model, ids, 20) == greedy(ours, ids, 20, eos_id=END)


def test_generate_stops_at_end_like_minillm(tmp_path):
    """A trained chat model (the shipped tinyworld-sft) ends its replies with
    <|end|>: HF's generate, with only the exported generation config, stops there."""
    from minillm import zoo

    ours, _ = zoo.load("tinyworld-sft")
    hf_model, _ = load_hf(hf.export(ours, TOKENIZER, tmp_path))
    for messages in CHATS[1:]:
        ids = encode_chat(messages, TOKENIZER, add_generation_prompt=True)[0]
        theirs = hf_model.generate(torch.tensor([ids]))[0, len(ids):].tolist()  # no arguments
        mine = greedy(ours, ids, 128 - len(ids), eos_id=END)
        assert theirs == mine and theirs[-1] == END and len(theirs) < 128 - len(ids)


def test_exported_folder_loads_back_equal(tmp_path):
    ours = random_model("llama")
    folder = hf.export(ours, TOKENIZER, tmp_path)
    assert {p.name for p in folder.iterdir()} >= {
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
        "generation_config.json"}
    config = json.loads((folder / "config.json").read_text())
    assert config["bos_token_id"] == TOKENIZER.special_tokens["<|bos|>"]
    assert config["eos_token_id"] == END
    back = hf.from_pretrained(folder)
    assert back.config == ours.config
    pairs = zip(back.state_dict().values(), ours.state_dict().values())
    assert all(torch.equal(a, b) for a, b in pairs)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder)
    assert all(torch.equal(b, theirs.state_dict()[k]) for k, b in hf.to_hf_state_dict(ours).items())


def test_export_refuses_a_tokenizer_that_does_not_fit(tmp_path):
    small = Transformer(ModelConfig(vocab_size=512, d_model=16, n_heads=2, n_layers=1))
    with pytest.raises(ValueError, match="2048 tokens but the model only 512"):
        hf.export(small, TOKENIZER, tmp_path)
