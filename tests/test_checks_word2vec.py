"""The word2vec exercise checks: right answers pass, stubs get a hint, usual mistakes get a tip."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minigpt.course import checks


def keep_probability(count, total, sample=1e-3):
    z = count / total
    return min(1.0, (math.sqrt(z / sample) + 1) * sample / z)


def sgns_loss(v, u_pos, u_neg):
    pos = (v * u_pos).sum(-1)
    neg = (u_neg @ v.unsqueeze(-1)).squeeze(-1)
    return -(F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1)).mean()


def cosine_similarity(u, v):
    return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))


def analogy(vectors, a, b, c):
    unit = {w: x / np.linalg.norm(x) for w, x in vectors.items()}
    query = unit[b] - unit[a] + unit[c]
    return max((w for w in unit if w not in (a, b, c)), key=lambda w: unit[w] @ query)


def stub(*args):
    raise NotImplementedError


def test_right_answers_pass(capsys):
    checks.check_keep_probability(keep_probability)
    checks.check_sgns_loss(sgns_loss)
    checks.check_analogy(cosine_similarity, analogy)
    assert capsys.readouterr().out.count("passed") == 3


@pytest.mark.parametrize("run", [
    lambda: checks.check_keep_probability(stub),
    lambda: checks.check_sgns_loss(stub),
    lambda: checks.check_analogy(stub, analogy),
    lambda: checks.check_analogy(cosine_similarity, stub),
])
def test_stubs_are_not_done_yet_with_a_hint(run):
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        run()


def test_usual_mistakes_get_a_tip():
    with pytest.raises(AssertionError, match="discard"):
        checks.check_keep_probability(lambda c, t, s: 1 - keep_probability(c, t, s))
    with pytest.raises(AssertionError, match="at most 1"):
        checks.check_keep_probability(
            lambda c, t, s: (math.sqrt(c / t / s) + 1) * s / (c / t))
    with pytest.raises(AssertionError, match="take the mean"):
        checks.check_sgns_loss(lambda v, p, n: sgns_loss(v, p, n) * len(v))
    with pytest.raises(AssertionError, match="σ\\(-score\\)"):
        checks.check_sgns_loss(lambda v, p, n: -(F.logsigmoid((v * p).sum(-1)) + F.logsigmoid(
            (n @ v.unsqueeze(-1)).squeeze(-1)).sum(-1)).mean())
    with pytest.raises(AssertionError, match="scalar tensor"):
        checks.check_sgns_loss(lambda v, p, n: float(sgns_loss(v, p, n)))
    with pytest.raises(AssertionError, match="both lengths"):
        checks.check_analogy(lambda u, v: float(u @ v), analogy)
    with pytest.raises(AssertionError, match="leave a, b and c out"):
        checks.check_analogy(cosine_similarity, lambda vecs, a, b, c: b)


def test_the_toy_vectors_hold_the_intended_analogies():
    from minigpt.course.checks.word2vec import _ANALOGY_QUESTIONS, _analogy_vectors

    vecs = _analogy_vectors()
    assert analogy(vecs, "man", "king", "woman") == "queen"
    assert analogy(vecs, "woman", "queen", "man") == "king"
    assert [q[:3] for q in _ANALOGY_QUESTIONS] == [
        ("man", "king", "woman"), ("man", "woman", "king"),
        ("woman", "queen", "man"), ("woman", "man", "queen")]
    assert torch.is_tensor(sgns_loss(torch.ones(1, 2), torch.ones(1, 2), torch.ones(1, 1, 2)))


# ---- Task 3 (check_analogy): other right ways to write it, and the usual wrong ones ----------

def cosine_loop(u, v):
    dot = sum(x * y for x, y in zip(u, v))
    return dot / (math.sqrt(sum(x * x for x in u)) * math.sqrt(sum(y * y for y in v)))


def analogy_matrix(vectors, a, b, c):
    """NumPy matrix form: unit rows, scores of all words at once, a/b/c masked out."""
    words = list(vectors)
    m = np.stack([vectors[w] for w in words])
    m = m / np.linalg.norm(m, axis=1, keepdims=True)
    ia, ib, ic = (words.index(w) for w in (a, b, c))
    query = m[ib] - m[ia] + m[ic]
    scores = m @ query / np.linalg.norm(query)
    scores[[ia, ib, ic]] = -np.inf
    return words[int(np.argmax(scores))]


def analogy_loop(vectors, a, b, c):
    """A loop over the vocabulary, normalising inside it; ranks with cosine_similarity."""
    query = sum(sign * vectors[w] / np.linalg.norm(vectors[w])
                for sign, w in [(1, b), (-1, a), (1, c)])
    best, best_score = None, -2.0
    for word, vec in vectors.items():
        if word in (a, b, c):
            continue
        score = cosine_loop(vec, query)
        if score > best_score:
            best, best_score = word, score
    return best


def analogy_in_place(vectors, a, b, c):
    """Normalises the given arrays in place first, in float32."""
    for vec in vectors.values():
        vec /= np.linalg.norm(vec)
    query = (vectors[b] - vectors[a] + vectors[c]).astype(np.float32)
    ranked = sorted(vectors, key=lambda w: -float(vectors[w].astype(np.float32) @ query))
    return next(w for w in ranked if w not in {a, b, c})


def _unit(vectors):
    return {w: x / np.linalg.norm(x) for w, x in vectors.items()}


def _best(candidates, score):
    return max(candidates, key=score)


def keeps_abc(vectors, a, b, c):
    unit = _unit(vectors)
    query = unit[b] - unit[a] + unit[c]
    return _best(unit, lambda w: cosine_similarity(unit[w], query))


def leaves_out_only_c(vectors, a, b, c):
    unit = _unit(vectors)
    query = unit[b] - unit[a] + unit[c]
    return _best([w for w in unit if w != c], lambda w: cosine_similarity(unit[w], query))


def a_minus_b_plus_c(vectors, a, b, c):
    unit = _unit(vectors)
    query = unit[a] - unit[b] + unit[c]
    return _best([w for w in unit if w not in (a, b, c)], lambda w: unit[w] @ query)


def b_minus_c_plus_a(vectors, a, b, c):
    unit = _unit(vectors)
    query = unit[b] - unit[c] + unit[a]
    return _best([w for w in unit if w not in (a, b, c)], lambda w: unit[w] @ query)


def not_normalised(vectors, a, b, c):
    query = vectors[b] - vectors[a] + vectors[c]
    return _best([w for w in vectors if w not in (a, b, c)],
                 lambda w: cosine_similarity(vectors[w], query))


def ranks_by_dot_product(vectors, a, b, c):
    unit = _unit(vectors)
    query = unit[b] - unit[a] + unit[c]
    return _best([w for w in vectors if w not in (a, b, c)], lambda w: vectors[w] @ query)


def raw_dot_product(vectors, a, b, c):
    query = vectors[b] - vectors[a] + vectors[c]
    return _best([w for w in vectors if w not in (a, b, c)], lambda w: vectors[w] @ query)


def returns_index(vectors, a, b, c):
    words = list(vectors)
    m = np.stack([vectors[w] / np.linalg.norm(vectors[w]) for w in words])
    ia, ib, ic = (words.index(w) for w in (a, b, c))
    scores = m @ (m[ib] - m[ia] + m[ic])
    scores[[ia, ib, ic]] = -np.inf
    return np.argmax(scores)  # the position, not words[position]


def returns_word_and_score(vectors, a, b, c):
    word = analogy(vectors, a, b, c)
    return word, 0.9


@pytest.mark.parametrize("cos, fn", [(cosine_similarity, analogy), (cosine_loop, analogy_matrix),
                                     (cosine_loop, analogy_loop),
                                     (cosine_similarity, analogy_in_place)])
def test_analogy_right_implementations_pass(cos, fn, capsys):
    checks.check_analogy(cos, fn)
    assert "passed" in capsys.readouterr().out


@pytest.mark.parametrize("fn, tip", [
    (keeps_abc, "'woman' is one of the question's words: leave a, b and c out"),
    (leaves_out_only_c, "man:woman::king:\\? should be 'queen', got 'woman'.*leave a, b and c out"),
    (a_minus_b_plus_c, "got 'commoner'. That is the word nearest man - king \\+ woman"),
    (b_minus_c_plus_a, "got 'he'. That is the word nearest king - woman \\+ man"),
    (not_normalised, "got 'she'. That is the answer without normalising: the vector of 'woman'"),
    (ranks_by_dot_product, "got 'crown'.*rank the candidates by cosine"),
    (raw_dot_product, "got 'crown'.*rank the candidates by cosine"),
    (returns_index, "got 3 of type int\\d*. That is a position, not a word"),
    (returns_word_and_score, "got \\('queen', 0.9\\) of type tuple. Return only the word"),
])
def test_analogy_mistakes_are_rejected_with_their_tip(fn, tip):
    with pytest.raises(AssertionError, match=tip) as err:
        checks.check_analogy(cosine_similarity, fn)
    assert not isinstance(err.value, checks.NotDoneYet)


@pytest.mark.parametrize("cos, tip", [
    (lambda u, v: float(u @ v), "both lengths"),
    (lambda u, v: float(u @ v / np.linalg.norm(u)), "both lengths"),
    (lambda u, v: float(u @ v / (u @ u * (v @ v))), "square root"),
    (lambda u, v: abs(cosine_similarity(u, v)), "keep the sign"),
    (lambda u, v: u * v / (np.linalg.norm(u) * np.linalg.norm(v)), "one number"),
])
def test_cosine_mistakes_are_rejected_with_their_tip(cos, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_analogy(cos, analogy)


def test_analogy_answers_win_by_a_clear_margin():
    """No near-tie decides the check: in every question the right word beats the runner-up by
    at least 0.15 in cosine, each mistake's ranking puts a wrong word on top by as clear a
    margin, and the mistakes' words differ from each other (so the tip can name the mistake)."""
    from minigpt.course.checks.word2vec import _ANALOGY_QUESTIONS, _analogy_vectors
    from minigpt.models.word_vectors import WordVectors

    vecs = _analogy_vectors()
    unit = _unit(vecs)

    def ranking(query, candidates, by_cosine):
        def score(w):
            length = np.linalg.norm(vecs[w]) if by_cosine else 1.0
            return float(vecs[w] @ query / length / np.linalg.norm(query))
        return sorted(((score(w), w) for w in candidates), reverse=True)

    for a, b, c in _ANALOGY_QUESTIONS:
        want = WordVectors(list(vecs), np.stack(list(vecs.values()))).analogy(a, b, c, k=1)[0][0]
        rest = [w for w in vecs if w not in (a, b, c)]
        right, both = unit[b] - unit[a] + unit[c], vecs[b] - vecs[a] + vecs[c]
        tops = []
        for name, query, candidates, by_cosine in [
                ("right", right, rest, True), ("keeps a, b, c", right, list(vecs), True),
                ("a - b + c", unit[a] - unit[b] + unit[c], rest, True),
                ("b - c + a", unit[b] - unit[c] + unit[a], rest, True),
                ("not normalised", both, rest, True), ("dot product", right, rest, False),
                ("neither", both, rest, False)]:
            (top, word), (second, _) = ranking(query, candidates, by_cosine)[:2]
            gap = top - second if by_cosine else (top - second) / top
            assert gap >= 0.15, (a, b, c, name, word, gap)
            assert (word == want) == (name == "right"), (a, b, c, name, word)
            if name == "keeps a, b, c":
                assert word in (a, b, c)
            elif name != "neither":
                tops.append(word)
        assert len(set(tops)) == len(tops), (a, b, c, tops)


