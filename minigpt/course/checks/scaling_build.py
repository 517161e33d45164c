"""Checks for exercises/07_scaling.ipynb's build task: Chinchilla's IsoFLOP analysis (Hoffmann et
al. 2022, approach 2) written by the learner, from a list of training runs to the exponents of
N_opt ∝ C^a and D_opt ∝ C^b.

The reference is the package's own: ``scaling.isoflop`` and ``scaling.optimal_scaling`` on the
same runs. The runs are synthetic: each run's loss curve is read off a known Chinchilla surface
L(N, D) = E + A / N^alpha + B / D^beta, whose exponents a = beta / (alpha + beta) and
b = alpha / (alpha + beta) are known, with C = 6 N D. Three surfaces with different exponents, so
a hard-coded answer fails. Tips name the usual slips: a parabola in N instead of ln N, the best run
instead of the parabola's vertex, log10 and ln mixed in the vertex, runs whose curve does not reach
the budget, D = C / 2N or C / N, and exponents fitted without logarithms.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from minigpt.course.checks._base import _number
from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import passed as _passed
from minigpt.methods.scaling import LossSurface, RunResult, isoflop, optimal_scaling

__all__ = ["check_isoflop_fit", "isoflop_cases"]

_TRUTH_TOL = 0.05  # the parabola is an approximation: the reference is 0.001-0.023 off the truth


def _runs(surface: LossSurface, sizes: np.ndarray, flops_lo: Callable[[float], float],
          flops_hi: Callable[[float], float], evals: int = 24) -> list[RunResult]:
    """One run per size, its loss read off ``surface`` at ``evals`` log-spaced token counts
    between the FLOPs ``flops_lo(n)`` and ``flops_hi(n)``; C = 6 N D."""
    runs = []
    for n in (float(v) for v in sizes):
        tokens = np.geomspace(flops_lo(n), flops_hi(n), evals) / (6 * n)
        runs.append(RunResult(name=f"N={n:.3g}", n_params=n, steps=list(range(1, evals + 1)),
                              tokens=tokens.tolist(), flops=(6 * n * tokens).tolist(),
                              loss=surface.predict(n, tokens).tolist(), flops_per_token=6 * n))
    return runs


def isoflop_cases() -> list[tuple[str, LossSurface, list[RunResult], np.ndarray]]:
    """(name, surface, runs, budgets) for each case; every budget's minimum lies inside the runs."""
    cases = []
    for name, surface, sizes, lo, hi in [
        # Hoffmann et al.'s fitted surface; every run trains on 1e8 to 1e12 tokens, so at a budget
        # only some runs' curves reach it
        ("Chinchilla's surface, runs of 1e8-1e12 tokens", LossSurface(1.69, 406.4, 410.7, 0.34, 0.28),
         np.geomspace(1e7, 1e10, 9), lambda n: 6e8 * n, lambda n: 6e12 * n),
        ("a surface where size matters more", LossSurface(2.0, 60.0, 900.0, 0.25, 0.5),
         np.geomspace(1e5, 1e8, 8), lambda n: 6e5 * n, lambda n: 6e12 * n),
        ("a surface where data matters more", LossSurface(1.2, 800.0, 120.0, 0.45, 0.2),
         np.geomspace(3e3, 3e6, 10), lambda n: 1e7, lambda n: 1e15),
    ]:
        runs = _runs(surface, sizes, lo, hi)
        G = (surface.alpha * surface.A / (surface.beta * surface.B)) ** (1 / (surface.alpha + surface.beta))
        # budgets whose true N_opt = G (C/6)^a runs from the third size to the third from the top
        c_lo, c_hi = (6 * (sizes[i] / G) ** (1 / surface.a) for i in (2, -3))
        cases.append((name, surface, runs, np.geomspace(c_lo, c_hi, 5)))
    return cases


def _fresh(runs: Sequence[RunResult]) -> list[RunResult]:
    """Copies, so that a learner's function that changes its runs cannot change the next call's."""
    return [RunResult.from_dict(r.to_dict()) for r in runs]


def _at_budget(runs: Sequence[RunResult], C: float, reach_only: bool = True
               ) -> tuple[np.ndarray, np.ndarray]:
    """(N, loss at C) of the runs whose curve reaches C (or of all runs, np.interp clamping)."""
    ns, losses = [], []
    for r in runs:
        if not reach_only or r.flops[0] <= C <= r.flops[-1]:
            ns.append(r.n_params)
            losses.append(float(np.interp(np.log(C), np.log(r.flops), r.loss)))
    return np.array(ns), np.array(losses)


