"""The chapter 07 exercise checks pass right answers and catch the usual mistakes."""

import math

import numpy as np
import pytest
import torch

from minigpt.course import checks
from minigpt.methods.scaling import fit_power_law


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
    out = capsys.readouterr().out
    assert out.count("passed") == 5
    assert "a block of width 768 has 7,087,872 parameters" in out
    assert "alpha = 0.3000 from points on L = 12 N^-0.3" in out


def test_hand_values_the_notebook_quotes():
    assert block_params(128) == 198_272 and block_params(768) == 7_087_872
    assert round(pf_days(training_flops(175e9, 300e9))) == 3646
    assert round(utilisation(training_flops(175e9, 300e9), 10_000, 125e12, 14.8), 3) == 0.197
    assert 10 ** (math.log10(1 / 0.9) / 0.076) == pytest.approx(4.0, abs=0.01)


# ---- right answers written differently --------------------------------------------------------


def block_params_by_layer(n_embd):
    """Loops over the layers' (inputs, outputs), a float sum."""
    total = 0.0
    for fan_in, fan_out in [(n_embd, 3 * n_embd), (n_embd, n_embd),
                            (n_embd, 4 * n_embd), (4 * n_embd, n_embd)]:
        total += fan_in * fan_out + fan_out
    for _layer_norm in range(2):
        total += 2 * n_embd
    return total


def block_params_by_torch(n_embd):
    """Builds the layers with torch and counts them (a 0-d tensor back)."""
    with torch.device("meta"):
        layers = [torch.nn.LayerNorm(n_embd), torch.nn.Linear(n_embd, 3 * n_embd),
                  torch.nn.Linear(n_embd, n_embd), torch.nn.LayerNorm(n_embd),
                  torch.nn.Linear(n_embd, 4 * n_embd), torch.nn.Linear(4 * n_embd, n_embd)]
    return torch.tensor(sum(p.numel() for layer in layers for p in layer.parameters()))


@pytest.mark.parametrize("right", [block_params_by_layer, block_params_by_torch,
                                   lambda C: np.int64(12 * C * C + 13 * C)])
def test_block_params_right_answers_written_differently_pass(right):
    checks.check_block_params(right)


@pytest.mark.parametrize("right", [
    lambda n, d: 2 * n * d + 4 * n * d,  # forward + backward, spelled out
    lambda n, d: np.float64(n) * np.float64(d) * 6.0,
    lambda n, d: int(6 * n) * int(d),
])
def test_training_flops_right_answers_written_differently_pass(right):
    checks.check_training_flops(right)


@pytest.mark.parametrize("right", [lambda f: f / 1e15 / 24 / 3600,
                                   lambda f: np.float64(f) / 8.64e19])
def test_pf_days_right_answers_written_differently_pass(right):
    checks.check_pf_days(right)


def utilisation_stepwise(flops, n_gpus, peak_flops_per_gpu, days):
    seconds = days * 24 * 60 * 60
    on_offer = 0.0
    for _gpu in range(n_gpus):
        on_offer += peak_flops_per_gpu * seconds
    return flops / on_offer


def test_utilisation_right_answers_written_differently_pass():
    checks.check_utilisation(utilisation_stepwise)
    checks.check_utilisation(lambda f, g, p, d: pf_days(f) / (g * p / 1e15 * d))


def fit_log10(n, loss):
    """log10 for both, undone with 10**, a NumPy array back."""
    slope, intercept = np.polyfit(np.log10(n), np.log10(loss), 1)
    return np.array([10**intercept, -slope])


def fit_closed_form(n, loss):
    """Least squares by hand, in plain Python loops."""
    xs, ys = [math.log(v) for v in n], [math.log(v) for v in loss]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sxy / sxx
    return math.exp(my - slope * mx), -slope


def fit_lstsq(n, loss):
    X = np.stack([np.ones_like(n), np.log(n)], axis=1)
    (log_a, slope), *_ = np.linalg.lstsq(X, np.log(loss), rcond=None)
    return np.exp(log_a), -slope


def fit_log2(n, loss):
    slope, intercept = np.polyfit(np.log2(n), np.log2(loss), deg=1)
    return 2.0**intercept, -slope


def fit_linregress(n, loss):
    from scipy.stats import linregress

    r = linregress(np.log(n), np.log(loss))
    return math.exp(r.intercept), -r.slope


def fit_package(n, loss):
    law = fit_power_law(n, loss, offset=False)
    return law.A, law.alpha


@pytest.mark.parametrize("right", [fit_log10, fit_closed_form, fit_lstsq, fit_log2,
                                   fit_linregress, fit_package])
def test_fit_exponent_right_answers_written_differently_pass(right):
    checks.check_fit_exponent(right)


ALL = [checks.check_block_params, checks.check_training_flops, checks.check_pf_days,
       checks.check_utilisation, checks.check_fit_exponent]


