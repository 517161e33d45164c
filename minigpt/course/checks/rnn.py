"""Checks for exercises/03_rnnlm.ipynb: a vanilla RNN step, an LSTM step, gradient clipping.

Each check runs the learner's function on random inputs and compares it with the package's
hand-written cells (``minigpt.models.rnn.RNNCell``, ``LSTMCell``, themselves tested against torch)
and with ``torch.nn.utils.clip_grad_norm_`` (what ``train.Trainer`` clips with). Where a
wrong answer matches a known slip (a missing tanh, gates in another order, clipping each
tensor on its own), the message names it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import passed as _passed
from minigpt.models.rnn import LSTMCell, RNNCell

__all__ = ["check_clip_grad_norm", "check_lstm_step", "check_rnn_step"]


def _close(got, want: torch.Tensor) -> bool:
    return (isinstance(got, torch.Tensor) and got.shape == want.shape
            and torch.allclose(got.float(), want, atol=1e-5, rtol=1e-4))


def _shape(value) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def check_rnn_step(rnn_step: Callable) -> None:
    """Task: ``rnn_step(x, h, W_xh, W_hh, b) -> h_next``, x (B, I), h (B, H), W_xh (I, H),
    W_hh (H, H), b (H,)."""
    task = "Task 1 (RNN step)"
    hint = "h_next = tanh(x @ W_xh + h @ W_hh + b); x @ W_xh is (B, H)."
    g = torch.Generator().manual_seed(3)
    B, I, H = 4, 3, 5
    x, h = torch.randn(B, I, generator=g), torch.randn(B, H, generator=g)
    W_xh, W_hh = torch.randn(I, H, generator=g) * 0.5, torch.randn(H, H, generator=g) * 0.5
    b = torch.randn(H, generator=g)
    cell = RNNCell(I, H)
    with torch.no_grad():  # the package's cell keeps torch's (out, in) layout: transpose
        cell.weight_ih.copy_(W_xh.T), cell.weight_hh.copy_(W_hh.T)
        cell.bias_ih.copy_(b), cell.bias_hh.zero_()
    want = cell(x, h).detach()
    got = _call(task, hint, rnn_step, x, h, W_xh, W_hh, b)
    if not _close(got, want):
        tip = ""
        if isinstance(got, torch.Tensor) and got.shape == want.shape:
            if torch.allclose(torch.tanh(got), want, atol=1e-5):
                tip = " It looks like the tanh is missing."
            elif (got.abs() > 1).any():
                tip = " Values outside (-1, 1): squash the sum with torch.tanh."
        raise AssertionError(f"{task}: rnn_step returned {_shape(got)} that differs from the "
                             f"expected {tuple(want.shape)} next state.{tip} Hint: {hint}")
    _passed(task, "your step equals minigpt.models.rnn.RNNCell (and so torch.nn.RNN)")


def check_lstm_step(lstm_step: Callable) -> None:
    """Task: ``lstm_step(x, h, c, W, U, b) -> (h_next, c_next)``, W (I, 4H), U (H, 4H),
    b (4H,), gates in torch's order: input, forget, cell candidate, output."""
    task = "Task 2 (LSTM step)"
    hint = ("z = x @ W + h @ U + b, split into i, f, g, o (in that order) with z.chunk(4, dim=1); "
            "c_next = sigmoid(f) * c + sigmoid(i) * tanh(g); h_next = sigmoid(o) * tanh(c_next).")
    g = torch.Generator().manual_seed(4)
    B, I, H = 3, 4, 5
    x, h, c = (torch.randn(B, n, generator=g) for n in (I, H, H))
    W, U = torch.randn(I, 4 * H, generator=g) * 0.5, torch.randn(H, 4 * H, generator=g) * 0.5
    b = torch.randn(4 * H, generator=g)
    cell = LSTMCell(I, H)
    with torch.no_grad():
        cell.weight_ih.copy_(W.T), cell.weight_hh.copy_(U.T)
        cell.bias_ih.copy_(b), cell.bias_hh.zero_()
    want_h, want_c = (t.detach() for t in cell(x, (h, c)))
    got = _call(task, hint, lstm_step, x, h, c, W, U, b)
    if not (isinstance(got, tuple) and len(got) == 2):
        raise AssertionError(f"{task}: return the pair (h_next, c_next), got {type(got).__name__}")
    got_h, got_c = got
    if not _close(got_c, want_c):
        raise AssertionError(f"{task}: c_next is wrong (shape {_shape(got_c)}, expected "
                             f"{tuple(want_c.shape)}). The cell state adds: c_next = f * c + i * g, "
                             "with f and i through sigmoid, g through tanh, and the gates in the "
                             f"order i, f, g, o. Hint: {hint}")
    if not _close(got_h, want_h):
        tip = ""
        if isinstance(got_h, torch.Tensor) and got_h.shape == want_h.shape:
            o = torch.sigmoid((x @ W + h @ U + b).chunk(4, dim=1)[3])
            if torch.allclose(got_h, o * want_c, atol=1e-5):
                tip = " c_next is right; h_next needs tanh(c_next), not c_next."
        raise AssertionError(f"{task}: h_next is wrong.{tip} Hint: {hint}")
    _passed(task, "your step equals minigpt.models.rnn.LSTMCell (and so torch.nn.LSTM)")


def check_clip_grad_norm(clip_grad_norm: Callable) -> None:
    """Task: ``clip_grad_norm(grads, max_norm) -> (clipped_grads, total_norm)``: one global
    norm over all tensors; scale every tensor by ``max_norm / total_norm`` if it is larger."""
    task = "Task 3 (gradient clipping)"
    hint = ("total_norm = sqrt(sum of every element squared, over all tensors); if it exceeds "
            "max_norm, multiply every tensor by max_norm / total_norm; else leave them as they are.")
    g = torch.Generator().manual_seed(5)
    for max_norm, scale in [(1.0, 10.0), (5.0, 0.1), (0.5, 3.0)]:
        grads = [torch.randn(3, 4, generator=g) * scale, torch.randn(7, generator=g) * scale]
        params = [torch.nn.Parameter(torch.zeros_like(t)) for t in grads]
        for p, t in zip(params, grads):
            p.grad = t.clone()
        want_norm = torch.nn.utils.clip_grad_norm_(params, max_norm).item()
        got = _call(task, hint, clip_grad_norm, [t.clone() for t in grads], max_norm)
        if not (isinstance(got, tuple) and len(got) == 2):
            raise AssertionError(f"{task}: return (clipped_grads, total_norm), got {type(got).__name__}")
        clipped, norm = got
        if abs(float(norm) - want_norm) > 1e-4 * max(1.0, want_norm):
            raise AssertionError(f"{task}: total_norm is {float(norm):.4f}, expected {want_norm:.4f}: "
                                 f"the norm of all gradients together, before clipping. Hint: {hint}")
        if len(clipped) != len(grads) or not all(_close(c, p.grad) for c, p in zip(clipped, params)):
            tip = ""
            per_tensor = [t * min(1.0, max_norm / t.norm().item()) for t in grads]
            if len(clipped) == len(grads) and all(_close(c, t) for c, t in zip(clipped, per_tensor)):
                tip = " You clipped each tensor by its own norm: use the one global norm for all."
            elif want_norm <= max_norm:
                tip = " The norm was already below max_norm: return the gradients unchanged."
            raise AssertionError(f"{task}: the clipped gradients differ from torch's "
                                 f"clip_grad_norm_ (max_norm={max_norm}).{tip} Hint: {hint}")
    _passed(task, "your clipping equals torch.nn.utils.clip_grad_norm_, which the Trainer uses")
