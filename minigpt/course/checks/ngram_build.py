"""Check for exercises/01_ngram.ipynb's build task: interpolated Kneser-Ney of any order.

The learner's ``kneser_ney(tokens, order, vocab)`` returns ``prob(context, word)``. The check fits
it on three random texts and a real one (the first paragraph of ``minigpt.data.samples.ENGLISH``,
as characters) for orders 1-4, and compares every probability of every next-token distribution
with the package's ``NGramLM(..., smoothing="kn")`` (``minigpt.models.ngram``). The contexts:
the text's last order-1 tokens (a context that occurs once more than it is followed, or only at
the very end), contexts seen in the text, one never seen, one longer than order-1 tokens, and
the empty one. Every distribution must first sum to 1 over the vocabulary.

The model the package computes (Kneser & Ney 1995; Chen & Goodman 1998, interpolated):

- order m = n (the top) counts how often each n-gram occurs; each lower order m counts
  N1+(. g), the distinct tokens seen right before the m-gram g, where the start of the text
  counts as one of them (``count_ngrams`` adds the first m-gram's missing left neighbour);
- D_m = n1 / (n1 + 2 n2) over order m's counts (n_k of them equal to k), 0.75 if n1 or n2 is 0;
- p_0(w) = 1 / V, and p_m(w | h) = (max(c(h w) - D_m, 0) + D_m N1+(h .) p_{m-1}(w | h')) / c(h .),
  where h is the last m-1 tokens, h' drops its first token and c(h .) sums order m's counts
  over w; a context with c(h .) = 0 (or shorter than m-1 tokens) keeps p_{m-1} alone.

When the answers are wrong, ``_fit`` (the same model in dicts, with one part computed the usual
wrong way) names the mistake if it explains every answer.
"""

from __future__ import annotations

import functools
import math
import random
from collections import Counter
from collections.abc import Callable, Sequence

from minigpt.course.checks._base import _number
from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import matching_tip as _matching_tip
from minigpt.course.checks._base import passed as _passed
from minigpt.data import samples
from minigpt.models.ngram import NGramLM, kn_discounts
from minigpt.models.ngram_counts import count_ngrams

__all__ = ["check_kneser_ney"]

ORDERS = (1, 2, 3, 4)


def _random_text(seed: int, alphabet: Sequence[str], length: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(alphabet) for _ in range(length)]


# name: (tokens, vocab, how the message shows the text). Each vocabulary holds a token the text
# never uses, so that the uniform floor matters.
_SNIPPET = list(samples.ENGLISH.split("\n\n")[0])
CORPORA: dict[str, tuple[list[str], list[str], str]] = {
    "dense": (_random_text(5, "abc", 60), list("abcz"), ""),
    "mixed": (_random_text(3, "abcde", 40), list("edcbaz"), ""),
    "sparse": (_random_text(1, ["the", "cat", "sat", "on", "mat", "."], 14),
               ["the", "cat", "sat", "on", "mat", ".", "dog"], ""),
    "snippet": (_SNIPPET, sorted(set(samples.ENGLISH)),
                "list(samples.ENGLISH.split('\\n\\n')[0]) (from minigpt.data import samples)"),
}


def _describe(name: str) -> str:
    tokens, _vocab, shown = CORPORA[name]
    if shown:
        return shown
    return f"list({''.join(tokens)!r})" if all(len(t) == 1 for t in tokens) else repr(tokens)