@pytest.mark.parametrize("check", ALL, ids=lambda c: c.__name__)
def test_stubs_are_not_done_yet_with_a_hint(check):
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        check(stub)


# ---- wrong answers ------------------------------------------------------------------------------


def _hard_coded_block(C):
    """Right for the two widths the notebook quotes, a guess elsewhere."""
    return {128: 198_272, 768: 7_087_872}.get(C, 12 * C * C)


@pytest.mark.parametrize("wrong, tip", [
    (lambda C: 12 * C * C, "every bias"),
    (lambda C: 12 * C * C + 4 * C, "Linear layers' biases"),
    (lambda C: 12 * C * C + 9 * C, "two LayerNorms"),
    (lambda C: 12 * C * C + 11 * C, "bias as well as a weight"),
    (lambda C: 12 * C * C + 15 * C, "final LayerNorm"),
    (lambda C: 16 * C * C + 13 * C, "12 C\\^2 \\+ 13 C"),
    # the MLP's 4x forgotten in both Linears (C x C + C twice), or in one of them
    (lambda C: 4 * C * C + 4 * C + 2 * (C * C + C) + 4 * C, "6 C\\^2 \\+ 10 C.*MLP widens to 4C"),
    (lambda C: 4 * C * C + 4 * C + (C * 4 * C + 4 * C) + (C * C + C) + 4 * C,
     "Both of the MLP's Linears"),
    (lambda C: 2 * C * C + 2 * C + 8 * C * C + 5 * C + 4 * C, "one Linear from C to 3C"),
    (lambda C: 7_087_872, "width 16 has 3,280 parameters"),
    (_hard_coded_block, "width 16 has 3,280 parameters"),
    (lambda C: str(12 * C * C + 13 * C), "not a string"),
    (lambda C: None, "forget `return`"),
])
def test_block_params_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_block_params(wrong)


@pytest.mark.parametrize("factor, tip", [(2, "forward pass only"), (4, "backward pass only"),
                                         (1, "multiply-add is 2 FLOPs"), (3, "one FLOP per"),
                                         (12, "doubles the count")])
