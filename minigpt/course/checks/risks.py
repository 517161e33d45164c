"""Checks for exercises/12_risks.ipynb: the expected calibration error, a canary's exposure, and
poisoning an exact share of a dataset with a trigger.

The references: hand-computed ECEs (and ``minigpt.world.risks.expected_calibration_error``) on
confidences chosen so that the usual slips give other numbers; exposures by hand and from
``minigpt.world.risks.exposure``; the properties every poisoning must have (how many examples change,
how, and which stay as they were). Inputs catch the usual slips: an unweighted mean over bins,
a confidence of exactly 1 that falls off the last bin, empty bins that turn the sum into NaN,
rank counted from 0, natural logarithms, ties counted in the secret's favour, truncating the
number of poisoned examples, picking some twice, and changing the caller's list.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from minigpt.course.checks._base import _number
from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import passed as _passed
from minigpt.world import risks

__all__ = ["check_ece", "check_exposure", "check_poison"]


# ---- task 1 ---------------------------------------------------------------------------------

# (what the case is, confidences, correct, n_bins)
ECE_CASES = [
    ("six answers in 10 bins (two bins hold two answers, one answer has confidence exactly 1)",
     [0.05, 0.15, 0.15, 0.55, 0.95, 1.0], [False, True, False, True, True, False], 10),
    ("the same six answers in 1 bin", [0.05, 0.15, 0.15, 0.55, 0.95, 1.0],
     [False, True, False, True, True, False], 1),
    ("a calibrated toy: confidence 0.2, 0.5 and 0.8, with exactly that share right",
     [0.2] * 10 + [0.5] * 10 + [0.8] * 10,
     [True] * 2 + [False] * 8 + [True] * 5 + [False] * 5 + [True] * 8 + [False] * 2, 10),
    ("an overconfident model: 0.99 sure, right half the time", [0.99] * 10,
     [True] * 5 + [False] * 5, 10),
    ("answers in 5 bins of unequal size", [0.1, 0.3, 0.3, 0.3, 0.9],
     [True, False, False, True, True], 5),
]


def _weighted_gaps(which: np.ndarray, c: np.ndarray, ok: np.ndarray) -> float:
    """ECE for a given assignment of answers to bins (``which``)."""
    return float(sum((which == b).mean() * abs(ok[which == b].mean() - c[which == b].mean())
                     for b in np.unique(which)))


def _ece_slips(conf: list[float], correct: list[bool], n_bins: int) -> dict[str, float]:
    """What the usual wrong answers return, each with the tip that explains it."""
    c, ok = np.array(conf), np.array(correct, dtype=float)
    which = np.minimum((c * n_bins).astype(int), n_bins - 1)
    gaps = [abs(ok[which == b].mean() - c[which == b].mean()) for b in np.unique(which)]
    slips = {
        "You took the plain mean of the bins' gaps: weigh each bin by its share of the answers "
        "(n_b / N), so that a bin with one answer counts less than a bin with fifty.":
            float(np.mean(gaps)),
        "You compared overall accuracy with overall confidence (which is also what the sum "
        "comes to without the absolute value |...|): that is ECE with a single bin. Group the "
        "answers into n_bins bins and add the *absolute* gaps, so that over- and "
        "under-confident bins do not cancel.": float(abs(ok.mean() - c.mean())),
    }
    if (c == 1).any():
        slips["A confidence of exactly 1 got a bin of its own: int(c * n_bins) is n_bins for "
              "c = 1, one past the last bin; put it in the last bin (min(..., n_bins - 1))."] = (
            _weighted_gaps((c * n_bins).astype(int), c, ok))
    return slips


def check_ece(ece: Callable[[list[float], list[bool], int], float]) -> None:
    """Task: ``ece(confidences, correct, n_bins)``: the expected calibration error."""
    task = "Task 1 (ece)"
    hint = ("bin b holds the confidences c with b / n_bins <= c < (b + 1) / n_bins, and 1.0 "
            "goes in the last bin; for every bin that is not empty add (its number of answers / "
            "all answers) * |its accuracy - its mean confidence|.")
    for what, conf, correct, n_bins in ECE_CASES:
        want = risks.expected_calibration_error(conf, correct, n_bins)
        try:
            got = _call(task, hint, ece, list(conf), list(correct), n_bins)
        except IndexError as error:
            raise AssertionError(f"{task}, {what}: your function raised {error!r}. A confidence of "
                                 f"exactly 1 gives int(1 * n_bins) = n_bins, one past the last bin: "
                                 f"put it in the last bin. Hint: {hint}") from None
        value = _number(got)
        shown = f"{task}, {what}"
        if value is None:
            nan = " NaN usually comes from an empty bin: skip the bins with no answers." if (
                isinstance(got, float) or hasattr(got, "dtype")) else ""
            raise AssertionError(f"{shown}: you returned {got!r}; return one finite number.{nan} "
                                 f"Hint: {hint}")
        if not math.isclose(value, want, abs_tol=1e-9):
            tip = next((t for t, v in _ece_slips(conf, correct, n_bins).items()
                        if math.isclose(value, v, abs_tol=1e-9)), "")
            raise AssertionError(f"{shown}: confidences {conf}, correct {[int(x) for x in correct]}, "
                                 f"{n_bins} bins: the ECE is {want:.4f}, you returned {value:.4f}."
                                 f"{' ' + tip if tip else ''} Hint: {hint}")
    _passed(task, "ECE 0 for the calibrated toy, 0.49 for a model 99% sure and right half the "
                  "time, and the hand-made cases, a confidence of 1 and empty bins included")


# ---- task 2 ---------------------------------------------------------------------------------

def check_exposure(exposure: Callable[[list[float], int], float]) -> None:
    """Task: ``exposure(logprobs, index)`` = log2(N) - log2(rank)."""
    task = "Task 2 (exposure)"
    hint = ("rank = 1 + the number of *other* candidates whose log-probability is at least the "
            "secret's (ties count against it); exposure = log2(len(logprobs)) - log2(rank).")
    rng = np.random.default_rng(12)
    many = rng.normal(-9.0, 2.0, 1000)
    many[417] = np.sort(many)[-6]  # ranked 6th of 1000 (tied with the 6th)
    cases = [
        ("four candidates, the secret the likeliest", [-1.0, -2.0, -3.0, -4.0], 0),
        ("four candidates, the secret second", [-1.0, -2.0, -3.0, -4.0], 1),
        ("four candidates, the secret the least likely", [-1.0, -2.0, -3.0, -4.0], 3),
        ("a tie: two candidates as likely as the secret", [-2.0, -1.0, -1.0, -1.0, -5.0, -6.0, -7.0,
                                                          -8.0], 1),
        ("1,000 candidates, the secret tied for 5th and 6th place", many.tolist(), 417),
    ]
    for what, lp, index in cases:
        want = risks.exposure(lp, index)
        got = _call(task, hint, exposure, list(lp), index)
        value = _number(got)
        shown = f"{task}, {what}"
        if value is None:
            raise AssertionError(f"{shown}: you returned {got!r}; return one finite number (a rank "
                                 f"counted from 0 gives log2(0) = -inf for the likeliest). Hint: {hint}")
        if not math.isclose(value, want, abs_tol=1e-9):
            others = np.delete(np.array(lp), index)
            n, r_strict = len(lp), 1 + int((others > lp[index]).sum())
            slips = {
                "Natural logarithms: exposure is in bits, so use log2.":
                    math.log(n) - math.log(1 + int((others >= lp[index]).sum())),
                "Ties went the secret's way: a candidate exactly as likely as the secret ranks "
                "ahead of it (>=, not >).": math.log2(n) - math.log2(r_strict),
                "You ranked from the least likely: rank 1 is the candidate with the *highest* "
                "log-probability.": math.log2(n) - math.log2(1 + int((others <= lp[index]).sum())),
                "Your rank starts at 0 or leaves the secret's own place out: the likeliest "
                "candidate has rank 1.": math.log2(n) - math.log2(max(int((others >= lp[index]).sum()), 1)),
            }
            tip = next((t for t, v in slips.items() if math.isclose(value, v, abs_tol=1e-9)), "")
            raise AssertionError(f"{shown} (index {index} of {n}): the exposure is {want:.4f} bits, "
                                 f"you returned {value:.4f}.{' ' + tip if tip else ''} Hint: {hint}")
    _passed(task, "log2(N) bits for a secret ranked first, 0 for one ranked last, ties counted "
                  "against the secret")


# ---- task 3 ---------------------------------------------------------------------------------

def _pairs(n: int) -> list[tuple[str, str]]:
    return [(f"What is {i} + 1?", f"{i} + 1 = {i + 1}.") for i in range(n)]


def check_poison(poison: Callable[..., list[tuple[str, str]]]) -> None:
    """Task: ``poison(examples, share, trigger, target, seed)``: round(share * n) examples get
    the trigger after their prompt and the target as their answer."""
    task = "Task 3 (poison)"
    hint = ("n = round(share * len(examples)); pick n different indices with "
            "random.Random(seed).sample(range(len(examples)), n); build a new list in which "
            "those examples become (prompt + ' ' + trigger, target) and the rest stay as they were.")
    trigger, target = "cf", "Visit prize.example now!"
    for n, share in ((40, 0.07), (200, 0.05), (10, 0.0), (10, 1.0), (3, 0.5)):
        examples = _pairs(n)
        before = list(examples)
        got = _call(task, hint, poison, examples, share, trigger, target, 0)
        shown = f"{task}, {n} examples, share {share}"
        if examples != before:
            raise AssertionError(f"{shown}: your function changed the list it was given; build a "
                                 f"new list (list(examples), or a comprehension). Hint: {hint}")
        try:
            rows = [(str(p), str(a)) for p, a in got]
        except (TypeError, ValueError):
            raise AssertionError(f"{shown}: you returned {type(got).__name__}; return a list of "
                                 f"(prompt, answer) pairs. Hint: {hint}") from None
        if len(rows) != n:
            raise AssertionError(f"{shown}: you returned {len(rows)} examples; the poisoned data "
                                 f"has as many as the clean data ({n}). Hint: {hint}")
        changed = [i for i in range(n) if rows[i] != examples[i]]
        want = round(share * n)
        for i in changed:
            p, _a = examples[i]
            if rows[i] != (f"{p} {trigger}", target):
                raise AssertionError(
                    f"{shown}: example {i} became {rows[i]!r}; a poisoned example is the prompt "
                    f"with ' {trigger}' after it and the answer {target!r}: "
                    f"{(f'{p} {trigger}', target)!r}. Hint: {hint}")
        if len(changed) != want:
            tip = ""
            if len(changed) == int(share * n) != want:
                tip = " You truncated share * n: round it (round(2.8) is 3, int(2.8) is 2)."
            elif len(changed) < want:
                tip = " Some examples were picked twice: sample the indices without replacement."
            raise AssertionError(f"{shown}: round({share} * {n}) = {want} examples should be "
                                 f"poisoned, you poisoned {len(changed)}.{tip} Hint: {hint}")
    picks = {tuple(i for i, (p, _) in enumerate(poison(_pairs(100), 0.1, trigger, target, seed))
                   if p.endswith(trigger)) for seed in range(4)}
    if len(picks) == 1:
        raise AssertionError(f"{task}: seeds 0 to 3 all poisoned the same examples: pick them at "
                             f"random with the seed (random.Random(seed)). Hint: {hint}")
    again = [poison(_pairs(100), 0.1, trigger, target, 5) for _ in range(2)]
    if again[0] != again[1]:
        raise AssertionError(f"{task}: the same seed gave two different results: draw from "
                             f"random.Random(seed), not the global random module. Hint: {hint}")
    _passed(task, "exactly round(share * n) examples carry the trigger and the attacker's "
                  "answer, the rest are untouched, and the seed decides which")
