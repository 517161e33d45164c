"""Exercise 02's build task (SGNS's pipeline and training pass): right versions written in
different ways pass, untouched stubs get a hint, and the usual mistakes fail with their tip."""

import numpy as np
import pytest
import torch

from minigpt.course import checks
from minigpt.course.checks import word2vec_build

# ---- right versions: loops --------------------------------------------------------------------

def subsample(ids, counts, sample, rng):
    z = counts / counts.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        keep = np.minimum(1.0, (np.sqrt(z / sample) + 1) * sample / z)
    return rng.random(len(ids)) < keep[ids]


def dynamic_window_pairs(ids, sent_ids, window, rng):
    reach = rng.integers(1, window + 1, size=len(ids))
    centres, contexts = [], []
    for i in range(len(ids)):
        for j in range(max(0, i - reach[i]), min(len(ids), i + reach[i] + 1)):
            if j != i and sent_ids[j] == sent_ids[i]:
                centres.append(ids[i])
                contexts.append(ids[j])
    return np.array(centres, dtype=np.int64), np.array(contexts, dtype=np.int64)


def draw_negatives(counts, shape, rng, power=0.75):
    p = np.asarray(counts, dtype=float) ** power
    return rng.choice(len(p), size=shape, p=p / p.sum())


def train_pass(model, optimizer, ids, sent_ids, counts, rng, window=5, negative=5, sample=1e-3,
               batch_size=256, pairs=dynamic_window_pairs, keep=subsample, noise=draw_negatives,
               shuffle=True, zero_grad=True, mean=True):
    kept = keep(ids, counts, sample, rng)
    centres, contexts = pairs(ids[kept], sent_ids[kept], window, rng)
    order = rng.permutation(len(centres)) if shuffle else np.arange(len(centres))
    centres, contexts = torch.from_numpy(centres[order]), torch.from_numpy(contexts[order])
    losses = []
    for start in range(0, len(centres), batch_size):
        c, x = centres[start:start + batch_size], contexts[start:start + batch_size]
        negatives = torch.from_numpy(noise(counts, (len(c), negative), rng))
        loss = model(c, x, negatives)
        if zero_grad:
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return sum(losses) / len(losses) if mean else losses[-1]


# ---- right versions: vectorised, other random calls -------------------------------------------

def subsample_vectorised(ids, counts, sample, rng):
    share = counts[ids] / counts.sum()  # (n,) each occurrence's word share
    keep = np.sqrt(sample / share) + sample / share
    return rng.uniform(size=ids.shape) < keep


def pairs_vectorised(ids, sent_ids, window, rng):
    reach = rng.integers(1, window, size=len(ids), endpoint=True)
    centres, contexts = [], []
    for offset in [o for o in range(-window, window + 1) if o != 0]:
        i = np.arange(max(0, -offset), min(len(ids), len(ids) - offset))
        ok = (sent_ids[i] == sent_ids[i + offset]) & (reach[i] >= abs(offset))
        centres.append(ids[i[ok]])
        contexts.append(ids[i[ok] + offset])
    return np.concatenate(centres), np.concatenate(contexts)


def negatives_by_cdf(counts, shape, rng, power=0.75):
    cdf = np.cumsum(np.power(counts, power, dtype=float))
    return np.searchsorted(cdf / cdf[-1], rng.random(shape), side="right")


def train_pass_torch(model, optimizer, ids, sent_ids, counts, rng, window=5, negative=5,
                     sample=1e-3, batch_size=256):
    kept = subsample_vectorised(ids, counts, sample, rng)
    pairs = torch.from_numpy(np.stack(pairs_vectorised(ids[kept], sent_ids[kept], window, rng), 1))
    pairs = pairs[torch.randperm(len(pairs))]  # (P, 2) shuffled with torch's own generator
    losses = torch.zeros(0)
    for batch in pairs.split(batch_size):
        negatives = torch.from_numpy(negatives_by_cdf(counts, (len(batch), negative), rng))
        loss = model(batch[:, 0], batch[:, 1], negatives)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses = torch.cat([losses, loss.detach().reshape(1)])
    return losses.mean()


