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

from minigpt.course.checks._base import _number
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


# Task 3's hand-made vectors: axis 0 is gender (+ male, - female), axis 1 royalty, axis 2 the
# rest of a word's meaning. In every question below the right word wins by a cosine margin of
# about 0.2, and each usual mistake lands on a different wrong word (see _analogy_mistakes).
_ANALOGY_VECTORS = {
    "man": [3, 0, 0], "woman": [-16, 0, 0],  # woman is 5 times longer: normalise first
    "king": [1, 4, -1], "queen": [-1, 4, -1],
    "he": [2, -1, 1], "she": [-2, -1, 1],
    "commoner": [0, -1, 0],
    "crown": [0, 13, 6],  # the longest vector: a raw dot product picks it
}
# b - a + c is symmetric in b and c, so each pair of questions asks the same thing with b and c
# swapped: a version that forgets to leave out b or c fails one of them.
_ANALOGY_QUESTIONS = [("man", "king", "woman"), ("man", "woman", "king"),
                      ("woman", "queen", "man"), ("woman", "man", "queen")]
_COSINE_PAIRS = [([1.0, 0.0], [0.0, 2.0]),  # orthogonal: 0
                 ([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]),  # parallel, different lengths: 1
                 ([1.0, -1.0], [-3.0, 3.0]),  # opposite: -1
                 ([0.3, 0.4], [4.0, 3.0])]  # 0.96, while the dot product is 2.4


def _analogy_vectors() -> dict[str, np.ndarray]:
    """A fresh copy of the hand-made vectors (a learner's function may change them in place)."""
    return {word: np.array(vec, dtype=np.float64) for word, vec in _ANALOGY_VECTORS.items()}


def _nearest(vectors: dict[str, np.ndarray], query: np.ndarray, exclude: tuple[str, ...],
             by_cosine: bool = True) -> str:
    words = [w for w in vectors if w not in exclude]
    scores = [vectors[w] @ query / (np.linalg.norm(vectors[w]) if by_cosine else 1.0)
              for w in words]
    return words[int(np.argmax(scores))]


def _analogy_mistakes(vectors: dict[str, np.ndarray], a: str, b: str, c: str) -> dict[str, str]:
    """For a:b::c:?, the word each usual mistake answers -> the tip that names that mistake."""
    unit = {w: v / np.linalg.norm(v) for w, v in vectors.items()}
    query = unit[b] - unit[a] + unit[c]
    longest = max((a, b, c), key=lambda w: np.linalg.norm(vectors[w]))
    shortest = min((a, b, c), key=lambda w: np.linalg.norm(vectors[w]))
    ratio = np.linalg.norm(vectors[longest]) / np.linalg.norm(vectors[shortest])

    def wrong_way(x: str, y: str, z: str) -> str:
        return (f" That is the word nearest {x} - {y} + {z}: the analogy asks for b - a + c "
                f"({b} - {a} + {c}): start from b, take a away, add c.")

    answers = [
        (_nearest(unit, unit[a] - unit[b] + unit[c], (a, b, c)), wrong_way(a, b, c)),
        (_nearest(unit, unit[b] - unit[c] + unit[a], (a, b, c)), wrong_way(b, c, a)),
        (_nearest(vectors, vectors[b] - vectors[a] + vectors[c], (a, b, c)),
         (f" That is the answer without normalising: the vector of {longest!r} is {ratio:.0f} "
          f"times longer than that of {shortest!r} and swamps b - a + c. Divide every vector by its length "
          "first.")),
        (_nearest(vectors, query, (a, b, c), by_cosine=False),
         (" That word has a long vector: rank the candidates by cosine (divide by their lengths), "
          "not by the dot product.")),
    ]
    tips: dict[str, str] = {}
    for word, tip in answers:
        tips[word] = tips.get(word, "") + tip
    return tips


def _cosine_tip(got: float | None, dot: float, nu: float, nv: float) -> str:
    """The tip for a wrong cosine: ``dot`` is u·v, ``nu`` and ``nv`` the two lengths."""
    if got is None:
        return " Return one number (a float)."
    for tip, values in [(" Divide the dot product by both lengths.", [dot, dot / nu, dot / nv]),
                        (" A vector's length is the square root of u·u (np.linalg.norm(u)).",
                         [dot / (nu * nv) ** 2]),
                        (" Opposite vectors have cosine -1: keep the sign.", [-dot / (nu * nv)])]:
        if any(math.isclose(got, x, rel_tol=1e-6) for x in values):
            return tip
    return ""


def check_analogy(cosine_similarity: Callable[[np.ndarray, np.ndarray], float],
                  analogy: Callable[[dict, str, str, str], str]) -> None:
    """Task: ``cosine_similarity(u, v)`` and ``analogy(vectors, a, b, c)`` -> the best word.

    Both run on hand-made vectors (not a trained model's), where the right answer wins by a clear
    margin and each usual mistake gives its own wrong answer, named in the error."""
    task = "Task 3 (cosine similarity and analogies)"
    hint = ("cosine = u·v / (|u| |v|); for a:b::c, normalise every vector to length 1, take "
            "b - a + c, and return the word of highest cosine with it that is not a, b or c.")
    for u, v in _COSINE_PAIRS:
        u, v = np.array(u), np.array(v)
        got = _number(_call(task, hint, cosine_similarity, u.copy(), v.copy()))
        dot, nu, nv = float(u @ v), float(np.linalg.norm(u)), float(np.linalg.norm(v))
        want = dot / (nu * nv)
        if got is None or not math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
            tip = _cosine_tip(got, dot, nu, nv)
            raise AssertionError(f"{task}: cosine_similarity({u.tolist()}, {v.tolist()}) "
                                 f"returned {got}, expected {want:.4f}.{tip}")
    vectors = _analogy_vectors()
    reference = word_vectors.WordVectors(list(vectors), np.stack(list(vectors.values())))
    for a, b, c in _ANALOGY_QUESTIONS:
        want = reference.analogy(a, b, c, k=1)[0][0]
        got = _call(task, hint, analogy, _analogy_vectors(), a, b, c)
        if not isinstance(got, str):
            tip = (" That is a position, not a word: return the word itself."
                   if isinstance(got, (int, np.integer)) else " Return only the word (a str).")
            shown = got.item() if isinstance(got, np.generic) else got
            raise AssertionError(  # noqa: TRY004 (a check reports every mistake as an AssertionError)
                f"{task}: {a}:{b}::{c}:? should be {want!r}, got {shown!r} of type "
                f"{type(got).__name__}.{tip}")
        got = str(got)  # a NumPy string would print as np.str_('...')
        if got != want:
            if got in (a, b, c):
                tip = f" {got!r} is one of the question's words: leave a, b and c out."
            else:
                tip = _analogy_mistakes(vectors, a, b, c).get(got, "")
            raise AssertionError(f"{task}: {a}:{b}::{c}:? should be {want!r}, got {got!r}.{tip}")
    _passed(task, f"cosine on {len(_COSINE_PAIRS)} pairs, and man:king::woman:queen and "
                  f"{len(_ANALOGY_QUESTIONS) - 1} more analogies on hand-made vectors")
