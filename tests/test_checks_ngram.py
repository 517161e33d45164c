"""The chapter 01 exercise checks accept right answers and name the usual mistakes.

Every check gets two or more right implementations written differently (each must pass) and at
least three wrong ones a learner would plausibly write (each must be rejected, with a tip that
names the mistake).
"""

import re
from collections import Counter, defaultdict
from fractions import Fraction

import pytest

from minigpt.course import checks
from minigpt.course.checks import ngram as ngram_checks


def stub(*args):
    raise NotImplementedError


def pairs(tokens):
    return Counter(zip(tokens, tokens[1:]))


# ---------------------------------------------------------------------------------------------
# Right implementations, written in different styles
# ---------------------------------------------------------------------------------------------

def mle(tokens, prev, word):  # Counter-based, as in the solution notebook
    return pairs(tokens)[prev, word] / Counter(tokens[:-1])[prev]


def mle_loop(tokens, prev, word):  # a plain loop over the neighbours
    together = starts = 0
    for i in range(len(tokens) - 1):
        if tokens[i] == prev:
            starts += 1
            together += tokens[i + 1] == word
    return together / starts


def mle_defaultdict(tokens, prev, word):  # nested defaultdict of counts, c(prev ·) as a row sum
    table = defaultdict(lambda: defaultdict(int))
    for a, b in zip(tokens, tokens[1:]):
        table[a][b] += 1
    return table[prev][word] / sum(table[prev].values())


def add_k(tokens, prev, word, vocab_size, k):
    return (pairs(tokens)[prev, word] + k) / (Counter(tokens[:-1])[prev] + k * vocab_size)


def add_k_loop(tokens, prev, word, vocab_size, k):
    count = starts = 0
    for a, b in zip(tokens, tokens[1:]):
        if a == prev:
            starts += 1
            if b == word:
                count += 1
    return (count + k) / (starts + k * vocab_size)


def add_k_fraction(tokens, prev, word, vocab_size, k):  # exact arithmetic; the check takes any number
    row = Counter(b for a, b in zip(tokens, tokens[1:]) if a == prev)
    k = Fraction(k)
    return (row[word] + k) / (sum(row.values()) + k * vocab_size)


def continuation_counts(tokens):
    return dict(Counter(w for _, w in set(zip(tokens, tokens[1:]))))


def continuation_counts_defaultdict(tokens):  # defaultdict of sets, every word listed (0 for the first)
    before = defaultdict(set)
    for i, word in enumerate(tokens):
        before[word]
        if i > 0:
            before[word].add(tokens[i - 1])
    return {word: len(prevs) for word, prevs in before.items()}


def continuation_counts_counter(tokens):  # returns the Counter itself
    seen, counts = set(), Counter()
    for pair in zip(tokens, tokens[1:]):
        if pair not in seen:
            seen.add(pair)
            counts[pair[1]] += 1
    return counts


def kn_bigram(tokens, prev, word, d):  # as in the solution notebook
    cont = continuation_counts(tokens)
    c_prev = Counter(tokens[:-1])[prev]
    followers = len({w for p, w in pairs(tokens) if p == prev})
    return max(pairs(tokens)[prev, word] - d, 0) / c_prev + d * followers / c_prev * cont.get(word, 0) / sum(cont.values())


def kn_bigram_loop(tokens, prev, word, d):  # defaultdicts, lambda and p_cont spelled out
    row = defaultdict(int)
    before = defaultdict(set)
    for a, b in zip(tokens, tokens[1:]):
        before[b].add(a)
        if a == prev:
            row[b] += 1
    c_prev = sum(row.values())  # the number of bigrams that start with prev
    distinct_pairs = sum(len(s) for s in before.values())
    p_cont = len(before.get(word, ())) / distinct_pairs
    discounted = max(row.get(word, 0) - d, 0) / c_prev
    lam = d * len(row) / c_prev
    return discounted + lam * p_cont


