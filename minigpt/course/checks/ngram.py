"""Checks for exercises/01_ngram.ipynb: bigram MLE, add-k, continuation counts, Kneser-Ney.

Each check runs the learner's function on small corpora chosen so that the usual mistakes
(joint instead of conditional probability, dividing by c(prev) instead of c(prev ·), forgetting V,
counting occurrences instead of distinct neighbours, dropping the interpolation term) give
different numbers, and names the mistake when the learner's answers match it on every case.

Both corpora end in a word that also occurs earlier ("." and "dog"), so for that word c(prev),
how often it occurs, is one more than c(prev ·), the number of bigrams that start with it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable

from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import matching_tip as _matching_tip
from minigpt.course.checks._base import passed as _passed

__all__ = ["check_add_k", "check_bigram_mle", "check_continuation_counts", "check_kneser_ney_bigram"]

TOKENS = ["the", "cat", "sat", "on", "the", "mat", ".", "the", "cat", "ate", "the", "fish", ".", "a", "dog", "sat", "on", "the", "cat", "."]
PAIRS = [("the", "cat"), ("sat", "on"), ("the", "mat"), ("cat", "ate"), ("on", "a"), ("a", "dog")]
# A second corpus: its first pair ("my", "dog") occurs only once, and it ends in "dog", which
# also occurs earlier (c(dog) = 2 but only one bigram starts with "dog").
SHORT = ["my", "dog", "saw", "the", "cat", "and", "the", "cat", "saw", "a", "dog"]
# Cases whose prev is the final token of the text: c(prev) and c(prev ·) differ there.
FINAL = [(TOKENS, ".", "the"), (TOKENS, ".", "a"), (TOKENS, ".", "cat"), (SHORT, "dog", "saw")]

WRONG_DENOMINATOR = ("You divided by how often prev occurs; divide by how many bigrams start with prev "
                     "(c(prev ·) = Counter(tokens[:-1])[prev]: a final prev has no successor).")


def _bigrams(tokens: list[str]) -> Counter:
    return Counter(zip(tokens, tokens[1:]))


def _context_counts(tokens: list[str]) -> Counter:
    return Counter(tokens[:-1])  # how often each word is followed by something


def _continuations(tokens: list[str]) -> dict[str, int]:
    return dict(Counter(w for _, w in set(zip(tokens, tokens[1:]))))


def _followers(tokens: list[str], prev: str) -> int:
    """N1+(prev ·): the number of distinct words seen right after ``prev``."""
    return len({w for (p, w) in _bigrams(tokens) if p == prev})


def _close(got, want: float) -> bool:
    try:
        return math.isclose(float(got), want, rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return False


def _name(tokens: list[str]) -> str:
    return "tokens" if tokens is TOKENS else f"{' '.join(tokens)!r}.split()"


def _tip(results: list[tuple[tuple, object]], mistakes: Iterable[tuple[str, Callable[..., float]]]) -> str:
    """The first mistake whose formula gives every one of the learner's ``results``, as a tip."""
    return _matching_tip(results, mistakes, _close)


def _forgot_return(got) -> str:
    return " Your function returned None: did you forget `return`?" if got is None else ""


def _mle(tokens: list[str], prev: str, word: str) -> float:
    return _bigrams(tokens)[prev, word] / _context_counts(tokens)[prev]


_MLE_MISTAKES = [
    (WRONG_DENOMINATOR, lambda t, p, w: _bigrams(t)[p, w] / Counter(t)[p]),
    (("You counted prev in tokens[1:] (the words that have a predecessor): the bigrams that start "
      "with prev are counted in tokens[:-1]."), lambda t, p, w: _bigrams(t)[p, w] / Counter(t[1:])[p]),
    ("That is p(prev, word), the joint probability: divide by c(prev ·) instead.",
     lambda t, p, w: _bigrams(t)[p, w] / (len(t) - 1)),
    ("You divided by c(word): the condition is prev, so divide by c(prev ·).",
     lambda t, p, w: _bigrams(t)[p, w] / Counter(t)[w]),
    ("You counted the pair (word, prev): prev comes first.",
     lambda t, p, w: _bigrams(t)[w, p] / _context_counts(t)[p]),
]


