"""The chapter 03 exercise checks: they accept right answers written in different ways and reject
the wrong answers a learner would plausibly write, naming the mistake."""

import math

import pytest
import torch
import torch.nn.functional as F

from minigpt.course import checks
from minigpt.course.checks import rnn as rnn_checks


def stub(*args):
    raise NotImplementedError


def test_checks_are_exported():
    assert set(rnn_checks.__all__) == {"check_rnn_step", "check_lstm_step", "check_clip_grad_norm"}
    assert all(hasattr(checks, name) for name in rnn_checks.__all__)


# --- Task 1: RNN step --------------------------------------------------------------------------

def rnn_step(x, h, W_xh, W_hh, b):  # the solution's form
    return torch.tanh(x @ W_xh + h @ W_hh + b)


def rnn_step_concat(x, h, W_xh, W_hh, b):  # one matmul on [x, h], in float64
    xh = torch.cat([x, h], dim=1).double()
    return torch.tanh(xh @ torch.cat([W_xh, W_hh], dim=0).double() + b.double())


def rnn_step_linear(x, h, W_xh, W_hh, b):  # torch's layout: F.linear with transposed weights
    return (F.linear(x, W_xh.T, b) + torch.einsum("bh,hk->bk", h, W_hh)).tanh()


@pytest.mark.parametrize("right", [rnn_step, rnn_step_concat, rnn_step_linear])
def test_rnn_step_check_accepts_right_answers(right, capsys):
    checks.check_rnn_step(right)
    assert "\u2713 Task 1 (RNN step) passed" in capsys.readouterr().out


def _state_like_x(x, h, W_xh, W_hh, b):
    out = torch.zeros_like(x)  # the next state has h's shape (B, H), not x's (B, I)
    out += x @ W_xh + h @ W_hh + b
    return torch.tanh(out)


RNN_WRONG = {
    "tanh is missing": lambda x, h, Wx, Wh, b: x @ Wx + h @ Wh + b,
    "before adding the bias": lambda x, h, Wx, Wh, b: torch.tanh(x @ Wx + h @ Wh) + b,
    "bias b is missing": lambda x, h, Wx, Wh, b: torch.tanh(x @ Wx + h @ Wh),
    "W_xh and W_hh are swapped": lambda x, h, Wx, Wh, b: torch.tanh(x @ Wh + h @ Wx + b),
    "W_hh is transposed": lambda x, h, Wx, Wh, b: torch.tanh(x @ Wx + h @ Wh.T + b),
    "Both weights are transposed": lambda x, h, Wx, Wh, b: torch.tanh(x @ Wx.T + h @ Wh.T + b),
    "used sigmoid": lambda x, h, Wx, Wh, b: torch.sigmoid(x @ Wx + h @ Wh + b),
    "old state h is left out": lambda x, h, Wx, Wh, b: torch.tanh(x @ Wx + b),
    # right while I == H; on the (4, 3) -> 5 case a shape error, reported with the shapes
    r"raised RuntimeError.*W_xh \(3, 5\)": _state_like_x,
    r"returned \(3, 2\) that differs from the expected \(3, 4\)":
        lambda x, h, Wx, Wh, b: torch.tanh(x @ Wx + h @ Wh + b)[:, :2],
}


@pytest.mark.parametrize("message", list(RNN_WRONG))
def test_rnn_step_check_names_mistakes(message):
    with pytest.raises(AssertionError, match=message) as error:
        checks.check_rnn_step(RNN_WRONG[message])
    assert not isinstance(error.value, checks.NotDoneYet)
    assert "Hint:" in str(error.value)


def test_rnn_step_stub_is_not_done_yet():
    with pytest.raises(checks.NotDoneYet, match="not done yet.*Hint:"):
        checks.check_rnn_step(stub)


# --- Task 2: LSTM step -------------------------------------------------------------------------

def lstm_parts(x, h, c, W, U, b, order="ifgo", candidate=torch.tanh):
    parts = dict(zip(order, (x @ W + h @ U + b).chunk(4, dim=1)))
    c_next = torch.sigmoid(parts["f"]) * c + torch.sigmoid(parts["i"]) * candidate(parts["g"])
    return torch.sigmoid(parts["o"]), c_next