def kn_bigram_reuse(tokens, prev, word, d):  # reuses the earlier tasks' functions
    cont = continuation_counts_defaultdict(tokens)
    c = mle(tokens, prev, word) * Counter(tokens[:-1])[prev]
    c_prev = Counter(tokens[:-1])[prev]
    n1 = sum(1 for (a, _b) in set(zip(tokens, tokens[1:])) if a == prev)
    return max(c - d, 0) / c_prev + d * n1 / c_prev * cont.get(word, 0) / sum(cont.values())


RIGHT = [
    pytest.param(checks.check_bigram_mle, mle, id="mle-counter"),
    pytest.param(checks.check_bigram_mle, mle_loop, id="mle-loop"),
    pytest.param(checks.check_bigram_mle, mle_defaultdict, id="mle-defaultdict"),
    pytest.param(checks.check_add_k, add_k, id="add_k-counter"),
    pytest.param(checks.check_add_k, add_k_loop, id="add_k-loop"),
    pytest.param(checks.check_add_k, add_k_fraction, id="add_k-fraction"),
    pytest.param(checks.check_continuation_counts, continuation_counts, id="continuation-counter"),
    pytest.param(checks.check_continuation_counts, continuation_counts_defaultdict, id="continuation-defaultdict"),
    pytest.param(checks.check_continuation_counts, continuation_counts_counter, id="continuation-loop-counter"),
    pytest.param(checks.check_continuation_counts, lambda t: {**continuation_counts(t), "unused": 0},
                 id="continuation-with-zeros"),
    pytest.param(checks.check_kneser_ney_bigram, kn_bigram, id="kn-counter"),
    pytest.param(checks.check_kneser_ney_bigram, kn_bigram_loop, id="kn-defaultdict"),
    pytest.param(checks.check_kneser_ney_bigram, kn_bigram_reuse, id="kn-reuse"),
]


@pytest.mark.parametrize("check, fn", RIGHT)
def test_right_implementations_pass(check, fn, capsys):
    check(fn)
    out = capsys.readouterr().out
    assert out.startswith("✓ Task ") and " passed: " in out


def test_kneser_ney_pass_message_reports_the_sum(capsys):
    checks.check_kneser_ney_bigram(kn_bigram)
    assert "sums to 1.000000" in capsys.readouterr().out


@pytest.mark.parametrize("check", [
    checks.check_bigram_mle, checks.check_add_k,
    checks.check_continuation_counts, checks.check_kneser_ney_bigram,
])
def test_untouched_stubs_are_not_done_yet(check):
    with pytest.raises(checks.NotDoneYet, match="Hint"):
        check(stub)


# ---------------------------------------------------------------------------------------------
# Wrong implementations a learner would plausibly write
# ---------------------------------------------------------------------------------------------

WRONG_DENOMINATOR = "you divided by how often prev occurs; divide by how many bigrams start with prev"


def mle_counts_prev(tokens, prev, word):  # c(prev) instead of c(prev ·)
    return pairs(tokens)[prev, word] / Counter(tokens)[prev]


def mle_counts_prev_loop(tokens, prev, word):  # the same mistake as a loop: tokens.count
    return sum(1 for a, b in zip(tokens, tokens[1:]) if (a, b) == (prev, word)) / tokens.count(prev)


def kn_counts_prev(tokens, prev, word, d):
    cont = continuation_counts(tokens)
    c_prev = Counter(tokens)[prev]
    followers = len({w for p, w in pairs(tokens) if p == prev})
    return max(pairs(tokens)[prev, word] - d, 0) / c_prev + d * followers / c_prev * cont.get(word, 0) / sum(cont.values())


def kn_with(p_cont=None, followers=None, discounted=None, weight=None, c_prev=None):
    """kn_bigram with one part computed the way a learner might get it wrong."""
    def kn(tokens, prev, word, d):
        cont = continuation_counts(tokens)
        c = pairs(tokens)[prev, word]
        cp = Counter(tokens[:-1])[prev] if c_prev is None else c_prev(tokens, prev)
        n1 = len({w for p, w in pairs(tokens) if p == prev}) if followers is None else followers(tokens, prev)
        pc = cont.get(word, 0) / sum(cont.values()) if p_cont is None else p_cont(tokens, word)
        first = max(c - d, 0) / cp if discounted is None else discounted(c, cp, d)
        lam = d * n1 / cp if weight is None else weight(d, n1, cp)
        return first + lam * pc
    return kn


