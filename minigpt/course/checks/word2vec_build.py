"""Checks for exercise 02's build task: skip-gram with negative sampling's data pipeline and one
training pass, written by the learner (subsampling, dynamic windows, noise words, the steps).

The learner's functions draw random numbers, so they cannot be compared draw for draw with
``minigpt.models.word2vec``: each check compares *frequencies* over many seeded draws with the
package's probabilities (a tolerance of 5 binomial standard deviations), checks the structure
that must always hold (pairs inside a sentence and a window, one reach per centre), and the
last one trains the package's ``Word2Vec`` with the learner's pass until words of the same
topic are closer than words of different topics.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import passed as _passed
from minigpt.models import word2vec as w2v

__all__ = ["check_dynamic_window", "check_noise_draws", "check_subsample", "check_train_pass"]

_TASK = "Task 4{} ({})"


def _sigmas(observed: np.ndarray, expected: np.ndarray, trials: np.ndarray) -> np.ndarray:
    """How many binomial standard deviations each observed frequency is from its expectation."""
    std = np.sqrt(np.maximum(expected * (1 - expected), 1e-12) / np.maximum(trials, 1))
    return np.abs(observed - expected) / std


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---- 4a: subsampling ---------------------------------------------------------------------------

_SUB_COUNTS = np.array([0, 0, 0, 6000, 2500, 800, 300, 40, 8])  # ids 0-2: never seen


def _sub_corpus() -> np.ndarray:
    ids = np.repeat(np.arange(len(_SUB_COUNTS)), _SUB_COUNTS)
    return _rng(0).permutation(ids)


def check_subsample(subsample: Callable) -> None:
    """Task: ``subsample(ids, counts, sample, rng)`` -> (n,) bool mask of the occurrences kept,
    each with the keep probability of its word (``w2v.keep_probabilities``)."""
    task = _TASK.format("a", "subsample")
    hint = ("z = counts / counts.sum(); keep = min(1, (sqrt(z / sample) + 1) * sample / z) per word; "
            "then one rng.random() per occurrence: keep it where the draw is below keep[ids].")
    ids = _sub_corpus()
    for sample in (1e-2, 1e-3):
        want = w2v.keep_probabilities(_SUB_COUNTS, sample)
        masks = []
        for seed in range(20):
            mask = _call(task, hint, subsample, ids.copy(), _SUB_COUNTS.copy(), sample, _rng(seed))
            mask = np.asarray(mask)
            if mask.shape != ids.shape or mask.dtype != bool:
                raise AssertionError(f"{task}: return a boolean mask with one entry per occurrence, "
                                     f"shape {ids.shape}; got dtype {mask.dtype}, shape {mask.shape}.")
            masks.append(mask)
        again = np.asarray(subsample(ids.copy(), _SUB_COUNTS.copy(), sample, _rng(0)))
        if not np.array_equal(again, masks[0]):
            raise AssertionError(f"{task}: two calls with the same seeded rng kept different "
                                 "occurrences. Draw every random number from the rng you are given.")
        seen = _SUB_COUNTS > 0
        kept = np.mean([np.bincount(ids[m], minlength=len(_SUB_COUNTS)) for m in masks], 0)[seen]
        share = kept / _SUB_COUNTS[seen]
        all_or_none = all(len(set(m[ids == w].tolist())) == 1 for m in masks[:3]
                          for w in np.flatnonzero(seen))
        if all_or_none or _sigmas(share, want[seen], 20 * _SUB_COUNTS[seen]).max() > 5:
            z = _SUB_COUNTS[seen] / _SUB_COUNTS.sum()
            tips = [(1 - want[seen], ("That is the chance to *discard* each occurrence: keep it "
                                     "where the draw is *below* the keep probability.")),
                    (np.minimum(1, np.sqrt(sample / z)), ("That is the paper's sqrt(sample / z): "
                     "word2vec.c (and the package) keep (sqrt(z / sample) + 1) * sample / z.")),
                    (np.minimum(1, (np.sqrt(_SUB_COUNTS[seen] / sample) + 1) * sample
                                / _SUB_COUNTS[seen]),
                     "z is a share of the corpus: divide the counts by their total first.")]
            tip = next((" " + t for p, t in tips if _sigmas(share, p, 20 * _SUB_COUNTS[seen]).max()
                        < 5), "")
            if all_or_none:
                tip = (" Each call kept all of a word's occurrences or none: draw a separate random "
                       "number for every occurrence, not one per word.")
            raise AssertionError(
                f"{task}: with sample={sample}, the share kept of words seen "
                f"{_SUB_COUNTS[seen].tolist()} times is {np.round(share, 3).tolist()} (mean of 20 "
                f"calls), expected {np.round(want[seen], 3).tolist()}.{tip}")
    _passed(task, "each word keeps the package's share of its occurrences, drawn per occurrence")


# ---- 4b: the dynamic window --------------------------------------------------------------------

_SENTENCE_LENGTHS = [1, 2, 6, 14, 25, 40]


_FIRST_ID = 1000  # position i holds word id 1000 + i: a pair names its two positions


def _window_corpus() -> tuple[np.ndarray, np.ndarray]:
    """Every position its own word id (``_FIRST_ID + position``), and the sentence ids."""
    sent_ids = np.repeat(np.arange(len(_SENTENCE_LENGTHS)), _SENTENCE_LENGTHS)
    return _FIRST_ID + np.arange(len(sent_ids)), sent_ids


def check_dynamic_window(dynamic_window_pairs: Callable) -> None:
    """Task: ``dynamic_window_pairs(ids, sent_ids, window, rng)`` -> (centres, contexts): every
    pair of one pass, each centre's reach drawn uniformly from 1..window, never across sentences."""
    task = _TASK.format("b", "dynamic_window_pairs")
    hint = ("reach = rng.integers(1, window + 1, size=len(ids)); for each centre i, pair it with every "
            "j != i with |i - j| <= reach[i] and sent_ids[j] == sent_ids[i].")
    ids, sent_ids = _window_corpus()
    for window in (3, 5):
        reaches, same_as_left = [], []
        for seed in range(60):
            got = _call(task, hint, dynamic_window_pairs, ids.copy(), sent_ids.copy(), window, _rng(seed))
            if not (isinstance(got, tuple) and len(got) == 2):
                raise AssertionError(f"{task}: return two arrays, (centres, contexts).")
            centres, contexts = (np.asarray(a, dtype=np.int64) - _FIRST_ID for a in got)
            if centres.shape != contexts.shape or centres.size == 0:
                raise AssertionError(f"{task}: centres and contexts must be two arrays of the same "
                                     f"length, not empty; got {centres.size} and {contexts.size}.")
            if min(centres.min(), contexts.min()) < 0 or max(centres.max(), contexts.max()) >= len(ids):
                raise AssertionError(f"{task}: return word ids (ids[i], ids[j]), not positions.")
            dist = np.abs(centres - contexts)
            if (dist == 0).any():
                raise AssertionError(f"{task}: a word is paired with itself: skip offset 0.")
            if (sent_ids[centres] != sent_ids[contexts]).any():
                raise AssertionError(f"{task}: a pair crosses a sentence boundary: pair only words "
                                     "with the same sent_ids.")
            if dist.max() > window:
                raise AssertionError(f"{task}: a pair is {dist.max()} words apart with window="
                                     f"{window}: the reach is at most window.")
            if len(set(zip(centres.tolist(), contexts.tolist()))) != len(centres):
                raise AssertionError(f"{task}: a (centre, context) pair appears twice in one pass.")
            reach = np.zeros(len(ids), dtype=np.int64)
            np.maximum.at(reach, centres, dist)
            full = np.zeros(len(ids), dtype=np.int64)  # pairs each centre should have with that reach
            for i in range(len(ids)):
                j = np.arange(i - reach[i], i + reach[i] + 1)
                j = j[(j >= 0) & (j < len(ids)) & (j != i)]
                full[i] = (sent_ids[j] == sent_ids[i]).sum()
            if not np.array_equal(np.bincount(centres, minlength=len(ids)), full):
                raise AssertionError(
                    f"{task}: some centre has a gap in its window (a pair at distance r but not one at "
                    "a smaller distance, or only on one side). Draw one reach per centre and use it on "
                    "both sides: every word within the reach, left and right, is a context.")
            inner = [i for i in range(len(ids)) if sent_ids[max(i - window, 0)] == sent_ids[i]
                     == sent_ids[min(i + window, len(ids) - 1)] and window <= i < len(ids) - window]
            reaches += reach[inner].tolist()
            same_as_left += (reach[inner][1:] == reach[inner][:-1]).tolist()
        freq = np.bincount(reaches, minlength=window + 1) / len(reaches)  # freq[r]
        if freq[0] > 0:
            raise AssertionError(f"{task}: {freq[0]:.0%} of the centres with room on both sides got "
                                 "no context at all: draw the reach from 1..window "
                                 "(rng.integers(1, window + 1)), never 0.")
        if _sigmas(freq[1:], np.full(window, 1 / window), np.full(window, len(reaches))).max() > 5:
            raise AssertionError(
                f"{task}: with window={window}, the reaches 1..{window} occur "
                f"{np.round(freq[1:], 3).tolist()} of the time, expected {1 / window:.2f} each: draw "
                f"each centre's reach uniformly from 1..window (rng.integers(1, window + 1)).")
        if np.mean(same_as_left) > 0.5:
            raise AssertionError(f"{task}: neighbouring centres share their reach "
                                 f"{np.mean(same_as_left):.0%} of the time: draw one reach per "
                                 "centre, not one per sentence or per pass.")
    _passed(task, "pairs stay in their sentence, and each centre's reach is uniform on 1..window")


