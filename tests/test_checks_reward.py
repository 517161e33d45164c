"""The chapter 09 exercise checks pass right answers and catch the usual mistakes."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minigpt.course import checks


def bt_loss(r_chosen, r_rejected):
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def last_token_rewards(hidden, lengths, head):
    rows = torch.arange(hidden.size(0))
    return head(hidden[rows, lengths - 1]).squeeze(-1)


def pairwise_accuracy(r_chosen, r_rejected):
    return (r_chosen > r_rejected).float().mean().item()


def expected_ceiling(p):
    return 1 - p


def stub(*_args):
    raise NotImplementedError


def test_right_answers_pass(capsys):
    checks.check_bt_loss(bt_loss)
    checks.check_last_token_rewards(last_token_rewards)
    checks.check_pairwise_accuracy(pairwise_accuracy)
    checks.check_expected_ceiling(expected_ceiling)
    assert capsys.readouterr().out.count("passed") == 4


def test_hand_values_the_notebook_quotes():
    assert bt_loss(torch.tensor([0.0]), torch.tensor([0.0])).item() == pytest.approx(math.log(2))
    one = torch.tensor([1.0])
    assert bt_loss(one, 0 * one).item() == pytest.approx(0.3133, abs=1e-4)
    assert bt_loss(-one, 0 * one).item() == pytest.approx(1.3133, abs=1e-4)
    assert bt_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])).item() == \
        pytest.approx(0.5032, abs=1e-4)
    assert torch.log(torch.sigmoid(torch.tensor(-1000.0))).item() == -math.inf  # why logsigmoid


def test_other_right_answers_pass_too():
    """softplus, gather, a tensor or NumPy result, a ceiling by formula from the simulation."""
    checks.check_bt_loss(lambda c, r: F.softplus(r - c).mean())

    def gather_rewards(hidden, lengths, head):
        index = (lengths - 1).view(-1, 1, 1).expand(-1, 1, hidden.size(-1))  # (B, 1, C)
        return head(hidden.gather(1, index).squeeze(1)).view(-1)

    checks.check_last_token_rewards(gather_rewards)
    checks.check_pairwise_accuracy(lambda c, r: (c > r).float().mean())  # a 0-d tensor
    checks.check_pairwise_accuracy(lambda c, r: np.mean(c.numpy() > r.numpy()))
    checks.check_expected_ceiling(lambda p: np.float64(1.0) - p)


ALL = [checks.check_bt_loss, checks.check_last_token_rewards, checks.check_pairwise_accuracy,
       checks.check_expected_ceiling]


@pytest.mark.parametrize("check", ALL, ids=lambda c: c.__name__)
def test_stubs_are_not_done_yet_with_a_hint(check):
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        check(stub)


@pytest.mark.parametrize("wrong, tip", [
    (lambda c, r: -F.logsigmoid(c - r).sum(), "sum over the pairs"),
    (lambda c, r: -F.logsigmoid(r - c).mean(), "swapped"),
    (lambda c, r: F.logsigmoid(c - r).mean(), "MINUS"),
    (lambda c, r: -torch.sigmoid(c - r).log10().mean(), "log10"),
    (lambda c, r: -F.logsigmoid(c - r), "one loss per pair"),
    (lambda c, r: -torch.log(torch.sigmoid(c - r)).mean(), "rounds to 0"),
    (lambda c, r: torch.log(1 + torch.exp(r - c)).mean(), "overflows"),
    (lambda c, r: bt_loss(c, r).item(), "without a gradient"),
    (lambda c, r: -F.logsigmoid(c - r).mean() * 1.01, "expected"),
])
def test_bt_loss_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_bt_loss(wrong)


def _at(position):
    def read(hidden, lengths, head):
        return head(hidden[torch.arange(hidden.size(0)), position(hidden, lengths)]).squeeze(-1)
    return read


@pytest.mark.parametrize("wrong, tip", [
    (lambda h, n, head: head(h[torch.arange(h.size(0)), n - 1]), r"not \(B, 1\)"),
    (_at(lambda h, n: n), "one past the end"),
    (_at(lambda h, n: h.size(1) - 1), "last position, T - 1"),
    (_at(lambda h, n: 0), "first position"),
    (lambda h, n, head: last_token_rewards(h, n, head).detach(), "no gradient"),
    (lambda h, n, head: head(h.mean(dim=1)).squeeze(-1), "expected"),
])
def test_last_token_rewards_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_last_token_rewards(wrong)


@pytest.mark.parametrize("wrong, tip", [
    (lambda c, r: (c >= r).float().mean().item(), "not >="),
    (lambda c, r: 100 * pairwise_accuracy(c, r), "not a percentage"),
    (lambda c, r: (c > r).sum().item(), "divide by the number of pairs"),
    (lambda c, r: (c < r).float().mean().item(), "wrong way round"),
])
def test_pairwise_accuracy_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_pairwise_accuracy(wrong)


@pytest.mark.parametrize("wrong, tip", [
    (lambda p: p, "share of flipped labels"),
    (lambda p: 1.0, "No model reaches 1"),
    (lambda p: 1 - 2 * p, "one pair, not two"),
    (lambda p: 100 * (1 - p), "not a percentage"),
    (lambda p: 1 - p / 2, "simulated"),
])
def test_expected_ceiling_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_expected_ceiling(wrong)
