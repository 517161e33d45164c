"""Checks for exercises/01_ngram.ipynb: bigram MLE, add-k, continuation counts, Kneser-Ney.

Each check runs the learner's function on a small corpus chosen so that the usual mistakes
(joint instead of conditional probability, forgetting V, counting occurrences instead of
distinct neighbours, dropping the interpolation term) give different numbers, and names the
mistake when it sees one.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import passed as _passed

__all__ = ["check_add_k", "check_bigram_mle", "check_continuation_counts", "check_kneser_ney_bigram"]

TOKENS = ["the", "cat", "sat", "on", "the", "mat", ".", "the", "cat", "ate", "the", "fish", ".", "a", "dog", "sat", "on", "the", "cat", "."]
PAIRS = [("the", "cat"), ("sat", "on"), ("the", "mat"), ("cat", "ate"), ("on", "a"), ("a", "dog")]


def _bigrams(tokens: list[str]) -> Counter:
    return Counter(zip(tokens, tokens[1:]))


def _context_counts(tokens: list[str]) -> Counter:
    return Counter(tokens[:-1])  # how often each word is followed by something


def _continuations(tokens: list[str]) -> dict[str, int]:
    return dict(Counter(w for _, w in set(zip(tokens, tokens[1:]))))


def _close(got, want: float) -> bool:
    try:
        return math.isclose(float(got), want, rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return False


def check_bigram_mle(bigram_mle: Callable[[list[str], str, str], float]) -> None:
    """Task: ``bigram_mle(tokens, prev, word)`` = c(prev word) / c(prev followed by anything)."""
    task, hint = "Task 1 (bigram MLE)", "count the pairs (prev, word), divide by how often prev has a successor."
    pairs, ctx = _bigrams(TOKENS), _context_counts(TOKENS)
    for prev, word in PAIRS:
        got = _call(task, hint, bigram_mle, list(TOKENS), prev, word)
        want = pairs[prev, word] / ctx[prev]
        if not _close(got, want):
            tip = ""
            if _close(got, pairs[prev, word] / (len(TOKENS) - 1)):
                tip = " That is p(prev, word), the joint probability: divide by c(prev) instead."
            elif _close(got, pairs[prev, word] / Counter(TOKENS)[word]):
                tip = " You divided by c(word): the condition is prev, so divide by c(prev)."
            raise AssertionError(f"{task}: bigram_mle(tokens, {prev!r}, {word!r}) returned {got}, "
                                 f"expected {pairs[prev, word]}/{ctx[prev]} = {want:.4f}.{tip}")
    if not _close(_call(task, hint, bigram_mle, list(TOKENS), "dog", "ate"), 0.0):
        raise AssertionError(f"{task}: 'dog ate' never occurs, so its MLE probability is 0")
    _passed(task, "p(cat | the) = 3/5, and 0 for every pair never seen")


def check_add_k(add_k: Callable[[list[str], str, str, int, float], float]) -> None:
    """Task: ``add_k(tokens, prev, word, vocab_size, k)`` = (c(prev word) + k) / (c(prev) + k V)."""
    task, hint = "Task 2 (add-k)", "add k to every count, so the denominator grows by k for each of the V words."
    pairs, ctx = _bigrams(TOKENS), _context_counts(TOKENS)
    vocab = len(set(TOKENS))
    for (prev, word), k in zip(PAIRS + [("dog", "ate")], [1, 0.5, 0.1, 1, 0.01, 2, 1]):
        got = _call(task, hint, add_k, list(TOKENS), prev, word, vocab, k)
        want = (pairs[prev, word] + k) / (ctx[prev] + k * vocab)
        if not _close(got, want):
            tip = ""
            if _close(got, (pairs[prev, word] + k) / (ctx[prev] + k)):
                tip = " The denominator must grow by k x V (k for every word of the vocabulary)."
            raise AssertionError(f"{task}: add_k(tokens, {prev!r}, {word!r}, V={vocab}, k={k}) "
                                 f"returned {got}, expected {want:.4f}.{tip}")
    _passed(task, "unseen pairs get a little mass, and every row still sums to 1")


def check_continuation_counts(continuation_counts: Callable[[list[str]], dict[str, int]]) -> None:
    """Task: ``continuation_counts(tokens)`` = {word: number of distinct words seen before it}."""
    task, hint = "Task 3 (continuation counts)", "collect the set of distinct (prev, word) pairs, then count by word."
    got = _call(task, hint, continuation_counts, list(TOKENS))
    want = _continuations(TOKENS)
    got = {w: n for w, n in dict(got or {}).items() if n}
    if got != want:
        tip = ""
        if got == dict(Counter(TOKENS[1:])):
            tip = " You counted occurrences: count distinct preceding words instead."
        elif got == dict(Counter(p for p, _ in set(zip(TOKENS, TOKENS[1:])))):
            tip = " You counted the words that *follow*: count those that come before."
        wrong = sorted(w for w in set(got) | set(want) if got.get(w) != want.get(w))[:3]
        raise AssertionError(f"{task}: wrong for {wrong}: expected "
                             f"{ {w: want.get(w, 0) for w in wrong} }, got { {w: got.get(w, 0) for w in wrong} }.{tip}")
    _passed(task, f"'cat' follows 'the' only (1) although it occurs {Counter(TOKENS)['cat']} times")


def _kn(tokens: list[str], prev: str, word: str, d: float) -> float:
    pairs, ctx, cont = _bigrams(tokens), _context_counts(tokens), _continuations(tokens)
    p_cont = cont.get(word, 0) / sum(cont.values())
    followers = sum(1 for (a, _) in pairs if a == prev)
    return max(pairs[prev, word] - d, 0) / ctx[prev] + d * followers / ctx[prev] * p_cont


def check_kneser_ney_bigram(kn_bigram: Callable[[list[str], str, str, float], float]) -> None:
    """Task: interpolated Kneser-Ney bigram ``kn_bigram(tokens, prev, word, d)``."""
    task, hint = "Task 4 (Kneser-Ney bigram)", "max(c - d, 0) / c(prev) + d * N1+(prev .) / c(prev) * p_cont(word)."
    for prev, word in PAIRS + [("dog", "ate"), ("on", "cat")]:
        got = _call(task, hint, kn_bigram, list(TOKENS), prev, word, 0.75)
        want = _kn(TOKENS, prev, word, 0.75)
        if not _close(got, want):
            pairs, ctx = _bigrams(TOKENS), _context_counts(TOKENS)
            tip = ""
            if _close(got, max(pairs[prev, word] - 0.75, 0) / ctx[prev]):
                tip = " You dropped the interpolation term: the discounted mass goes to p_cont(word)."
            else:
                unigram = Counter(TOKENS)[word] / len(TOKENS)
                followers = sum(1 for (a, _) in pairs if a == prev)
                if _close(got, max(pairs[prev, word] - 0.75, 0) / ctx[prev] + 0.75 * followers / ctx[prev] * unigram):
                    tip = " You interpolated with the unigram frequency: use continuation counts."
            raise AssertionError(f"{task}: kn_bigram(tokens, {prev!r}, {word!r}, 0.75) returned "
                                 f"{got}, expected {want:.4f}.{tip}")
    vocab = sorted(set(TOKENS))
    total = sum(float(_call(task, hint, kn_bigram, list(TOKENS), "the", w, 0.75)) for w in vocab)
    _passed(task, f"p(. | the) sums to {total:.6f} over the vocabulary, and unseen pairs get mass")
