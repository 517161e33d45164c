"""Checks for exercises/03_rnnlm.ipynb: a vanilla RNN step, an LSTM step, gradient clipping.

Each check runs the learner's function on random inputs and compares it with the package's
hand-written cells (``minigpt.models.rnn.RNNCell``, ``LSTMCell``, themselves tested against torch)
and with ``torch.nn.utils.clip_grad_norm_`` (what ``train.Trainer`` clips with). Where a
wrong answer matches a known slip (a missing tanh, the bias outside the tanh, swapped or
transposed weights, gates in another order, a sigmoid for the candidate, clipping each tensor
on its own, the norm after clipping), the message names it. The learner's function gets copies
of the inputs, so clipping in place and clipping into new tensors both pass. Comparisons allow
float32 round-off (atol 1e-5, rtol 1e-4); no decision turns on a near-tie.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch

from minigpt.course.checks._base import _number
from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import passed as _passed
from minigpt.models.rnn import LSTMCell, RNNCell

__all__ = ["check_clip_grad_norm", "check_lstm_step", "check_rnn_step"]

_ERRORS = (RuntimeError, ValueError, TypeError, IndexError)  # what a shape slip raises


def _close(got, want: torch.Tensor) -> bool:
    return (isinstance(got, torch.Tensor) and got.shape == want.shape
            and torch.allclose(got.detach().float(), want, atol=1e-5, rtol=1e-4))


def _shape(value) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def _run(task: str, hint: str, shapes: str, fn: Callable, *args):
    """``fn(*copies of args)``; an error raised inside it (a shape mismatch, most often) becomes
    an AssertionError that says so, with the shapes and the hint."""
    args = tuple([a.clone() for a in x] if isinstance(x, list) else
                 x.clone() if isinstance(x, torch.Tensor) else x for x in args)
    try:
        return _call(task, hint, fn, *args)
    except _ERRORS as error:
        raise AssertionError(f"{task}: your function raised {error!r}. {shapes} Hint: {hint}") from error


def _first(got, candidates) -> str:
    """The tip of the first (tip, tensor) in ``candidates`` that ``got`` equals, else ''."""
    for tip, value in candidates:
        if _close(got, value):
            return " " + tip
    return ""


def check_rnn_step(rnn_step: Callable) -> None:
    """Task: ``rnn_step(x, h, W_xh, W_hh, b) -> h_next``, x (B, I), h (B, H), W_xh (I, H),
    W_hh (H, H), b (H,)."""
    task = "Task 1 (RNN step)"
    hint = "h_next = tanh(x @ W_xh + h @ W_hh + b); x @ W_xh is (B, H)."
    g = torch.Generator().manual_seed(3)
    # I == H first, so swapped or transposed weights run and can be named; then I != H.
    for B, I, H in [(3, 4, 4), (4, 3, 5)]:
        x, h = torch.randn(B, I, generator=g), torch.randn(B, H, generator=g)
        W_xh, W_hh = torch.randn(I, H, generator=g) * 0.5, torch.randn(H, H, generator=g) * 0.5
        b = torch.randn(H, generator=g)
        cell = RNNCell(I, H)
        with torch.no_grad():  # the package's cell keeps torch's (out, in) layout: transpose
            cell.weight_ih.copy_(W_xh.T), cell.weight_hh.copy_(W_hh.T)
            cell.bias_ih.copy_(b), cell.bias_hh.zero_()
            want = cell(x, h)
        shapes = (f"Shapes here: x {tuple(x.shape)}, h {tuple(h.shape)}, W_xh {tuple(W_xh.shape)}, "
                  f"W_hh {tuple(W_hh.shape)}, b {tuple(b.shape)}: x @ W_xh and h @ W_hh are both "
                  f"({B}, {H}), with no transpose (the weights are (in, out), not torch's (out, in)).")
        got = _run(task, hint, shapes, rnn_step, x, h, W_xh, W_hh, b)
        if _close(got, want):
            continue
        tip = ""
        if isinstance(got, torch.Tensor) and got.shape == want.shape:
            xw, hw = x @ W_xh, h @ W_hh
            tip = _first(got, [
                ("It looks like the tanh is missing.", xw + hw + b),
                ("The tanh is applied before adding the bias: b goes inside the tanh.",
                 torch.tanh(xw + hw) + b),
                ("It looks like the bias b is missing.", torch.tanh(xw + hw)),
                ("You used sigmoid; the Elman RNN squashes with tanh.", torch.sigmoid(xw + hw + b)),
                ("W_xh and W_hh are swapped: x goes with W_xh, h with W_hh.",
                 torch.tanh(x @ W_hh + h @ W_xh + b)),
                ("W_hh is transposed: use h @ W_hh (the weights are (in, out)).",
                 torch.tanh(xw + h @ W_hh.T + b)),
                ("W_xh is transposed: use x @ W_xh (the weights are (in, out)).",
                 torch.tanh(x @ W_xh.T + hw + b)),
                ("Both weights are transposed: use x @ W_xh + h @ W_hh (the weights are (in, out)).",
                 torch.tanh(x @ W_xh.T + h @ W_hh.T + b)),
                ("The old state h is left out: add h @ W_hh.", torch.tanh(xw + b)),
            ])
            if not tip and (got.abs() > 1).any():
                tip = " Values outside (-1, 1): squash the sum with torch.tanh."
        raise AssertionError(f"{task}: rnn_step returned {_shape(got)} that differs from the "
                             f"expected {tuple(want.shape)} next state.{tip} Hint: {hint}")
    _passed(task, "your step equals minigpt.models.rnn.RNNCell (and so torch.nn.RNN)")


def _lstm(z: torch.Tensor, c: torch.Tensor, order: str = "ifgo", candidate=torch.tanh):
    """(h_next, c_next) from the pre-activations z, reading its four chunks in ``order``."""
    parts = dict(zip(order, z.chunk(4, dim=1)))
    i, f, o = (torch.sigmoid(parts[k]) for k in "ifo")
    c_next = f * c + i * candidate(parts["g"])
    return o * torch.tanh(c_next), c_next


def _lstm_tips(z: torch.Tensor, c: torch.Tensor, want_c: torch.Tensor) -> tuple[list, list]:
    """The usual LSTM slips as (tip, result) pairs, for c_next and for h_next, given the
    pre-activations z (B, 4H), the old cell state c and the right c_next."""
    zi, zf, zg, zo = z.chunk(4, dim=1)
    si, sf, so, tg = torch.sigmoid(zi), torch.sigmoid(zf), torch.sigmoid(zo), torch.tanh(zg)
    orders = [(f"The gates are read in the order {', '.join(order)}; torch's order is i, f, g, o.",
               _lstm(z, c, "".join(order))[1])
              for order in itertools.permutations("ifgo") if order != tuple("ifgo")]
    c_tips = [
        ("The cell candidate g goes through tanh, not sigmoid.", _lstm(z, c, candidate=torch.sigmoid)[1]),
        ("The cell candidate g needs its tanh.", _lstm(z, c, candidate=lambda t: t)[1]),
        (("The forget gate multiplies the new content too: it should scale only the old c "
          "(c_next = f * c + i * g)."), sf * (c + si * tg)),
        ("The old c is kept without the forget gate: c_next = f * c + i * g, not c + i * g.",
         c + si * tg),
        ("The old cell state is dropped: c_next = f * c + i * g, not i * g.", si * tg),
        ("The gates i and f need their sigmoid.", zf * c + zi * tg),
        *orders,
    ]
    h_tips = [
        ("c_next is right; h_next needs tanh(c_next), not c_next.", so * want_c),
        ("h_next must use the new cell state: o * tanh(c_next), not tanh(c).", so * torch.tanh(c)),
        ("The output gate o needs its sigmoid.", zo * torch.tanh(want_c)),
    ]
    return c_tips, h_tips


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
        want_h, want_c = cell(x, (h, c))
    shapes = (f"Shapes here: x {tuple(x.shape)}, h and c {tuple(h.shape)}, W {tuple(W.shape)}, "
              f"U {tuple(U.shape)}, b {tuple(b.shape)}: z = x @ W + h @ U + b is ({B}, {4 * H}), "
              f"split along dim=1 into four ({B}, {H}) gates (z.chunk(4) alone splits the batch).")
    got = _run(task, hint, shapes, lstm_step, x, h, c, W, U, b)
    if not (isinstance(got, (tuple, list)) and len(got) == 2):
        raise AssertionError(f"{task}: return the pair (h_next, c_next), got {type(got).__name__}"
                             f"{f' of length {len(got)}' if isinstance(got, (tuple, list)) else ''}")
    got_h, got_c = got
    if _close(got_h, want_c) and _close(got_c, want_h):
        raise AssertionError(f"{task}: you returned (c_next, h_next); return (h_next, c_next).")
    z = x @ W + h @ U + b
    c_tips, h_tips = _lstm_tips(z, c, want_c)
    if not _close(got_c, want_c):
        tip = _first(got_c, c_tips)
        raise AssertionError(f"{task}: c_next is wrong (shape {_shape(got_c)}, expected "
                             f"{tuple(want_c.shape)}).{tip} The cell state adds: c_next = f * c + i * g, "
                             "with f and i through sigmoid, g through tanh, and the gates in the "
                             f"order i, f, g, o. Hint: {hint}")
    if not _close(got_h, want_h):
        raise AssertionError(f"{task}: h_next is wrong.{_first(got_h, h_tips)} Hint: {hint}")
    _passed(task, "your step equals minigpt.models.rnn.LSTMCell (and so torch.nn.LSTM)")


def check_clip_grad_norm(clip_grad_norm: Callable) -> None:
    """Task: ``clip_grad_norm(grads, max_norm) -> (clipped_grads, total_norm)``: one global
    norm over all tensors, measured before clipping; scale every tensor by
    ``max_norm / total_norm`` if it is larger. Clipping in place or into new tensors both pass."""
    task = "Task 3 (gradient clipping)"
    hint = ("total_norm = sqrt(sum of every element squared, over all tensors); if it exceeds "
            "max_norm, multiply every tensor by max_norm / total_norm; else leave them as they are.")
    g = torch.Generator().manual_seed(5)
    # Norms about 44 > 1, 0.44 < 5, 13 > 0.5: far from max_norm, so no case is a near-tie.
    for max_norm, scale in [(1.0, 10.0), (5.0, 0.1), (0.5, 3.0)]:
        grads = [torch.randn(3, 4, generator=g) * scale, torch.randn(7, generator=g) * scale]
        params = [torch.nn.Parameter(torch.zeros_like(t)) for t in grads]
        for p, t in zip(params, grads):
            p.grad = t.clone()
        want_norm = torch.nn.utils.clip_grad_norm_(params, max_norm).item()
        want = [p.grad for p in params]
        shapes = f"grads here: tensors of shapes {[tuple(t.shape) for t in grads]}, max_norm={max_norm}."
        got = _run(task, hint, shapes, clip_grad_norm, grads, max_norm)
        if not (isinstance(got, (tuple, list)) and len(got) == 2):
            raise AssertionError(f"{task}: return (clipped_grads, total_norm), got {type(got).__name__}")
        clipped, norm = got
        value = _number(norm)
        if value is None:
            raise AssertionError(f"{task}: total_norm should be a number (a float or a 0-d tensor), "
                                 f"got {_shape(norm)}. Hint: {hint}")
        norms = [t.norm().item() for t in grads]
        if abs(value - want_norm) > 1e-4 * max(1.0, want_norm):
            tip = ""
            for what, other in [
                ("That is the norm after clipping: return the one measured before.", min(want_norm, max_norm)),
                ("You added the tensors' norms: square them, add, then take the square root.", sum(norms)),
                ("The square root is missing.", want_norm ** 2),
                ("That is the largest tensor's norm: measure all tensors together.", max(norms)),
            ]:
                if abs(value - other) <= 1e-4 * max(1.0, abs(other)):
                    tip = " " + what
                    break
            raise AssertionError(f"{task}: total_norm is {value:.4f}, expected {want_norm:.4f}: "
                                 f"the norm of all gradients together, before clipping.{tip} Hint: {hint}")
        if not (isinstance(clipped, (list, tuple)) and len(clipped) == len(grads)):
            raise AssertionError(f"{task}: clipped_grads should be a list of {len(grads)} tensors, "
                                 f"one per gradient, got {_shape(clipped)}"
                                 f"{f' of length {len(clipped)}' if isinstance(clipped, (list, tuple)) else ''}."
                                 f" Hint: {hint}")
        if not all(_close(c, w) for c, w in zip(clipped, want)):
            def same(values, clipped=clipped) -> bool:
                return all(_close(c, v) for c, v in zip(clipped, values))
            tip = ""
            if same([t * min(1.0, max_norm / n) for t, n in zip(grads, norms)]):
                tip = " You clipped each tensor by its own norm: use the one global norm for all."
            elif want_norm <= max_norm and same([t * max_norm / want_norm for t in grads]):
                tip = " The norm was already below max_norm: return the gradients unchanged."
            elif want_norm > max_norm and same(grads):
                tip = (" The gradients came back unchanged although the norm exceeds max_norm (in "
                       "`for g in grads: g = g * s`, the assignment changes nothing in the list).")
            elif same([t * max(1.0, want_norm / max_norm) for t in grads]):
                tip = " The factor is upside down: multiply by max_norm / total_norm."
            elif same([t.clamp(-max_norm, max_norm) for t in grads]):
                tip = (" You clamped each value (that is clip_grad_value_): scale every tensor by "
                       "the same factor instead.")
            raise AssertionError(f"{task}: the clipped gradients differ from torch's "
                                 f"clip_grad_norm_ (max_norm={max_norm}).{tip} Hint: {hint}")
    _passed(task, "your clipping equals torch.nn.utils.clip_grad_norm_, which the Trainer uses")
