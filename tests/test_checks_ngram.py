"""The chapter 01 exercise checks accept right answers and name the usual mistakes."""

from collections import Counter

import pytest

from minigpt.course import checks


def stub(*args):
    raise NotImplementedError


def pairs(tokens):
    return Counter(zip(tokens, tokens[1:]))


def mle(tokens, prev, word):
    return pairs(tokens)[prev, word] / Counter(tokens[:-1])[prev]


def add_k(tokens, prev, word, vocab_size, k):
    return (pairs(tokens)[prev, word] + k) / (Counter(tokens[:-1])[prev] + k * vocab_size)


def continuation_counts(tokens):
    return dict(Counter(w for _, w in set(zip(tokens, tokens[1:]))))


def kn_bigram(tokens, prev, word, d):
    cont = continuation_counts(tokens)
    c_prev = Counter(tokens[:-1])[prev]
    followers = len({w for p, w in pairs(tokens) if p == prev})
    return max(pairs(tokens)[prev, word] - d, 0) / c_prev + d * followers / c_prev * cont.get(word, 0) / sum(cont.values())


@pytest.mark.parametrize("check", [
    checks.check_bigram_mle, checks.check_add_k,
    checks.check_continuation_counts, checks.check_kneser_ney_bigram,
])
def test_untouched_stubs_are_not_done_yet(check):
    with pytest.raises(checks.NotDoneYet, match="Hint"):
        check(stub)


def test_bigram_mle_check(capsys):
    checks.check_bigram_mle(mle)
    assert "passed" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="joint probability"):
        checks.check_bigram_mle(lambda t, p, w: pairs(t)[p, w] / (len(t) - 1))
    with pytest.raises(AssertionError, match="divided by c\\(word\\)"):
        checks.check_bigram_mle(lambda t, p, w: pairs(t)[p, w] / Counter(t)[w])


def test_add_k_check():
    checks.check_add_k(add_k)
    with pytest.raises(AssertionError, match="k x V"):
        checks.check_add_k(lambda t, p, w, v, k: (pairs(t)[p, w] + k) / (Counter(t[:-1])[p] + k))
    with pytest.raises(AssertionError, match="expected"):
        checks.check_add_k(lambda t, p, w, v, k: mle(t, p, w))


def test_continuation_counts_check():
    checks.check_continuation_counts(continuation_counts)
    checks.check_continuation_counts(lambda t: {**continuation_counts(t), "unused": 0})  # zeros ok
    with pytest.raises(AssertionError, match="counted occurrences"):
        checks.check_continuation_counts(lambda t: dict(Counter(t[1:])))
    with pytest.raises(AssertionError, match="follow"):
        checks.check_continuation_counts(lambda t: dict(Counter(p for p, _ in set(zip(t, t[1:])))))


def test_kneser_ney_bigram_check(capsys):
    checks.check_kneser_ney_bigram(kn_bigram)
    assert "sums to 1.000000" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="interpolation term"):
        checks.check_kneser_ney_bigram(lambda t, p, w, d: max(pairs(t)[p, w] - d, 0) / Counter(t[:-1])[p])

    def unigram_kn(t, p, w, d):
        c_prev, followers = Counter(t[:-1])[p], len({b for a, b in pairs(t) if a == p})
        return max(pairs(t)[p, w] - d, 0) / c_prev + d * followers / c_prev * Counter(t)[w] / len(t)

    with pytest.raises(AssertionError, match="continuation counts"):
        checks.check_kneser_ney_bigram(unigram_kn)