def check_bigram_mle(bigram_mle: Callable[[list[str], str, str], float]) -> None:
    """Task: ``bigram_mle(tokens, prev, word)`` = c(prev word) / c(prev ·) (prev followed by anything)."""
    task, hint = "Task 1 (bigram MLE)", "count the pairs (prev, word), divide by how often prev has a successor."
    cases = [(TOKENS, prev, word) for prev, word in PAIRS] + FINAL + [(TOKENS, "dog", "ate"), (SHORT, "cat", "saw")]
    results = [((t, p, w), _call(task, hint, bigram_mle, list(t), p, w)) for t, p, w in cases]
    for (tokens, prev, word), got in results:
        want = _mle(tokens, prev, word)
        if not _close(got, want):
            count, ctx = _bigrams(tokens)[prev, word], _context_counts(tokens)[prev]
            unseen = f" ({prev!r} is never followed by {word!r})" if count == 0 else ""
            raise AssertionError(
                f"{task}: bigram_mle({_name(tokens)}, {prev!r}, {word!r}) returned {got}, expected "
                f"c({prev} {word}) / c({prev} ·) = {count}/{ctx} = {want:.4f}{unseen}."
                f"{_forgot_return(got) or _tip(results, _MLE_MISTAKES)}")
    _passed(task, "p(cat | the) = 3/5, and 0 for every pair never seen")  # as in the solution's stored output


def _add_k(tokens: list[str], prev: str, word: str, vocab_size: int, k: float) -> float:
    return (_bigrams(tokens)[prev, word] + k) / (_context_counts(tokens)[prev] + k * vocab_size)


_ADD_K_MISTAKES = [
    (WRONG_DENOMINATOR, lambda t, p, w, v, k: (_bigrams(t)[p, w] + k) / (Counter(t)[p] + k * v)),
    ("The denominator must grow by k x V (k for every word of the vocabulary), not by k.",
     lambda t, p, w, v, k: (_bigrams(t)[p, w] + k) / (_context_counts(t)[p] + k)),
    ("The denominator must grow by k x V, not by V: multiply V by k.",
     lambda t, p, w, v, k: (_bigrams(t)[p, w] + k) / (_context_counts(t)[p] + v)),
    ("You added 1 (add-one): add k, the argument.",
     lambda t, p, w, v, k: (_bigrams(t)[p, w] + 1) / (_context_counts(t)[p] + v)),
    ("Add k to the count in the numerator too: (c(prev word) + k) / (c(prev ·) + k x V).",
     lambda t, p, w, v, k: _bigrams(t)[p, w] / (_context_counts(t)[p] + k * v)),
    (("Use the vocab_size argument for V, not the number of distinct words in tokens: "
      "the vocabulary can hold words this text never uses."),
     lambda t, p, w, v, k: _add_k(t, p, w, len(set(t)), k)),
    ("That is the unsmoothed MLE: add k to the count and k x V to the denominator.",
     lambda t, p, w, v, k: _mle(t, p, w)),
]


def check_add_k(add_k: Callable[[list[str], str, str, int, float], float]) -> None:
    """Task: ``add_k(tokens, prev, word, vocab_size, k)`` = (c(prev word) + k) / (c(prev ·) + k V)."""
    task, hint = "Task 2 (add-k)", "add k to every count, so the denominator grows by k for each of the V words."
    vocab = len(set(TOKENS))
    cases = [(TOKENS, prev, word, vocab, k) for (prev, word), k in zip(PAIRS, [1, 0.5, 0.1, 1, 0.01, 2])]
    cases += [(TOKENS, "dog", "ate", vocab, 1), (TOKENS, ".", "the", vocab, 0.5), (TOKENS, ".", "cat", vocab, 1),
              (SHORT, "dog", "saw", len(set(SHORT)), 0.5),
              (TOKENS, "the", "cat", 100, 1), (TOKENS, "on", "cat", 1000, 0.1)]  # V larger than this text's
    results = [(args, _call(task, hint, add_k, list(args[0]), *args[1:])) for args in cases]
    for (tokens, prev, word, v, k), got in results:
        want = _add_k(tokens, prev, word, v, k)
        if not _close(got, want):
            count, ctx = _bigrams(tokens)[prev, word], _context_counts(tokens)[prev]
            raise AssertionError(
                f"{task}: add_k({_name(tokens)}, {prev!r}, {word!r}, vocab_size={v}, k={k}) returned {got}, "
                f"expected ({count} + {k}) / ({ctx} + {k} x {v}) = {want:.4f}."
                f"{_forgot_return(got) or _tip(results, _ADD_K_MISTAKES)}")
    for prev, k in [("the", 1), (".", 0.5)]:  # every row sums to 1 over the V words of the vocabulary
        row = [_call(task, hint, add_k, list(TOKENS), prev, w, vocab, k) for w in sorted(set(TOKENS))]
        _assert_sums_to_one(task, f"add_k(tokens, {prev!r}, w, vocab_size={vocab}, k={k})", row,
                            "each of the V words gets k extra, so the denominator grows by exactly k x V.")
    _passed(task, "unseen pairs get a little mass, and every row still sums to 1")


