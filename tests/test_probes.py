"""minigpt.methods.probes: the recall probe's answers are right by construction, its evaluation is
model-agnostic and repeatable, and it trains with the course's Trainer."""

import matplotlib
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from minigpt.methods import probes
from minigpt.models.gpt import GPT, GPTConfig
from minigpt.models.nplm import NPLM
from minigpt.models.rnn import RNNLM
from minigpt.train.config import TrainConfig
from minigpt.train.trainer import Trainer

matplotlib.use("Agg")


@settings(max_examples=30, deadline=None)
@given(n_symbols=st.integers(2, 30), max_distance=st.integers(1, 40), batch=st.integers(1, 16),
       seed=st.integers(0, 2**16), fixed=st.booleans())
def test_every_sequence_is_correct_by_construction(n_symbols, max_distance, batch, seed, fixed):
    probe = probes.RecallProbe(n_symbols, max_distance)
    gen = torch.Generator().manual_seed(seed)
    distance = (seed % max_distance) + 1 if fixed else None
    x, answer, k = probe.sample(batch, distance, generator=gen)
    assert x.shape == (batch, max_distance + 2) == (batch, probe.seq_len)
    assert answer.shape == k.shape == (batch,)
    assert ((1 <= k) & (k <= max_distance)).all()
    if fixed:
        assert (k == distance).all()
    for row, a, d in zip(x, answer, k):
        T = len(row)
        assert row[-1] == probe.ask and (row[:-1] != probe.ask).all()  # one question, at the end
        assert (row == probe.mark).sum() == 1 and row[T - 2 - d] == probe.mark  # one marker
        assert row[T - 1 - d] == a and 0 <= a < n_symbols  # the value: k steps before "?"
        assert probe.vocab_size == n_symbols + 2 and int(row.max()) < probe.vocab_size


def test_distances_are_drawn_over_the_whole_range_and_repeatably():
    probe = probes.RecallProbe(4, 6)
    _, _, k = probe.sample(2000, generator=torch.Generator().manual_seed(0))
    assert set(k.tolist()) == set(range(1, 7))
    a = probe.sample(5, generator=torch.Generator().manual_seed(3))
    b = probe.sample(5, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    per_row = probe.sample(3, torch.tensor([1, 3, 6]))[2]
    assert per_row.tolist() == [1, 3, 6]


def test_bad_settings_say_what_to_do():
    with pytest.raises(ValueError, match="n_symbols must be >= 2"):
        probes.RecallProbe(1, 4)
    with pytest.raises(ValueError, match="max_distance must be >= 1"):
        probes.RecallProbe(4, 0)
    with pytest.raises(ValueError, match="larger max_distance"):
        probes.RecallProbe(4, 5).sample(2, distance=6)
    with pytest.raises(ValueError, match="batch_size"):
        probes.RecallProbe(4, 5).sample(0)
    with pytest.raises(ValueError, match="'train' or 'val'"):
        probes.RecallProbe().batches(2)("test")


def test_render_spells_the_sequence():
    probe = probes.RecallProbe(3, 2)
    assert probe.render(torch.tensor([0, 3, 2, 1, 4])) == "a[cb?"
    assert probe.chance == pytest.approx(1 / 3)


class Oracle(nn.Module):
    """Reads the answer off the sequence: the symbol after the marker."""

    def __init__(self, probe):
        super().__init__()
        self.probe = probe
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x, y=None):
        value = x[torch.arange(len(x)), (x == self.probe.mark).int().argmax(1) + 1]
        logits = torch.full((*x.shape, self.probe.vocab_size), -10.0)
        logits[:, -1] = nn.functional.one_hot(value, self.probe.vocab_size) * 20.0 - 10.0
        return logits, None


class Window(nn.Module):
    """Guesses the symbol after the marker if the marker is among the last ``w`` tokens."""

    def __init__(self, probe, w):
        super().__init__()
        self.oracle, self.w, self.probe = Oracle(probe), w, probe

    def forward(self, x, y=None):
        logits, _ = self.oracle(x)
        seen = (x[:, -self.w:] == self.probe.mark).any(1)
        logits[~seen, -1] = 0.0  # a uniform guess... with ties argmax picks symbol 0
        return logits, None


def test_accuracy_by_distance_scores_an_oracle_and_a_fixed_window():
    probe = probes.RecallProbe(8, 10)
    acc = probes.accuracy_by_distance(Oracle(probe), probe, n_per_distance=50)
    assert list(acc) == list(range(1, 11)) and all(v == 1.0 for v in acc.values())
    # A window of 5 tokens ends with "?": it sees the marker for k <= 3 only.
    acc = probes.accuracy_by_distance(Window(probe, 5), probe, distances=[1, 3, 4, 9],
                                      n_per_distance=400, batch_size=64)
    assert acc[1] == acc[3] == 1.0 and acc[4] < 0.3 and acc[9] < 0.3


def test_the_same_questions_for_every_model_and_mode_restored():
    probe = probes.RecallProbe(5, 6)
    torch.manual_seed(0)
    model = RNNLM(probe.vocab_size, "gru", n_embd=4, n_hidden=8)
    assert model.training
    a = probes.accuracy_by_distance(model, probe, n_per_distance=30, seed=1)
    b = probes.accuracy_by_distance(model, probe, n_per_distance=30, seed=1)
    assert a == b and model.training
    x, answer, _ = probe.sample(7)
    assert probes.predict(model, x).shape == (7,)
    assert probes.answer_loss(model, (x, answer)).dim() == 0


@pytest.mark.parametrize("make", [
    lambda p: RNNLM(p.vocab_size, "lstm", n_embd=8, n_hidden=16),
    lambda p: NPLM(p.vocab_size, context=4, n_embd=4, n_hidden=32),
    lambda p: GPT(GPTConfig(vocab_size=p.vocab_size, block_size=p.seq_len, n_layer=1, n_head=2, n_embd=16)),
], ids=["lstm", "nplm", "gpt"])
@pytest.mark.learned
def test_model_agnostic_training_with_the_trainer(make, learn_seed, figure):
    probe = probes.RecallProbe(4, 2)  # short: every model here can learn it in a few steps
    torch.manual_seed(learn_seed)
    model = make(probe)
    trainer = Trainer(model, probe.batches(32, torch.Generator().manual_seed(learn_seed)),
                      TrainConfig(max_steps=150, lr=1e-2, warmup_steps=10, eval_interval=0,
                                  progress=False, device="cpu", seed=learn_seed),
                      loss_fn=probes.answer_loss)
    trainer.fit()
    acc = probes.accuracy_by_distance(model, probe, n_per_distance=100, seed=learn_seed + 1)
    # Measured over seeds 0-4 and 1-2 threads (scripts/test_margins.py): every run 1.0 for all three
    # models
    # (the NPLM with 16 hidden units, as before, fell to 0.83 with seed 2)
    assert figure("worst_distance_accuracy", min(acc.values())) > 0.9, acc


def test_a_model_with_the_wrong_output_shape_gets_a_clear_error():
    probe = probes.RecallProbe(4, 3)
    x, answer, _ = probe.sample(2)
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        probes.answer_loss(lambda x: (torch.zeros(2, 4),), (x, answer))  # logits (B, V) only


def test_plot_accuracy_draws_one_line_per_model_and_chance():
    ax = probes.plot_accuracy({"a": {1: 1.0, 2: 0.5}, "b": {1: 0.2, 2: 0.1}}, chance=0.25)
    assert len(ax.lines) == 3 and ax.get_ylim()[1] > 1
