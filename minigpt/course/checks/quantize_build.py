"""Checks for exercises/11_efficient_inference.ipynb's build task: a linear layer's forward pass
in int8, weights and activations both (Jacob et al. 2018; per-token activation scales as in
LLM.int8(), Dettmers et al. 2022, without its outlier split).

The learner quantises the weight per output row, symmetric, as ``quantize.quantize_int8`` does,
quantises the activations per token (row of ``x``) the same way at run time, multiplies the
integers with 32-bit accumulation and rescales by the two scales. The reference is that arithmetic
on the package's own ``quantize_int8`` (of ``w``, and of ``x``: a token is a row), and the float
matmul, which it must stay within int8 rounding's error bound of. The check's matrices lie on
each row's int8 grid up to at most 0.4 of a step (never near a rounding tie), so right answers
written differently (divide by the scale or multiply by its inverse, round with torch or NumPy)
give the very same integers; their rows and tokens range over orders of magnitude, so that one
scale for a whole tensor is measurably worse.

A wrong answer is named when one of the usual slips explains all of it: one scale for the whole
weight or for all the tokens, truncation instead of rounding, an int8 or int16 accumulator that
overflows, max / 128 for max / 127, an asymmetric scheme (with or without its zero point taken
back out), the bias or one of the two scales left out.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import matching_tip
from minigpt.course.checks._base import passed as _passed
from minigpt.methods.quantize import QMAX, quantize_int8

__all__ = ["check_int8_linear", "int8_bound", "int8_cases", "reference_int8_linear",
           "worst_token_error"]

_SLIPS = {
    "tensor_scale_w": ("One scale for the whole weight matrix: give each output row its own, "
                       "max|w[j]| / 127 (as quantize_int8 does), or the rows of small weights "
                       "round to a few integers, or to 0."),
    "tensor_scale_x": ("One scale for all the tokens: quantise each token (row of x) with its own "
                       "scale, max|x[i]| / 127, computed when the layer runs (dynamic "
                       "quantisation), so that one large token costs the small ones nothing."),
    "truncate": ("You truncated (.to(torch.int8) straight from the float, or .trunc()): round to "
                 "the nearest step first (torch.round), or each value loses up to a whole step "
                 "instead of half a step."),
    "int8_acc": ("Your integer sums overflowed: a dot product of int8 values needs 32 bits (127 x "
                 "127 x 256 features is over 4 million), and an int8 result wraps around. Cast "
                 "both to torch.int32 before the matmul."),
    "int16_acc": ("Your integer sums overflowed: a dot product of int8 values needs 32 bits (127 x "
                  "127 x 256 features is over 4 million), and an int16 result wraps around past "
                  "32,767. Cast both to torch.int32 before the matmul."),
    "scale_128": ("Your scale is max / 128: the symmetric scheme maps the largest value to 127 "
                  "(int8 holds -128 to 127, and -127 .. 127 keeps q and -q both in range), so "
                  "scale = max / 127."),
    "asym_x": ("You quantised the activations with a zero point (asymmetric, over min .. max): "
               "this task is symmetric like quantize_int8, scale = max|x[i]| / 127 and zero point "
               "0, so that 0 stays exactly 0 and the matmul needs no correction term."),
    "asym_x_kept": ("Your activations carry a zero point z that the matmul never takes back out: "
                    "with q = round(x / s) + z the product needs (q - z). This task is symmetric "
                    "anyway: zero point 0, scale = max|x[i]| / 127."),
    "no_bias": "The bias is missing: add b after rescaling (when b is not None).",
    "no_x_scale": ("Only the weight's scales are applied: the integer sum is in units of "
                   "scale_x[i] x scale_w[j], so multiply by both."),
    "no_w_scale": ("Only the activations' scales are applied: the integer sum is in units of "
                   "scale_x[i] x scale_w[j], so multiply by both."),
}


def _on_grid(largest: Tensor, cols: int, gen: torch.Generator) -> Tensor:
    """One row per entry of ``largest``, whose largest |value| it is: step x (q + u), step =
    largest / 127, q an integer in -126 .. 126 and u within 0.4 of it, and one entry of each row
    exactly +-127 steps. The rows' int8 values are then q, whichever right way they are
    computed: no value is near a rounding tie."""
    rows = largest.numel()
    v = torch.randint(-126, 127, (rows, cols), generator=gen).float()
    v += (torch.rand(rows, cols, generator=gen) - 0.5) * 0.8
    top = torch.randint(0, cols, (rows,), generator=gen)
    sign = torch.randint(0, 2, (rows,), generator=gen).float() * 2 - 1
    v[torch.arange(rows), top] = QMAX * sign
    return v * (largest / QMAX)[:, None]


def int8_cases() -> list[tuple[str, Tensor, Tensor, Tensor | None]]:
    """(what, x (tokens, in), w (out, in), b (out,) or None) for each case of the check."""
    gen = torch.Generator().manual_seed(11)
    small_x = _on_grid(torch.tensor([0.5, 0.02, 1.0, 0.0, 3.0, 0.1, 0.7, 0.05]), 16, gen)
    small_w = _on_grid(torch.tensor([0.01, 0.0, 0.3, 0.002]), 16, gen)
    big_x = _on_grid(torch.logspace(-2, 1.5, 64)[torch.randperm(64, generator=gen)], 128, gen)
    big_w = _on_grid(torch.logspace(-3, 0, 48)[torch.randperm(48, generator=gen)], 128, gen)
    aligned_x = _on_grid(torch.tensor([2.0, 0.5, 8.0]), 256, gen)
    aligned_w = torch.cat([aligned_x * 0.01, -aligned_x[:2] * 0.3])  # rows parallel to tokens
    return [(("8 tokens x 16 features into 4 outputs, a token of zeros, a weight row of zeros, "
              "no bias"), small_x, small_w, None),
            (("64 tokens x 128 features into 48 outputs, tokens whose largest values range from "
              "0.01 to 30 and weight rows from 0.001 to 1, with a bias"), big_x, big_w,
             torch.linspace(-1, 1, 48)),
            (("3 tokens x 256 features into 5 outputs whose weight rows point along the tokens "
              "(large integer sums), with a bias"), aligned_x, aligned_w, torch.full((5,), 0.25))]


def _per_tensor(t: Tensor) -> tuple[Tensor, Tensor]:
    """``quantize_int8`` with one scale for the whole of ``t``, that scale repeated per row."""
    q, scale = quantize_int8(t.reshape(1, -1))
    return q.view_as(t), scale.expand(t.size(0))


def _slipped_quantize(t: Tensor, slip: str) -> tuple[Tensor, Tensor]:
    """(q, scale) of ``t`` per row, with a slip in how q or the scale is made."""
    q, scale = quantize_int8(t)
    if slip == "truncate":
        q = (t / scale[:, None]).trunc()
    elif slip == "scale_128":
        scale = scale * QMAX / (QMAX + 1)
        q = torch.round(t / scale[:, None]).clamp(-QMAX - 1, QMAX)
    return q, scale


def reference_int8_linear(x: Tensor, w: Tensor, b: Tensor | None, slip: str = "") -> Tensor:
    """x @ w.T + b in int8 on ``quantize_int8``'s scales, with one of the usual slips
    (``_SLIPS``; "" for none): (tokens, out), float32."""
    qw, sw = _per_tensor(w) if slip == "tensor_scale_w" else _slipped_quantize(w, slip)
    qx, sx = _per_tensor(x) if slip == "tensor_scale_x" else _slipped_quantize(x, slip)
    zero = torch.zeros(x.size(0), 1)
    if slip in ("asym_x", "asym_x_kept"):
        lo, hi = x.amin(1, keepdim=True), x.amax(1, keepdim=True)
        sx = torch.where(hi > lo, (hi - lo) / 255, torch.ones_like(hi))  # (tokens, 1)
        zero = torch.round(-lo / sx) - 128
        qx = (torch.round(x / sx) + zero).clamp(-128, 127)
        sx = sx[:, 0]
        if slip == "asym_x_kept":
            zero = torch.zeros_like(zero)
    acc = (qx.to(torch.int32) - zero.to(torch.int32)) @ qw.to(torch.int32).T  # (tokens, out)
    acc = {"int8_acc": acc.to(torch.int8), "int16_acc": acc.to(torch.int16)}.get(slip, acc)
    y = acc.float()
    if slip != "no_x_scale":
        y = y * sx[:, None]
    if slip != "no_w_scale":
        y = y * sw[None, :]
    return y if b is None or slip == "no_bias" else y + b


def int8_bound(x: Tensor, w: Tensor) -> Tensor:
    """(tokens, out): how far int8 rounding with per-row scales may move each output of
    x @ w.T at most. With x = sx qx + ex and w = sw qw + ew, |ex| <= sx / 2, |ew| <= sw / 2:
    |x.w - sx sw qx.qw| <= sum over k of |x_k| sw / 2 + |w_k| sx / 2 + 3 sx sw / 4; plus float32
    rounding."""
    _, sw = quantize_int8(w)
    _, sx = quantize_int8(x)
    n = x.size(1)
    bound = (x.abs().sum(1, keepdim=True) * sw / 2 + sx[:, None] * w.abs().sum(1) / 2
             + 0.75 * n * sx[:, None] * sw)
    return bound + 1e-5 * (x.abs() @ w.abs().T)


def _tolerance(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """(tokens, out): 1e-5 of the size of the terms each output adds up. The integer sums are
    exact, so right answers differ by the rounding of the rescale (or of a float matmul of the
    dequantised values), far below it; a slip moves some output by far more."""
    size = x.abs().double() @ w.abs().double().T
    return 1e-5 * (size + (0 if b is None else b.abs().double()))


def _same(got: tuple, want: tuple) -> bool:
    """``got`` and ``want``: (output, tolerance) pairs; the outputs agree within the tolerance."""
    y, tol = got
    return (isinstance(y, Tensor) and y.shape == want[0].shape and y.is_floating_point()
            and bool(((y.detach().double() - want[0].double()).abs() <= tol).all()))


def worst_token_error(y: Tensor, x: Tensor, w: Tensor, b: Tensor | None) -> float:
    """The largest, over the tokens with any nonzero feature, of |y[i] - exact[i]| / |x[i] w^T|:
    how much of a token's output int8 got wrong (the bias left out of the size, so that it
    cannot hide a small token's error)."""
    exact = x.double() @ w.double().T
    error = (y.detach().double() - exact - (0 if b is None else b.double())).norm(dim=1)
    real = exact.norm(dim=1) > 0
    return float((error[real] / exact.norm(dim=1)[real]).max())


