"""The chapter 12 build task's check (a canary's exposure measured whole, after Carlini et al.
2019) passes right answers written differently and catches the usual mistakes, naming each."""

import itertools
import math
import random

import numpy as np
import pytest

from minigpt.course import checks
from minigpt.course.checks import risks_build
from minigpt.world import risks

# ---- right answers written differently ------------------------------------------------------------


def measure_exposure(log_likelihood, canary, alphabet="0123456789", n_samples=None, seed=0,
                     slip=""):
    """The solution's way: the space enumerated, NumPy for the rank; ``slip`` plants one of a
    learner's mistakes."""
    space = ["".join(p) for p in itertools.product(alphabet, repeat=len(canary.secret))]
    if n_samples is None:
        secrets = space if slip != "excluded" else [s for s in space if s != canary.secret]
    else:
        others = [s for s in space if s != canary.secret]
        rng = random.Random(seed if slip != "same seed" else 0)
        if slip == "with repeats":
            drawn = [rng.choice(others) for _ in range(n_samples)]
        elif slip == "no seed":
            drawn = random.sample(others, n_samples)
        else:
            drawn = rng.sample(others, n_samples)
        secrets = drawn if slip == "excluded" else [canary.secret] + drawn
    if slip == "whole space scored" and n_samples is not None:
        log_likelihood([canary.prefix + s for s in space])
    ll = np.asarray(log_likelihood([canary.prefix + s for s in secrets]), dtype=float)
    mine = float(log_likelihood([canary.prefix + canary.secret])[0])
    px, px_mine = -ll / math.log(2), -mine / math.log(2)
    others_px = px[[s != canary.secret for s in secrets]]
    if slip == "reversed":
        rank = 1 + int((others_px >= px_mine).sum())
    elif slip == "ties better":
        rank = 1 + int((others_px < px_mine).sum())
    elif slip == "from 0":
        rank = int((others_px <= px_mine).sum())
    else:
        rank = 1 + int((others_px <= px_mine).sum())
    count = len(space) if slip == "not extrapolated" else len(secrets)
    log = math.log if slip == "log e" else math.log2
    return log(len(space)) - log(rank * len(space) / count)


def measure_exposure_by_index(log_likelihood, canary, alphabet="0123456789", n_samples=None,
                              seed=0):
    """Never lists the space: secrets are numbers in base len(alphabet), drawn as indices that
    skip the canary's own; scored one text per call; the rank from a sort, in log10."""
    k, size = len(canary.secret), len(alphabet) ** len(canary.secret)
    own = sum(alphabet.index(ch) * len(alphabet) ** (k - 1 - i) for i, ch in enumerate(canary.secret))

    def secret(i):
        digits = []
        for _ in range(k):
            i, d = divmod(i, len(alphabet))
            digits.append(alphabet[d])
        return "".join(reversed(digits))

    if n_samples is None:
        indices = list(range(size))
    else:
        indices = [own] + [i if i < own else i + 1
                           for i in random.Random(seed).sample(range(size - 1), n_samples)]
    scores = [(float(log_likelihood([canary.prefix + secret(i)])[0]), i) for i in indices]
    mine = next(s for s, i in scores if i == own)
    rank = sum(1 for s, _ in scores if s >= mine)  # itself and every tie
    return math.log10(size) / math.log10(2) - math.log10(rank * size / len(indices)) / math.log10(2)


def measure_exposure_package(log_likelihood, canary, alphabet="0123456789", n_samples=None,
                             seed=0):
    """risks.exposure on the candidates' scores: over a sample it is log2(m + 1) - log2(rank),
    the extrapolated rank's exposure. NumPy's generator for the sample."""
    space = ["".join(p) for p in itertools.product(alphabet, repeat=len(canary.secret))]
    if n_samples is not None:
        others = np.array([s for s in space if s != canary.secret])
        space = [canary.secret, *np.random.default_rng(seed).choice(others, n_samples, replace=False)]
    lp = log_likelihood([canary.prefix + s for s in space])
    return risks.exposure(list(lp), space.index(canary.secret))


RIGHT = [measure_exposure, measure_exposure_by_index, measure_exposure_package]


@pytest.mark.parametrize("right", RIGHT, ids=lambda f: f.__name__)
def test_right_answers_written_differently_pass(right, capsys):
    checks.check_measure_exposure(right)
    assert "Task 4 (measure_exposure) passed" in capsys.readouterr().out


def test_stub_is_not_done_yet_with_a_hint():
    def stub(log_likelihood, canary, alphabet="0123456789", n_samples=None, seed=0):
        raise NotImplementedError

    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        checks.check_measure_exposure(stub)


# ---- the cases --------------------------------------------------------------------------------------


def test_every_case_has_the_rank_its_comment_says():
    """The true rank of each case, counted from its score function over the whole space, is the
    one stated; risks.exposure on the package's view of the space agrees."""
    for case in risks_build.exposure_cases():
        space = risks_build._space(case.alphabet, len(case.secret))
        scores = np.array([case.score(s) for s in space])
        mine = case.score(case.secret)
        assert 1 + int((np.delete(scores, space.index(case.secret)) >= mine).sum()) == case.rank
        assert math.isclose(risks.exposure(case.space_lp, space.index(case.secret)),
                            math.log2(case.size) - math.log2(case.rank))


