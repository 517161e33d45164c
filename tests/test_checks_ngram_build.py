"""Exercise 01's build task (Kneser-Ney of any order): the check accepts right models written
differently and rejects the wrong ones a learner writes, naming the mistake.

The implementations here are written independently of the check's own ``_fit``; the last tests
tie ``_fit`` itself to the package, so the tips it names come from a model that is right when
no mistake is switched on.
"""

from collections import Counter, defaultdict
from fractions import Fraction

import numpy as np
import pytest

from minigpt.course import checks
from minigpt.course.checks import ngram_build
from minigpt.models.ngram import NGramLM
from minigpt.models.ngram_counts import count_ngrams


def grams(seq, m):
    return [tuple(seq[i:i + m]) for i in range(len(seq) - m + 1)]


def discount(values, fallback=True):
    """D = n1 / (n1 + 2 n2), 0.75 if n1 or n2 is 0; without the fallback, the bare formula."""
    n1, n2 = sum(v == 1 for v in values), sum(v == 2 for v in values)
    return n1 / (n1 + 2 * n2) if (n1 and n2) or not fallback else 0.75


# ---------------------------------------------------------------------------------------------
# Right implementations, written in different styles
# ---------------------------------------------------------------------------------------------

def kn_rows(tokens, order, vocab, *, cont_top=False, raw_lower=False, start=True, plain_total=False,
            subtract=True, backoff=True, d_rule="own", bottom=1, skip_middle=False, floor=True,
            slice_bug=False, fallback=True):
    """Iterative: one table of rows {context: Counter of next tokens} per order, p built upward
    from the uniform. Each keyword is a mistake a learner makes (the defaults are right)."""
    tables = []
    for m in range(1, order + 1):
        top = m == order
        rows = defaultdict(Counter)
        if (top and not cont_top) or (not top and raw_lower):
            for g in grams(tokens, m):
                rows[g[:-1]][g[-1]] += 1
        else:
            before = defaultdict(set)
            for i, g in enumerate(grams(tokens, m)):
                before[g].add(tokens[i - 1] if i > 0 else "<start>")
            if not start:
                before = {g: s - {"<start>"} for g, s in before.items() if s - {"<start>"}}
            for g, left in before.items():
                rows[g[:-1]][g[-1]] = len(left)
        values = [c for row in rows.values() for c in row.values()]
        if d_rule == "fixed":
            d = 0.75
        elif d_rule in ("raw", "top"):  # from how often the m-grams (or the top n-grams) occur
            d = discount(list(Counter(grams(tokens, m if d_rule == "raw" else order)).values()))
        else:
            d = discount(values, fallback)
        totals = {h: sum(row.values()) for h, row in rows.items()}
        if (plain_total == "all" or (plain_total and top)) and m > 1:
            totals = Counter(grams(tokens, m - 1))
        tables.append((m, rows, totals, d))
    if bottom == 2:
        tables = tables[1:]
    if skip_middle:
        tables = tables[:1] + tables[1:][-1:]

    def prob(context, word):
        p = 1 / len(vocab)
        for m, rows, totals, d in tables:
            h = tuple(context[-(m - 1):]) if slice_bug else tuple(context)[len(context) - m + 1:]
            if len(h) != m - 1 or not totals.get(h):
                continue
            row, total = rows.get(h, Counter()), totals[h]
            if m == 1 and not floor:
                p = row[word] / total
                continue
            kept = max(row[word] - d, 0) if subtract else row[word]
            p = kept / total + (d * len(row) / total * p if backoff else 0)
        return p

    return prob


