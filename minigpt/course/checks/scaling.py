"""Checks for exercises/07_scaling.ipynb: counting a block's parameters and a run's FLOPs,
PF-days and utilisation, and fitting a power law's exponent.

The references are the package's own: a real ``GPT`` block and ``counting.non_embedding_params``
for the count, ``counting.approx_flops``, ``pf_days`` and ``utilisation`` for compute, and
``scaling.fit_power_law(..., offset=False)`` for the fit. Each function is called on several
inputs, so an answer hard-coded for the notebook's one case fails. Tips name the usual slips:
forgetting biases or LayerNorms or the MLP's 4x, 2 N D (forward only) instead of 6 N D, seconds
or hours for days, a percentage for a fraction, fitting without logarithms, the wrong sign of
alpha, mixing log10 and ln, swapping x and y or slope and intercept, and returning log A for A.
A string is not a number here, even one that ``float`` would read.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from minigpt.course.checks._base import _number
from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import passed as _passed
from minigpt.methods.counting import PF_DAY, approx_flops, non_embedding_params
from minigpt.methods.counting import pf_days as _pf_days
from minigpt.methods.counting import utilisation as _utilisation
from minigpt.methods.scaling import fit_power_law
from minigpt.models.gpt import GPT, GPTConfig

__all__ = ["check_block_params", "check_fit_exponent", "check_pf_days", "check_training_flops",
           "check_utilisation"]


def _type_tip(got) -> str:
    """A tip for an answer that is not a number at all, or ''."""
    if isinstance(got, (str, bytes)):
        return " Return a number, not a string."
    if got is None:
        return " Your function returned None: did you forget `return`?"
    return ""


def _ratio_tip(got: float | None, want: float, tips: dict[float, str]) -> str:
    """The tip whose ratio ``got / want`` matches, or ''."""
    if got is None or want == 0:
        return ""
    for ratio, tip in tips.items():
        if math.isclose(got / want, ratio, rel_tol=1e-6):
            return " " + tip
    return ""


# ---- task 1 ---------------------------------------------------------------------------------


def _as_quadratic(fn: Callable[[int], int]) -> tuple[int, int] | None:
    """``(a, b)`` when ``fn(C) = a C^2 + b C`` with whole a and b (read off C = 1000 and 2000),
    else None: a learner's formula's coefficients, for the tips."""
    try:
        g1, g2 = _number(fn(1000)), _number(fn(2000))
    except (ArithmeticError, AssertionError, LookupError, RuntimeError, TypeError, ValueError):
        return None  # a diagnosis only: a failure there just means no tip
    if g1 is None or g2 is None:
        return None
    a, b = (g2 - 2 * g1) / 2e6, (4 * g1 - g2) / 2e3
    if not (math.isclose(a, round(a), abs_tol=1e-6) and math.isclose(b, round(b), abs_tol=1e-3)):
        return None
    return round(a), round(b)


_SQUARES_TIPS = {  # the C^2 coefficient of a wrong count -> what it missed (the right one is 12)
    6: "The MLP widens to 4C: its Linears are C x 4C and 4C x C, 8 C^2 weights, not 2 C^2.",
    9: "Both of the MLP's Linears are 4C wide on one side: C x 4C and 4C x C, 4 C^2 each.",
    10: "Queries, keys and values come from one Linear from C to 3C: 3 C^2 weights, not C^2.",
    4: "You left out the MLP (C x 4C and 4C x C, 8 C^2 weights).",
    8: "You left out attention (C x 3C and C x C, 4 C^2 weights).",
}


def check_block_params(block_params: Callable[[int], int]) -> None:
    """Task: ``block_params(n_embd)`` = the parameters of one block of minigpt's GPT."""
    task = "Task 1 (block_params)"
    hint = ("attention: qkv is C x 3C weights + 3C biases, the output projection C x C + C; "
            "MLP: C x 4C + 4C and 4C x C + C; two LayerNorms with a weight and a bias of C each. "
            "In all 12 C^2 + 13 C.")
    for C in (16, 48, 128, 768):
        cfg = GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=4, n_embd=C)
        with torch.device("meta"):  # count without allocating memory
            want = sum(p.numel() for p in GPT(cfg).blocks[0].parameters())
        assert want == non_embedding_params(cfg) - 2 * C  # minus the final LayerNorm
        got = _call(task, hint, block_params, C)
        g = _number(got)
        if g != want:
            tip = _type_tip(got)
            extra = {0: "You left out every bias and both LayerNorms (13 C in all).",
                     4 * C: "You left out the Linear layers' biases (3C + C + 4C + C = 9 C).",
                     9 * C: "You left out the two LayerNorms (a weight and a bias each: 4 C).",
                     11 * C: "A LayerNorm has a bias as well as a weight: 2 C each.",
                     15 * C: "The final LayerNorm belongs to the model, not to each block."}
            if g is not None and g - 12 * C * C in extra:
                tip = " " + extra[g - 12 * C * C]
            elif g is not None:
                ab = _as_quadratic(block_params)
                if ab is not None and ab[0] * C * C + ab[1] * C == g and ab[0] in _SQUARES_TIPS:
                    tip = (f" Your count grows as {ab[0]} C^2 + {ab[1]} C, the weights should be "
                           f"12 C^2. {_SQUARES_TIPS[ab[0]]}")
            raise AssertionError(f"{task}: block_params({C}) returned {got!r}, a block of width "
                                 f"{C} has {want:,} parameters.{tip} Hint: {hint}")
    _passed(task, "a block of width 768 has 7,087,872 parameters; GPT-2 small's 12 blocks hold "
                  "85M of its 124M")