def test_the_tiny_gpts_ranks_cannot_move_with_rounding():
    """The per-text log-likelihoods rank the PINs as risks.secret_logprobs does, and the canary's
    is at least 1e-3 nats from every other PIN's (rounding moves them by about 1e-6)."""
    case = next(c for c in risks_build.exposure_cases() if "GPT" in c.what)
    space = risks_build._space(case.alphabet, 2)
    per_text = np.array([case.score(s) for s in space])
    assert np.array_equal(np.argsort(-per_text, kind="stable"), np.argsort(-case.space_lp, kind="stable"))
    mine = per_text[space.index(case.secret)]
    assert np.abs(np.delete(per_text, space.index(case.secret)) - mine).min() > 1e-3


def test_the_ties_and_the_leading_zeros_are_there():
    cases = risks_build.exposure_cases()
    assert cases[0].rank == 7 and cases[0].score("34") == cases[0].score("40")  # a tie
    assert cases[1].rank == 1 and cases[2].secret == "007"
    assert [c.n_samples is not None for c in cases] == [False] * 4 + [True] * 2


# ---- wrong answers ----------------------------------------------------------------------------------


def _slipped(slip):
    return lambda *args: measure_exposure(*args, slip=slip)


@pytest.mark.parametrize("slip, words", [
    ("from 0", "rank starts at 0"),
    ("ties better", "Ties went the secret's way"),
    ("log e", "Natural logarithms"),
    ("reversed", "ranked from the least likely"),
    ("excluded", "left out of its own candidates"),
    ("not extrapolated", "Extrapolate the sample's rank"),
    ("with repeats", "without repeats"),
    ("whole space scored", "score only the sample"),
    ("no seed", "seed 0 gave two different samples"),
    ("same seed", "seeds 0 and 1 drew the same sample"),
])
def test_mistakes_are_caught_with_their_tip(slip, words):
    with pytest.raises(AssertionError, match=words):
        checks.check_measure_exposure(_slipped(slip))


def _with_full_stop(log_likelihood, canary, alphabet="0123456789", n_samples=None, seed=0):
    space = ["".join(p) for p in itertools.product(alphabet, repeat=len(canary.secret))]
    return risks.exposure(log_likelihood([risks.Canary(canary.prefix, s).text for s in space]),
                          space.index(canary.secret))


def _digits_only(log_likelihood, canary, alphabet="0123456789", n_samples=None, seed=0):
    return measure_exposure(log_likelihood, canary, "0123456789", n_samples, seed)


def _one_text_at_a_time(log_likelihood, canary, alphabet="0123456789", n_samples=None, seed=0):
    log_likelihood(canary.prefix + canary.secret)
    return 0.0


def _secret_left_out(log_likelihood, canary, alphabet="0123456789", n_samples=None, seed=0):
    space = ["".join(p) for p in itertools.product(alphabet, repeat=len(canary.secret))]
    log_likelihood([canary.prefix + s for s in space if s != canary.secret])
    return 1.0


def _half_the_space(log_likelihood, canary, alphabet="0123456789", n_samples=None, seed=0):
    space = ["".join(p) for p in itertools.product(alphabet, repeat=len(canary.secret))]
    log_likelihood([canary.prefix + s for s in space[: len(space) // 2] + [canary.secret]])
    return 1.0


@pytest.mark.parametrize("wrong, words", [
    (_with_full_stop, "is not a candidate canary"),
    (_digits_only, "is not a candidate canary"),
    (_one_text_at_a_time, "takes a list of texts"),
    (_secret_left_out, "never scored the canary itself"),
    (_half_the_space, "score every one"),
    (lambda ll, c, a="0", n=None, s=0: measure_exposure(ll, c, a, n, s) and None,
     "return one finite number"),
    (lambda ll, c, a="0", n=None, s=0: measure_exposure(ll, c, a, n, s) + 0.5,
     r"the exposure is 3\.8365 bits, you returned 4\.3365\. Hint"),
])
def test_malformed_answers_are_explained(wrong, words):
    with pytest.raises(AssertionError, match=words):
        checks.check_measure_exposure(wrong)


def test_a_rank_from_0_on_the_likeliest_secret_is_explained():
    """Case 2's secret is the likeliest: a rank counted from 0 is 0 there, and log2(0) fails."""
    def from_0(log_likelihood, canary, alphabet="0123456789", n_samples=None, seed=0):
        if canary.secret == "40":  # case 1, where the rank from 0 is 6: let it pass
            return measure_exposure(log_likelihood, canary, alphabet, n_samples, seed)
        return measure_exposure(log_likelihood, canary, alphabet, n_samples, seed, slip="from 0")

    with pytest.raises(AssertionError, match="log2\\(0\\)"):
        checks.check_measure_exposure(from_0)


def test_the_slips_are_far_apart_on_the_first_case():
    """On the first case every slip gives a different exposure, at least 0.01 bits from the
    right one and from each other, so a tip names exactly one mistake."""
    case = risks_build.exposure_cases()[0]
    lp = case.space_lp
    index = risks_build._space(case.alphabet, 2).index(case.secret)
    values = [f() for _, f in risks_build._slips(lp, index, case.size)]
    values.append(risks.exposure(lp, index))
    gaps = [abs(a - b) for a, b in itertools.combinations(values, 2)]
    assert min(gaps) > 0.01, values
