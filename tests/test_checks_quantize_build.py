"""The chapter 11 build task's check (a linear layer multiplied in int8) passes right answers
written differently and catches the usual mistakes, naming each one."""

import numpy as np
import pytest
import torch

from minigpt.course import checks
from minigpt.course.checks import quantize_build
from minigpt.methods import quantize

# ---- right answers written differently --------------------------------------------------------


def _quantize_rows(t, steps=127, rounding=torch.round, per_row=True):
    """Symmetric int8 of each row of t (or of all of t), a row of zeros scale 1."""
    amax = t.abs().amax(dim=1) if per_row else t.abs().max().expand(t.size(0))
    scale = torch.where(amax > 0, amax / steps, torch.ones_like(amax))
    return rounding(t / scale[:, None]).clamp(-steps, min(steps, 127)).to(torch.int8), scale


def int8_linear(x, w, b, *, slip=None):
    """The solution's way. ``slip`` plants one of the mistakes a learner makes."""
    q_w, s_w = _quantize_rows(w, per_row=slip != "per-tensor w",
                              rounding=torch.trunc if slip == "trunc" else torch.round,
                              steps=128 if slip == "/128" else 127)
    q_x, s_x = _quantize_rows(x, per_row=slip != "per-tensor x",
                              rounding=torch.trunc if slip == "trunc" else torch.round,
                              steps=128 if slip == "/128" else 127)
    zero = torch.zeros(x.size(0), 1, dtype=torch.int32)
    if slip in ("asymmetric", "zero point kept"):
        lo, hi = x.amin(1, keepdim=True), x.amax(1, keepdim=True)
        s = torch.where(hi > lo, (hi - lo) / 255, torch.ones_like(hi))
        zero = (-128 - torch.round(lo / s)).to(torch.int32)
        q_x = (torch.round(x / s) + zero).clamp(-128, 127).to(torch.int8)
        s_x = s[:, 0]
        if slip == "zero point kept":
            zero = torch.zeros_like(zero)
    if slip == "int8 sums":
        acc = q_x @ q_w.T  # int8 x int8 -> int8: wraps around
    elif slip == "int16 sums":
        acc = q_x.to(torch.int16) @ q_w.to(torch.int16).T
    else:
        acc = (q_x.to(torch.int32) - zero) @ q_w.to(torch.int32).T  # (tokens, out), exact
    if slip == "no rescale":
        return acc
    y = acc.float() * (s_w[None, :] if slip == "weight scale only" else s_x[:, None] * s_w[None, :])
    return y if b is None or slip == "no bias" else y + b


def int8_linear_package(x, w, b):
    """Right, written differently: the package's quantize_int8 for both, float64 sums of the
    integers (exact) and an outer product of the scales."""
    q_w, s_w = quantize.quantize_int8(w)
    q_x, s_x = quantize.quantize_int8(x)
    acc = q_x.double() @ q_w.double().T
    y = (acc * torch.outer(s_x.double(), s_w.double())).float()
    return y + b if b is not None else y


def int8_linear_numpy_loop(x, w, b):
    """Right, written differently: NumPy, rounding by multiplying with 127 / max, one token at a
    time, int64 dot products."""
    xn, wn = x.numpy(), w.numpy()

    def quant(t):
        amax = np.abs(t).max(axis=1)
        inverse = np.where(amax > 0, 127 / np.where(amax > 0, amax, 1), 1.0)
        return np.rint(t * inverse[:, None]).astype(np.int8), 1 / inverse

    q_w, s_w = quant(wn)
    out = np.zeros((xn.shape[0], wn.shape[0]), dtype=np.float32)
    for i, row in enumerate(xn):
        q_x, s_x = quant(row[None])
        acc = q_w.astype(np.int64) @ q_x[0].astype(np.int64)  # (out,)
        out[i] = acc * s_x[0] * s_w
    y = torch.from_numpy(out)
    return y if b is None else y + b