# ---- 4c: noise words ---------------------------------------------------------------------------

_NOISE_COUNTS = np.array([0, 0, 0, 5000, 1200, 300, 60, 12, 5])


def check_noise_draws(draw_negatives: Callable) -> None:
    """Task: ``draw_negatives(counts, shape, rng, power=0.75)`` -> ids of ``shape`` drawn from
    ``counts ** power``, normalised (``w2v.noise_distribution``)."""
    task = _TASK.format("c", "draw_negatives")
    hint = ("p = counts ** power; p = p / p.sum(); then rng.choice(len(counts), size=shape, p=p).")
    shape = (4000, 5)
    for power in (0.75, 1.0):
        got = _call(task, hint, draw_negatives, _NOISE_COUNTS.copy(), shape, _rng(1), power=power)
        got = np.asarray(got)
        if got.shape != shape or not np.issubdtype(got.dtype, np.integer):
            raise AssertionError(f"{task}: return integer ids of shape {shape}; got dtype "
                                 f"{got.dtype}, shape {got.shape}.")
        if got.min() < 0 or got.max() >= len(_NOISE_COUNTS) or (_NOISE_COUNTS[got] == 0).any():
            raise AssertionError(f"{task}: drew an id that is out of range or never occurs "
                                 "(count 0): give those ids probability 0.")
        again = np.asarray(draw_negatives(_NOISE_COUNTS.copy(), shape, _rng(1), power=power))
        if not np.array_equal(again, got):
            raise AssertionError(f"{task}: the same seeded rng gave different draws: draw from the "
                                 "rng you are given.")
        freq = np.bincount(got.ravel(), minlength=len(_NOISE_COUNTS)) / got.size
        want = w2v.noise_distribution(_NOISE_COUNTS, power)
        if _sigmas(freq, want, np.full(len(want), got.size)).max() > 5:
            seen = _NOISE_COUNTS > 0
            tips = [(w2v.noise_distribution(_NOISE_COUNTS, 1.0), ("That is the plain unigram "
                     "distribution: raise the counts to the power `power` first.")),
                    (seen / seen.sum(), ("Those draws are uniform over the words: weight each word "
                     "by count ** power."))]
            tip = next((" " + t for p, t in tips if power != 1.0 and
                        _sigmas(freq, p, np.full(len(p), got.size)).max() < 5), "")
            raise AssertionError(
                f"{task}: with power={power}, the ids were drawn {np.round(freq, 4).tolist()} of "
                f"the time, expected {np.round(want, 4).tolist()}.{tip}")
    _passed(task, "draws follow counts ** 0.75 (and ** 1), never an unseen word")


