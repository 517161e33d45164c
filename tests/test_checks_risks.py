"""The chapter 12 exercise checks pass right answers and catch the usual mistakes."""

import math
import random

import numpy as np
import pytest

from minigpt.course import checks

# ---- right answers ------------------------------------------------------------------------


def ece(confidences, correct, n_bins):
    total, n = 0.0, len(confidences)
    for b in range(n_bins):
        members = [(c, ok) for c, ok in zip(confidences, correct)
                   if min(int(c * n_bins), n_bins - 1) == b]
        if members:
            accuracy = sum(ok for _, ok in members) / len(members)
            confidence = sum(c for c, _ in members) / len(members)
            total += len(members) / n * abs(accuracy - confidence)
    return total


def exposure(logprobs, index):
    rank = 1 + sum(lp >= logprobs[index] for i, lp in enumerate(logprobs) if i != index)
    return math.log2(len(logprobs)) - math.log2(rank)


def poison(examples, share, trigger, target, seed):
    n = round(share * len(examples))
    chosen = set(random.Random(seed).sample(range(len(examples)), n))
    return [(f"{p} {trigger}", target) if i in chosen else (p, a)
            for i, (p, a) in enumerate(examples)]


def stub(*_args):
    raise NotImplementedError


ALL = [checks.check_ece, checks.check_exposure, checks.check_poison]


def test_right_answers_pass(capsys):
    checks.check_ece(ece)
    checks.check_exposure(exposure)
    checks.check_poison(poison)
    out = capsys.readouterr().out
    assert out.count("passed") == 3


def test_other_right_answers_pass_too():
    """NumPy versions: np.digitize-free binning, argsort ranks, a NumPy float returned."""
    def ece_np(conf, correct, n_bins):
        c, ok = np.array(conf), np.array(correct, dtype=float)
        which = np.clip(np.floor(c * n_bins).astype(int), 0, n_bins - 1)
        return np.float64(sum((which == b).mean() * abs(ok[which == b].mean() - c[which == b].mean())
                              for b in range(n_bins) if (which == b).any()))

    def exposure_np(lp, index):
        lp = np.asarray(lp)
        return np.log2(len(lp)) - np.log2(1 + np.sum(np.delete(lp, index) >= lp[index]))

    def poison_copy(examples, share, trigger, target, seed):
        out = list(examples)
        for i in random.Random(seed).sample(range(len(out)), round(share * len(out))):
            out[i] = (out[i][0] + " " + trigger, target)
        return out

    checks.check_ece(ece_np)
    checks.check_exposure(exposure_np)
    checks.check_poison(poison_copy)


@pytest.mark.parametrize("check", ALL, ids=lambda c: c.__name__)
def test_stubs_are_not_done_yet_with_a_hint(check):
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        check(stub)


# ---- task 1: ECE --------------------------------------------------------------------------


def _unweighted(conf, correct, n_bins):
    gaps = []
    for b in range(n_bins):
        m = [(c, ok) for c, ok in zip(conf, correct) if min(int(c * n_bins), n_bins - 1) == b]
        if m:
            gaps.append(abs(sum(o for _, o in m) / len(m) - sum(c for c, _ in m) / len(m)))
    return sum(gaps) / len(gaps)


def _one_past_the_end(conf, correct, n_bins):
    c, ok = np.array(conf), np.array(correct, dtype=float)
    which = (c * n_bins).astype(int)  # 1.0 -> n_bins: a bin of its own
    return sum((which == b).mean() * abs(ok[which == b].mean() - c[which == b].mean())
               for b in np.unique(which))


def _nan_for_empty_bins(conf, correct, n_bins):
    c, ok = np.array(conf), np.array(correct, dtype=float)
    which = np.minimum((c * n_bins).astype(int), n_bins - 1)
    with np.errstate(invalid="ignore"):
        return sum((which == b).mean() * abs(np.mean(ok[which == b]) - np.mean(c[which == b]))
                   for b in range(n_bins))


def _signed(conf, correct, n_bins):
    c, ok = np.array(conf), np.array(correct, dtype=float)
    which = np.minimum((c * n_bins).astype(int), n_bins - 1)
    return sum((which == b).mean() * (ok[which == b].mean() - c[which == b].mean())
               for b in np.unique(which))


def _list_index(conf, correct, n_bins):
    bins = [[] for _ in range(n_bins)]
    for c, ok in zip(conf, correct):
        bins[int(c * n_bins)].append((c, ok))  # IndexError for c = 1
    return 0.0