def check_training_flops(training_flops: Callable[[float, float], float]) -> None:
    """Task: ``training_flops(n_params, tokens)`` = 6 N D."""
    task = "Task 1 (training_flops)"
    hint = ("each parameter is used in one multiply-add per token (2 FLOPs) in the forward pass, "
            "and the backward pass costs twice the forward (gradients for the inputs and for the "
            "weights): 2 + 4 = 6 FLOPs per parameter per token.")
    tips = {1 / 3: "2 N D is the forward pass only: the backward pass costs twice as much again.",
            2 / 3: "4 N D is the backward pass only: add the forward pass's 2 N D.",
            1 / 6: "N D counts multiply-adds; a multiply-add is 2 FLOPs, and training is 3 passes' "
                   "worth (forward + backward).",
            0.5: "3 N D counts one FLOP per multiply-add: a multiply and an add are 2 FLOPs.",
            2: "12 N D doubles the count: the 6 already counts a multiply-add as 2 FLOPs."}
    for n_params, tokens, hand in [(1_000, 1_000, 6e6), (1.07e6, 21.4e6, None),
                                   (175e9, 300e9, 3.15e23), (124e6, 10e9, None)]:
        want = approx_flops(n_params, tokens)
        assert hand is None or math.isclose(want, hand)
        got = _call(task, hint, training_flops, n_params, tokens)
        g = _number(got)
        if g is None or not math.isclose(g, want, rel_tol=1e-9):
            tip = _type_tip(got) or _ratio_tip(g, want, tips)
            if not tip and g is not None and any(math.isclose(g, 6 * x, rel_tol=1e-9)
                                                 for x in (n_params, tokens)):
                tip = " 6 N is the FLOPs per token: multiply by the D tokens as well."
            raise AssertionError(f"{task}: training_flops({n_params:g}, {tokens:g}) returned "
                                 f"{got!r}, expected 6 N D = {want:.4g}.{tip} Hint: {hint}")
    _passed(task, "GPT-3 (175e9 parameters, 300e9 tokens) took about 3.15e23 FLOPs")


# ---- task 2 ---------------------------------------------------------------------------------