def test_training_flops_mistakes_are_explained(factor, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_training_flops(lambda n, d: factor * n * d)


@pytest.mark.parametrize("wrong, tip", [
    (lambda n, d: 6 * n, "FLOPs per token"),
    (lambda n, d: 3.15e23, "expected 6 N D = 6e\\+06"),  # GPT-3's figure, hard-coded
    (lambda n, d: 3.15e23 if n == 175e9 else 2 * n * d, "forward pass only"),
    (lambda n, d: f"{6 * n * d:g}", "not a string"),
])
def test_training_flops_other_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_training_flops(wrong)


@pytest.mark.parametrize("wrong, tip", [
    (lambda f: f / 1e15, "PF-seconds"),
    (lambda f: f / 3.6e18, "PF-hours"),
    (lambda f: f / 86_400, "1e15"),
    (lambda f: f * 8.64e19, "you multiplied"),
    (lambda f: f / (1e12 * 86_400), "teraFLOP/s"),
    (lambda f: 3646.0, "pf_days\\(8.64e\\+19\\) returned 3646.0"),
    (lambda f: str(pf_days(f)), "not a string"),
])
def test_pf_days_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_pf_days(wrong)


@pytest.mark.parametrize("wrong, tip", [
    (lambda f, g, p, d: f / (g * p * d), "not turned into seconds"),
    (lambda f, g, p, d: 100 * utilisation(f, g, p, d), "not a percentage"),
    (lambda f, g, p, d: f / (p * d * 86_400), "number of GPUs"),
    (lambda f, g, p, d: 1 / utilisation(f, g, p, d), "Upside down"),
    (lambda f, g, p, d: f / (g * p * d * 3600), "3,600 of an hour"),
    (lambda f, g, p, d: utilisation(3.15e23, 10_000, 125e12, 14.8), "expected 1[.] "),  # GPT-3's share
])
def test_utilisation_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_utilisation(wrong)


def test_utilisation_without_gpus_is_caught_on_every_cluster():
    """Leaving out n_gpus is only right for one GPU: the tip must not hang on one case's size."""
    calls = []

    def no_gpus_after_first(f, g, p, d):
        calls.append(g)
        return utilisation(f, g, p, d) if len(calls) == 1 else f / (p * d * 86_400)

    with pytest.raises(AssertionError, match="number of GPUs"):
        checks.check_utilisation(no_gpus_after_first)
    assert calls[-1] > 1


def _without_logs(n, loss):
    slope, intercept = np.polyfit(n, loss, 1)
    return intercept, -slope


def _semi_log(n, loss):
    slope, intercept = np.polyfit(np.log(n), loss, 1)
    return math.exp(intercept), -slope


def _log_intercept(n, loss):
    slope, intercept = np.polyfit(np.log(n), np.log(loss), 1)
    return intercept, -slope


def _log10_intercept(n, loss):
    slope, intercept = np.polyfit(np.log10(n), np.log10(loss), 1)
    return intercept, -slope


def _log10_then_exp(n, loss):
    slope, intercept = np.polyfit(np.log10(n), np.log10(loss), 1)
    return math.exp(intercept), -slope


def _ln_then_10(n, loss):
    slope, intercept = np.polyfit(np.log(n), np.log(loss), 1)
    return 10**intercept, -slope


def _mixed_log10_x(n, loss):
    slope, intercept = np.polyfit(np.log10(n), np.log(loss), 1)
    return math.exp(intercept), -slope


def _mixed_log10_y(n, loss):
    slope, intercept = np.polyfit(np.log(n), np.log10(loss), 1)
    return 10**intercept, -slope


def _x_y_swapped(n, loss):
    slope, intercept = np.polyfit(np.log(loss), np.log(n), 1)
    return math.exp(intercept), -slope


def _unpacked_the_wrong_way(n, loss):
    intercept, slope = np.polyfit(np.log(n), np.log(loss), 1)
    return math.exp(intercept), -slope


def _two_points(n, loss):
    """The slope through the first and last points: exact on clean data only."""
    slope = (math.log(loss[-1]) - math.log(loss[0])) / (math.log(n[-1]) - math.log(n[0]))
    return loss[0] * n[0] ** -slope, -slope


def _unweighted(n, loss):
    """A fit of the loss itself (Gauss-Newton on A, alpha from the log-log start): close, not equal."""
    A, alpha = fit_exponent(n, loss)
    for _ in range(20):
        pred = A * n**-alpha
        J = np.stack([n**-alpha, -A * np.log(n) * n**-alpha], axis=1)
        step = np.linalg.lstsq(J, loss - pred, rcond=None)[0]
        A, alpha = A + step[0], alpha + step[1]
    return A, alpha


def _right_only_on_first_call(n, loss):
    """Fits the first case's points, and returns that case's law for every other."""
    first = np.allclose(loss, 12.0 * n**-0.3, rtol=1e-12)
    return fit_exponent(n, loss) if first else (12.0, 0.3)


@pytest.mark.parametrize("wrong, tip", [
    (_without_logs, "straight line only in log-log"),
    (_semi_log, "straight line only in log-log"),
    (_log_intercept, "np.exp\\(intercept\\)"),
    (_log10_intercept, "10\\*\\*intercept"),
    (_log10_then_exp, "took log10 but undid it with exp"),
    (_ln_then_10, "took np.log but undid it with 10"),
    (_mixed_log10_x, "same logarithm"),
    (_mixed_log10_y, "same logarithm"),
    (_x_y_swapped, "x and y are swapped"),
    (_unpacked_the_wrong_way, "highest power first"),
    (lambda n, loss: fit_exponent(n, loss)[::-1], "wrong way round"),
    (lambda n, loss: (fit_exponent(n, loss)[0], -fit_exponent(n, loss)[1]), "minus the slope"),
    (lambda n, loss: fit_exponent(n, loss)[1], "pair of numbers"),
    (lambda n, loss: str(fit_exponent(n, loss)), "not a string"),
    (_unweighted, "weighs the points differently"),
    (_two_points, "least-squares line through all the points"),
    (lambda n, loss: (12.0, 0.3), "on clean data"),  # the first case's law, hard-coded
    (lambda n, loss: (8.8e13**0.076, 0.076), "on clean data"),  # the notebook's, hard-coded
    (_right_only_on_first_call, "on clean data"),
])
def test_fit_exponent_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_fit_exponent(wrong)


def test_fit_exponent_cases_leave_a_wide_margin():
    """Right fits agree with the reference far inside the check's 1e-6; the near-misses on the
    noisy cases (two points, a fit of the loss itself) are far outside it."""
    seen = []

    def recording(n, loss):
        seen.append((n.copy(), loss.copy()))
        return fit_exponent(n, loss)

    checks.check_fit_exponent(recording)
    noisy = 0
    for n, loss in seen:
        want = np.array(fit_package(n, loss))
        for right in (fit_closed_form, fit_log10, fit_lstsq, fit_log2):
            assert np.allclose(np.asarray(right(n, loss), dtype=float), want, rtol=1e-9, atol=0)
        slope_two = (math.log(loss[-1]) - math.log(loss[0])) / math.log(n[-1] / n[0])
        if not np.allclose(np.log(loss), np.log(loss[0]) + slope_two * np.log(n / n[0])):
            noisy += 1
            for near in (_two_points, _unweighted):
                assert np.max(np.abs(np.asarray(near(n, loss)) / want - 1)) > 1e-3
    assert len(seen) >= 5 and noisy >= 2
