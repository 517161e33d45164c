"""The chapter 07 exercise checks pass right answers and catch the usual mistakes."""

import math

import numpy as np
import pytest

from minigpt.course import checks


def block_params(C):
    return 12 * C * C + 13 * C


def training_flops(n_params, tokens):
    return 6 * n_params * tokens


def pf_days(flops):
    return flops / (1e15 * 86_400)


def utilisation(flops, n_gpus, peak_flops_per_gpu, days):
    return flops / (n_gpus * peak_flops_per_gpu * days * 86_400)


def fit_exponent(n, loss):
    slope, intercept = np.polyfit(np.log(n), np.log(loss), 1)
    return math.exp(intercept), -slope


def stub(*_args):
    raise NotImplementedError


def test_right_answers_pass(capsys):
    checks.check_block_params(block_params)
    checks.check_training_flops(training_flops)
    checks.check_pf_days(pf_days)
    checks.check_utilisation(utilisation)
    checks.check_fit_exponent(fit_exponent)
    assert capsys.readouterr().out.count("passed") == 5


def test_hand_values_the_notebook_quotes():
    assert block_params(128) == 198_272 and block_params(768) == 7_087_872
    assert round(pf_days(training_flops(175e9, 300e9))) == 3646
    assert round(utilisation(training_flops(175e9, 300e9), 10_000, 125e12, 14.8), 3) == 0.197
    assert 10 ** (math.log10(1 / 0.9) / 0.076) == pytest.approx(4.0, abs=0.01)


def test_other_right_answers_pass_too():
    """Integers, log10 undone by 10**, a NumPy array back: all fine."""
    checks.check_block_params(lambda C: np.int64(12 * C * C + 13 * C))

    def fit_log10(n, loss):
        slope, intercept = np.polyfit(np.log10(n), np.log10(loss), 1)
        return np.array([10**intercept, -slope])

    checks.check_fit_exponent(fit_log10)


ALL = [checks.check_block_params, checks.check_training_flops, checks.check_pf_days,
       checks.check_utilisation, checks.check_fit_exponent]


@pytest.mark.parametrize("check", ALL, ids=lambda c: c.__name__)
def test_stubs_are_not_done_yet_with_a_hint(check):
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        check(stub)


@pytest.mark.parametrize("wrong, tip", [
    (lambda C: 12 * C * C, "every bias"),
    (lambda C: 12 * C * C + 4 * C, "Linear layers' biases"),
    (lambda C: 12 * C * C + 9 * C, "two LayerNorms"),
    (lambda C: 12 * C * C + 11 * C, "bias as well as a weight"),
    (lambda C: 12 * C * C + 15 * C, "final LayerNorm"),
    (lambda C: 16 * C * C + 13 * C, "12 C\\^2 \\+ 13 C"),
])
def test_block_params_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_block_params(wrong)


@pytest.mark.parametrize("factor, tip", [(2, "forward pass only"), (4, "backward pass only"),
                                         (1, "multiply-add is 2 FLOPs"), (3, "one FLOP per")])
def test_training_flops_mistakes_are_explained(factor, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_training_flops(lambda n, d: factor * n * d)


@pytest.mark.parametrize("wrong, tip", [
    (lambda f: f / 1e15, "PF-seconds"),
    (lambda f: f / 3.6e18, "PF-hours"),
    (lambda f: f / 86_400, "1e15"),
    (lambda f: f * 8.64e19, "you multiplied"),
])
def test_pf_days_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_pf_days(wrong)


@pytest.mark.parametrize("wrong, tip", [
    (lambda f, g, p, d: f / (g * p * d), "not turned into seconds"),
    (lambda f, g, p, d: 100 * utilisation(f, g, p, d), "not a percentage"),
    (lambda f, g, p, d: f / (p * d * 86_400), "number of GPUs"),
    (lambda f, g, p, d: 1 / utilisation(f, g, p, d), "Upside down"),
])
def test_utilisation_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_utilisation(wrong)


def _without_logs(n, loss):
    slope, intercept = np.polyfit(n, loss, 1)
    return intercept, -slope


def _log_intercept(n, loss):
    slope, intercept = np.polyfit(np.log(n), np.log(loss), 1)
    return intercept, -slope


def _log10_then_exp(n, loss):
    slope, intercept = np.polyfit(np.log10(n), np.log10(loss), 1)
    return math.exp(intercept), -slope


def _unweighted(n, loss):
    """A fit of the loss itself (Gauss-Newton on A, alpha from the log-log start): close, not equal."""
    A, alpha = fit_exponent(n, loss)
    for _ in range(20):
        pred = A * n**-alpha
        J = np.stack([n**-alpha, -A * np.log(n) * n**-alpha], axis=1)
        step = np.linalg.lstsq(J, loss - pred, rcond=None)[0]
        A, alpha = A + step[0], alpha + step[1]
    return A, alpha


@pytest.mark.parametrize("wrong, tip", [
    (_without_logs, "straight line only in log-log"),
    (_log_intercept, "np.exp\\(intercept\\)"),
    (_log10_then_exp, "log10"),
    (lambda n, loss: fit_exponent(n, loss)[::-1], "wrong way round"),
    (lambda n, loss: (fit_exponent(n, loss)[0], -fit_exponent(n, loss)[1]), "minus the slope"),
    (lambda n, loss: fit_exponent(n, loss)[1], "pair of numbers"),
    (_unweighted, "weighs the points differently"),
])
def test_fit_exponent_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_fit_exponent(wrong)