def stub(*args, **kwargs):
    raise NotImplementedError


RIGHT = [
    (checks.check_subsample, subsample), (checks.check_subsample, subsample_vectorised),
    (checks.check_dynamic_window, dynamic_window_pairs),
    (checks.check_dynamic_window, pairs_vectorised),
    (checks.check_noise_draws, draw_negatives), (checks.check_noise_draws, negatives_by_cdf),
    (checks.check_train_pass, train_pass), (checks.check_train_pass, train_pass_torch),
]


@pytest.mark.parametrize("check, fn", RIGHT, ids=lambda x: getattr(x, "__name__", ""))
def test_right_versions_pass(check, fn, capsys):
    check(fn)
    assert "passed" in capsys.readouterr().out


@pytest.mark.parametrize("check", [checks.check_subsample, checks.check_dynamic_window,
                                   checks.check_noise_draws, checks.check_train_pass])
def test_stubs_are_not_done_yet_with_a_hint(check):
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        check(stub)


# ---- usual mistakes ---------------------------------------------------------------------------

def _keep(counts, sample, share=True):
    z = counts / counts.sum() if share else counts.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.minimum(1.0, (np.sqrt(z / sample) + 1) * sample / z)


def sub_discards(ids, counts, sample, rng):
    return rng.random(len(ids)) > _keep(counts, sample)[ids]


def sub_paper(ids, counts, sample, rng):
    with np.errstate(divide="ignore"):
        return rng.random(len(ids)) < np.sqrt(sample / (counts / counts.sum()))[ids]


def sub_raw_counts(ids, counts, sample, rng):
    return rng.random(len(ids)) < _keep(counts, sample, share=False)[ids]


def sub_per_word(ids, counts, sample, rng):
    return (rng.random(len(counts)) < _keep(counts, sample))[ids]


def sub_global_rng(ids, counts, sample, rng):
    return np.random.random(len(ids)) < _keep(counts, sample)[ids]


def sub_ints(ids, counts, sample, rng):
    return subsample(ids, counts, sample, rng).astype(int)


@pytest.mark.parametrize("fn, tip", [
    (sub_discards, r"chance to \*discard\*"), (sub_paper, "paper's sqrt"),
    (sub_raw_counts, "divide the counts by their total"), (sub_per_word, "not one per word"),
    (sub_global_rng, "rng you are given"), (sub_ints, "boolean mask"),
])
def test_subsample_mistakes(fn, tip):
    with pytest.raises(AssertionError, match=tip) as err:
        checks.check_subsample(fn)
    assert not isinstance(err.value, checks.NotDoneYet)


class _Fixed:
    """An rng whose integers() always returns the top of the range (high - 1)."""

    def integers(self, low, high, size):
        return np.full(size, high - 1)


def pairs_fixed_window(ids, sent_ids, window, rng):
    return dynamic_window_pairs(ids, sent_ids, window, _Fixed())


def pairs_reach_from_zero(ids, sent_ids, window, rng):
    reach = rng.integers(0, window, size=len(ids))
    return _pairs_with(ids, sent_ids, lambda i, o: abs(o) <= reach[i], window)


def pairs_cross_sentences(ids, sent_ids, window, rng):
    return dynamic_window_pairs(ids, np.zeros_like(sent_ids), window, rng)


def pairs_two_reaches(ids, sent_ids, window, rng):
    left, right = rng.integers(1, window + 1, size=(2, len(ids)))
    return _pairs_with(ids, sent_ids, lambda i, o: -o <= left[i] if o < 0 else o <= right[i], window)


def pairs_per_sentence(ids, sent_ids, window, rng):
    per_sentence = rng.integers(1, window + 1, size=sent_ids.max() + 1)
    return _pairs_with(ids, sent_ids, lambda i, o: abs(o) <= per_sentence[sent_ids[i]], window)