def check_int8_linear(int8_linear: Callable[[Tensor, Tensor, Tensor | None], Tensor]) -> None:
    """Task 4: ``int8_linear(x, w, b)`` = x @ w.T + b multiplied in int8 as the reference does."""
    task = "Task 4 (int8_linear)"
    hint = ("q_w, s_w per row of w and q_x, s_x per row of x, each as in Task 1 (scale = max|row| "
            "/ 127, a row of zeros scale 1; q = round(t / scale).clamp(-127, 127) as int8); "
            "acc = q_x.to(torch.int32) @ q_w.to(torch.int32).T; y = acc.float() * s_x[:, None] "
            "* s_w[None, :], plus b if it is not None.")
    results, wants = [], []
    for what, x, w, b in int8_cases():
        args = (x.clone(), w.clone(), None if b is None else b.clone())
        try:
            got = _call(task, hint, int8_linear, *args)
        except (RuntimeError, IndexError, TypeError, ValueError) as e:
            raise AssertionError(f"{task}: on {what}, int8_linear raised {type(e).__name__}: {e} "
                                 f"Hint: {hint}") from None
        want = reference_int8_linear(x, w, b)
        tol = _tolerance(x, w, b)
        exact = x @ w.T + (0 if b is None else b)
        assert ((want - exact).abs() <= int8_bound(x, w)).all(), f"{what}: the reference is off"
        if not (isinstance(got, Tensor) and got.shape == want.shape and got.is_floating_point()):
            kind = (f"{tuple(got.shape)} {got.dtype}" if isinstance(got, Tensor)
                    else type(got).__name__)
            raise AssertionError(f"{task}: on {what}, you returned {kind}; return a float tensor "
                                 f"of shape {tuple(want.shape)} (tokens, out): the integer sums "
                                 f"rescaled to floats. Hint: {hint}")
        results.append(((x, w, b), (got.detach(), tol)))
        wants.append((what, (want, tol)))
    for ((x, w, b), (got, _)), (what, (want, tol)) in zip(results, wants):
        if _same((got, tol), (want, tol)):
            continue
        exact = x @ w.T + (0 if b is None else b)
        over = ((got.double() - exact).abs() / int8_bound(x, w)).max().item()
        tip = matching_tip(results, [(message, (lambda x, w, b, s=slip: (
            reference_int8_linear(x, w, b, s), _tolerance(x, w, b))))
            for slip, message in _SLIPS.items()], _same)
        far = (f"up to {over:.3g} times what int8 rounding allows" if over > 1 else
               "within what int8 rounding allows, but not")
        raise AssertionError(f"{task}: on {what}, your outputs are {far} from the float matmul "
                             f"x @ w.T + b, and differ from int8 arithmetic on quantize_int8's "
                             f"scales by up to {(got - want).abs().max().item():.3g}.{tip} "
                             f"Hint: {hint}")
    (x, w, b), (got, _) = results[1]
    one_scale = reference_int8_linear(x, w, b, "tensor_scale_x")
    _passed(task, "the same outputs as int8 arithmetic on quantize_int8's scales, within int8 "
                  "rounding's bound of the float matmul; on the 64 tokens of sizes 0.01 to 30 the "
                  f"worst token's error is {worst_token_error(got, x, w, b):.2%} of its output "
                  f"({worst_token_error(one_scale, x, w, b):.0%} with one scale for all tokens)")