def _vertex_in_n(runs: Sequence[RunResult], budgets: np.ndarray) -> np.ndarray:
    """The mistake: a parabola in N itself."""
    out = []
    for C in budgets:
        p0, p1, _ = np.polyfit(*_at_budget(runs, C), 2)
        out.append(-p1 / (2 * p0))
    return np.array(out)


def _vertex_all_runs(runs: Sequence[RunResult], budgets: np.ndarray) -> np.ndarray:
    """The mistake: every run on every IsoFLOP curve, its loss clamped where it does not reach C."""
    out = []
    for C in budgets:
        ns, losses = _at_budget(runs, C, reach_only=False)
        p0, p1, _ = np.polyfit(np.log(ns), losses, 2)
        out.append(math.exp(-p1 / (2 * p0)))
    return np.array(out)


def _numbers(got, length: int) -> np.ndarray | None:
    """``got`` as a float array of ``length`` finite numbers, or None."""
    if isinstance(got, (str, bytes)):
        return None
    try:
        values = [_number(v) for v in got]
    except TypeError:
        return None
    if len(values) != length or any(v is None for v in values):
        return None
    return np.array(values)


def _n_opt_tip(got: np.ndarray, want: np.ndarray, runs: Sequence[RunResult],
               budgets: np.ndarray) -> str:
    sizes = np.array([r.n_params for r in runs])
    if all(np.isclose(sizes, g, rtol=1e-9).any() for g in got):
        return (" Every N_opt is one of the runs' sizes: you took the best run. Fit the parabola "
                "and take its vertex, which can lie between two runs.")
    if np.allclose(got, _vertex_in_n(runs, budgets), rtol=1e-4):
        return (" That is the vertex of a parabola in N. Fit the loss against ln N: around its "
                "minimum an IsoFLOP curve is close to a parabola in log N, not in N.")
    if np.allclose(got, _vertex_all_runs(runs, budgets), rtol=1e-4):
        return (" You used every run at every budget. Use only the runs whose curve reaches C "
                "(run.flops[0] <= C <= run.flops[-1]); np.interp does not extrapolate, it "
                "repeats a curve's last loss.")
    if (got > 0).all():
        ratio = np.log(got) / np.log(want)
        if np.allclose(ratio, 1 / math.log(10), rtol=1e-6):
            return (" The parabola was fitted in log10 N but its vertex undone with exp: "
                    "use 10**vertex (or fit in ln N and use exp).")
        if np.allclose(ratio, math.log(10), rtol=1e-6):
            return (" The parabola was fitted in ln N but its vertex undone with 10**: "
                    "use np.exp(vertex) (or fit in log10 N and use 10**).")
    return ""


def _d_opt_tip(got_d: np.ndarray, got_n: np.ndarray, budgets: np.ndarray) -> str:
    ratio = got_d * 6 * got_n / budgets  # 1 for D = C / 6N
    for factor, rule in [(3, "C / (2 N)"), (6, "C / N"), (1 / 6, "C / (36 N)"), (2, "C / (3 N)")]:
        if np.allclose(ratio, factor, rtol=1e-6):
            return (f" Your D_opt is {rule}: training costs C = 6 N D FLOPs (2 per parameter "
                    "per token forward, 4 backward), so D_opt = C / (6 N_opt).")
    return ""


def _exponent_tip(got: tuple[float, float], want: tuple[float, float],
                  budgets: np.ndarray, n_opt: np.ndarray, d_opt: np.ndarray) -> str:
    if got == (0.5, 0.5):
        return (" 0.5 and 0.5 are Chinchilla's published exponents: compute a and b from these "
                "runs' N_opt and D_opt.")
    if np.allclose(got, want[::-1], atol=1e-6):
        return " a and b are swapped: return (n_opt, d_opt, a, b), a for N and b for D."
    linear = [np.polyfit(x, y, 1)[0] for x, y in [(budgets, n_opt), (np.log(budgets), n_opt),
                                                   (budgets, np.log(n_opt))]]
    if any(math.isclose(got[0], s, rel_tol=1e-6) for s in linear) or abs(got[0]) > 10:
        return (" A power law N_opt = k C^a is a straight line only in log-log: a is the slope "
                "of ln N_opt against ln C (np.polyfit(np.log(C), np.log(n_opt), 1)[0]).")
    if np.allclose(got, [-w for w in want], atol=1e-6):
        return " The exponents are the slopes themselves: N_opt grows with C, so a > 0."
    return ""


