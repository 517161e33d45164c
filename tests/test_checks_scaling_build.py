"""The chapter 07 build exercise's check (an IsoFLOP fit) passes right answers written differently
and catches the mistakes a learner makes, with the tip that names each."""

import math

import numpy as np
import pytest

from minigpt.course import checks
from minigpt.course.checks.scaling_build import isoflop_cases
from minigpt.methods.scaling import isoflop, optimal_scaling

# ---- right answers written differently --------------------------------------------------------


def isoflop_polyfit(runs, budgets):
    """The solution's way: np.polyfit for the parabola and for the lines."""
    n_opt, d_opt = [], []
    for C in budgets:
        reached = [r for r in runs if r.flops[0] <= C <= r.flops[-1]]
        p0, p1, _ = np.polyfit(np.log([r.n_params for r in reached]),
                               [r.loss_at(C) for r in reached], 2)
        n_opt.append(math.exp(-p1 / (2 * p0)))
        d_opt.append(C / (6 * n_opt[-1]))
    a = np.polyfit(np.log(budgets), np.log(n_opt), 1)[0]
    b = np.polyfit(np.log(budgets), np.log(d_opt), 1)[0]
    return n_opt, d_opt, a, b


def _line_slope(x, y):
    """Closed-form least squares for a straight line: cov(x, y) / var(x)."""
    mx, my = sum(x) / len(x), sum(y) / len(y)
    return (sum((u - mx) * (v - my) for u, v in zip(x, y))
            / sum((u - mx) ** 2 for u in x))


def isoflop_closed_form(runs, budgets):
    """log10 throughout, its own interpolation in log tokens, the parabola by the normal
    equations, the exponents by cov / var, NumPy arrays back."""
    n_opt, d_opt = np.zeros(len(budgets)), np.zeros(len(budgets))
    for i, C in enumerate(budgets):
        xs, ys = [], []
        for r in runs:
            D = C / (6 * r.n_params)  # the tokens this run has read at C
            if r.tokens[0] <= D <= r.tokens[-1]:
                xs.append(math.log10(r.n_params))
                ys.append(np.interp(math.log10(D), np.log10(r.tokens), r.loss))
        X = np.stack([np.square(xs), xs, np.ones(len(xs))], axis=1)  # (runs, 3)
        p0, p1, _ = np.linalg.solve(X.T @ X, X.T @ np.array(ys))
        n_opt[i] = 10 ** (-p1 / (2 * p0))
        d_opt[i] = C / 6 / n_opt[i]
    lc = list(np.log10(budgets))
    return n_opt, d_opt, _line_slope(lc, list(np.log10(n_opt))), _line_slope(lc, list(np.log10(d_opt)))


def isoflop_package(runs, budgets):
    fit_n, fit_d = optimal_scaling(isoflop(runs, budgets))
    points = isoflop(runs, budgets)
    return [p.n_opt for p in points], [p.d_opt for p in points], -fit_n.alpha, -fit_d.alpha


@pytest.mark.parametrize("right", [isoflop_polyfit, isoflop_closed_form, isoflop_package])
def test_right_answers_written_differently_pass(right, capsys):
    checks.check_isoflop_fit(right)
    assert "Task 4 (isoflop_fit) passed" in capsys.readouterr().out


def test_stub_is_not_done_yet_with_a_hint():
    def stub(runs, budgets):
        raise NotImplementedError

    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        checks.check_isoflop_fit(stub)


def test_cases_differ_and_the_reference_recovers_each_surface():
    """Three surfaces whose exponents differ by far more than the check's tolerance to the truth,
    so no single hard-coded answer passes; the package recovers each within it (margin 2x)."""
    truths = []
    for _name, surface, runs, budgets in isoflop_cases():
        points = isoflop(runs, budgets)
        assert len(points) == len(budgets) and all(p.inside for p in points)
        fit_n, _ = optimal_scaling(points)
        assert abs(-fit_n.alpha - surface.a) < 0.025
        truths.append(surface.a)
        assert min(len(p.n) for p in points) >= 5
    assert min(abs(x - y) for i, x in enumerate(truths) for y in truths[i + 1:]) > 0.1


def test_right_answers_agree_far_inside_the_tolerance():
    """The check compares with rtol 1e-6; right answers written differently agree to 1e-9."""
    for _name, _surface, runs, budgets in isoflop_cases():
        want = isoflop_package(runs, budgets)
        for right in (isoflop_polyfit, isoflop_closed_form):
            got = right(runs, budgets)
            for g, w in zip(got, want):
                assert np.allclose(g, w, rtol=1e-9, atol=1e-12)