def int8_linear_dequantised(x, w, b):
    """The same numbers by another road: a float matmul of the dequantised values. The check
    compares outputs, and these are int8 arithmetic's outputs to float32 rounding."""
    q_w, s_w = quantize.quantize_int8(w)
    q_x, s_x = quantize.quantize_int8(x)
    y = quantize.dequantize(q_x, s_x) @ quantize.dequantize(q_w, s_w).T
    return y if b is None else y + b


RIGHT = [int8_linear, int8_linear_package, int8_linear_numpy_loop, int8_linear_dequantised]


@pytest.mark.parametrize("right", RIGHT)
def test_right_answers_written_differently_pass(right, capsys):
    checks.check_int8_linear(right)
    assert "Task 4 (int8_linear) passed" in capsys.readouterr().out


def test_stub_is_not_done_yet_with_a_hint():
    def stub(x, w, b):
        raise NotImplementedError

    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        checks.check_int8_linear(stub)


def test_cases_sit_on_the_grid_and_within_the_bound():
    """Every value of the check's matrices is at least 0.09 of a step from a rounding tie (so
    right answers computed differently give the same integers), and the reference stays within
    int8 rounding's bound of the float matmul."""
    for _what, x, w, b in quantize_build.int8_cases():
        for t in (x, w):
            _, scale = quantize.quantize_int8(t)
            frac = (t / scale[:, None]).abs() % 1
            assert ((frac - 0.5).abs() > 0.09).all()
        y = quantize_build.reference_int8_linear(x, w, b)
        exact = x @ w.T + (0 if b is None else b)
        assert ((y - exact).abs() <= quantize_build.int8_bound(x, w)).all()
        for right in RIGHT[1:]:
            assert quantize_build._same((right(x, w, b), quantize_build._tolerance(x, w, b)),
                                        (y, quantize_build._tolerance(x, w, b)))


def test_one_scale_per_tensor_is_measurably_worse_on_the_check_data():
    """On the 64-token case, one scale for all tokens makes the worst token's error over 50x
    larger, and one scale for the whole weight the worst output row's over 2x."""
    _what, x, w, b = quantize_build.int8_cases()[1]
    right = quantize_build.reference_int8_linear(x, w, b)
    by_token = quantize_build.reference_int8_linear(x, w, b, "tensor_scale_x")
    assert (quantize_build.worst_token_error(by_token, x, w, b)
            > 50 * quantize_build.worst_token_error(right, x, w, b))
    by_tensor = quantize_build.reference_int8_linear(x, w, b, "tensor_scale_w")

    def worst_row(y):  # the same measure over output rows: transpose the layer
        return quantize_build.worst_token_error((y - b).T, w, x, None)

    assert worst_row(by_tensor) > 2 * worst_row(right)


# ---- wrong answers ------------------------------------------------------------------------------


def _slipped(slip):
    return lambda x, w, b: int8_linear(x, w, b, slip=slip)


WRONG = {
    "one scale for the weight": (_slipped("per-tensor w"), "One scale for the whole weight"),
    "one scale for the activations": (_slipped("per-tensor x"), "One scale for all the tokens"),
    "truncation": (_slipped("trunc"), "You truncated"),
    "int8 accumulator": (_slipped("int8 sums"), "an int8 result wraps around"),
    "int16 accumulator": (_slipped("int16 sums"), "an int16 result wraps around"),
    "max / 128": (_slipped("/128"), "Your scale is max / 128"),
    "asymmetric activations": (_slipped("asymmetric"), "with a zero point"),
    "zero point left in": (_slipped("zero point kept"), "never takes back out"),
    "bias left out": (_slipped("no bias"), "The bias is missing"),
    "one scale of the two": (_slipped("weight scale only"), "Only the weight's scales"),
    "integers returned": (_slipped("no rescale"), "return a float tensor"),
    "nothing returned": (lambda x, w, b: None, "return a float tensor"),
    "w not transposed": (lambda x, w, b: x @ w, "raised RuntimeError"),
}


@pytest.mark.parametrize("name", WRONG)
def test_mistakes_are_caught_with_their_tip(name):
    wrong, words = WRONG[name]
    with pytest.raises(AssertionError, match=words) as info:
        checks.check_int8_linear(wrong)
    assert "Hint:" in str(info.value)