def lstm_step(x, h, c, W, U, b):  # the solution's form
    z = x @ W + h @ U + b
    i, f, g, o = z.chunk(4, dim=1)
    c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_next), c_next


def lstm_step_sliced(x, h, c, W, U, b):  # a matmul per gate on column slices; returns a list
    H = h.shape[1]
    gate = [x @ W[:, k * H:(k + 1) * H] + h @ U[:, k * H:(k + 1) * H] + b[k * H:(k + 1) * H]
            for k in range(4)]
    i, f, o = torch.sigmoid(gate[0]), torch.sigmoid(gate[1]), torch.sigmoid(gate[3])
    c_next = f * c + i * torch.tanh(gate[2])
    h_next = o * torch.tanh(c_next)
    return [h_next, c_next]


def lstm_step_torch(x, h, c, W, U, b):  # torch's own cell with the weights copied in
    cell = torch.nn.LSTMCell(W.shape[0], U.shape[0])
    with torch.no_grad():
        cell.weight_ih.copy_(W.T), cell.weight_hh.copy_(U.T)
        cell.bias_ih.copy_(b), cell.bias_hh.zero_()
    return cell(x, (h, c))


def lstm_step_view(x, h, c, W, U, b):  # view (B, 4, H) and unbind
    z = torch.addmm(b, x, W) + h @ U
    i, f, g, o = z.view(z.shape[0], 4, -1).unbind(1)
    c_next = f.sigmoid() * c + i.sigmoid() * g.tanh()
    return o.sigmoid() * c_next.tanh(), c_next


@pytest.mark.parametrize("right", [lstm_step, lstm_step_sliced, lstm_step_torch, lstm_step_view])
def test_lstm_step_check_accepts_right_answers(right, capsys):
    checks.check_lstm_step(right)
    assert "\u2713 Task 2 (LSTM step) passed" in capsys.readouterr().out


def _wrong_order(order):
    def step(*a):
        o, c_next = lstm_parts(*a, order=order)
        return o * torch.tanh(c_next), c_next
    return step


def _sigmoid_candidate(*a):
    o, c_next = lstm_parts(*a, candidate=torch.sigmoid)
    return o * torch.tanh(c_next), c_next


def _no_tanh_on_h(*a):
    o, c_next = lstm_parts(*a)
    return o * c_next, c_next


def _forget_on_new_cell(x, h, c, W, U, b):
    i, f, g, o = (x @ W + h @ U + b).chunk(4, dim=1)
    c_next = torch.sigmoid(f) * (c + torch.sigmoid(i) * torch.tanh(g))
    return torch.sigmoid(o) * torch.tanh(c_next), c_next


def _h_from_old_cell(*a):
    o, c_next = lstm_parts(*a)
    return o * torch.tanh(a[2]), c_next


def _no_gate_sigmoids(x, h, c, W, U, b):
    i, f, g, o = (x @ W + h @ U + b).chunk(4, dim=1)
    c_next = f * c + i * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_next), c_next


def _chunk_on_batch(x, h, c, W, U, b):
    i, f, g, o = (x @ W + h @ U + b).chunk(4)  # dim=0: the batch of 3 splits into 3
    c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_next), c_next


LSTM_WRONG = {
    "order i, f, o, g; torch's order is i, f, g, o": _wrong_order("ifog"),
    "order f, i, g, o; torch's order": _wrong_order("figo"),
    "order g, i, f, o; torch's order": _wrong_order("gifo"),
    "tanh, not sigmoid": _sigmoid_candidate,
    "needs tanh\\(c_next\\), not c_next": _no_tanh_on_h,
    "forget gate multiplies the new content": _forget_on_new_cell,
    "must use the new cell state": _h_from_old_cell,
    "gates i and f need their sigmoid": _no_gate_sigmoids,
    "raised ValueError.*split along dim=1": _chunk_on_batch,
    r"returned \(c_next, h_next\)": lambda *a: lstm_step(*a)[::-1],
    "return the pair": lambda *a: lstm_step(*a)[0],
}


@pytest.mark.parametrize("message", list(LSTM_WRONG))
def test_lstm_step_check_names_mistakes(message):
    with pytest.raises(AssertionError, match=message) as error:
        checks.check_lstm_step(LSTM_WRONG[message])
    assert not isinstance(error.value, checks.NotDoneYet)