# ---- wrong answers ------------------------------------------------------------------------------


def _variant(parabola_x=np.log, undo=np.exp, pick_best=False, all_runs=False,
             flops_per_token=6, line=lambda c, v: np.polyfit(np.log(c), np.log(v), 1)[0]):
    """isoflop_polyfit with one of a learner's mistakes switched on."""
    def fit(runs, budgets):
        n_opt, d_opt = [], []
        for C in budgets:
            used = runs if all_runs else [r for r in runs if r.flops[0] <= C <= r.flops[-1]]
            ns = np.array([r.n_params for r in used])
            loss = np.array([r.loss_at(C) for r in used])
            if pick_best:
                n = ns[np.argmin(loss)]
            else:
                p0, p1, _ = np.polyfit(parabola_x(ns), loss, 2)
                n = undo(-p1 / (2 * p0))
            n_opt.append(n)
            d_opt.append(C / (flops_per_token * n))
        return n_opt, d_opt, line(budgets, n_opt), line(budgets, d_opt)
    return fit


def _hard_coded(runs, budgets):
    n_opt, d_opt, _, _ = isoflop_polyfit(runs, budgets)
    return n_opt, d_opt, 0.5, 0.5  # Chinchilla's exponents


def _swapped(runs, budgets):
    n_opt, d_opt, a, b = isoflop_polyfit(runs, budgets)
    return n_opt, d_opt, b, a


@pytest.mark.parametrize("wrong, tip", [
    (_variant(parabola_x=lambda n: n, undo=lambda v: v), "parabola in N"),
    (_variant(pick_best=True), "you took the best run"),
    (_variant(parabola_x=np.log10), "fitted in log10 N but its vertex undone with exp"),
    (_variant(undo=lambda v: 10 ** v), "fitted in ln N but its vertex undone with 10"),
    (_variant(all_runs=True), "only the runs whose curve reaches C"),
    (_variant(flops_per_token=2), "Your D_opt is C / \\(2 N\\)"),
    (_variant(flops_per_token=1), "Your D_opt is C / N"),
    (_variant(line=lambda c, v: np.polyfit(c, v, 1)[0]), "straight line only in log-log"),
    (_variant(line=lambda c, v: np.polyfit(np.log(c), v, 1)[0]), "straight line only in log-log"),
    (_hard_coded, "a = 0.4525, b = 0.5475; you returned a = 0.5, b = 0.5. 0.5 and 0.5 are Chinchilla"),
    (_swapped, "a and b are swapped"),
    (lambda runs, budgets: None, "forget `return"),
    (lambda runs, budgets: isoflop_polyfit(runs, budgets)[:2], "return four things"),
    (lambda runs, budgets: isoflop_polyfit(runs, budgets)[0][:3] * 2 + [1.0, 2.0],
     "return four things"),
])
@pytest.mark.filterwarnings("ignore:invalid value encountered in log:RuntimeWarning")
def test_mistakes_are_caught_with_their_tip(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_isoflop_fit(wrong)


@pytest.mark.filterwarnings("ignore:invalid value encountered in log:RuntimeWarning")
def test_mistakes_are_far_outside_the_tolerance():
    """Each wrong N_opt or D_opt differs from the reference by far more than the check's 1e-6, on
    every case (so no case lets a mistake through by luck)."""
    wrongs = [_variant(parabola_x=lambda n: n, undo=lambda v: v), _variant(pick_best=True),
              _variant(parabola_x=np.log10), _variant(all_runs=True), _variant(flops_per_token=2)]
    for name, _surface, runs, budgets in isoflop_cases():
        want_n, want_d, _, _ = isoflop_package(runs, budgets)
        for wrong in wrongs:
            got_n, got_d, _, _ = wrong(runs, budgets)
            gap = max(np.max(np.abs(np.array(got_n) / want_n - 1)),
                      np.max(np.abs(np.array(got_d) / want_d - 1)))
            everyone = all(r.flops[0] <= C <= r.flops[-1] for r in runs for C in budgets)
            if wrong is wrongs[3] and everyone:
                continue  # every run reaches every budget here: using all runs is right
            assert gap > 1e-3, (name, wrong)
    assert not all(r.flops[0] <= budgets[0] for r in isoflop_cases()[0][2])  # the first case
