"""The model's options beyond the assignment's plain one: the prosody features and head, DropConnect on
W_hh, locked (variational) dropout and embedding dropout; checkpoints of such a model."""

import pytest
import torch

from core.corpus.vocab import BOS, EOS, PAD
from core.errors import CheckpointError
from core.gelv.prosody import class_names, prosody_table
from core.lstm import LSTM
from core.lstm.layer import sequence_dropout
from core.model import PoetryLM
from core.model_config import ModelConfig
from core.runs import checkpoint as ck

POEM = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"


@pytest.fixture(scope="module")
def vocab(tang300):
    return tang300.build_vocab()


def prosody_model(vocab, **overrides) -> PoetryLM:
    cfg = dict(vocab_size=len(vocab), embed_size=16, hidden_size=16, num_layers=2, prosody=True)
    torch.manual_seed(0)
    return PoetryLM(ModelConfig(**{**cfg, "prosody_size": 8, **overrides}), vocab=vocab)


# --- what the prosody features say ------------------------------------------------------------------------


def test_table_knows_tones_groups_and_marks(vocab):
    table = prosody_table(vocab.itos)
    names = class_names()
    row = table[vocab.stoi["楼"]]
    classes = {names[k] for k, v in enumerate(row[6:]) if v}
    assert classes == {"平", "尤"}  # 楼: level tone, rhymes in 十一尤
    assert {names[k] for k, v in enumerate(table[vocab.stoi["白"]][6:]) if v} == {"仄"}  # 入声
    assert table[vocab.stoi["，"], 3] == 1 and table[vocab.stoi["。"], 3] == 1  # line ends
    assert table[BOS, 1] == 1 and table[EOS, 2] == 1 and table[PAD, 2] == 1
    assert table[:, :6].sum(1).tolist() == [1.0] * len(vocab)  # every token has exactly one kind


def test_place_line_and_first_rhyme_of_a_known_poem(vocab):
    model = prosody_model(vocab)
    ids = torch.tensor([[BOS, *vocab.encode(POEM), EOS]])
    counts = {k: v[0].tolist() for k, v in model.prosody.counts(ids).items()}
    assert counts["place"] == [0] + [1, 2, 3, 4, 5, 0] * 4 + [0]
    assert counts["line"] == [0] * 6 + [1] * 6 + [2] * 6 + [3] * 6 + [4, 0]
    # the first rhyme (流, the end of line 2) is known from line 2's mark on, forgotten at <eos>
    rhyme = ["" if r == PAD else vocab.itos[r] for r in counts["rhyme"]]
    assert rhyme == [""] * 12 + ["流"] * 13 + [""]


def test_a_crop_inside_a_poem_knows_nothing_until_the_next_poem(vocab):
    model = prosody_model(vocab)
    ids = torch.tensor([[*vocab.encode(POEM[8:]), EOS, BOS, *vocab.encode("春眠")]])
    counts = {k: v[0].tolist() for k, v in model.prosody.counts(ids).items()}
    cut = len(POEM) - 8
    assert counts["line"][:4] == [-1] * 4  # no line count before the first reset
    assert counts["place"][2] == -1 and counts["place"][3:5] == [0, 1]  # known again after a line end
    assert counts["line"][cut:] == [0, 0, 0, 0] and counts["place"][cut:] == [0, 0, 1, 2]


def test_one_step_at_a_time_equals_the_whole_poem(vocab):
    """The sampler feeds one character at a time: the carry in the state continues every count."""
    model = prosody_model(vocab).eval()
    other = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
    ids = torch.tensor([[BOS, *vocab.encode(POEM)], [BOS, *vocab.encode(other)]])
    with torch.no_grad():
        whole, _ = model(ids)
        state, steps = None, []
        for t in range(ids.shape[1]):
            logits, state = model(ids[:, t : t + 1], state=state)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, 1), whole, rtol=0, atol=1e-5)


def test_padded_rows_carry_their_last_real_step(vocab):
    model = prosody_model(vocab)
    ids = torch.tensor([[BOS, *vocab.encode("白日依山尽，")], [BOS, *vocab.encode("黄河"), *[PAD] * 4]])
    _, _, carry = model.prosody(ids, None, lengths=torch.tensor([7, 3]))
    assert carry[:, :2].tolist() == [[0, 1], [2, 0]]  # (place, line) after "，" and after "黄河"
    assert carry[1, 3] == vocab.stoi["河"]


# --- regularisers ------------------------------------------------------------------------------------------


def run_lstm(impl, weight_drop, locked, lengths):
    torch.manual_seed(0)
    x = torch.randn(4, 7, 5, dtype=torch.float64)
    lstm = LSTM(5, 6, 2, dropout=0.3, impl=impl, locked=locked, weight_drop=weight_drop).double().train()
    xi = x.clone().requires_grad_()
    torch.manual_seed(1)  # the same masks on both sides
    out, (h, _) = lstm(xi, lengths=lengths)
    torch.manual_seed(2)
    (out * torch.randn_like(out)).sum().add((h * torch.randn_like(h)).sum()).backward()
    return {"out": out, "d x": xi.grad, **{f"d {n}": p.grad for n, p in lstm.named_parameters()}}