def kn_recursive_fraction(tokens, order, vocab):
    """Recursive, in exact fractions; continuation counts from distinct (left, gram) pairs."""
    padded = [None, *tokens]
    counts = [None]
    for m in range(1, order + 1):
        if m == order:
            counts.append(Counter(grams(tokens, m)))
        else:
            counts.append(Counter(g[1:] for g in set(grams(padded, m + 1))))
    discounts = [None] + [Fraction(discount(list(c.values()))) for c in counts[1:]]

    def p(m, h, word):
        if m == 0:
            return Fraction(1, len(vocab))
        lower = p(m - 1, h[1:] if len(h) == m - 1 else h, word)
        seen = {g: c for g, c in counts[m].items() if g[:-1] == h}
        if len(h) < m - 1 or not seen:
            return lower
        total, d = sum(seen.values()), discounts[m]
        return (max(counts[m][h + (word,)] - d, 0) + d * len(seen) * lower) / total

    return lambda context, word: p(order, tuple(context)[max(len(context) - order + 1, 0):], word)


def kn_numpy_table(tokens, order, vocab):
    """A whole next-token distribution at a time, as NumPy arrays over the vocabulary."""
    ix = {t: i for i, t in enumerate(vocab)}
    levels = []
    for m in range(1, order + 1):
        if m == order:
            c = Counter(grams(tokens, m))
        else:
            left = [None, *tokens]
            c = Counter(g[1:] for g in set(grams(left, m + 1)))
        rows = {}
        for g, k in c.items():
            rows.setdefault(g[:-1], np.zeros(len(vocab)))[ix[g[-1]]] = k
        levels.append((rows, discount(list(c.values()))))

    def dist(context):
        p = np.full(len(vocab), 1 / len(vocab))
        for m, (rows, d) in enumerate(levels, start=1):
            h = tuple(context[len(context) - (m - 1):]) if len(context) >= m - 1 else None
            if h in rows:
                row = rows[h]
                p = (np.maximum(row - d, 0) + d * np.count_nonzero(row) * p) / row.sum()
        return p

    return lambda context, word: dist(tuple(context))[ix[word]]


@pytest.mark.parametrize("fn", [kn_rows, kn_recursive_fraction, kn_numpy_table],
                         ids=["iterative-rows", "recursive-fraction", "numpy-table"])
def test_right_implementations_pass(fn, capsys):
    checks.check_kneser_ney(fn)
    out = capsys.readouterr().out
    assert out.startswith("✓ Task 5 (Kneser-Ney, any order) passed: ") and "each summing to 1" in out


def test_untouched_stub_is_not_done_yet():
    def stub(tokens, order, vocab):
        raise NotImplementedError

    with pytest.raises(checks.NotDoneYet, match="Hint"):
        checks.check_kneser_ney(stub)


def test_a_stub_inside_the_returned_function_is_not_done_yet():
    def half_done(tokens, order, vocab):
        def prob(context, word):
            raise NotImplementedError
        return prob

    with pytest.raises(checks.NotDoneYet, match="Hint"):
        checks.check_kneser_ney(half_done)


# ---------------------------------------------------------------------------------------------
# Wrong implementations a learner would plausibly write
# ---------------------------------------------------------------------------------------------

def wrong(**mistake):
    return lambda tokens, order, vocab: kn_rows(tokens, order, vocab, **mistake)


WRONG = [
    pytest.param(wrong(raw_lower=True), "absolute discounting", id="raw-counts-at-lower-orders"),
    pytest.param(wrong(cont_top=True), "top order counts how often", id="continuation-counts-at-the-top"),
    pytest.param(wrong(start=False), "start of the text", id="no-start-neighbour"),
    pytest.param(wrong(plain_total=True), r"not by how often h occurs", id="c(h)-instead-of-c(h .)"),
    pytest.param(wrong(plain_total="all"), r"not by how often h occurs", id="c(h)-at-every-order"),
    pytest.param(wrong(backoff=False), "dropped the back-off term", id="no-gamma"),
    pytest.param(wrong(subtract=False), "Subtract D from every count", id="no-discount-subtracted"),
    pytest.param(wrong(bottom=2), "stops at the bigrams", id="recursion-stops-at-order-2"),
    pytest.param(wrong(skip_middle=True), "one order at a time", id="top-backs-off-to-unigrams"),
    pytest.param(wrong(floor=False), "uniform 1/V", id="no-uniform-floor"),
    pytest.param(wrong(d_rule="top"), "top order's D at every order", id="discount-of-the-top-order"),
    pytest.param(wrong(d_rule="raw"), "not from how often the m-grams occur", id="discount-from-raw-counts"),
    pytest.param(wrong(d_rule="fixed"), "0.75 is only for", id="discount-fixed-0.75"),
    pytest.param(wrong(slice_bug=True), r"-0 is 0", id="context[-0:]"),
    pytest.param(wrong(fallback=False), "D = 0.75", id="no-discount-fallback"),
]