def check_pf_days(pf_days: Callable[[float], float]) -> None:
    """Task: ``pf_days(flops)``: FLOPs in petaFLOP/s-days."""
    task = "Task 2 (pf_days)"
    hint = "a PF-day is 1e15 FLOP/s for a day of 86,400 s: 8.64e19 FLOPs. Divide by it."
    tips = {86_400: "That is in PF-seconds: divide by the 86,400 seconds of a day as well.",
            24: "That is in PF-hours: a day has 24 of them.",
            1e15: "You divided by the seconds of a day but not by the 1e15 of a petaFLOP/s.",
            1e3: "A petaFLOP/s is 1e15 FLOP/s; 1e12 is a teraFLOP/s.",
            1e-3: "A petaFLOP/s is 1e15 FLOP/s; 1e18 is an exaFLOP/s."}
    for flops in (PF_DAY, 3.15e23, 3.6e18, 1e21):
        want = _pf_days(flops)
        got = _call(task, hint, pf_days, flops)
        g = _number(got)
        if g is None or not math.isclose(g, want, rel_tol=1e-9):
            tip = _type_tip(got) or _ratio_tip(g, want, tips)
            if not tip and g is not None and math.isclose(g, flops * PF_DAY, rel_tol=1e-9):
                tip = " Divide by the FLOPs in a PF-day; you multiplied."
            raise AssertionError(f"{task}: pf_days({flops:g}) returned {got!r}, expected "
                                 f"{want:.6g}.{tip} Hint: {hint}")
    _passed(task, "8.64e19 FLOPs is 1 PF-day; GPT-3's 3.15e23 FLOPs are about 3,646")


def check_utilisation(utilisation: Callable[[float, int, float, float], float]) -> None:
    """Task: ``utilisation(flops, n_gpus, peak_flops_per_gpu, days)``: the share of peak used."""
    task = "Task 2 (utilisation)"
    hint = ("the hardware could do n_gpus x peak_flops_per_gpu FLOPs every second, for days x "
            "86,400 seconds; return flops divided by that, as a fraction (0.2, not 20).")
    cases = [(3.15e23, 10_000, 125e12, 14.8), (PF_DAY, 1, 1e15, 1.0),
             (1e21, 8, 312e12, 0.5), (2e20, 64, 989e12, 1 / 24)]
    for flops, n_gpus, peak, days in cases:
        tips = {86_400: "The days were not turned into seconds: peak FLOPs are per second.",
                100: "Return a fraction (0.2), not a percentage (20).",
                24: "A day has 86,400 seconds (24 x 3,600); you used the 3,600 of an hour.",
                n_gpus: "Multiply the peak by the number of GPUs: each one adds its own."}
        tips.pop(1, None)  # with one GPU, leaving it out is no mistake
        want = _utilisation(flops, n_gpus, peak, days)
        got = _call(task, hint, utilisation, flops, n_gpus, peak, days)
        g = _number(got)
        if g is None or not math.isclose(g, want, rel_tol=1e-9):
            tip = _type_tip(got) or _ratio_tip(g, want, tips)
            if not tip and g is not None and g > 0 and math.isclose(1 / g, want, rel_tol=1e-9):
                tip = " Upside down: used FLOPs over the FLOPs on offer."
            raise AssertionError(f"{task}: utilisation({flops:g}, {n_gpus}, {peak:g}, {days:g}) "
                                 f"returned {got!r}, expected {want:.6g}.{tip} Hint: {hint}")
    _passed(task, "GPT-3 used about 20% of 10,000 V100s' peak over 14.8 days; 100% is 1.0")


# ---- task 3 ---------------------------------------------------------------------------------


def _pair(got) -> tuple[float, float] | None:
    if isinstance(got, (str, bytes)):
        return None
    try:
        A, alpha = got
    except (TypeError, ValueError):
        return None
    A, alpha = _number(A), _number(alpha)
    return None if A is None or alpha is None else (A, alpha)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6)


