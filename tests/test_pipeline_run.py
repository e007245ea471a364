"""Tests of ``python -m minillm.pipeline`` (``pipeline.run``): the stage chain,
its output folder, resuming a killed run, the report card, and bad options.

The orchestration tests run a two-stage micro chain (a 1-layer model) with the
report card's metrics replaced by a cheap stand-in; one test computes the real
metrics of a shipped model."""
import json

import pytest
import torch

from minillm import pipeline, report

MICRO_PRETRAIN = pipeline.Recipe(
    name="test-run-pretrain",
    model=dict(vocab_size=2048, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_seq_len=32),
    train=dict(steps=3, batch_size=4, warmup_steps=1, eval_every=2, checkpoint_every=2),
    block_size=32)
MICRO_SFT = pipeline.Recipe(
    name="test-run-sft", stage="sft", parent="test-run-pretrain", model=None,
    train=dict(steps=4, batch_size=4, warmup_steps=1, eval_every=0, checkpoint_every=2),
    data=("sft_train_wide", "sft_dev"), block_size=32, keep_best=False, options={"eval_every": 2})


def fake_metrics(model, tokenizer):
    """Stands in for ``report.stage_metrics`` (seconds per stage): a number
    that depends on the weights, so a changed model changes the row."""
    total = float(sum(p.detach().double().sum() for p in model.parameters()))
    return {name: total for name in report.METRICS}