def check_isoflop_fit(isoflop_fit: Callable[[list[RunResult], np.ndarray],
                                            tuple[Sequence[float], Sequence[float], float, float]]
                      ) -> None:
    """Task 4: ``isoflop_fit(runs, budgets)`` -> ``(n_opt, d_opt, a, b)`` as Chinchilla's
    approach 2 with C = 6 N D, the same as ``scaling.isoflop`` + ``scaling.optimal_scaling``."""
    task = "Task 4 (isoflop_fit)"
    hint = ("for each budget C: the runs whose curve reaches C, each one's loss at C "
            "(run.loss_at(C)), a parabola np.polyfit(np.log(n), loss, 2), its vertex "
            "N_opt = exp(-p1 / (2 p0)), and D_opt = C / (6 N_opt); then a and b are the slopes "
            "of np.log(n_opt) and np.log(d_opt) against np.log(budgets).")
    shown = []
    for name, surface, runs, budgets in isoflop_cases():
        points = isoflop(runs, budgets)
        assert len(points) == len(budgets) and all(p.inside for p in points), name
        fit_n, fit_d = optimal_scaling(points)
        want_n, want_d = np.array([p.n_opt for p in points]), np.array([p.d_opt for p in points])
        want_ab = (-fit_n.alpha, -fit_d.alpha)
        where = f"{task}, on {name} (budgets {budgets[0]:.2g} to {budgets[-1]:.2g} FLOPs)"
        got = _call(task, hint, isoflop_fit, _fresh(runs), budgets.copy())
        if got is None:
            raise AssertionError(f"{where}: your function returned None: did you forget "
                                 f"`return n_opt, d_opt, a, b`? Hint: {hint}")
        try:
            n_opt, d_opt, a, b = got
        except (TypeError, ValueError):
            raise AssertionError(f"{where}: return four things, (n_opt, d_opt, a, b); got "
                                 f"{got!r:.200}. Hint: {hint}") from None
        n_opt, d_opt = _numbers(n_opt, len(budgets)), _numbers(d_opt, len(budgets))
        if n_opt is None or d_opt is None:
            raise AssertionError(f"{where}: n_opt and d_opt must hold one finite number per "
                                 f"budget ({len(budgets)} here). Hint: {hint}")
        if not np.allclose(n_opt, want_n, rtol=1e-6, atol=0):
            tip = _n_opt_tip(n_opt, want_n, runs, budgets)
            raise AssertionError(f"{where}: N_opt should be {np.array2string(want_n, precision=4)}"
                                 f", you returned {np.array2string(n_opt, precision=4)}.{tip} "
                                 f"Hint: {hint}")
        if not np.allclose(d_opt, want_d, rtol=1e-6, atol=0):
            tip = _d_opt_tip(d_opt, n_opt, budgets)
            raise AssertionError(f"{where}: D_opt should be {np.array2string(want_d, precision=4)}"
                                 f", you returned {np.array2string(d_opt, precision=4)}.{tip} "
                                 f"Hint: {hint}")
        a, b = _number(a), _number(b)
        if a is None or b is None:
            raise AssertionError(f"{where}: a and b must be one finite number each. Hint: {hint}")
        if not np.allclose((a, b), want_ab, rtol=0, atol=1e-6):
            tip = _exponent_tip((a, b), want_ab, budgets, want_n, want_d)
            raise AssertionError(f"{where}: the least-squares fit in log-log gives a = "
                                 f"{want_ab[0]:.4f}, b = {want_ab[1]:.4f}; you returned a = {a:.4g}"
                                 f", b = {b:.4g}.{tip} Hint: {hint}")
        for mine, true, letter in [(a, surface.a, "a"), (b, surface.b, "b")]:
            assert abs(mine - true) < _TRUTH_TOL, (
                f"{where}: {letter} = {mine:.4f} is more than {_TRUTH_TOL} from the surface's "
                f"{true:.4f}; the runs or budgets of this case are not what the check expects.")
        shown.append(f"a = {a:.3f} (true {surface.a:.3f})")
    _passed(task, "the same N_opt, D_opt and exponents as scaling.isoflop + optimal_scaling on "
                  f"three loss surfaces: {'; '.join(shown)}")