def _assert_sums_to_one(task: str, call: str, row: list, why: str) -> None:
    try:
        total = sum(float(p) for p in row)
    except (TypeError, ValueError):
        raise AssertionError(f"{task}: {call} must return a number for every word w, got {row}.") from None
    if not math.isclose(total, 1.0, rel_tol=0, abs_tol=1e-9):
        raise AssertionError(f"{task}: summed over the {len(row)} words w of the vocabulary, {call} gives "
                             f"{total:.6f}; a probability distribution must sum to 1: {why}")


_CONTINUATION_MISTAKES = [
    ("You counted occurrences: count distinct preceding words instead.", lambda t: dict(Counter(t[1:]))),
    ("You counted the words that *follow*: count those that come before.",
     lambda t: dict(Counter(p for p, _ in set(zip(t, t[1:]))))),
    ("You missed the last pair: zip(tokens, tokens[1:]) gives every pair of neighbours.",
     lambda t: _continuations(t[:-1])),
    ("You missed the first pair: zip(tokens, tokens[1:]) gives every pair of neighbours.",
     lambda t: _continuations(t[1:])),
]


def check_continuation_counts(continuation_counts: Callable[[list[str]], dict[str, int]]) -> None:
    """Task: ``continuation_counts(tokens)`` = {word: number of distinct words seen before it}."""
    task, hint = "Task 3 (continuation counts)", "collect the set of distinct (prev, word) pairs, then count by word."

    def nonzero(counts) -> dict:
        return {w: n for w, n in dict(counts or {}).items() if n}

    results = [(tokens, nonzero(_call(task, hint, continuation_counts, list(tokens)))) for tokens in (TOKENS, SHORT)]
    for tokens, got in results:
        want = _continuations(tokens)
        if got != want:
            tip = ""
            for message, mistake in _CONTINUATION_MISTAKES:
                if all(g == nonzero(mistake(t)) for t, g in results):
                    tip = " " + message
                    break
            wrong = sorted(w for w in set(got) | set(want) if got.get(w) != want.get(w))[:3]
            raise AssertionError(f"{task}: continuation_counts({_name(tokens)}) is wrong for {wrong}: expected "
                                 f"{ {w: want.get(w, 0) for w in wrong} }, got { {w: got.get(w, 0) for w in wrong} }.{tip}")
    _passed(task, f"'cat' follows 'the' only (1) although it occurs {Counter(TOKENS)['cat']} times")


def _kn(tokens: list[str], prev: str, word: str, d: float, *, c_prev=None, followers=None, p_cont=None,
        discounted=None, weight=None) -> float:
    """Interpolated Kneser-Ney; the keyword arguments swap in a part computed the wrong way."""
    pairs, cont = _bigrams(tokens), _continuations(tokens)
    c = pairs[prev, word]
    c_prev = _context_counts(tokens)[prev] if c_prev is None else c_prev(tokens, prev)
    n1 = _followers(tokens, prev) if followers is None else followers(tokens, prev)
    pc = cont.get(word, 0) / sum(cont.values()) if p_cont is None else p_cont(tokens, word)
    first = max(c - d, 0) / c_prev if discounted is None else discounted(c, c_prev, d)
    lam = d * n1 / c_prev if weight is None else weight(d, n1, c_prev)
    return first + lam * pc


def _after(tokens: list[str], word: str) -> float:
    after = Counter(p for p, _ in set(zip(tokens, tokens[1:])))
    return after.get(word, 0) / sum(after.values())