@pytest.fixture
def micro(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(pipeline.RECIPES, MICRO_PRETRAIN.name, MICRO_PRETRAIN)
    monkeypatch.setitem(pipeline.RECIPES, MICRO_SFT.name, MICRO_SFT)
    monkeypatch.setattr(pipeline, "assistant_chain", lambda size="tiny": [MICRO_PRETRAIN, MICRO_SFT])
    monkeypatch.setattr(report, "stage_metrics", fake_metrics)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path / "run"
    torch.set_num_threads(threads)


def test_stages_must_be_a_prefix_of_the_chain():
    chain = pipeline.assistant_chain()
    assert [r.stage for r in chain] == ["pretrain", "sft", "dpo", "cold_start", "grpo"]
    assert pipeline.check_stages("pretrain, sft", chain) == chain[:2]
    assert pipeline.check_stages(None, chain) == chain
    with pytest.raises(ValueError, match="prefix"):
        pipeline.check_stages("sft", chain)
    with pytest.raises(ValueError, match="unknown stage"):
        pipeline.check_stages("pretrain,rlhf", chain)
    for recipe, parent in zip(chain[1:], chain):  # one chain: each stage starts from the one before
        assert recipe.parent == parent.name


def test_the_size_dial_scales_the_pretrained_model_only():
    tiny, small = pipeline.assistant_chain("tiny"), pipeline.assistant_chain("small")
    assert small[0].model_config().d_model > tiny[0].model_config().d_model
    assert small[0].train["steps"] > tiny[0].train["steps"]
    assert [r.parent for r in small[1:]] == [r.name for r in small[:-1]]
    assert all(a.options == b.options for a, b in zip(tiny, small))
    with pytest.raises(ValueError, match="unknown size"):
        pipeline.assistant_chain("huge")


@pytest.mark.parametrize("argv, message", [
    (["--size", "huge"], "invalid choice"),
    (["--stages", "dpo"], "prefix"),
    (["--ship"], "--ship needs recipe names"),
    (["--device", "tpu"], "unknown --device"),
    (["no-such-recipe"], "unknown recipe"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["tinyworld-base", "--threads", "2"], "recipe names build the cache on one thread"),
])
def test_bad_options_get_a_clear_error(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        pipeline.main([*argv, "--out", str(tmp_path / "run")])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_a_run_writes_every_stage_the_report_and_an_hf_export(micro):
    rows = pipeline.run(micro, verbose=False)
    assert [r["stage"] for r in rows] == ["pretrain", "sft"]
    for folder in ("1-pretrain", "2-sft"):
        for name in ("model.safetensors", "history.json", "recipe.json", "evals.json"):
            assert (micro / folder / name).exists(), (folder, name)
    sft = json.loads((micro / "2-sft" / "recipe.json").read_text())
    assert sft["parent"] == "test-run-pretrain" and sft["key"] == MICRO_SFT.key()
    log = [json.loads(line) for line in (micro / "log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in log if r["step"] == "final"] == ["pretrain", "sft"]
    assert any("val_loss" in r for r in log) and any("dev_accuracy" in r for r in log)
    card = (micro / "report.md").read_text()
    assert "| pretrain |" in card and "| sft |" in card and (micro / "report.png").exists()
    assert (micro / "hf" / "config.json").exists()
    with pytest.raises(ValueError, match="--resume"):
        pipeline.run(micro, verbose=False)


def test_a_killed_run_resumes_and_loses_nothing(micro, tmp_path, monkeypatch):
    """Kill the run inside the SFT stage, after its step-2 checkpoint; --resume
    keeps the finished pretraining stage and ends with the same weights as a
    run that was never interrupted."""
    from minillm import train as train_module
    from minillm.checkpoint import load_model

    whole = tmp_path / "whole"
    pipeline.run(whole, verbose=False)
    real_fit = train_module.Trainer.fit

    def dies_in_sft(self, on_step=None):  # the SFT stage is the one with 4 steps
        def stop(trainer, record):
            if trainer.step == 2:
                raise KeyboardInterrupt
        return real_fit(self, on_step=stop if self.config.steps == 4 else on_step)

    monkeypatch.setattr(train_module.Trainer, "fit", dies_in_sft)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(micro, verbose=False)
    monkeypatch.setattr(train_module.Trainer, "fit", real_fit)
    assert (micro / "1-pretrain" / "evals.json").exists() and not (micro / "2-sft").exists()
    assert (micro / "2-sft.work" / "partial.safetensors").exists()
    pretrained = (micro / "1-pretrain" / "model.safetensors").stat().st_mtime_ns
    rows = pipeline.run(micro, resume=True, verbose=False)
    assert (micro / "1-pretrain" / "model.safetensors").stat().st_mtime_ns == pretrained
    assert [r["step"] for r in json.loads((micro / "2-sft" / "history.json").read_text())] == [1, 2, 3, 4]
    a = load_model(whole / "2-sft" / "model.safetensors").state_dict()
    b = load_model(micro / "2-sft" / "model.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    again = pipeline.run(whole, resume=True, verbose=False)  # finished: nothing retrained
    assert [r["heldout_accuracy"] for r in rows] == [r["heldout_accuracy"] for r in again]


def test_a_run_of_other_recipes_is_not_resumed(micro, monkeypatch):
    pipeline.run(micro, stages="pretrain", verbose=False)
    changed = pipeline.Recipe(**{**MICRO_PRETRAIN.__dict__, "train": {**MICRO_PRETRAIN.train, "seed": 1}})
    monkeypatch.setattr(pipeline, "assistant_chain", lambda size="tiny": [changed, MICRO_SFT])
    monkeypatch.setitem(pipeline.RECIPES, changed.name, changed)
    with pytest.raises(ValueError, match="other recipes"):
        pipeline.run(micro, resume=True, verbose=False)


def test_report_card_metrics_of_a_shipped_model():
    """The real metrics: the SFT model answers, refuses nothing, cannot do arithmetic."""
    from minillm import evals, tinyworld, zoo

    model, tokenizer = zoo.load("tinyworld-sft")
    metrics = report.stage_metrics(model, tokenizer)
    assert set(metrics) == set(report.METRICS)
    rows = evals.answer_questions(model, tokenizer, tinyworld.load("sft_eval_heldout"))
    assert metrics["heldout_accuracy"] == evals.accuracy_by(rows)
    assert 0.5 < metrics["heldout_accuracy"] < 1 and metrics["reasoning_format"] == 0.0
    assert 1.0 < metrics["val_perplexity"] < 10.0


def test_shipped_report_card_metrics_are_checksummed(micro, tmp_path, monkeypatch):
    """``--ship`` ships a model's evals.json too; a tampered one is refused."""
    from minillm import cache as cache_module

    monkeypatch.setattr(cache_module, "SHIPPED_DIR", tmp_path / "shipped")
    folder = pipeline.build(MICRO_PRETRAIN)
    pipeline.evaluate_stage(folder)
    shipped = cache_module.ship(folder)
    assert (shipped / "evals.json").exists()
    assert cache_module.shipped_folder(shipped.name) == shipped
    (shipped / "evals.json").write_text("{}")
    with pytest.raises(ValueError, match="does not match its checksum"):
        cache_module.shipped_folder(shipped.name)


def test_training_threads_set_the_stages_threads_and_restore_them():
    import torch

    from minillm.train import one_thread_on_cpu, training_threads

    before = torch.get_num_threads()
    with one_thread_on_cpu("cpu"):
        assert torch.get_num_threads() == 1  # the default: the cache's models
    with training_threads(2), one_thread_on_cpu("cpu"):
        assert torch.get_num_threads() == 2
    with one_thread_on_cpu("cpu"):
        assert torch.get_num_threads() == 1  # the block ended: back to one
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="positive integer"):
        with training_threads(0):
            pass
