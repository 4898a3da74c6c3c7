"""Fine-tuning (`core.train --init-from`): a new run from a checkpoint's weights on another corpus, its
vocabulary the union (old ids keep their rows), new rows initialised as core.training.finetune documents,
tied heads and the prosody table handled, resumable like any run; the command's refusals in one line."""

from __future__ import annotations

import math
import signal

import pytest
import torch
from engine_fixtures import train_tiny

from core.corpus import load_corpus
from core.corpus.vocab import SPECIALS, Vocab
from core.errors import PoemError
from core.model import ModelConfig, PoetryLM
from core.runs.checkpoint import load_checkpoint, model_tensors, read_meta
from core.training import finetune
from core.training.settings import FINE_TUNE, TrainConfig
from core.training.trainer import Trainer

V0 = len(SPECIALS)


@pytest.fixture(scope="module")
def fifty_poems(tmp_path_factory):
    """A user corpus of 50 poems (tang300's dev poems and some of train): characters the tiny model's
    tang300-train vocabulary lacks, split 40 / 10 like any user file under 100 poems."""
    tang = load_corpus("tang300")
    poems = (tang.splits["dev"] + tang.splits["train"])[:50]
    path = tmp_path_factory.mktemp("user") / "fifty.txt"
    path.write_text("\n".join(poems) + "\n", encoding="utf-8")
    return path


def _state(model: PoetryLM) -> dict[str, torch.Tensor]:
    return {k.removeprefix("model."): v for k, v in model_tensors(model).items()}


def test_union_vocabulary_keeps_every_old_id_and_adds_in_frequency_order():
    old = Vocab([*SPECIALS, "山", "月", "，", "。"])
    new = Vocab.build(["江月，江水。", "江上，海月。"])  # 江 3, 月 2, ，2, 。2, 上 1, 水 1, 海 1
    union, added = finetune.union_vocab(old, new)
    assert union.itos[: len(old)] == old.itos
    assert added == ["江", "上", "水", "海"]  # the new corpus's frequency order, ties by code point
    assert union.itos[len(old) :] == added


@pytest.mark.parametrize(
    "sizes",
    [
        dict(embed_size=12, hidden_size=16, tie_weights=False),
        dict(embed_size=16, hidden_size=16, tie_weights=True),  # the head reads the embedding matrix
        dict(embed_size=8, hidden_size=16, tie_weights=True, prosody=True, prosody_size=4),  # projected
    ],
)
def test_new_rows_are_the_mean_plus_small_noise_and_old_logits_are_unchanged(sizes):
    old = Vocab([*SPECIALS, *"山月，。水风花"])
    union, added = finetune.union_vocab(old, Vocab.build(["江月，海水。"]))
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=len(old), num_layers=1, **sizes)
    model = PoetryLM(cfg, vocab=old).eval()
    state = _state(model)
    extended = finetune.extend_state(state, cfg, old, union, seed=3)
    assert ("head.weight" in extended) == (not cfg.tie_weights)  # a tied head is stored once
    for name in ("embedding.weight", "head.weight", "head.bias"):
        if name in extended:
            assert torch.equal(extended[name][: len(old)], state[name])  # old rows kept, bit for bit
            assert extended[name].shape[0] == len(union)
    emb, old_rows = extended["embedding.weight"], state["embedding.weight"][V0:]
    new_rows = emb[len(old) :]
    assert torch.allclose(new_rows.mean(0), old_rows.mean(0), atol=0.5 * float(old_rows.std(0).max()))
    deviation = (new_rows - old_rows.mean(0)).abs() / old_rows.std(0)
    assert 0 < float(deviation.max()) < 6 * finetune.NOISE  # noise of NOISE × the std: rows differ, a little
    assert not torch.equal(new_rows[0], new_rows[1])
    rare_tail = state["head.bias"][len(old) - 1 : len(old)]  # 7 characters: the rarest tenth is the last one
    assert torch.allclose(extended["head.bias"][len(old) :], rare_tail.mean().expand(len(added)))
    if cfg.prosody:
        from core.gelv.prosody import prosody_table

        assert torch.equal(extended["prosody.table"][: len(old)], state["prosody.table"])
        assert torch.equal(extended["prosody.table"], torch.from_numpy(prosody_table(union.itos)))
    grown = PoetryLM(ModelConfig(**{**cfg.to_dict(), "vocab_size": len(union)})).eval()
    tied = {"head.weight": extended["embedding.weight"]} if cfg.tie_weights else {}
    grown.load_state_dict({**extended, **tied})
    ids = torch.tensor([[1, 4, 5, 6, 7, 8]])
    with torch.no_grad():
        before, after = model(ids)[0], grown(ids)[0]
    assert torch.allclose(after[..., : len(old)], before, atol=1e-6)  # the old model, on old characters