@pytest.mark.parametrize("seed", range(5))
def test_analogy_verdicts_survive_small_changes_to_the_vectors(seed, monkeypatch, capsys):
    """Shake every hand-made vector by about 3% of its length: right answers still pass and the
    mistakes still fail with the same tip, so the check does not hang on a knife edge."""
    from minigpt.course.checks import word2vec as w2v_checks

    rng = np.random.default_rng(seed)
    shaken = {w: (np.array(v, float) + rng.normal(0, 0.03 * np.linalg.norm(v), len(v))).tolist()
              for w, v in w2v_checks._ANALOGY_VECTORS.items()}
    monkeypatch.setattr(w2v_checks, "_ANALOGY_VECTORS", shaken)
    for fn in (analogy, analogy_matrix, analogy_loop):
        checks.check_analogy(cosine_similarity, fn)
    assert capsys.readouterr().out.count("passed") == 3
    for fn, tip in [(keeps_abc, "leave a, b and c out"), (a_minus_b_plus_c, "nearest man - king"),
                    (b_minus_c_plus_a, "nearest king - woman"), (not_normalised, "normalising"),
                    (ranks_by_dot_product, "by cosine")]:
        with pytest.raises(AssertionError, match=tip):
            checks.check_analogy(cosine_similarity, fn)