@pytest.mark.parametrize("fn, tip", WRONG)
def test_wrong_implementations_are_rejected_with_a_tip(fn, tip):
    with pytest.raises(AssertionError, match=f"(?s)(expected|sum to|ZeroDivisionError).*{tip}") as err:
        checks.check_kneser_ney(fn)
    assert not isinstance(err.value, checks.NotDoneYet)


def test_a_distribution_that_does_not_sum_to_one_is_rejected_before_the_values():
    def off_once(tokens, order, vocab):  # right, but one token of one seen context gets 0.01 more
        prob = kn_rows(tokens, order, vocab)
        sparse = tokens == ngram_build.CORPORA["sparse"][0] and order == 2
        target = (tokens[len(tokens) // 3 - 1], vocab[0]) if sparse else None  # a seen context
        return lambda context, word: prob(context, word) + 0.01 * ((*context, word) == target)

    with pytest.raises(AssertionError, match=r"(?s)order=2.*sum to 1\.010000 over the 7 tokens of the vocabulary, not 1"):
        checks.check_kneser_ney(off_once)


def test_two_mistakes_at_once_are_rejected_without_a_misleading_tip():
    with pytest.raises(AssertionError) as err:
        checks.check_kneser_ney(wrong(d_rule="fixed", start=False))
    assert not any(tip in str(err.value) for tip in ngram_build._MISTAKES.values())


@pytest.mark.parametrize("answer, message", [(None, "forget `return`"), ("0.5", "must return a number")])
def test_a_non_number_is_rejected(answer, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_kneser_ney(lambda tokens, order, vocab: lambda context, word: answer)


# ---------------------------------------------------------------------------------------------
# The cases ask what the task needs, and the tips come from a model equal to the package's
# ---------------------------------------------------------------------------------------------

def test_the_cases_cover_final_contexts_fallback_discounts_and_unused_tokens():
    """A final context that also occurs earlier (c(h) = c(h .) + 1), one that occurs only at the
    end (c(h .) = 0), an order whose D falls back to 0.75, and a token each text never uses."""
    followed_less, only_at_end, fallback = False, False, False
    for tokens, vocab, _ in ngram_build.CORPORA.values():
        assert set(vocab) - set(tokens) and set(tokens) <= set(vocab)
        for n in ngram_build.ORDERS[1:]:
            final = tuple(tokens[len(tokens) - n + 1:])
            occurs = grams(tokens, n - 1).count(final)
            followed_less |= occurs > 1
            only_at_end |= occurs == 1
            n_k = Counter(Counter(grams(tokens, n)).values())
            fallback |= not (n_k[1] and n_k[2])
    assert followed_less and only_at_end and fallback


def cases():
    for name, (tokens, vocab, _) in ngram_build.CORPORA.items():
        ids = [vocab.index(t) for t in tokens]
        for n in ngram_build.ORDERS:
            lm = NGramLM(count_ngrams(ids, len(vocab), n), n, "kn")
            for context, _label in ngram_build._contexts(tokens, vocab, n):
                yield name, n, context, vocab, lm.next_probs([vocab.index(t) for t in context])


def test_the_checks_own_model_is_the_package_s():
    for name, n, context, vocab, want in cases():
        got = [ngram_build._fitted(name, n, "")(context, w) for w in vocab]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("mistake", list(ngram_build._MISTAKES))
def test_every_named_mistake_differs_from_the_package_somewhere(mistake):
    gap = max(max(abs(ngram_build._fitted(name, n, mistake)(context, w) - p) for w, p in zip(vocab, want))
              for name, n, context, vocab, want in cases())
    assert gap > 0.05, gap