def test_settings_come_from_the_checkpoint_then_the_schedule_then_flags():
    meta = {
        "model": ModelConfig(vocab_size=100, embed_size=64, hidden_size=128, num_layers=2).to_dict(),
        "train": TrainConfig(
            corpus="quantangshi", forms="regular", embed_size=64, hidden_size=128, num_layers=2
        ).to_dict(),
    }
    cfg = finetune.fine_tune_config(meta, {"corpus": "tang300", "dropout": 0.4, "lr": 5e-4})
    assert (cfg.embed_size, cfg.hidden_size, cfg.num_layers) == (64, 128, 2)
    assert cfg.corpus == "tang300" and cfg.forms is None  # another corpus: its own forms
    assert cfg.dropout == 0.4 and cfg.lr == 5e-4  # a regulariser and the schedule may change
    assert cfg.lr_schedule == FINE_TUNE["lr_schedule"] and cfg.eval_every == FINE_TUNE["eval_every"]
    same = finetune.fine_tune_config(meta, {"hidden_size": 128})  # agreeing with the checkpoint is fine
    assert same.corpus == "quantangshi" and same.forms == "regular"
    with pytest.raises(PoemError, match="--hidden-size 256 contradicts the checkpoint's 128"):
        finetune.fine_tune_config(meta, {"hidden_size": 256})
    with pytest.raises(PoemError, match="--tie-weights true contradicts"):
        finetune.fine_tune_config(meta, {"tie_weights": True})
    preset = finetune.fine_tune_config(meta, {}, {"hidden_size": 256, "optimizer": "sgd"})
    assert preset.hidden_size == 128 and preset.optimizer == "sgd"  # a preset's model is not the run's


@pytest.fixture(scope="module")
def fine_tuned(tiny_checkpoint, fifty_poems, tmp_path_factory):
    """A fine-tune of the tiny tang300 model on the 50-poem file: 3 steps, its events and trainer."""
    events: list[dict] = []
    meta = read_meta(tiny_checkpoint)
    cfg = finetune.fine_tune_config(meta, {"corpus": str(fifty_poems), "max_steps": 3, "batch_size": 8})
    run_dir = tmp_path_factory.mktemp("ft") / "ft"
    trainer = Trainer.init_from(tiny_checkpoint, cfg, run_dir, on_event=events.append)
    source = load_checkpoint(tiny_checkpoint)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    summary = trainer.run()
    return dict(events=events, trainer=trainer, source=source, before=before, summary=summary, run=run_dir)


def test_a_fine_tune_starts_from_the_weights_with_the_union_vocabulary(fine_tuned):
    trainer, source, before = fine_tuned["trainer"], fine_tuned["source"], fine_tuned["before"]
    old = source.vocab
    assert trainer.vocab.itos[: len(old)] == old.itos and len(trainer.vocab) > len(old)
    for name, value in source.model_state.items():
        if name == "embedding.weight" or name.startswith("head."):
            assert torch.equal(before[name][: len(old)], value)
        else:
            assert torch.equal(before[name], value), name
    first = fine_tuned["events"][0]  # the starting point, scored on the new dev split before any step
    assert first["event"] == "eval" and first["step"] == 0 and first["initial"] and first["dev_ppl"] > 1
    last = load_checkpoint(fine_tuned["run"] / "last.safetensors")
    assert last.vocab == trainer.vocab and last.meta["corpus"]["name"].endswith("fifty.txt")
    origin = last.meta["init_from"]
    assert origin["path"] == str(source.path.resolve()) and origin["vocab_size"] == len(old)
    assert origin["new_characters"] == len(trainer.vocab) - len(old)
    assert math.isclose(origin["dev_ppl_before"], first["dev_ppl"])
    steps = [float(s["step"]) for s in last.optimizer_state()["state"].values()]
    assert set(steps) == {3}  # a fresh optimizer: only this run's steps


def test_a_fine_tune_run_resumes_like_any_run(fine_tuned):
    run = fine_tuned["run"]
    summary = train_tiny(run, resume=run / "last.safetensors", max_steps=5)
    assert summary["step"] == 5
    assert load_checkpoint(run / "last.safetensors").meta["init_from"]["vocab_size"] == len(
        fine_tuned["source"].vocab
    )


@pytest.fixture
def train_main(monkeypatch, capsys):
    """`python -m core.train ARGS` in this process: (exit status, stderr). Signal handlers left alone."""
    from core.cli import run
    from core.train import main

    monkeypatch.setattr(signal, "signal", lambda *a: None)

    def call(*args: str) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exit_:
            run(main, list(args))
        return exit_.value.code, capsys.readouterr().err

    return call


def test_the_command_refuses_in_one_line(train_main, tiny_checkpoint, tmp_path):
    code, err = train_main("--init-from", str(tiny_checkpoint), "--resume", str(tiny_checkpoint))
    assert code == 2 and err.count("\n") == 1 and "give one of them" in err
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x80\x04 a pickle")
    code, err = train_main("--init-from", str(bad), "--corpus", "tang300")
    assert code == 2 and err.count("\n") == 1 and "pickle" in err
    code, err = train_main("--init-from", str(tiny_checkpoint), "--hidden-size", "64")
    assert code == 2 and err.count("\n") == 1 and "--hidden-size 64 contradicts the checkpoint's 32" in err
    code, err = train_main("--init-from", str(tmp_path / "missing.safetensors"))
    assert code == 2 and err.count("\n") == 1 and "no such checkpoint" in err


def test_a_fine_tune_is_a_new_run_and_never_adopts_a_folder_holding_one(tiny_run, tiny_checkpoint):
    """Like Trainer.new: a folder that holds another run is refused before anything is written to it."""
    cfg = finetune.fine_tune_config(read_meta(tiny_checkpoint), {}, None)
    before = sorted(p.name for p in tiny_run.iterdir())
    with pytest.raises(PoemError, match="holds another run"):
        Trainer.init_from(tiny_checkpoint, cfg, tiny_run)
    assert sorted(p.name for p in tiny_run.iterdir()) == before
