"""Checks for exercises/02_word2vec.ipynb: subsampling, the negative-sampling loss, cosine
similarity and analogies by vector arithmetic.

Each check compares the learner's function with ``minigpt.models.word2vec`` on inputs chosen to catch
the usual mistakes (the discard instead of the keep probability, a missing cap, a sum instead
of a mean, a sign slip on the noise words, answering with one of the question's words).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import passed as _passed
from minigpt.models import word2vec as w2v
from minigpt.models import word_vectors

__all__ = ["check_analogy", "check_keep_probability", "check_sgns_loss"]


def check_keep_probability(keep_probability: Callable[[int, int, float], float]) -> None:
    """Task: ``keep_probability(count, total, sample)``: the chance an occurrence survives."""
    task = "Task 1 (keep_probability)"
    hint = "z = count / total; keep (sqrt(z / sample) + 1) * sample / z, and never more than 1."
    cases = [(60_000, 1_000_000, 1e-3), (5_000, 1_000_000, 1e-3), (300, 1_000_000, 1e-3),
             (20, 1_000_000, 1e-3), (60_000, 1_000_000, 1e-4)]
    for count, total, sample in cases:
        got = _call(task, hint, keep_probability, count, total, sample)
        want = float(w2v.keep_probabilities(np.array([count, total - count]), sample)[0])
        if got is None or not math.isclose(float(got), want, rel_tol=1e-6):
            tip = ""
            if got is not None and math.isclose(float(got), 1 - want, rel_tol=1e-6):
                tip = " That is the chance to *discard* it: return 1 minus that."
            elif got is not None and float(got) > 1:
                tip = " A probability is at most 1: cap it with min(..., 1.0)."
            raise AssertionError(f"{task}: keep_probability({count}, {total}, {sample}) returned "
                                 f"{got}, expected {want:.6f}.{tip}")
    the = float(w2v.keep_probabilities(np.array([60_000, 940_000]), 1e-3)[0])
    _passed(task, f"a word that is 6% of the text (like 'the') keeps {the:.0%} of its occurrences; "
                  "rare words keep them all")


def check_sgns_loss(sgns_loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
                    ) -> None:
    """Task: ``sgns_loss(v, u_pos, u_neg)`` with shapes (B, d), (B, d), (B, K, d)."""
    task = "Task 2 (sgns_loss)"
    hint = ("per example -log σ(u_pos·v) - Σ_k log σ(-u_neg_k·v), then the mean over the batch; "
            "torch.nn.functional.logsigmoid is σ's log, and (u_neg @ v.unsqueeze(-1)) gives the "
            "K scores.")
    gen = torch.Generator().manual_seed(0)
    for b, k, d in [(1, 1, 3), (4, 5, 8), (16, 3, 2)]:
        v, u_pos, u_neg = (torch.randn(*shape, generator=gen) for shape in
                           [(b, d), (b, d), (b, k, d)])
        got = _call(task, hint, sgns_loss, v, u_pos, u_neg)
        want = w2v.sgns_loss(v, u_pos, u_neg).item()
        if not isinstance(got, torch.Tensor) or got.dim() != 0:
            raise AssertionError(f"{task}: return a scalar tensor (the batch mean), got "
                                 f"{type(got).__name__} {getattr(got, 'shape', '')}")
        if not math.isclose(got.item(), want, rel_tol=1e-5, abs_tol=1e-6):
            tip = ""
            if b > 1 and math.isclose(got.item(), want * b, rel_tol=1e-5):
                tip = " You summed over the batch: take the mean."
            elif math.isclose(got.item(), _wrong_sign(v, u_pos, u_neg), rel_tol=1e-5):
                tip = " Noise words need log σ(-score): the model should score them low."
            raise AssertionError(f"{task}: with B={b}, K={k}, d={d} the loss is {want:.6f}, "
                                 f"yours is {got.item():.6f}.{tip}")
    _passed(task, "your loss equals minigpt.models.word2vec.sgns_loss on three batch shapes")


def _wrong_sign(v: torch.Tensor, u_pos: torch.Tensor, u_neg: torch.Tensor) -> float:
    pos = (v * u_pos).sum(-1)
    neg = torch.bmm(u_neg, v.unsqueeze(-1)).squeeze(-1)
    logsig = torch.nn.functional.logsigmoid
    return float(-(logsig(pos) + logsig(neg).sum(-1)).mean())


def _toy_vectors() -> dict[str, np.ndarray]:
    """Gender on axis 0, royalty on axis 1, 'fruitness' on axis 2, a little noise; different
    lengths, so only cosine (not the raw dot product) finds the right answers."""
    rng = np.random.default_rng(2)
    base = {"man": [1, 0, 0], "woman": [-1, 0, 0], "king": [1, 1, 0], "queen": [-1, 1, 0],
            "prince": [0.9, 0.8, 0.1], "apple": [0, 0, 1], "pear": [0.1, 0, 1],
            "boy": [0.8, -0.2, 0], "girl": [-0.8, -0.2, 0], "giant": [0, 0, 0]}
    scale = {"apple": 5.0, "giant": 1.0}
    out = {}
    for word, vec in base.items():
        vec = np.array(vec, float) + rng.normal(0, 0.05, 3)
        out[word] = vec * scale.get(word, 1.0) if word != "giant" else np.array([3.0, 3.0, 3.0])
    return out


def check_analogy(cosine_similarity: Callable[[np.ndarray, np.ndarray], float],
                  analogy: Callable[[dict, str, str, str], str]) -> None:
    """Task: ``cosine_similarity(u, v)`` and ``analogy(vectors, a, b, c)`` -> the best word."""
    task = "Task 3 (cosine similarity and analogies)"
    hint = ("cosine = u·v / (|u| |v|); for a:b::c, normalise every vector to length 1, take "
            "b - a + c, and return the word of highest cosine with it that is not a, b or c.")
    for u, v in [([1.0, 0.0], [0.0, 2.0]), ([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]),
                 ([1.0, -1.0], [-3.0, 3.0]), ([0.3, 0.4], [4.0, 3.0])]:
        u, v = np.array(u), np.array(v)
        got = _call(task, hint, cosine_similarity, u, v)
        want = float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))
        if got is None or not math.isclose(float(got), want, rel_tol=1e-6, abs_tol=1e-9):
            tip = " Divide the dot product by both lengths." if got is not None and \
                math.isclose(float(got), float(u @ v), rel_tol=1e-6) else ""
            raise AssertionError(f"{task}: cosine_similarity({u.tolist()}, {v.tolist()}) "
                                 f"returned {got}, expected {want:.4f}.{tip}")
    vectors = _toy_vectors()
    reference = word_vectors.WordVectors(list(vectors), np.stack(list(vectors.values())))
    for a, b, c in [("man", "king", "woman"), ("woman", "queen", "man"), ("king", "man", "queen"),
                    ("man", "woman", "king")]:
        want = reference.analogy(a, b, c, k=1)[0][0]
        got = _call(task, hint, analogy, dict(vectors), a, b, c)
        if got != want:
            tip = ""
            if got in (a, b, c):
                tip = f" {got!r} is one of the question's words: leave a, b and c out."
            elif got in ("giant", "apple"):
                tip = f" {got!r} has a long vector: compare directions (cosine), not dot products."
            raise AssertionError(f"{task}: {a}:{b}::{c}:? should be {want!r}, got {got!r}.{tip}")
    _passed(task, "man:king::woman:queen, and three more, by vector arithmetic")