def follow_counts(tokens):
    return Counter(p for p, _ in set(zip(tokens, tokens[1:])))


def continuation_counts_range_off_by_one(tokens):  # range(1, len - 1) skips the first pair
    before = defaultdict(set)
    for i in range(1, len(tokens) - 1):
        before[tokens[i + 1]].add(tokens[i])
    return {w: len(s) for w, s in before.items()}


WRONG = [
    # Task 1: bigram MLE
    pytest.param(checks.check_bigram_mle, mle_counts_prev, WRONG_DENOMINATOR, id="mle-counter(tokens)[prev]"),
    pytest.param(checks.check_bigram_mle, mle_counts_prev_loop, WRONG_DENOMINATOR, id="mle-tokens.count(prev)"),
    pytest.param(checks.check_bigram_mle, lambda t, p, w: pairs(t)[p, w] / Counter(t[1:])[p], r"tokens\[1:\]",
                 id="mle-counter(tokens[1:])"),
    pytest.param(checks.check_bigram_mle, lambda t, p, w: pairs(t)[p, w] / (len(t) - 1), "joint probability",
                 id="mle-joint"),
    pytest.param(checks.check_bigram_mle, lambda t, p, w: pairs(t)[p, w] / Counter(t)[w], r"divided by c\(word\)",
                 id="mle-c(word)"),
    pytest.param(checks.check_bigram_mle, lambda t, p, w: pairs(t)[w, p] / Counter(t[:-1])[p], "prev comes first",
                 id="mle-reversed-pair"),
    pytest.param(checks.check_bigram_mle, lambda t, p, w: None, "forget `return`", id="mle-no-return"),
    # Task 2: add-k
    pytest.param(checks.check_add_k, lambda t, p, w, v, k: (pairs(t)[p, w] + k) / (Counter(t)[p] + k * v),
                 WRONG_DENOMINATOR, id="add_k-counter(tokens)[prev]"),
    pytest.param(checks.check_add_k, lambda t, p, w, v, k: (pairs(t)[p, w] + k) / (Counter(t[:-1])[p] + k),
                 "k x V.*not by k", id="add_k-forgot-V"),
    pytest.param(checks.check_add_k, lambda t, p, w, v, k: (pairs(t)[p, w] + k) / (Counter(t[:-1])[p] + v),
                 "multiply V by k", id="add_k-forgot-k-times-V"),
    pytest.param(checks.check_add_k, lambda t, p, w, v, k: (pairs(t)[p, w] + 1) / (Counter(t[:-1])[p] + v),
                 "add-one", id="add_k-add-one"),
    pytest.param(checks.check_add_k, lambda t, p, w, v, k: pairs(t)[p, w] / (Counter(t[:-1])[p] + k * v),
                 "numerator too", id="add_k-no-k-in-numerator"),
    pytest.param(checks.check_add_k, lambda t, p, w, v, k: add_k(t, p, w, len(set(t)), k), "vocab_size argument",
                 id="add_k-V-from-tokens"),
    pytest.param(checks.check_add_k, lambda t, p, w, v, k: mle(t, p, w), "unsmoothed MLE", id="add_k-unsmoothed"),
    # Task 3: continuation counts
    pytest.param(checks.check_continuation_counts, lambda t: dict(Counter(t[1:])), "counted occurrences",
                 id="continuation-occurrences"),
    pytest.param(checks.check_continuation_counts, follow_counts, r"\*follow\*", id="continuation-following"),
    pytest.param(checks.check_continuation_counts, lambda t: continuation_counts(t[:-1]), "missed the last pair",
                 id="continuation-missed-last"),
    pytest.param(checks.check_continuation_counts, continuation_counts_range_off_by_one, "missed the first pair",
                 id="continuation-missed-first"),
    # Task 4: Kneser-Ney
    pytest.param(checks.check_kneser_ney_bigram, kn_counts_prev, WRONG_DENOMINATOR, id="kn-counter(tokens)[prev]"),
    pytest.param(checks.check_kneser_ney_bigram,
                 lambda t, p, w, d: max(pairs(t)[p, w] - d, 0) / Counter(t[:-1])[p], "interpolation term",
                 id="kn-no-interpolation"),
    pytest.param(checks.check_kneser_ney_bigram, kn_with(p_cont=lambda t, w: Counter(t)[w] / len(t)),
                 "unigram frequency", id="kn-unigram"),
    pytest.param(checks.check_kneser_ney_bigram,
                 kn_with(p_cont=lambda t, w: follow_counts(t)[w] / sum(follow_counts(t).values())),
                 r"\*before\* w", id="kn-p_cont-from-following-words"),
    pytest.param(checks.check_kneser_ney_bigram,
                 kn_with(p_cont=lambda t, w: continuation_counts(t).get(w, 0) / len(continuation_counts(t))),
                 "not by the number of words", id="kn-p_cont-over-types"),
    pytest.param(checks.check_kneser_ney_bigram, kn_with(followers=lambda t, p: 1), "multiply d by the number",
                 id="kn-lambda-without-N1+"),
    pytest.param(checks.check_kneser_ney_bigram, kn_with(followers=lambda t, p: Counter(t[:-1])[p]),
                 r"\*distinct\* words after prev", id="kn-N1+-counts-occurrences"),
    pytest.param(checks.check_kneser_ney_bigram, kn_with(weight=lambda d, n1, cp: d * n1),
                 r"forgot to divide by c\(prev ·\)", id="kn-lambda-not-divided"),
    pytest.param(checks.check_kneser_ney_bigram, kn_with(discounted=lambda c, cp, d: (c - d) / cp),
                 "Clip the discounted count", id="kn-no-max"),
    pytest.param(checks.check_kneser_ney_bigram, kn_with(discounted=lambda c, cp, d: max(c / cp - d, 0)),
                 "before dividing", id="kn-discount-after-dividing"),
]


