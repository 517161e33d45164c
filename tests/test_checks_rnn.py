"""The chapter 03 exercise checks: they accept right answers and name the usual mistakes."""

import pytest
import torch

from minigpt.course import checks
from minigpt.course.checks import rnn as rnn_checks


def stub(*args):
    raise NotImplementedError


def rnn_step(x, h, W_xh, W_hh, b):
    return torch.tanh(x @ W_xh + h @ W_hh + b)


def lstm_parts(x, h, c, W, U, b, order="ifgo"):
    parts = dict(zip(order, (x @ W + h @ U + b).chunk(4, dim=1)))
    c_next = torch.sigmoid(parts["f"]) * c + torch.sigmoid(parts["i"]) * torch.tanh(parts["g"])
    return torch.sigmoid(parts["o"]), c_next


def lstm_step(x, h, c, W, U, b):
    o, c_next = lstm_parts(x, h, c, W, U, b)
    return o * torch.tanh(c_next), c_next


def clip(grads, max_norm):
    total = torch.sqrt(sum((g ** 2).sum() for g in grads))
    scale = min(1.0, max_norm / total.item())
    return [g * scale for g in grads], total


def test_checks_are_exported():
    assert set(rnn_checks.__all__) == {"check_rnn_step", "check_lstm_step", "check_clip_grad_norm"}
    assert all(hasattr(checks, name) for name in rnn_checks.__all__)


def test_rnn_step_check(capsys):
    checks.check_rnn_step(rnn_step)
    assert "passed" in capsys.readouterr().out
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        checks.check_rnn_step(stub)
    with pytest.raises(AssertionError, match="tanh is missing"):
        checks.check_rnn_step(lambda x, h, W_xh, W_hh, b: x @ W_xh + h @ W_hh + b)
    with pytest.raises(AssertionError, match=r"\(4, 5\)"):
        checks.check_rnn_step(lambda x, h, W_xh, W_hh, b: torch.tanh(h @ W_hh.T + b)[:, :2])


def test_lstm_step_check(capsys):
    checks.check_lstm_step(lstm_step)
    assert "passed" in capsys.readouterr().out
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        checks.check_lstm_step(stub)
    with pytest.raises(AssertionError, match="pair"):
        checks.check_lstm_step(lambda *a: lstm_step(*a)[0])
    with pytest.raises(AssertionError, match="c_next is wrong.*order i, f, g, o"):
        def wrong_order(*a):
            o, c_next = lstm_parts(*a, order="figo")
            return o * torch.tanh(c_next), c_next
        checks.check_lstm_step(wrong_order)
    with pytest.raises(AssertionError, match="needs tanh"):
        def no_tanh(*a):
            o, c_next = lstm_parts(*a)
            return o * c_next, c_next
        checks.check_lstm_step(no_tanh)


def test_clip_grad_norm_check(capsys):
    checks.check_clip_grad_norm(clip)
    assert "passed" in capsys.readouterr().out
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        checks.check_clip_grad_norm(stub)
    with pytest.raises(AssertionError, match="each tensor by its own norm"):
        checks.check_clip_grad_norm(
            lambda gs, m: ([g * min(1.0, m / g.norm().item()) for g in gs], clip(gs, m)[1]))
    with pytest.raises(AssertionError, match="already below max_norm"):
        checks.check_clip_grad_norm(
            lambda gs, m: ([g * m / clip(gs, m)[1] for g in gs], clip(gs, m)[1]))
    with pytest.raises(AssertionError, match="before clipping"):
        checks.check_clip_grad_norm(lambda gs, m: (clip(gs, m)[0], m))
    with pytest.raises(AssertionError, match=r"\(clipped_grads, total_norm\)"):
        checks.check_clip_grad_norm(lambda gs, m: clip(gs, m)[0])