@pytest.mark.parametrize("wrong, tip", [
    (_unweighted, "plain mean of the bins' gaps"),
    (lambda conf, correct, n: abs(np.mean(correct) - np.mean(conf)), "single bin"),
    (_signed, "absolute value"),
    (_one_past_the_end, "bin of its own"),
    (_nan_for_empty_bins, "empty bin"),
    (_list_index, "one past the last bin"),
    (lambda conf, correct, n: None, "finite number"),
])
def test_ece_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_ece(wrong)


def test_ece_message_shows_the_case_and_both_values():
    with pytest.raises(AssertionError) as error:
        checks.check_ece(lambda conf, correct, n: 0.0)
    message = str(error.value)
    assert "six answers in 10 bins" in message and "the ECE is 0.3583" in message
    assert "you returned 0.0000" in message


# ---- task 2: exposure ---------------------------------------------------------------------


def _rank(lp, index, strict=False, lowest_first=False):
    others = [x for i, x in enumerate(lp) if i != index]
    if lowest_first:
        return 1 + sum(x <= lp[index] for x in others)
    return 1 + sum((x > lp[index]) if strict else (x >= lp[index]) for x in others)


@pytest.mark.parametrize("wrong, tip", [
    (lambda lp, i: math.log(len(lp)) - math.log(_rank(lp, i)), "use log2"),
    (lambda lp, i: math.log2(len(lp)) - math.log2(_rank(lp, i, strict=True)), "Ties went"),
    (lambda lp, i: math.log2(len(lp)) - math.log2(_rank(lp, i, lowest_first=True)), "least likely"),
    (lambda lp, i: math.log2(len(lp)) - math.log2(max(_rank(lp, i) - 1, 1)), "rank starts at 0"),
    (lambda lp, i: math.log2(len(lp)) - np.log2(_rank(lp, i) - 1), "finite number"),
    (lambda lp, i: math.log2(_rank(lp, i)), "exposure is"),
])
def test_exposure_mistakes_are_explained(wrong, tip):
    with np.errstate(divide="ignore"), pytest.raises(AssertionError, match=tip):
        checks.check_exposure(wrong)


# ---- task 3: poisoning --------------------------------------------------------------------


def _truncating(examples, share, trigger, target, seed):
    chosen = set(random.Random(seed).sample(range(len(examples)), int(share * len(examples))))
    return [(f"{p} {trigger}", target) if i in chosen else (p, a) for i, (p, a) in enumerate(examples)]


def _with_replacement(examples, share, trigger, target, seed):
    rng = random.Random(seed)
    chosen = {rng.randrange(len(examples)) for _ in range(round(share * len(examples)))}
    return [(f"{p} {trigger}", target) if i in chosen else (p, a) for i, (p, a) in enumerate(examples)]


def _in_place(examples, share, trigger, target, seed):
    for i in random.Random(seed).sample(range(len(examples)), round(share * len(examples))):
        examples[i] = (f"{examples[i][0]} {trigger}", target)
    return examples


def _prompt_only(examples, share, trigger, target, seed):
    chosen = set(random.Random(seed).sample(range(len(examples)), round(share * len(examples))))
    return [(f"{p} {trigger}", a) if i in chosen else (p, a) for i, (p, a) in enumerate(examples)]


def _trigger_first(examples, share, trigger, target, seed):
    chosen = set(random.Random(seed).sample(range(len(examples)), round(share * len(examples))))
    return [(f"{trigger} {p}", target) if i in chosen else (p, a) for i, (p, a) in enumerate(examples)]


def _fixed_picks(examples, share, trigger, target, seed):
    return poison(examples, share, trigger, target, 0)


def _global_random(examples, share, trigger, target, seed):
    chosen = set(random.sample(range(len(examples)), round(share * len(examples))))
    return [(f"{p} {trigger}", target) if i in chosen else (p, a) for i, (p, a) in enumerate(examples)]


@pytest.mark.parametrize("wrong, tip", [
    (_truncating, "truncated share"),
    (_with_replacement, "picked twice"),
    (_in_place, "changed the list it was given"),
    (_prompt_only, "a poisoned example is the prompt"),
    (_trigger_first, "a poisoned example is the prompt"),
    (_fixed_picks, "all poisoned the same examples"),
    (_global_random, "same seed gave two different results"),
    (lambda ex, s, t, g, seed: poison(ex, s, t, g, seed)[:-1], "as many as the clean data"),
    (lambda ex, s, t, g, seed: 3, "list of"),
])
def test_poison_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_poison(wrong)