def _contexts(tokens: list[str], vocab: list[str], order: int) -> list[tuple[tuple[str, ...], str]]:
    """The contexts asked about for one text and order, each with a label for the messages."""
    k, n = order - 1, len(tokens)
    unused = next(t for t in vocab if t not in tokens)
    found = [(tuple(tokens[n - k:]), "the text's last order-1 tokens"),
             (tuple(tokens[n // 3 - k:n // 3]), "seen in the text"),
             (tuple(tokens[n // 2 - k:n // 2]), "seen in the text"),
             ((unused, *tokens[:k - 1]), "never seen")] * (k > 0)
    end = max(n // 4, k + 2)
    found += [(tuple(tokens[end - k - 2:end]), "longer than order-1 tokens"), ((), "empty")]
    seen: set[tuple[str, ...]] = set()
    return [(c, label) for c, label in found if not (c in seen or seen.add(c))]


# ---- the model in dicts, each usual mistake a switch ------------------------------------------


def _grams(tokens: Sequence, m: int) -> list[tuple]:
    return list(zip(*(tokens[i:] for i in range(m))))


def _counts(tokens: list[str], m: int, continuation: bool, start: bool = True) -> Counter:
    if not continuation:
        return Counter(_grams(tokens, m))
    padded = [None] * start + tokens  # None: the start of the text, one more left neighbour
    return Counter(g[1:] for g in set(_grams(padded, m + 1)))


def _discount(counts: Counter) -> float:
    n = Counter(counts.values())
    return n[1] / (n[1] + 2 * n[2]) if n[1] and n[2] else 0.75


def _fit(tokens: list[str], order: int, vocab: list[str], mistake: str = "") -> Callable[[tuple, str], float]:
    """Interpolated Kneser-Ney (``mistake`` = "") or the same with one usual mistake."""
    levels = []
    for m in range(1, order + 1):
        top = m == order
        cont = (not top and mistake != "raw-lower") or (top and mistake == "cont-top")
        c = _counts(tokens, m, cont, start=mistake != "no-start")
        if mistake == "d-fixed":
            d = 0.75
        elif mistake in ("d-top", "d-raw"):  # D from raw counts, of the top order or of order m
            d = _discount(Counter(_grams(tokens, order if mistake == "d-top" else m)))
        else:
            d = _discount(c)
        total, follow = Counter(), Counter()
        for g, k in c.items():
            total[g[:-1]] += k
            follow[g[:-1]] += 1
        if m > 1 and (mistake == "plain-total-all" or (mistake == "plain-total" and top)):
            total = Counter(_grams(tokens, m - 1))
        levels.append((m, c, d, total, follow))
    if mistake == "unigram-bottom":
        levels = levels[1:]
    elif mistake == "skip-middle":
        levels = levels[:1] + levels[1:][-1:]

    def prob(context: tuple, word: str) -> float:
        p = 1 / len(vocab)
        for m, c, d, total, follow in levels:
            if mistake == "slice":
                h = tuple(context[-(m - 1):])  # context[-0:] is the whole context
            elif len(context) < m - 1:
                continue
            else:
                h = tuple(context[len(context) - (m - 1):])
            if not total[h]:
                continue
            if m == 1 and mistake == "no-floor":
                p = c[h + (word,)] / total[h]
            elif mistake == "no-gamma":
                p = max(c[h + (word,)] - d, 0) / total[h]
            elif mistake == "no-subtract":
                p = (c[h + (word,)] + d * follow[h] * p) / total[h]
            else:
                p = (max(c[h + (word,)] - d, 0) + d * follow[h] * p) / total[h]
        return p

    return prob


@functools.cache
def _fitted(name: str, order: int, mistake: str) -> Callable[[tuple, str], float]:
    tokens, vocab, _ = CORPORA[name]
    return _fit(tokens, order, vocab, mistake)


DENOMINATOR = ("Divide by c(h .), the number of times h is followed by something (the sum over w of "
               "order m's counts of h w), not by how often h occurs: the text's last tokens have no "
               "next token.")
_MISTAKES = {
    "raw-lower": ("Below the top order, count N1+(. g), the distinct tokens seen right before g, not how "
                  "often g occurs: raw counts at every order are absolute discounting, not Kneser-Ney."),
    "cont-top": ("The top order counts how often each n-gram occurs; only the orders below it use "
                 "continuation counts N1+(. g)."),
    "no-start": ("Count the start of the text as one more left neighbour: the text's first m-gram has "
                 "nothing before it (pad the text with a start marker, e.g. [None] + tokens)."),
    "plain-total": DENOMINATOR,
    "plain-total-all": DENOMINATOR,
    "no-gamma": ("You dropped the back-off term: the discount frees D N1+(h .) / c(h .), which goes to "
                 "the lower order, D N1+(h .) / c(h .) x p_{m-1}(w | h')."),
    "no-subtract": "Subtract D from every count, max(c(h w) - D, 0), before adding the back-off term.",
    "unigram-bottom": ("Recurse down to the unigram level (continuation counts, discounted), and only "
                       "then to the uniform 1/V: your recursion stops at the bigrams."),
    "skip-middle": ("Back off one order at a time: order m's lower order is m-1 (h minus its first "
                    "token), not the unigrams."),
    "no-floor": ("Discount the unigram level too, and give the freed mass to the uniform 1/V over "
                 "the vocabulary: a token the text never uses still gets probability."),
    "d-top": ("Each order has its own discount D_m = n1/(n1 + 2 n2), from the counts that order uses: "
              "you used the top order's D at every order."),
    "d-raw": ("Below the top order, compute D_m from the continuation counts that order uses, not "
              "from how often the m-grams occur."),
    "d-fixed": "Estimate D_m = n1/(n1 + 2 n2) for each order; 0.75 is only for when n1 or n2 is 0.",
    "slice": ("context[-(m-1):] is the whole context when m = 1 (-0 is 0): take "
              "context[len(context) - (m - 1):] instead."),
}


def _tip(results: list[tuple[tuple, object]]) -> str:
    mistakes = [(message, lambda name, n, ctx, w, mistake=mistake: _fitted(name, n, mistake)(ctx, w))
                for mistake, message in _MISTAKES.items()]
    return _matching_tip(results, mistakes, _close)


def _close(got, want: float) -> bool:
    value = _number(got)
    return value is not None and math.isclose(value, want, rel_tol=1e-9, abs_tol=1e-12)


def _package_discounts(lm: NGramLM) -> str:
    levels = lm.counts.levels
    ds = [kn_discounts(levels[m - 1].counts if m == lm.order else levels[m - 1].continuations, False)[1]
          for m in range(1, lm.order + 1)]
    return ", ".join(f"D{m} = {d:.4f}" for m, d in enumerate(ds, 1))


def _ask(task: str, hint: str, where: str, fn: Callable, *args):
    """``fn(*args)`` through ``_call``; a ZeroDivisionError becomes a message that says where."""
    try:
        return _call(task, hint, fn, *args)
    except ZeroDivisionError as err:
        raise AssertionError(
            f"{task}: {where} raised ZeroDivisionError ({err}). A context followed by nothing "
            "(c(h .) = 0: never seen, or only at the very end of the text) keeps the lower order's "
            "probability alone; when n1 or n2 is 0 (a small text), D = 0.75.") from err


def check_kneser_ney(kneser_ney: Callable[[list[str], int, list[str]], Callable[[tuple, str], float]]) -> None:
    """Task: ``kneser_ney(tokens, order, vocab)`` returns ``prob(context, word)``, equal to
    ``NGramLM(count_ngrams(ids, len(vocab), order), order, smoothing="kn")``."""
    task = "Task 5 (Kneser-Ney, any order)"
    hint = ("count every order (N1+(. g) below the top), one D = n1/(n1 + 2 n2) per order, then "
            "p_m = (max(c(h w) - D, 0) + D N1+(h .) p_{m-1}) / c(h .), from p_0 = 1/V up.")
    rows, results = [], []
    for name, (tokens, vocab, _) in CORPORA.items():
        index = {t: i for i, t in enumerate(vocab)}
        ids = [index[t] for t in tokens]
        for order in ORDERS:
            call = f"kneser_ney({_describe(name)}, order={order}, vocab={vocab!r})"
            prob = _ask(task, hint, call, kneser_ney, list(tokens), order, list(vocab))
            lm = NGramLM(count_ngrams(ids, len(vocab), order), order, "kn")
            for context, label in _contexts(tokens, vocab, order):
                want = lm.next_probs([index[t] for t in context])
                got = [_ask(task, hint, f"prob({context!r}, {w!r}) of {call}", prob, context, w)
                       for w in vocab]
                rows.append((name, order, call, lm, context, label, got, want))
                results += [((name, order, context, w), g) for w, g in zip(vocab, got)]
    for name, order, call, lm, context, label, got, want in rows:
        values = [_number(g) for g in got]
        if None in values:
            bad = got[values.index(None)]
            forgot = " Did you forget `return`?" if bad is None else ""
            raise AssertionError(f"{task}: prob({context!r}, w) of {call} returned {bad!r} for some w: it "
                                 f"must return a number.{forgot}")
        total = sum(values)
        if not math.isclose(total, 1.0, rel_tol=0, abs_tol=1e-9):
            raise AssertionError(
                f"{task}: with prob = {call}, the probabilities after the context {context!r} "
                f"({label}) sum to {total:.6f} over the {len(values)} tokens of the vocabulary, not 1. "
                f"Each order's discount frees D N1+(h .) / c(h .), and the lower order (which sums "
                f"to 1) must hand exactly that back.{_tip(results)}")
    for name, order, call, lm, context, label, got, want in rows:
        for w, g, p in zip(CORPORA[name][1], got, want):
            if not _close(g, float(p)):
                raise AssertionError(
                    f"{task}: with prob = {call}, prob({context!r}, {w!r}) returned {float(g):.6g}, "
                    f"expected {p:.6g} (NGramLM(..., order={order}, smoothing='kn')); the context is "
                    f"{label}. The package's discounts for this text: {_package_discounts(lm)}."
                    f"{_tip(results)}")
    _passed(task, f"{len(rows)} next-token distributions, orders {ORDERS[0]}-{ORDERS[-1]}, equal to "
                  f"NGramLM(..., smoothing='kn') and each summing to 1")
