"""Tests of minillm.pipeline, minillm.cache and minillm.zoo: recipes with parents,
train once, cache, share between processes, probe."""
import os
import subprocess
import sys

import pytest
import torch

from minillm import ROOT, evals, pipeline, zoo
from minillm.cache import cache_root
from minillm.tinyworld import ATTRIBUTES, Person

MICRO = dict(name="test-micro", model=dict(vocab_size=2048, d_model=16, n_layers=1, n_heads=2, d_ff=32,
                                           max_seq_len=32),
             train=dict(steps=3, batch_size=4, warmup_steps=1, eval_every=0, checkpoint_every=2),
             block_size=32)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Every test gets its own empty cache (MINILLM_CACHE) and one thread."""
    monkeypatch.setenv("MINILLM_CACHE", str(tmp_path))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path / "zoo"
    torch.set_num_threads(threads)


def test_cache_dir_follows_the_environment(cache, monkeypatch):
    assert cache_root() / "zoo" == cache
    monkeypatch.delenv("MINILLM_CACHE")
    assert cache_root() == ROOT / ".cache"


def test_first_load_trains_later_loads_read_the_cache(cache, monkeypatch, capfd):
    recipe = zoo.Recipe(**MICRO)
    model, tok = zoo.load(recipe)
    assert not model.training and tok.vocab_size == 2048
    folder = cache / f"test-micro-{recipe.key()}"
    assert sorted(p.name for p in cache.iterdir()) == [folder.name, folder.name + ".lock"]
    assert sorted(p.name for p in folder.iterdir()) == ["history.json", "model.safetensors", "recipe.json"]
    assert [r["step"] for r in zoo.history(recipe)] == [1, 2, 3]

    def no_training(*args, **kwargs):
        raise AssertionError("the cached model was trained again")

    monkeypatch.setitem(pipeline.STAGES, "pretrain", no_training)
    again, _ = zoo.load(recipe)
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    out, err = capfd.readouterr()
    assert out == err == ""  # quiet by default: notebook output must not depend on the cache


def test_training_is_reproducible(cache, tmp_path, monkeypatch):
    recipe = zoo.Recipe(**MICRO)
    first, _ = zoo.load(recipe)
    monkeypatch.setenv("MINILLM_CACHE", str(tmp_path / "elsewhere"))
    second, _ = zoo.load(recipe)
    for (k, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), k


def test_the_weights_with_the_lowest_held_out_loss_are_kept():
    recipe = zoo.Recipe(**{**MICRO, "train": {**MICRO["train"], "steps": 4, "eval_every": 1, "lr": 0.5}})
    scored = [(r["val_loss"], r["step"]) for r in zoo.history(recipe)]
    info = zoo.info(recipe)
    assert len(scored) == 4 and info["chosen_step"] == min(scored)[1]
    model, tok = zoo.load(recipe)
    _, val = zoo.corpus(recipe, tok)
    assert evals.dataset_loss(model, *val) == pytest.approx(info["chosen_val_loss"], rel=1e-5)


def test_a_changed_recipe_gets_a_new_key():
    recipe = zoo.Recipe(**MICRO)
    assert recipe.key() == zoo.Recipe(**MICRO).key()
    assert recipe.key() == zoo.Recipe(**{**MICRO, "minutes": 9.0, "description": "x"}).key()
    changed = zoo.Recipe(**{**MICRO, "train": {**MICRO["train"], "lr": 1e-3}})
    assert changed.key() != recipe.key()
    assert zoo.Recipe(**{**MICRO, "block_size": 16}).key() != recipe.key()


@pytest.mark.slow
def test_concurrent_processes_train_only_once(cache):
    code = (f"from minillm import zoo\nimport torch\ntorch.set_num_threads(1)\n"
            f"print(zoo.path(zoo.Recipe(**{MICRO!r}), verbose=True))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert outputs[0][0] == outputs[1][0]  # the same folder
    trained = sum(err.count("pipeline: training") for _, err in outputs)
    assert trained == 1, outputs


def test_unknown_names_and_corpora_are_rejected():
    with pytest.raises(ValueError, match="unknown recipe 'gpt-5'"):
        zoo.load("gpt-5")
    with pytest.raises(ValueError, match="unknown corpus 'web'"):
        zoo.corpus(zoo.Recipe(**{**MICRO, "corpus": "web"}), None)


def test_the_base_recipe_is_valid():
    recipe = zoo.RECIPES["tinyworld-base"]
    assert recipe.model_config().max_seq_len >= recipe.block_size
    assert recipe.train_config().steps > 0 and len(recipe.key()) == 12


def test_probe_scores_greedy_completions():
    recipe = zoo.Recipe(**MICRO)
    model, tok = zoo.load(recipe)
    people = [Person("Mira Tolven", "sft", "she", "Drakmere", "14 March 1987", "Brix University", "physics",
                     "Brix Labs", "Drakmere")]
    rows = evals.probe(model, tok, people, max_new_tokens=3)
    assert [r["attribute"] for r in rows] == list(ATTRIBUTES)
    assert rows[0]["prompt"] == "Mira Tolven was born in" and rows[0]["gold"] == "Drakmere"
    assert all(isinstance(r["completion"], str) and r["correct"] in (True, False) for r in rows)
    fake = [{"attribute": "a", "correct": True}, {"attribute": "a", "correct": False},
            {"attribute": "b", "correct": True}]
    assert evals.attribute_accuracy(fake) == {"a": 0.5, "b": 1.0, "all": 2 / 3}


def test_a_stage_starts_from_its_parent_and_inherits_its_key(monkeypatch):
    """A later stage's key contains its parent's: change the parent, retrain the child."""
    parent = zoo.Recipe(**MICRO)
    monkeypatch.setitem(pipeline.RECIPES, parent.name, parent)
    child = pipeline.Recipe(name="test-child", stage="sft", parent=parent.name, model=None,
                            train=MICRO["train"], data=())
    key = child.key()
    monkeypatch.setitem(pipeline.RECIPES, parent.name, zoo.Recipe(**{**MICRO, "block_size": 16}))
    assert child.key() != key
    assert [r.name for r in pipeline.lineage(child)] == [parent.name, "test-child"]
    with pytest.raises(ValueError, match="must have a parent"):
        pipeline.Recipe(name="orphan", stage="dpo", model=None, train={})
    with pytest.raises(ValueError, match="unknown stage 'rlhf'"):
        pipeline.Recipe(name="odd", stage="rlhf", parent=parent.name, model=None, train={})
    with pytest.raises(ValueError, match="inherits its model config"):
        child.model_config()


def test_adding_a_release_file_keeps_every_key():
    """Keys hash only the files a recipe reads, so new data retrains nothing."""
    recipe = zoo.Recipe(**MICRO)
    assert pipeline.input_digest(recipe.data) != pipeline.input_digest(("pretrain",))
    assert pipeline.input_digest(recipe.data) == pipeline.input_digest(("pretrain", "pretrain_val"))


def test_an_interrupted_stage_resumes_from_its_work_folder(cache, monkeypatch):
    """Kill the first build after its step-2 checkpoint; the second build continues it
    and ends with the same weights as an uninterrupted build."""
    recipe = zoo.Recipe(**{**MICRO, "train": {**MICRO["train"], "steps": 4, "eval_every": 2}})
    uninterrupted, _ = zoo.load(recipe)
    monkeypatch.setenv("MINILLM_CACHE", str(cache.parent / "second"))
    from minillm import train as train_module

    real_fit = train_module.Trainer.fit

    def dies_after_two_steps(self, on_step=None):
        def stop(trainer, record):
            if trainer.step == 2:
                raise KeyboardInterrupt
        return real_fit(self, on_step=stop)

    monkeypatch.setattr(train_module.Trainer, "fit", dies_after_two_steps)
    with pytest.raises(KeyboardInterrupt):
        zoo.load(recipe)
    monkeypatch.setattr(train_module.Trainer, "fit", real_fit)
    work = cache.parent / "second" / "zoo" / f"test-micro-{recipe.key()}.work"
    assert (work / "partial.safetensors").exists()
    resumed, _ = zoo.load(recipe)
    assert [r["step"] for r in zoo.history(recipe)] == [1, 2, 3, 4] and not work.exists()
    for (k, a), b in zip(uninterrupted.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_a_shipped_model_is_loaded_and_checked(cache, tmp_path, monkeypatch):
    """data/zoo holds the book's trained models: found by name and key, checked by SHA-256."""
    from minillm import cache as cache_module

    monkeypatch.setattr(cache_module, "SHIPPED_DIR", tmp_path / "shipped")
    recipe = zoo.Recipe(**MICRO)
    trained = zoo.path(recipe)
    shipped = cache_module.ship(trained)
    assert shipped.name == trained.name and (tmp_path / "shipped" / "manifest.json").exists()
    import shutil
    shutil.rmtree(trained)  # no cached copy left: the shipped one must be used, not retrained

    def no_training(*args, **kwargs):
        raise AssertionError("the shipped model was trained again")

    monkeypatch.setitem(pipeline.STAGES, "pretrain", no_training)
    assert zoo.path(recipe) == shipped
    (shipped / "history.json").write_text("[]")  # tampered with
    with pytest.raises(ValueError, match="does not match its checksum"):
        zoo.load(recipe)


def test_corpus_extra_records_need_a_mixed_recipe():
    from minillm.pipeline import TINYWORLD_BASE, corpus

    chat = {"messages": [{"role": "user", "content": "Who?"},
                         {"role": "assistant", "content": "I don't know."}]}
    with pytest.raises(ValueError, match="not mixed training"):
        corpus(TINYWORLD_BASE, tokenizer=None, extra_records=[chat])
