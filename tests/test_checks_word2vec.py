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
    from minigpt.course.checks.word2vec import _toy_vectors

    vecs = _toy_vectors()
    assert analogy(vecs, "man", "king", "woman") == "queen"
    assert analogy(vecs, "king", "man", "queen") == "woman"
    assert torch.is_tensor(sgns_loss(torch.ones(1, 2), torch.ones(1, 2), torch.ones(1, 1, 2)))
