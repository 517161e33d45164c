"""The chapter 09 build task's check (one reward-model training step) passes right answers
written three ways and catches the usual mistakes, naming each one."""

import pytest
import torch
import torch.nn.functional as F

from minigpt.course import checks
from minigpt.course.checks import reward_build

# ---- right answers written differently --------------------------------------------------------


def reward_step(model, optimizer, pairs, pad_id, *, slip=None):
    """The solution's way: one padded batch of chosen and rejected, one forward pass. ``slip``
    plants one of the mistakes a learner makes (for the wrong answers below)."""
    seqs = [p.prompt + p.chosen for p in pairs] + [p.prompt + p.rejected for p in pairs]
    T = max(len(s) for s in seqs)
    if slip == "left pad":
        idx = torch.tensor([[pad_id] * (T - len(s)) + s for s in seqs])
    else:
        idx = torch.tensor([s + [pad_id] * (T - len(s)) for s in seqs])
    lengths = torch.tensor([len(s) for s in seqs])
    if slip in ("last column", "left pad"):
        lengths = torch.full_like(lengths, T)
    rewards = model(idx, lengths)
    r_chosen, r_rejected = rewards[:len(pairs)], rewards[len(pairs):]
    if slip == "swapped":
        r_chosen, r_rejected = r_rejected, r_chosen
    margin = r_chosen - r_rejected
    per_pair = {"sigmoid": -torch.sigmoid(margin), "1 - sigmoid": 1 - torch.sigmoid(margin)}.get(
        slip, -F.logsigmoid(margin))
    loss = per_pair.sum() if slip == "sum" else per_pair.mean()
    if slip != "no zero_grad":
        optimizer.zero_grad()
    loss.backward()
    if slip == "zero_grad before step":
        optimizer.zero_grad()
    optimizer.step()
    return loss.item()


def reward_step_one_at_a_time(model, optimizer, pairs, pad_id):
    """Right, written differently: no padding, each sequence scored alone; the loss as
    log(sigmoid) (finite at these margins); gradients cleared after the step, a tensor returned."""
    r_chosen = torch.cat([model(torch.tensor([p.prompt + p.chosen])) for p in pairs])
    r_rejected = torch.cat([model(torch.tensor([p.prompt + p.rejected])) for p in pairs])
    loss = -torch.log(torch.sigmoid(r_chosen - r_rejected)).mean()
    loss.backward()
    optimizer.step()
    model.zero_grad()
    return loss.detach()


def reward_step_features(model, optimizer, pairs, pad_id):
    """Right, written differently: chosen and rejected padded apart, the head read by hand off
    the backbone's features (gather), softplus for -logsigmoid."""
    def rewards(seqs):
        idx = torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in seqs], batch_first=True,
                                              padding_value=pad_id)
        last = torch.tensor([len(s) - 1 for s in seqs])
        hidden = model.backbone.features(idx)  # (B, T, C)
        picked = hidden.gather(1, last[:, None, None].expand(-1, 1, hidden.size(-1)))[:, 0]
        return model.head(picked).squeeze(-1)

    optimizer.zero_grad(set_to_none=False)
    margin = rewards([p.prompt + p.chosen for p in pairs]) - rewards([p.prompt + p.rejected
                                                                      for p in pairs])
    loss = F.softplus(-margin).mean()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@pytest.mark.parametrize("right", [reward_step, reward_step_one_at_a_time, reward_step_features])
def test_right_answers_written_differently_pass(right, capsys):
    checks.check_reward_step(right)
    assert "Task 4 (reward_step) passed" in capsys.readouterr().out


def test_stub_is_not_done_yet_with_a_hint():
    def stub(model, optimizer, pairs, pad_id):
        raise NotImplementedError

    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        checks.check_reward_step(stub)


def test_right_answers_agree_far_inside_the_tolerance():
    """The check allows 1e-6 on the losses and 1e-7 on the weights; right answers written
    differently agree with the package's step to 1e-12."""
    want = reward_build._trajectory(reward_build._reference_step)
    for right in (reward_step, reward_step_one_at_a_time, reward_step_features):
        losses, weights = reward_build._trajectory(right)
        assert all(abs(a - b) < 1e-12 for a, b in zip(losses, want[0]))
        assert all(torch.allclose(a, b, rtol=0, atol=1e-12) for a, b in zip(weights, want[1]))


def test_every_slip_moves_the_weights_far_outside_the_tolerance():
    """Every slip the check names moves some weight by more than 0.01 by the second step; the
    batches hold sequences shorter than their batch, so reading the last column is wrong."""
    want = reward_build._trajectory(reward_build._reference_step)
    for slip in reward_build._SLIPS:
        _, weights = reward_build._trajectory(
            lambda *a, s=slip: reward_build.slipped_step(*a, s))
        assert (weights[-1] - want[1][-1]).abs().max() > 0.01, slip
    for pairs in reward_build.reward_build_batches():
        lengths = [len(p.prompt) + len(r) for p in pairs for r in (p.chosen, p.rejected)]
        assert min(lengths) < max(lengths)


# ---- wrong answers ------------------------------------------------------------------------------


def _slipped(slip):
    return lambda *args: reward_step(*args, slip=slip)


WRONG = {
    "reward at the padded last position": (_slipped("last column"), "at the last column"),
    "sign flipped": (_slipped("swapped"), "Chosen and rejected are swapped"),
    "sigmoid for logsigmoid": (_slipped("sigmoid"), "-sigmoid\\(margin\\) without the log"),
    "1 - sigmoid": (_slipped("1 - sigmoid"), "1 - sigmoid\\(margin\\), without the log"),
    "sum for mean": (_slipped("sum"), "summed over the pairs"),
    "zero_grad forgotten": (_slipped("no zero_grad"), "gradients of the first batch"),
    "zero_grad between backward and step": (_slipped("zero_grad before step"), "did not move"),
    "left padding": (_slipped("left pad"), "padded on the left"),
    "no loss returned": (lambda m, o, p, pad: reward_step(m, o, p, pad) and None,
                         "return the batch's loss"),
    "an index past the end": (
        lambda m, o, p, pad: m.backbone.features(torch.tensor([p[0].prompt]))[0, 99], "raised"),
}


@pytest.mark.parametrize("name", WRONG)
def test_mistakes_are_caught_with_their_tip(name):
    wrong, words = WRONG[name]
    with pytest.raises(AssertionError, match=words) as info:
        checks.check_reward_step(wrong)
    assert "Hint:" in str(info.value)