def _fit_tip(pair: tuple[float, float], want: tuple[float, float], kind: str) -> str:
    """What went wrong with a fit ``pair`` = (A, alpha) whose least-squares answer is ``want``."""
    (A, alpha), (wA, walpha) = pair, want
    if _close(A, walpha) and _close(alpha, wA):
        return " The pair is the wrong way round: return (A, alpha)."
    tips = []
    if not _close(alpha, walpha):
        if _close(alpha, -walpha):
            tips.append("alpha is minus the slope: L = A N^-alpha, so the slope is -alpha.")
        elif any(_close(abs(alpha), math.log(wA) / f) for f in (1, math.log(10))):
            tips.append("np.polyfit(x, y, 1) returns (slope, intercept), the highest power "
                        "first: your alpha is the intercept.")
        elif _close(abs(alpha), 1 / walpha):
            tips.append("x and y are swapped: np.polyfit(x, y, 1) takes log n as x and log loss "
                        "as y, and its slope is then -alpha, not -1 / alpha.")
        elif any(_close(alpha, walpha * f) for f in (math.log(10), 1 / math.log(10))):
            tips.append("Take the same logarithm of both n and loss: log10 of one and ln of the "
                        "other scales the slope by ln 10 = 2.303.")
    if not _close(A, wA):
        if _close(A, math.log(wA)):
            tips.append("The intercept is log A: return np.exp(intercept).")
        elif _close(A, math.log10(wA)):
            tips.append("With log10 the intercept is log10 A: return 10**intercept.")
        elif _close(A, math.exp(math.log10(wA))):
            tips.append("You took log10 but undid it with exp: pair np.log with np.exp "
                        "(or np.log10 with 10**).")
        elif _close(A, 10 ** math.log(wA)):
            tips.append("You took np.log but undid it with 10**: pair np.log with np.exp "
                        "(or np.log10 with 10**).")
    if not tips and not math.isclose(alpha, walpha, rel_tol=0.1):
        tips.append("Fit the logarithms: a power law is a straight line only in log-log.")
    if not tips and kind == "noisy":
        tips.append("Close, but not the least-squares line through all the points (log n, "
                    "log loss): two points, or a fit of the loss itself, weighs the points "
                    "differently.")
    return "".join(" " + t for t in tips)


def check_fit_exponent(fit_exponent: Callable[[np.ndarray, np.ndarray], tuple[float, float]]
                       ) -> None:
    """Task: ``fit_exponent(n, loss)`` -> ``(A, alpha)`` of L = A n^-alpha, least squares in log-log."""
    task = "Task 3 (fit_exponent)"
    hint = ("log L = log A - alpha log N: fit a straight line to np.log(loss) against "
            "np.log(n) (np.polyfit(x, y, 1) returns its slope and intercept); the slope is "
            "-alpha and the intercept is log A.")
    # clean points lie exactly on their law; the noisy ones (2% and 5%, fixed seeds) move the
    # least-squares fit away from it, so only the log-log least-squares line matches the reference
    n = np.geomspace(1e3, 1e7, 9)
    noise = np.exp(0.02 * np.random.default_rng(0).standard_normal(n.size))
    uneven = np.array([2e5, 7e5, 3e6, 4e6, 2e7, 9e7, 1.5e8, 6e8])
    noise_uneven = np.exp(0.05 * np.random.default_rng(1).standard_normal(uneven.size))
    cases = [("clean", n, 12.0 * n ** -0.3), ("clean", n, 5.3 * n ** -0.076),
             ("noisy", n, 12.0 * n ** -0.3 * noise), ("noisy", n, 8.0 * n ** -0.15 * noise),
             ("clean", uneven, 40.0 * uneven ** -0.5),
             ("noisy", uneven, 3.0 * uneven ** -0.05 * noise_uneven)]
    fits = []
    for kind, x, loss in cases:
        law = fit_power_law(x, loss, offset=False)
        want = (law.A, law.alpha)
        got = _call(task, hint, fit_exponent, x.copy(), loss.copy())
        pair = _pair(got)
        if pair is None or not all(_close(g, w) for g, w in zip(pair, want)):
            if pair is None:
                tip = _type_tip(got) or " Return a pair of numbers (A, alpha)."
            else:
                tip = _fit_tip(pair, want, kind)
            shown = f"({pair[0]:.6g}, {pair[1]:.6g})" if pair else repr(got)
            raise AssertionError(f"{task}: on {kind} data whose least-squares law in log-log is "
                                 f"A = {want[0]:.6g}, alpha = {want[1]:.6g}, you returned "
                                 f"{shown}.{tip} Hint: {hint}")
        fits.append(pair[1])
    _passed(task, f"alpha = {fits[0]:.4f} from points on L = 12 N^-0.3, and {fits[2]:.4f} with "
                  "2% noise added, as scaling.fit_power_law(..., offset=False) finds")
