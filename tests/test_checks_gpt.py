"""The chapter 06 exercise checks pass right answers and catch the usual mistakes."""

import pytest
import torch

from minigpt.course import checks


def count_params(V, T, L, C):
    return V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C


def apply_temperature(logits, t):
    if t == 0:
        return torch.nn.functional.one_hot(logits.argmax(), logits.numel()).float()
    return torch.softmax(logits / t, dim=-1)


def top_p_keep(probs, p):
    keep, total = torch.zeros_like(probs, dtype=torch.bool), 0.0
    for i in probs.argsort(descending=True).tolist():
        if total >= p:
            break
        keep[i], total = True, total + probs[i].item()
    return keep


def stub(*_args):
    raise NotImplementedError


def test_right_answers_pass(capsys):
    checks.check_count_params(count_params)
    checks.check_apply_temperature(apply_temperature)
    checks.check_top_p_keep(top_p_keep)
    assert capsys.readouterr().out.count("passed") == 3


@pytest.mark.parametrize("check", [checks.check_count_params, checks.check_apply_temperature,
                                   checks.check_top_p_keep])
def test_stubs_are_not_done_yet_with_a_hint(check):
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        check(stub)


def test_counting_the_tied_head_twice_is_explained():
    with pytest.raises(AssertionError, match="weight tying"):
        checks.check_count_params(lambda V, T, L, C: count_params(V, T, L, C) + V * C)


def test_forgetting_biases_fails():
    with pytest.raises(AssertionError, match="count_params"):
        checks.check_count_params(lambda V, T, L, C: V * C + T * C + L * 12 * C * C)


def test_temperature_zero_must_be_greedy():
    def divides(logits, t):
        return torch.softmax(logits / max(t, 1e-9), dim=-1)[..., :2]  # wrong shape too

    with pytest.raises(AssertionError, match="apply_temperature"):
        checks.check_apply_temperature(divides)
    with pytest.raises(AssertionError, match="one-hot"):
        checks.check_apply_temperature(lambda logits, t: torch.softmax(logits * t, dim=-1))


def test_dropping_the_token_that_crosses_top_p_is_explained():
    def strict(probs, p):  # keeps only tokens whose running total stays within p
        keep, total = torch.zeros_like(probs, dtype=torch.bool), 0.0
        for i in probs.argsort(descending=True).tolist():
            total += probs[i].item()
            if total > p + 1e-9:
                break
            keep[i] = True
        return keep

    with pytest.raises(AssertionError, match="One token short"):
        checks.check_top_p_keep(strict)