def test_lstm_step_stub_is_not_done_yet():
    with pytest.raises(checks.NotDoneYet, match="not done yet.*Hint:"):
        checks.check_lstm_step(stub)


# --- Task 3: gradient clipping -----------------------------------------------------------------

def clip(grads, max_norm):  # the solution's form: new tensors, a 0-d tensor norm
    total = torch.sqrt(sum((g ** 2).sum() for g in grads))
    scale = min(1.0, max_norm / (total.item() + 1e-12))
    return [g * scale for g in grads], total


def clip_in_place(grads, max_norm):  # in place, flattened norm, a float norm
    total = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])).item()
    if total > max_norm:
        for g in grads:
            g.mul_(max_norm / total)
    return grads, total


def clip_loop(grads, max_norm):  # a Python loop over every value; returns a tuple
    total = math.sqrt(sum(v * v for g in grads for v in g.flatten().tolist()))
    factor = max_norm / total if total > max_norm else 1.0
    return tuple(g * factor for g in grads), total


def clip_torch_ops(grads, max_norm):  # norm of the norms, a clamped tensor factor
    total = torch.stack([g.norm() for g in grads]).norm()
    factor = torch.clamp(max_norm / total, max=1.0)
    return [g * factor for g in grads], total


@pytest.mark.parametrize("right", [clip, clip_in_place, clip_loop, clip_torch_ops])
def test_clip_grad_norm_check_accepts_right_answers(right, capsys):
    checks.check_clip_grad_norm(right)
    assert "\u2713 Task 3 (gradient clipping) passed" in capsys.readouterr().out


def _in_place_norm_after(grads, max_norm):
    clip_in_place(grads, max_norm)
    return grads, torch.sqrt(sum((g ** 2).sum() for g in grads))


def _rebinding_loop(grads, max_norm):
    total = clip(grads, max_norm)[1]
    for g in grads:
        g = g * min(1.0, max_norm / total.item())  # the slip under test: rebinds g only
    return grads, total


CLIP_WRONG = {
    "each tensor by its own norm": lambda gs, m: ([g * min(1.0, m / g.norm().item()) for g in gs],
                                                  clip(gs, m)[1]),
    "already below max_norm": lambda gs, m: ([g * m / clip(gs, m)[1] for g in gs], clip(gs, m)[1]),
    "norm after clipping": lambda gs, m: (clip(gs, m)[0], min(clip(gs, m)[1].item(), m)),
    "norm after clipping: return the one measured before": _in_place_norm_after,
    "came back unchanged": _rebinding_loop,
    "added the tensors' norms": lambda gs, m: (clip(gs, m)[0], sum(g.norm() for g in gs)),
    "square root is missing": lambda gs, m: (clip(gs, m)[0], sum((g ** 2).sum() for g in gs)),
    "largest tensor's norm": lambda gs, m: (clip(gs, m)[0], max(g.norm() for g in gs)),
    "clip_grad_value_": lambda gs, m: ([g.clamp(-m, m) for g in gs], clip(gs, m)[1]),
    "upside down": lambda gs, m: ([g * max(1.0, clip(gs, m)[1].item() / m) for g in gs],
                                  clip(gs, m)[1]),
    "should be a number": lambda gs, m: (clip(gs, m)[0], [clip(gs, m)[1]]),
    "list of 2 tensors": lambda gs, m: (torch.cat([g.flatten() for g in clip(gs, m)[0]]),
                                        clip(gs, m)[1]),
    r"return \(clipped_grads, total_norm\)": lambda gs, m: clip(gs, m)[0][0],
}


@pytest.mark.parametrize("message", list(CLIP_WRONG))
def test_clip_grad_norm_check_names_mistakes(message):
    with pytest.raises(AssertionError, match=message) as error:
        checks.check_clip_grad_norm(CLIP_WRONG[message])
    assert not isinstance(error.value, checks.NotDoneYet)


def test_clip_grad_norm_stub_is_not_done_yet():
    with pytest.raises(checks.NotDoneYet, match="not done yet.*Hint:"):
        checks.check_clip_grad_norm(stub)