# ---- 4d: one training pass ---------------------------------------------------------------------

_TOPICS, _PER_TOPIC, _FUNCTION_WORDS = 4, 5, 4


def _topic_corpus(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """400 sentences of 12 words: half are 4 frequent "function" words (ids 3-6), half the words
    of the sentence's topic (4 topics of 5 words). Returns ids, sent_ids, counts."""
    rng = _rng(seed)
    first = 3 + _FUNCTION_WORDS
    ids, sent_ids = [], []
    for s in range(400):
        topic = first + _PER_TOPIC * (s % _TOPICS)
        words = np.where(rng.random(12) < 0.5, rng.integers(3, first, 12),
                         rng.integers(topic, topic + _PER_TOPIC, 12))
        ids += words.tolist()
        sent_ids += [s] * 12
    ids = np.array(ids)
    return ids, np.array(sent_ids), np.bincount(ids, minlength=first + _TOPICS * _PER_TOPIC)


def topic_margin(weight: torch.Tensor) -> float:
    """Mean cosine of topic words with the other words of their topic, minus with other topics'."""
    first = 3 + _FUNCTION_WORDS
    vecs = torch.nn.functional.normalize(weight[first:].detach().double(), dim=1)
    cos = vecs @ vecs.T
    topic = torch.arange(len(vecs)) // _PER_TOPIC
    same = (topic[:, None] == topic[None, :]) & ~torch.eye(len(vecs), dtype=torch.bool)
    return float(cos[same].mean() - cos[topic[:, None] != topic[None, :]].mean())


class _Spy(w2v.Word2Vec):
    """The package's model, recording every batch it is given."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__(vocab_size, dim)
        self.batches: list[tuple[torch.Tensor, ...]] = []
        self.losses: list[float] = []

    def forward(self, inputs, targets, negatives):
        loss = super().forward(inputs, targets, negatives)
        self.batches.append((inputs, targets, negatives))
        self.losses.append(loss.item())
        return loss


class _CheckedAdam(torch.optim.Adam):
    """Adam that, at each step, checks the gradients are those of the last batch's loss alone."""

    def __init__(self, model: _Spy, lr: float):
        super().__init__(model.parameters(), lr=lr)
        self.model, self.steps, self.bad = model, 0, ""

    def step(self, closure=None):
        self.steps += 1
        if not self.bad and self.model.batches:
            params = list(self.model.parameters())
            if any(p.grad is None for p in params):
                self.bad = "call loss.backward() before optimizer.step()"
            else:
                want = torch.autograd.grad(w2v.Word2Vec.forward(self.model, *self.model.batches[-1]),
                                           params)
                if any(not torch.allclose(p.grad, g, rtol=1e-4, atol=1e-7) for p, g in zip(params, want)):
                    self.bad = ("the gradients at a step are not those of that batch's loss: call "
                                "optimizer.zero_grad() before loss.backward() at every step")
        return super().step(closure)


def _expected_pairs(ids: np.ndarray, sent_ids: np.ndarray, counts: np.ndarray, window: int,
                    sample: float) -> tuple[float, float]:
    """Mean and standard deviation of the pairs in one pass, from the package's pieces."""
    keep = w2v.keep_probabilities(counts, sample)
    sizes = []
    for seed in range(30):
        rng = _rng(100 + seed)
        kept = rng.random(len(ids)) < keep[ids]
        sizes.append(len(w2v.skipgram_pairs(ids[kept], sent_ids[kept], window, rng)[0]))
    return float(np.mean(sizes)), float(np.std(sizes))


def check_train_pass(train_pass: Callable, passes: int = 4) -> None:
    """Task: ``train_pass(model, optimizer, ids, sent_ids, counts, rng, window, negative, sample,
    batch_size)`` -> the mean batch loss of one pass. Trains the package's ``Word2Vec`` on a
    corpus of four topics until same-topic words are closer than other-topic ones."""
    task = _TASK.format("d", "train_pass")
    hint = ("subsample, make the pairs, shuffle them (rng.permutation), then for each slice of "
            "batch_size pairs: draw (B, negative) noise ids, loss = model(centres, contexts, negatives), "
            "optimizer.zero_grad(), loss.backward(), optimizer.step().")
    ids, sent_ids, counts = _topic_corpus()
    window, negative, sample, batch_size = 5, 5, 0.02, 256
    mean, std = _expected_pairs(ids, sent_ids, counts, window, sample)
    torch.manual_seed(0)
    model = _Spy(len(counts), 16)
    optimizer = _CheckedAdam(model, lr=0.02)
    rng = _rng(0)
    for p in range(passes):
        model.batches.clear()
        model.losses.clear()
        steps_before = optimizer.steps
        got = _call(task, hint, train_pass, model, optimizer, ids.copy(), sent_ids.copy(),
                    counts.copy(), rng, window=window, negative=negative, sample=sample,
                    batch_size=batch_size)
        if optimizer.bad:
            raise AssertionError(f"{task}: {optimizer.bad}.")
        sizes = [len(b[1]) for b in model.batches]
        if not sizes or optimizer.steps - steps_before != len(sizes):
            raise AssertionError(f"{task}: {len(sizes)} batches but {optimizer.steps - steps_before} "
                                 "optimizer steps: take one step per batch.")
        if any(s != batch_size for s in sizes[:-1]) or sizes[-1] > batch_size:
            raise AssertionError(f"{task}: batches of {sorted(set(sizes))} pairs: serve batch_size "
                                 f"= {batch_size} pairs at a time (the last batch may be smaller).")
        pairs = sum(sizes)
        if abs(pairs - mean) > 6 * std + 0.02 * mean:
            tip = (" Did you subsample first, and draw each centre's reach from 1..window?"
                   if pairs > mean else " Pair every word with all those within its reach, both sides.")
            raise AssertionError(f"{task}: one pass trained on {pairs:,} pairs; the package's "
                                 f"pipeline makes {mean:,.0f} ± {std:,.0f} on this corpus.{tip}")
        negs = torch.cat([b[2] for b in model.batches])
        if negs.shape[1:] != (negative,):
            raise AssertionError(f"{task}: negatives must be (B, negative) = (B, {negative}) ids; "
                                 f"got {tuple(negs.shape)}.")
        freq = np.bincount(negs.numpy().ravel(), minlength=len(counts)) / negs.numel()
        want = w2v.noise_distribution(counts, 0.75)
        if _sigmas(freq, want, np.full(len(want), negs.numel())).max() > 6:
            raise AssertionError(f"{task}: the noise words were drawn {np.round(freq, 3).tolist()} of "
                                 f"the time, expected {np.round(want, 3).tolist()} (counts ** 0.75).")
        centres = torch.cat([b[0] for b in model.batches]).numpy()
        contexts = torch.cat([b[1] for b in model.batches]).numpy()
        runs = max(np.mean(centres[1:] == centres[:-1]), np.mean(centres[1:] == contexts[:-1]))
        if runs > 0.4:
            raise AssertionError(f"{task}: consecutive pairs share a word {runs:.0%} of the time: "
                                 "the pairs are still in corpus order. Shuffle them "
                                 "(rng.permutation) before cutting batches.")
        if not isinstance(got, (float, int)) and not (torch.is_tensor(got) and got.dim() == 0):
            raise AssertionError(f"{task}: return the mean batch loss of the pass (a float).")
        if not math.isclose(float(got), float(np.mean(model.losses)), rel_tol=1e-4):
            raise AssertionError(f"{task}: returned {float(got):.4f}, but the pass's batch losses "
                                 f"average {np.mean(model.losses):.4f}: return their mean.")
    margin = topic_margin(model.inp.weight)
    if margin < 0.3:
        raise AssertionError(f"{task}: after {passes} passes, words of the same topic are only "
                             f"{margin:.2f} closer (mean cosine) than words of different topics; "
                             "the package's pipeline reaches about 0.7 here.")
    _passed(task, f"{passes} passes on a 4-topic corpus: same-topic words are {margin:.2f} closer "
                  "in cosine than other-topic words")
