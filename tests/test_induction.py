"""Induction heads (chapter 06): the repeat task can only be solved by looking back for the
current token, the head scores read the right attention entries, and a two-layer attention-only
model forms an induction head where a one-layer model cannot."""

import pytest
import torch
from torch import nn

from minigpt.methods.induction import InductionRun, RepeatTask, head_scores, track
from minigpt.models.transformer import Transformer, TransformerConfig


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models, one thread


def test_sequences_repeat_a_segment_of_distinct_tokens_with_a_varying_period():
    task = RepeatTask(vocab_size=50, seq_len=40, min_period=3, max_period=12)
    batch = task.sample(64, torch.Generator().manual_seed(0))
    assert batch.x.shape == batch.y.shape == batch.repeated.shape == (64, 40)
    assert batch.targets.shape == (64, 40, 40)
    assert torch.equal(batch.x[:, 1:], batch.y[:, :-1])
    assert batch.period.unique().numel() >= 8  # the period varies: position cannot tell it
    for x, period, repeated in zip(batch.x, batch.period.tolist(), batch.repeated):
        assert 3 <= period <= 12
        assert x[:period].unique().numel() == period  # distinct within a period
        assert torch.equal(x[period:], x[:-period])  # then repeated
        assert repeated.tolist() == [t >= period for t in range(40)]


def test_induction_targets_are_the_tokens_after_earlier_occurrences():
    task = RepeatTask(vocab_size=30, seq_len=24, min_period=2, max_period=8)
    batch = task.sample(32, torch.Generator().manual_seed(1))
    for b in range(32):
        period = int(batch.period[b])
        for t in range(24):
            js = batch.targets[b, t].nonzero().flatten().tolist()
            # every earlier occurrence of x[t] at t - k * period is followed by a target
            assert js == [j for j in range(t - period + 1, 0, -period)][::-1]
            assert all(batch.y[b, t] == batch.x[b, j] for j in js)  # each predicts the answer
            assert bool(js) == bool(batch.repeated[b, t])


def test_sampling_is_reproducible_and_periods_are_checked():
    task = RepeatTask(vocab_size=10, seq_len=20, min_period=2, max_period=5)
    a, b = (task.sample(4, torch.Generator().manual_seed(3)) for _ in range(2))
    assert torch.equal(a.x, b.x) and torch.equal(a.period, b.period)
    for bad in [dict(min_period=1), dict(max_period=11), dict(min_period=6, max_period=5),
                dict(vocab_size=4, max_period=5)]:
        with pytest.raises(ValueError, match="periods"):
            RepeatTask(**{"vocab_size": 10, "seq_len": 20, "min_period": 2, "max_period": 5, **bad})


class _FixedAttention(nn.Module):
    """Layer 0: all weight on the previous token; layer 1, head 0: all weight spread over the
    induction targets; layer 1, head 1: all weight on the first token. Right logits everywhere."""

    def __init__(self, batch, vocab_size):
        super().__init__()
        self.batch, self.vocab_size = batch, vocab_size

    def forward(self, x, return_weights):
        B, T = x.shape
        w = torch.zeros(B, 2, 2, T, T)
        w[:, 0, :, 0, 0] = 1
        w[:, 0, :, torch.arange(1, T), torch.arange(T - 1)] = 1
        targets = self.batch.targets.float()
        spread = targets / targets.sum(-1, keepdim=True).clamp(min=1)
        spread[..., 0] += 1 - spread.sum(-1)  # rows without a target: on the first token
        w[:, 1, 0] = spread
        w[:, 1, 1, :, 0] = 1
        logits = torch.zeros(B, T, self.vocab_size)
        logits[torch.arange(B)[:, None], torch.arange(T), self.batch.y] = 10.0
        return logits, None, w


def test_head_scores_read_the_induction_and_previous_token_entries():
    task = RepeatTask(vocab_size=20, seq_len=24, min_period=3, max_period=8)
    batch = task.sample(16, torch.Generator().manual_seed(1))
    induction, previous, repeat_loss, first_loss = head_scores(_FixedAttention(batch, 20), batch)
    assert induction.shape == previous.shape == (2, 2)
    assert induction[1, 0] == pytest.approx(1.0) and induction[1, 1] < 0.05
    assert previous[0].tolist() == pytest.approx([1.0, 1.0])
    assert (induction[0] < 0.4).all() and (previous[1] < 0.05).all()
    assert repeat_loss < 1e-3 and first_loss < 1e-3


def test_the_run_finds_the_formation_step_and_the_steepest_drop():
    run = InductionRun(step=[0, 100, 200, 300, 400], repeat_loss=[4.2, 4.1, 3.9, 1.2, 1.0],
                       first_loss=[4.2] * 5,
                       induction=[torch.tensor([[0.1, 0.1], [a, 0.1]]) for a in (0.1, 0.1, 0.3, 0.8, 0.9)])
    assert run.steepest_drop() == 300 and run.steepest_rise() == 300
    assert run.formed_at() == 300 and run.formed_at(0.95) is None
    assert run.best_induction() == pytest.approx([0.1, 0.1, 0.3, 0.8, 0.9])
    assert run.in_context_score[-1] == pytest.approx(3.2)  # first period 4.2, repeats 1.0
    early = InductionRun(step=[0, 10, 20], repeat_loss=[4.0, 3.0, 2.9], first_loss=[4.0] * 3,
                         induction=[torch.tensor([[a]]) for a in (0.1, 0.2, 0.6)])
    assert early.steepest_drop() == 10 and early.steepest_rise() == 20


def test_config_options_for_the_induction_model():
    cfg = TransformerConfig(vocab_size=64, block_size=16, n_embd=32, mlp=False, tie_head=False, embed_std=1.0)
    torch.manual_seed(0)
    model = Transformer(cfg)
    assert model.head.weight is not model.embed.tok.weight
    assert all(block.mlp is None for block in model.blocks)
    assert 0.9 < model.embed.tok.weight.std().item() < 1.1
    default = Transformer(TransformerConfig(vocab_size=64, block_size=16, n_embd=32))
    assert default.head.weight is default.embed.tok.weight and default.embed.tok.weight.std() < 0.03
    assert model.num_params() == default.num_params() - 2 * (2 * 32 + 8 * 32 * 32 + 5 * 32) + 64 * 32
    with pytest.raises(ValueError, match="embed_std"):
        TransformerConfig(vocab_size=64, embed_std=0.0)


@pytest.mark.learned
def test_two_layers_form_an_induction_head_and_one_layer_cannot(learn_seed, figure):
    task = RepeatTask(vocab_size=64, seq_len=48, min_period=4, max_period=12)
    _, two = track(task, steps=300, every=50, batch_size=64, seed=learn_seed, held_out=128)
    _, one = track(task, steps=300, every=50, batch_size=64, seed=learn_seed, held_out=128, n_layer=1)
    # Seeds 0-4, 1 thread: two layers 0.896-0.924 and 0.098-0.254 nats (formed at step 150-200);
    # one layer 0.252-0.309 (short periods put that much on the targets by recency) and 2.46-2.72
    assert figure("two_layers_best_induction", two.best_induction()[-1]) > 0.7
    assert figure("two_layers_repeat_loss", two.repeat_loss[-1]) < 1.0
    assert figure("one_layer_best_induction", one.best_induction()[-1]) < 0.5
    assert figure("one_layer_repeat_loss", one.repeat_loss[-1]) > 2.0