_KN_MISTAKES = [
    (WRONG_DENOMINATOR, lambda t, p, w, d: _kn(t, p, w, d, c_prev=lambda t, p: Counter(t)[p])),
    ("You dropped the interpolation term: the discounted mass goes to p_cont(word).",
     lambda t, p, w, d: max(_bigrams(t)[p, w] - d, 0) / _context_counts(t)[p]),
    ("You interpolated with the unigram frequency: use continuation counts.",
     lambda t, p, w, d: _kn(t, p, w, d, p_cont=lambda t, w: Counter(t)[w] / len(t))),
    ("p_cont(w) counts the distinct words *before* w, not those after it.",
     lambda t, p, w, d: _kn(t, p, w, d, p_cont=_after)),
    (("p_cont divides by N1+(· ·), the number of distinct pairs (the sum of the continuation "
      "counts), not by the number of words."),
     lambda t, p, w, d: _kn(t, p, w, d, p_cont=lambda t, w: _continuations(t).get(w, 0) / len(_continuations(t)))),
    ("The interpolation weight is d x N1+(prev ·) / c(prev ·): multiply d by the number of distinct words after prev.",
     lambda t, p, w, d: _kn(t, p, w, d, followers=lambda t, p: 1)),
    ("N1+(prev ·) counts the *distinct* words after prev, not every bigram that starts with prev.",
     lambda t, p, w, d: _kn(t, p, w, d, followers=lambda t, p: _context_counts(t)[p])),
    ("The interpolation weight is d x N1+(prev ·) / c(prev ·): you forgot to divide by c(prev ·).",
     lambda t, p, w, d: _kn(t, p, w, d, weight=lambda d, n1, c_prev: d * n1)),
    ("Clip the discounted count at 0, max(c(prev word) - d, 0), so that unseen pairs do not go negative.",
     lambda t, p, w, d: _kn(t, p, w, d, discounted=lambda c, c_prev, d: (c - d) / c_prev)),
    ("Subtract d from the count c(prev word) before dividing by c(prev ·), not from the probability.",
     lambda t, p, w, d: _kn(t, p, w, d, discounted=lambda c, c_prev, d: max(c / c_prev - d, 0))),
]


def check_kneser_ney_bigram(kn_bigram: Callable[[list[str], str, str, float], float]) -> None:
    """Task: interpolated Kneser-Ney bigram ``kn_bigram(tokens, prev, word, d)``."""
    task, hint = "Task 4 (Kneser-Ney bigram)", "max(c - d, 0) / c(prev) + d * N1+(prev .) / c(prev) * p_cont(word)."
    cases = [(TOKENS, prev, word, 0.75) for prev, word in PAIRS + [("dog", "ate"), ("on", "cat")]]
    cases += [(t, p, w, 0.75) for t, p, w in FINAL]
    cases += [(TOKENS, "the", "fish", 0.5), (TOKENS, "cat", "sat", 0.5), (SHORT, "the", "cat", 0.9),
              (SHORT, "dog", "cat", 0.75)]
    results = [(args, _call(task, hint, kn_bigram, list(args[0]), *args[1:])) for args in cases]
    for (tokens, prev, word, d), got in results:
        want = _kn(tokens, prev, word, d)
        if not _close(got, want):
            raise AssertionError(f"{task}: kn_bigram({_name(tokens)}, {prev!r}, {word!r}, {d}) returned "
                                 f"{got}, expected {want:.4f}.{_forgot_return(got) or _tip(results, _KN_MISTAKES)}")
    vocab = sorted(set(TOKENS))
    rows = {}
    for prev in ("the", "."):  # the notebook promises: summed over the vocabulary, it gives 1
        rows[prev] = [_call(task, hint, kn_bigram, list(TOKENS), prev, w, 0.75) for w in vocab]
        _assert_sums_to_one(task, f"kn_bigram(tokens, {prev!r}, w, 0.75)", rows[prev],
                            "the discount frees d x N1+(prev ·) / c(prev ·), and p_cont (which sums to 1) "
                            "must hand exactly that back.")
    total = sum(float(p) for p in rows["the"])
    _passed(task, f"p(. | the) sums to {total:.6f} over the vocabulary, and unseen pairs get mass")