@pytest.mark.parametrize("check, fn, tip", WRONG)
def test_wrong_implementations_are_rejected_with_a_tip(check, fn, tip):
    with pytest.raises(AssertionError, match=f"(?is)expected.*{tip}") as err:
        check(fn)
    assert not isinstance(err.value, checks.NotDoneYet)


def test_the_checks_ask_about_a_final_token_that_also_occurs_earlier():
    """c(prev) and c(prev ·) differ only for the text's final token: the checks must ask about it."""
    for tokens, prev, _word in ngram_checks.FINAL:
        assert tokens[-1] == prev and Counter(tokens)[prev] == Counter(tokens[:-1])[prev] + 1


def test_two_mistakes_at_once_are_rejected_without_a_misleading_tip():
    def two_mistakes(t, p, w, v, k):  # wrong denominator and forgot k in the numerator
        return pairs(t)[p, w] / (Counter(t)[p] + k * v)

    with pytest.raises(AssertionError, match="expected") as err:
        checks.check_add_k(two_mistakes)
    assert not any(tip in str(err.value) for tip, _formula in ngram_checks._ADD_K_MISTAKES)


# ---------------------------------------------------------------------------------------------
# The sum-to-1 assertions (the notebook promises them for Kneser-Ney; add-k's pass message too)
# ---------------------------------------------------------------------------------------------

def right_only_where_checked(fn, prev, word, delta=0.01):
    """``fn`` off by ``delta`` for one (prev, word) the point cases never ask about."""
    def wrapped(tokens, p, w, *rest):
        return fn(tokens, p, w, *rest) + (delta if (tokens[-1], p, w) == (".", prev, word) else 0)
    return wrapped


@pytest.mark.parametrize("check, fn, prev", [
    (checks.check_kneser_ney_bigram, kn_bigram, "the"),
    (checks.check_kneser_ney_bigram, kn_bigram, "."),
    (checks.check_add_k, add_k, "the"),
    (checks.check_add_k, add_k, "."),
])
def test_a_row_that_does_not_sum_to_one_is_rejected(check, fn, prev):
    vocab_size = len(set(ngram_checks.TOKENS))
    with pytest.raises(AssertionError, match=f"summed over the {vocab_size} words w.*{re.escape(repr(prev))}, w.*must sum to 1"):
        check(right_only_where_checked(fn, prev, "sat"))
