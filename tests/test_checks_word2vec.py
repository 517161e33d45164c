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


def cbow_loss(inp, out, contexts, centres, negatives, pad_id=0):
    real = (contexts != pad_id).unsqueeze(-1).float()  # (B, W, 1)
    h = (inp[contexts] * real).sum(1) / real.sum(1)  # (B, d) mean of the real context words
    pos = (out[centres] * h).sum(-1)
    neg = (out[negatives] @ h.unsqueeze(-1)).squeeze(-1)
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
    checks.check_cbow_loss(cbow_loss)
    checks.check_analogy(cosine_similarity, analogy)
    assert capsys.readouterr().out.count("passed") == 3


@pytest.mark.parametrize("run", [
    lambda: checks.check_keep_probability(stub),
    lambda: checks.check_cbow_loss(stub),
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
    with pytest.raises(AssertionError, match="padded width W, pads included"):
        checks.check_cbow_loss(mean_over_padded_width)
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


# ---- Task 1: more right ways to write it, and the usual wrong ones -------------------------

def keep_numpy(count, total, sample=1e-3):
    z = np.float64(count) / total
    return np.minimum(1.0, sample / z * (np.sqrt(z / sample) + 1))


def keep_expanded(count, total, sample=1e-3):
    """(sqrt(z/s) + 1) s/z = sqrt(s/z) + s/z."""
    return min(1.0, math.sqrt(sample * total / count) + sample * total / count)


@pytest.mark.parametrize("fn", [keep_probability, keep_numpy, keep_expanded])
def test_keep_probability_right_implementations_pass(fn, capsys):
    checks.check_keep_probability(fn)
    assert "passed" in capsys.readouterr().out


@pytest.mark.parametrize("fn, tip", [
    (lambda c, t, s: 1 - keep_probability(c, t, s), "discard"),
    (lambda c, t, s: (math.sqrt(c / t / s) + 1) * s / (c / t), "at most 1"),
    (lambda c, t, s: min(1.0, math.sqrt(s / (c / t))), "paper's sqrt"),
    (lambda c, t, s: min(1.0, (math.sqrt(c / s) + 1) * s / c), "count / total"),
])
def test_keep_probability_mistakes_get_their_tip(fn, tip):
    with pytest.raises(AssertionError, match=tip) as err:
        checks.check_keep_probability(fn)
    assert not isinstance(err.value, checks.NotDoneYet)


# ---- Task 2 (check_cbow_loss): CBOW's loss over padded windows, right and wrong --------------

def cbow_loop(inp, out, contexts, centres, negatives, pad_id=0):
    """One example at a time: the real context ids picked out, then log of sigmoid."""
    losses = []
    for row, centre, noise in zip(contexts, centres, negatives):
        h = inp[row[row != pad_id]].mean(0)  # (d,)
        losses.append(-torch.log(torch.sigmoid(out[centre] @ h))
                      - torch.log(torch.sigmoid(-(out[noise] @ h))).sum())
    return torch.stack(losses).mean()


def cbow_bce(inp, out, contexts, centres, negatives, pad_id=0):
    """Embedding lookups, a masked_fill and einsum; the 1 + K binary terms as BCE with logits."""
    vecs = F.embedding(contexts, inp).masked_fill((contexts == pad_id).unsqueeze(-1), 0.0)
    h = vecs.sum(1) / (contexts != pad_id).sum(1, keepdim=True)  # (B, d)
    words = torch.cat([centres.unsqueeze(1), negatives], 1)  # (B, 1 + K)
    scores = torch.einsum("bkd,bd->bk", F.embedding(words, out), h)
    labels = torch.zeros_like(scores)
    labels[:, 0] = 1.0
    return F.binary_cross_entropy_with_logits(scores, labels, reduction="sum") / len(h)


def cbow_package_sgns(inp, out, contexts, centres, negatives, pad_id=0):
    """The context mean by hand, then the package's skip-gram loss (a learner may reuse it)."""
    from minigpt.models.word2vec import sgns_loss

    real = (contexts != pad_id).to(inp.dtype)  # (B, W)
    h = torch.einsum("bw,bwd->bd", real, inp[contexts]) / real.sum(1, keepdim=True)
    return sgns_loss(h, out[centres], out[negatives])


def _mean_context(table, contexts, pad_id, average="real"):
    real = (contexts != pad_id).unsqueeze(-1).float()
    vecs = table[contexts]
    if average == "width":
        return vecs.mean(1)
    if average == "width, pads zeroed":
        return (vecs * real).sum(1) / contexts.shape[1]
    if average == "sum":
        return (vecs * real).sum(1)
    return (vecs * real).sum(1) / real.sum(1)


def _ns_loss(h, u_pos, u_neg, sign=-1.0, neg_sign=-1.0, over_k="sum", over_batch="mean"):
    noise = F.logsigmoid(neg_sign * (u_neg @ h.unsqueeze(-1)).squeeze(-1))
    noise = noise.sum(-1) if over_k == "sum" else noise.mean(-1)
    per_example = sign * (F.logsigmoid((u_pos * h).sum(-1)) + noise)
    return per_example.sum() if over_batch == "sum" else per_example.mean()


def mean_over_padded_width(inp, out, contexts, centres, negatives, pad_id=0):
    return _ns_loss(inp[contexts].mean(1), out[centres], out[negatives])


def divides_by_width(inp, out, contexts, centres, negatives, pad_id=0):
    h = _mean_context(inp, contexts, pad_id, "width, pads zeroed")
    return _ns_loss(h, out[centres], out[negatives])


def sums_the_context(inp, out, contexts, centres, negatives, pad_id=0):
    return _ns_loss(_mean_context(inp, contexts, pad_id, "sum"), out[centres], out[negatives])


def context_from_out(inp, out, contexts, centres, negatives, pad_id=0):
    return _ns_loss(_mean_context(out, contexts, pad_id), out[centres], out[negatives])


def tables_swapped(inp, out, contexts, centres, negatives, pad_id=0):
    return _ns_loss(_mean_context(out, contexts, pad_id), inp[centres], inp[negatives])


def pad_is_always_zero(inp, out, contexts, centres, negatives, pad_id=0):
    return _ns_loss(_mean_context(inp, contexts, 0), out[centres], out[negatives])


def no_minus_sign(inp, out, contexts, centres, negatives, pad_id=0):
    h = _mean_context(inp, contexts, pad_id)
    return _ns_loss(h, out[centres], out[negatives], sign=1.0)


def noise_without_minus(inp, out, contexts, centres, negatives, pad_id=0):
    h = _mean_context(inp, contexts, pad_id)
    return _ns_loss(h, out[centres], out[negatives], neg_sign=1.0)


def averages_over_k(inp, out, contexts, centres, negatives, pad_id=0):
    h = _mean_context(inp, contexts, pad_id)
    return _ns_loss(h, out[centres], out[negatives], over_k="mean")


def sums_over_batch(inp, out, contexts, centres, negatives, pad_id=0):
    h = _mean_context(inp, contexts, pad_id)
    return _ns_loss(h, out[centres], out[negatives], over_batch="sum")


@pytest.mark.parametrize("fn", [cbow_loss, cbow_loop, cbow_bce, cbow_package_sgns])
def test_cbow_loss_right_implementations_pass(fn, capsys):
    checks.check_cbow_loss(fn)
    assert "passed" in capsys.readouterr().out


@pytest.mark.parametrize("fn, tip", [
    (mean_over_padded_width, "You averaged over the padded width W, pads included"),
    (divides_by_width, "left the pads out of the sum but divided by the padded width"),
    (sums_the_context, "You summed the context vectors: CBOW averages them"),
    (context_from_out, "come from the input table `inp`"),
    (tables_swapped, "come from the input table `inp`"),
    (pad_is_always_zero, "pad_id=7 the loss.*The padding id is `pad_id`, not always 0"),
    (no_minus_sign, "\\*minus\\*"),
    (noise_without_minus, "σ\\(-score\\)"),
    (averages_over_k, "Sum the K noise"),
    (sums_over_batch, "take the mean"),
])
def test_cbow_loss_mistakes_get_their_tip(fn, tip):
    with pytest.raises(AssertionError, match=tip) as err:
        checks.check_cbow_loss(fn)
    assert not isinstance(err.value, checks.NotDoneYet)


@pytest.mark.parametrize("fn, message", [
    (lambda *args: cbow_loss(*args).item(), "return a scalar tensor"),
    (lambda *args: cbow_loss(*args).expand(3), "return a scalar tensor"),
    (lambda *args: cbow_loss(*args).detach(), "no gradient flows back"),
    (lambda i, o, *rest: cbow_loss(i.detach(), o, *rest), "gradient on `inp` differs"),
])
def test_cbow_loss_must_be_a_differentiable_scalar(fn, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_cbow_loss(fn)


def test_cbow_mistakes_get_no_tip_when_none_explains_every_batch():
    """Two mistakes at once match no single one: the message names none rather than a wrong one."""
    from minigpt.course.checks.word2vec import _CBOW_SLIPS

    def two_slips(inp, out, contexts, centres, negatives, pad_id=0):
        return _ns_loss(_mean_context(inp, contexts, pad_id, "sum"), out[centres], out[negatives],
                        over_k="mean")

    with pytest.raises(AssertionError, match="yours is [0-9.]+\\.$") as err:
        checks.check_cbow_loss(two_slips)
    assert not any(msg in str(err.value) for msg, _ in _CBOW_SLIPS)


def test_cbow_batches_hold_what_the_check_promises():
    """Every batch has a row of one real word; every batch of several rows has a full row and a
    padded row of two or more real words; the last batch pads with 7 and uses 0 as a word."""
    from minigpt.course.checks.word2vec import _CBOW_CASES, _cbow_batch

    for seed, case in enumerate(_CBOW_CASES):
        inp, _out, contexts, centres, negatives, pad_id = _cbow_batch(*case, seed=seed)
        real = (contexts != pad_id).sum(1)
        assert real.min() == 1 and (real[0] == 1)
        if len(contexts) > 1:
            assert real.max() == contexts.shape[1]
            assert ((real >= 2) & (real < contexts.shape[1])).any()
        assert inp[pad_id].abs().sum() > 0  # the padding row is not zero: counting it shows
        assert pad_id not in centres and pad_id not in negatives
    assert pad_id == 7 and ((contexts == 0).sum() > 0)


@pytest.mark.parametrize("seed", range(5))
def test_cbow_verdicts_hold_on_other_draws(seed, monkeypatch, capsys):
    """The batches' seeds shifted: right answers still pass, each mistake still gets its tip."""
    from minigpt.course.checks import word2vec as w2v_checks

    draw, shift = w2v_checks._cbow_batch, 100 * (1 + seed)
    monkeypatch.setattr(w2v_checks, "_cbow_batch",
                        lambda *case, seed: draw(*case, seed=seed + shift))
    for fn in (cbow_loss, cbow_loop, cbow_bce, cbow_package_sgns):
        checks.check_cbow_loss(fn)
    assert capsys.readouterr().out.count("passed") == 4
    for fn, tip in [(mean_over_padded_width, "pads included"), (divides_by_width, "divided by"),
                    (sums_the_context, "summed the context"), (context_from_out, "input table"),
                    (tables_swapped, "input table"), (pad_is_always_zero, "not always 0"),
                    (no_minus_sign, "minus sign"), (noise_without_minus, "score them low"),
                    (averages_over_k, "Sum the K"), (sums_over_batch, "take the mean")]:
        with pytest.raises(AssertionError, match=tip):
            checks.check_cbow_loss(fn)


# ---- Task 3: leaving out a, b and c -- each one of them ------------------------------------

def leaves_out_b_and_c(vectors, a, b, c):
    unit = _unit(vectors)
    query = unit[b] - unit[a] + unit[c]
    return _best([w for w in unit if w not in (b, c)], lambda w: cosine_similarity(unit[w], query))


def leaves_out_only_a(vectors, a, b, c):
    unit = _unit(vectors)
    query = unit[b] - unit[a] + unit[c]
    return _best([w for w in unit if w != a], lambda w: cosine_similarity(unit[w], query))


@pytest.mark.parametrize("fn, tip", [
    (leaves_out_b_and_c, "good:better::bad:\\? should be 'worse', got 'good'.*leave a out too"),
    (leaves_out_only_a, "got '(woman|king|man|queen)'.*one of the question's words"),
])
def test_analogy_must_leave_out_each_of_a_b_c(fn, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_analogy(cosine_similarity, fn)


def test_close_question_separates_a_from_the_answer():
    """In good:better::bad:? the answer wins among the rest, and a beats it when kept, each by
    a clear cosine margin."""
    from minigpt.course.checks.word2vec import _CLOSE_QUESTION, _CLOSE_VECTORS

    vecs = {w: np.array(v, float) for w, v in _CLOSE_VECTORS.items()}
    unit = _unit(vecs)
    a, b, c = _CLOSE_QUESTION
    query = unit[b] - unit[a] + unit[c]
    cos = {w: cosine_similarity(unit[w], query) for w in unit}
    rest = sorted((cos[w] for w in unit if w not in (a, b, c)), reverse=True)
    assert analogy(vecs, a, b, c) == "worse" and rest[0] - rest[1] > 0.5
    assert cos[a] - cos["worse"] > 0.2