@pytest.mark.parametrize("locked", [False, True])
@pytest.mark.parametrize("lengths", [None, [7, 3, 5, 1]], ids=["full", "padded"])
def test_weight_drop_gradients_of_the_fused_lstm_equal_plain_autograd(locked, lengths):
    """DropConnect on W_hh (one mask per forward pass) through the fused, compiled BPTT: every gradient
    equals plain autograd's at 1e-10 in float64."""
    lengths = None if lengths is None else torch.tensor(lengths)
    fused, plain = run_lstm("fused", 0.5, locked, lengths), run_lstm("autograd", 0.5, locked, lengths)
    for name, expected in plain.items():
        err = (fused[name] - expected).abs().max().item()
        assert err <= 1e-10 * max(1.0, expected.abs().max().item()), (name, err)


def test_weight_drop_masks_the_recurrent_weights_once_per_pass():
    lstm = LSTM(3, 4, 1, weight_drop=0.5).double().train()
    torch.manual_seed(3)
    w_ih, w_hh, b = lstm.layer_weights(0)
    kept = w_hh != 0
    assert w_ih is lstm.weight_ih_l0 and b is lstm.bias_l0  # only W_hh is dropped
    assert 0.2 < kept.double().mean() < 0.8
    torch.testing.assert_close(w_hh[kept], 2 * lstm.weight_hh_l0[kept])  # inverted: scaled by 1/(1-p)
    assert not torch.equal(lstm.layer_weights(0)[1] != 0, kept)  # a new mask next pass
    lstm.eval()
    assert lstm.layer_weights(0)[1] is lstm.weight_hh_l0


def test_locked_dropout_shares_one_mask_across_the_steps():
    B, T, C = 3, 5, 64
    x = torch.ones(B * T, C)
    locked = sequence_dropout(x, 0.5, None, B, T, locked=True).view(B, T, C)
    assert all(torch.equal(locked[b, t], locked[b, 0]) for b in range(B) for t in range(T))
    assert not torch.equal(locked[0, 0], locked[1, 0])
    steps = sequence_dropout(x, 0.5, None, B, T, locked=False).view(B, T, C)
    assert not torch.equal(steps[0, 0], steps[0, 1])
    # the packed layout (rows reordered) drops the same units as the batch layout
    order = torch.tensor([7, 0, 14, 3, 9, 1, 12])
    torch.manual_seed(5)
    full = sequence_dropout(torch.randn(B * T, C), 0.5, None, B, T, locked=True)
    torch.manual_seed(5)
    part = sequence_dropout(torch.randn(B * T, C)[order], 0.5, order, B, T, locked=True)
    torch.testing.assert_close(part, full[order])


def test_embedding_dropout_drops_whole_characters(vocab):
    model = PoetryLM(ModelConfig(vocab_size=len(vocab), embed_size=8, hidden_size=8, embed_dropout=0.5))
    seen = {}
    model.embedding.register_forward_hook(lambda m, i, o: None)
    ids = torch.tensor([vocab.encode("月月月山山山水水水春春春")])
    torch.manual_seed(0)
    from core.model import _character_dropout

    scale = _character_dropout(ids, len(vocab), 0.5)[0, :, 0]
    for ch, s in zip("月月月山山山水水水春春春", scale.tolist(), strict=True):
        seen.setdefault(ch, set()).add(s)
    assert all(len(v) == 1 for v in seen.values())  # a character is dropped everywhere or nowhere
    assert set().union(*seen.values()) <= {0.0, 2.0}


def test_numpy_backend_refuses_what_it_does_not_implement():
    from core.training.settings import TrainConfig

    problems = TrainConfig.problems({"backend": "numpy", "prosody": True})
    assert "prosody" in problems and "NumPy" in problems["prosody"]


# --- checkpoints of the new model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prosody_run(tmp_path_factory):
    from engine_fixtures import train_tiny

    run = tmp_path_factory.mktemp("runs") / "prosody"
    train_tiny(run, prosody=True, prosody_size=8, weight_drop=0.2, embed_dropout=0.1, locked_dropout=True)
    return run


def test_a_prosody_checkpoint_loads_samples_and_resumes(prosody_run, vocab):
    from engine_fixtures import train_tiny

    from core.generation.sampler import Sampler
    from core.generation.settings import SampleSettings

    ckpt = ck.load_checkpoint(prosody_run / "best.safetensors")
    assert ckpt.model_config.prosody and ckpt.model_config.weight_drop == 0.2
    model = ckpt.build_model()
    torch.testing.assert_close(model.prosody.table, torch.from_numpy(prosody_table(ckpt.vocab.itos)))
    poems = Sampler(model, ckpt.vocab).generate(SampleSettings(start="山", form="5", num=2, seed=1))
    assert all(len(p.text) == 24 for p in poems)
    summary = train_tiny(prosody_run, resume=prosody_run / "last.safetensors", epochs=2)
    assert summary["status"] == "finished" and summary["step"] > ckpt.meta["progress"]["step"]


def test_a_checkpoint_whose_tensors_do_not_fit_its_layout_is_refused(prosody_run, tmp_path):
    """A prosody checkpoint read as the plain layout (an older poemtui knows no prosody tensors), and a plain
    checkpoint claiming prosody: one line each, naming the tensor."""
    ckpt = ck.load_checkpoint(prosody_run / "best.safetensors")
    as_plain = {**ckpt.meta, "model": {**ckpt.meta["model"], "prosody": False}}
    with pytest.raises(CheckpointError, match=r"lstm.weight_ih_l0 has shape|unexpected weights prosody"):
        ck.save_checkpoint(tmp_path / "a.safetensors", ckpt.tensors, as_plain)
    plain = {k: v for k, v in ckpt.tensors.items() if "prosody" not in k}
    with pytest.raises(CheckpointError, match=r"lstm.weight_ih_l0 has shape|missing weights prosody"):
        ck.save_checkpoint(tmp_path / "b.safetensors", plain, ckpt.meta)