def _pairs_with(ids, sent_ids, keep, window):
    centres, contexts = [], []
    for i in range(len(ids)):
        for o in range(-window, window + 1):
            j = i + o
            if o and 0 <= j < len(ids) and sent_ids[j] == sent_ids[i] and keep(i, o):
                centres.append(ids[i])
                contexts.append(ids[j])
    return np.array(centres), np.array(contexts)


@pytest.mark.parametrize("fn, tip", [
    (pairs_fixed_window, r"reaches 1..3 occur \[0.0, 0.0, 1.0\]"),
    (pairs_reach_from_zero, "got no context at all"),
    (pairs_cross_sentences, "crosses a sentence boundary"),
    (pairs_two_reaches, "use it on both sides"),
    (pairs_per_sentence, "not one per sentence"),
])
def test_dynamic_window_mistakes(fn, tip):
    with pytest.raises(AssertionError, match=tip) as err:
        checks.check_dynamic_window(fn)
    assert not isinstance(err.value, checks.NotDoneYet)


def neg_unigram(counts, shape, rng, power=0.75):
    return draw_negatives(counts, shape, rng, power=1.0)


def neg_uniform_seen(counts, shape, rng, power=0.75):
    return rng.choice(np.flatnonzero(counts), size=shape)


def neg_uniform_all(counts, shape, rng, power=0.75):
    return rng.integers(0, len(counts), size=shape)


def neg_probabilities(counts, shape, rng, power=0.75):
    p = np.asarray(counts, float) ** power
    return p / p.sum()


@pytest.mark.parametrize("fn, tip", [
    (neg_unigram, "plain unigram"), (neg_uniform_seen, "uniform over the words"),
    (neg_uniform_all, "never occurs"), (neg_probabilities, "integer ids of shape"),
])
def test_noise_mistakes(fn, tip):
    with pytest.raises(AssertionError, match=tip) as err:
        checks.check_noise_draws(fn)
    assert not isinstance(err.value, checks.NotDoneYet)


def _variant(**kwargs):
    def fn(model, optimizer, ids, sent_ids, counts, rng, **settings):
        return train_pass(model, optimizer, ids, sent_ids, counts, rng, **settings, **kwargs)
    return fn


def _no_subsampling(ids, counts, sample, rng):
    return np.ones(len(ids), dtype=bool)


@pytest.mark.parametrize("fn, tip", [
    (_variant(keep=_no_subsampling), "Did you subsample first"),
    (_variant(pairs=pairs_fixed_window), "Did you subsample first, and draw each centre's reach"),
    (_variant(shuffle=False), "Shuffle them"),
    (_variant(zero_grad=False), r"optimizer.zero_grad\(\) before loss.backward\(\)"),
    (_variant(noise=neg_unigram), r"counts \*\* 0.75"),
    (_variant(mean=False), "return their mean"),
])
def test_train_pass_mistakes(fn, tip):
    with pytest.raises(AssertionError, match=tip) as err:
        checks.check_train_pass(fn)
    assert not isinstance(err.value, checks.NotDoneYet)


@pytest.mark.parametrize("seed", range(3))
def test_the_topic_corpus_trains_well_above_the_bound(seed):
    """The right pass reaches a topic margin far above the check's 0.3 on other corpora and
    seeds too (measured 0.68-0.70 over 6 seeds), so the bound does not hang on luck."""
    from minigpt.models import word2vec as w2v

    ids, sent_ids, counts = word2vec_build._topic_corpus(seed)
    torch.manual_seed(seed)
    model = w2v.Word2Vec(len(counts), 16)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    rng = np.random.default_rng(seed)
    for _ in range(4):
        train_pass(model, optimizer, ids, sent_ids, counts, rng, window=5, negative=5, sample=0.02)
    assert word2vec_build.topic_margin(model.inp.weight) > 0.6


def pairs_positions(ids, sent_ids, window, rng):
    return dynamic_window_pairs(np.arange(len(ids)), sent_ids, window, rng)


def test_dynamic_window_wants_ids_not_positions():
    with pytest.raises(AssertionError, match="not positions"):
        checks.check_dynamic_window(pairs_positions)
